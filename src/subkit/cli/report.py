"""`subkit report RUN`: the detailed HTML report of a local run."""

from __future__ import annotations

import json
from pathlib import Path

import click

from subkit.cli.options import echo_json, json_option, profile_option


def newest_run(prof) -> Path:
    from subkit.errors import InputError

    runs = prof.submissions_dir / "runs"
    found = [p.parent for p in runs.glob("*/run.json")] if runs.is_dir() else []
    found = [p for p in found if _status(p) == "complete"]
    if not found:
        raise InputError(f"no finished run folders in {runs}",
                         hint="run `subkit score-local` first, or give a run folder")
    return max(found, key=lambda p: (p / "run.json").stat().st_mtime)


def _status(folder: Path) -> str:
    """"complete", "running" or "incomplete" (a run subkit did not finish: no report)."""
    try:
        return str(json.loads((folder / "run.json").read_text()).get("status", "complete"))
    except (OSError, ValueError, AttributeError):
        return "incomplete"


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
    from subkit import profile
    from subkit.errors import InputError
    from subkit.report.html import write_report

    prof = profile.load(profile_name)
    folder = Path(run_dir) if run_dir else newest_run(prof)
    if not folder.is_dir():
        raise InputError(f"run folder not found: {folder}",
                         hint="give a folder under submissions/runs/ made by `subkit score-local`")
    if _status(folder) != "complete":
        raise InputError(f"{folder} holds a run that never finished ({_status(folder)})",
                         hint="score the zip again: `subkit score-local ZIP`")
    path = write_report(folder, prof)
    if as_json:
        echo_json({"report": str(path)})
    else:
        click.echo(f"wrote {path}")
