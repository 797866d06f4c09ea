"""`subkit report [RUN]`: report.html of a finished local run, written again (the page is
``subkit.report.html``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from subkit.errors import InputError

if TYPE_CHECKING:
    from subkit.profile import Profile


@dataclass(frozen=True)
class ReportOptions:
    run_dir: Path | None = None  # None: the newest finished run under submissions/runs/


def report(opts: ReportOptions, prof: Profile) -> Path:
    """The path of the report written."""
    from subkit.report.html import write_report

    folder = opts.run_dir or newest_run(prof)
    if not folder.is_dir():
        raise InputError(f"run folder not found: {folder}",
                         hint="give a folder under submissions/runs/ made by `subkit score-local`")
    if _status(folder) != "complete":
        raise InputError(f"{folder} holds a run that never finished ({_status(folder)})",
                         hint="score the zip again: `subkit score-local ZIP`")
    return write_report(folder, prof)


def newest_run(prof: Profile) -> Path:
    runs = prof.submissions_dir / "runs"
    found = [p.parent for p in runs.glob("*/run.json")] if runs.is_dir() else []
    found = [p for p in found if _status(p) == "complete"]
    if not found:
        raise InputError(f"no finished run folders in {runs}",
                         hint="run `subkit score-local` first, or give a run folder")
    return max(found, key=lambda p: (p / "run.json").stat().st_mtime)


def _status(folder: Path) -> str:
    """"complete", "running" or "incomplete" (a run subkit did not finish: no report)."""
    from subkit.grader.runfolder import read_record

    try:
        return str(read_record(folder).get("status", "complete"))
    except InputError:
        return "incomplete"
