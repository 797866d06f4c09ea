"""`subkit report RUN`: the detailed HTML report of a local run."""

from __future__ import annotations

from pathlib import Path

import click

from subkit.cli.options import echo_json, json_option, load_profile, profile_option


@click.command(name="report")
@click.argument("run_dir", metavar="[RUN]", required=False,
                type=click.Path(file_okay=False))
@profile_option
@json_option
def report(run_dir, profile_name, as_json) -> None:
    """Write (or rewrite) report.html of a run folder and print its path.

    RUN is a folder made by `subkit score-local` (default: the newest under
    submissions/runs/). The page is self-contained (no network) and doubles as Codabench's
    detailed_results.html."""
    from subkit.commands.report import ReportOptions
    from subkit.commands.report import report as write

    path = write(ReportOptions(run_dir=Path(run_dir) if run_dir else None),
                 load_profile(profile_name))
    if as_json:
        echo_json({"report": str(path)})
    else:
        click.echo(f"wrote {path}")
