"""`subkit report RUN`: the detailed HTML report of a local run."""

from __future__ import annotations

import click

from subkit.cli.options import (
    argument,
    declare,
    echo_json,
    fill,
    json_option,
    load_profile,
    path,
    profile_option,
)

REPORT = (
    argument("run_dir", convert=path, metavar="[RUN]", required=False,
             type=click.Path(file_okay=False)),
    profile_option, json_option,
)


@click.command(name="report")
@declare(*REPORT)
def report(**values) -> None:
    """Write (or rewrite) report.html of a run folder and print its path.

    RUN is a folder made by `subkit score-local` (default: the newest under
    submissions/runs/). The page is self-contained (no network) and doubles as Codabench's
    detailed_results.html."""
    from subkit.commands.report import ReportOptions
    from subkit.commands.report import report as write

    written = write(fill(ReportOptions, REPORT, values), load_profile(values["profile_name"]))
    if values["as_json"]:
        echo_json({"report": str(written)})
    else:
        click.echo(f"wrote {written}")
