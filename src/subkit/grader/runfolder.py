"""A run folder's life: opened marked "running", closed with subkit's own record.

A run folder (``submissions/runs/<zip stem>-<yymmdd_hhmmss>/``) holds a lock file while
subkit works in it and a ``run.json`` that says ``"status": "running"`` from the first
moment. Only subkit writes ``run.json`` and the ledger row, after the sandbox is gone,
in places the child never could reach. The end of a run replaces ``run.json`` with the
full record (``"status": "complete"``, with the ledger row it carries), appends that row,
and removes the lock. So after a ``kill -9`` at any moment the next command finds either

- a folder whose run never finished: it is marked ``"status": "incomplete"`` (never ok),
  its input copy and any scores removed; or
- a finished record whose ledger row may be missing: the row is appended from it.

``recover_runs`` does that; ``subkit.recovery`` calls it before the commands that run or
read runs.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from subkit.errors import InputError, SubkitError
from subkit.fsutil import abandoned, hold_lock, release_lock, write_json_atomic

# run.json's schema: 2 since the run lifecycle (written once, complete or incomplete, with
# this number); a record without one is 1. A newer number is a newer subkit's record.
RUN_SCHEMA = 2

INCOMPLETE = ("subkit stopped before this run finished (killed, crashed, interrupted or the "
              "machine went down): nothing of it is trusted, run it again")
_TEMPORARY = ("input_data", "shift_work", "scores.json", "no_tta/input_data")


def new_run_dir(runs_root: Path, stem: str) -> Path:
    try:
        runs_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {runs_root}: {exc.strerror}",
                         hint="run from a folder you can write to, "
                              "or set [workspace] submissions") from None
    base = f"{stem}-{datetime.now().strftime('%y%m%d_%H%M%S')}"
    for i in range(1000):
        d = runs_root / (base if i == 0 else f"{base}-{i}")
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue
    raise SubkitError(f"cannot create a run folder in {runs_root}", hint="clean up old runs")


class RunFolder:
    """One run folder while subkit works in it."""

    def __init__(self, runs_root: Path, stem: str, what: dict):
        self.path = new_run_dir(runs_root, stem)
        self._fd: int | None = hold_lock(self.path)
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_json_atomic(self.path / "run.json", {"schema": RUN_SCHEMA, "status": "running",
                                                   "started": self.started, "pid": os.getpid(),
                                                   **what})

    def finish(self, record: dict, ledger_dir: Path | None = None,
               ledger_row: dict | None = None) -> str | None:
        """The final record, then its ledger row; returns a warning when the ledger refused."""
        record = {**record, "schema": RUN_SCHEMA, "status": "complete",
                  "started": self.started}
        if ledger_row is not None:
            record["ledger_row"] = ledger_row
        write_json_atomic(self.path / "run.json", record)
        warning = None
        if ledger_row is not None and ledger_dir is not None:
            try:
                from subkit.ledger import Ledger

                Ledger(ledger_dir).append(ledger_row)
            except (SubkitError, OSError, ValueError):
                warning = "could not append to the ledger"
        self._release()
        return warning

    def abandon(self, reason: str) -> None:
        """The run stops here without a result (Ctrl-C, an error of subkit's)."""
        mark_incomplete(self.path, reason)
        self._release()

    def discard(self) -> None:
        """Nothing ran (the zip was refused): no folder is left behind."""
        self._release()
        shutil.rmtree(self.path, ignore_errors=True)

    def _release(self) -> None:
        if self._fd is not None:
            release_lock(self.path, self._fd)
            self._fd = None


def read_record(folder: Path) -> dict:
    """A run folder's run.json: the one reader (the report, `subkit report`, recovery).
    A missing, unreadable or foreign record, or one of a newer schema, is the user's error."""
    p = Path(folder) / "run.json"
    try:
        rec = json.loads(p.read_text())
    except OSError:
        raise InputError(f"{p} not found: {folder} is not a run folder",
                         hint="give a folder under submissions/runs/ made by "
                              "`subkit score-local`") from None
    except ValueError as exc:
        raise InputError(f"{p} is not valid JSON ({exc})", hint="score the zip again") from None
    if not isinstance(rec, dict):
        raise InputError(f"{p} is not a run record", hint="score the zip again")
    schema = rec.get("schema", 1)
    if not isinstance(schema, int) or schema > RUN_SCHEMA:
        raise InputError(f"{p} was written by a newer subkit (run record schema {schema}; "
                         f"this one reads up to {RUN_SCHEMA})", hint="pip install -U subkit")
    return rec


def _read_record(folder: Path) -> dict:
    """``read_record``, or {} for recovery, which marks whatever it finds."""
    try:
        return read_record(folder)
    except InputError:
        return {}


def mark_incomplete(folder: Path, reason: str) -> None:
    rec = _read_record(folder)
    rec.update(status="incomplete", ok=False, score=None, scores={}, incomplete_reason=reason)
    rec.pop("ledger_row", None)
    for part in _TEMPORARY:
        p = folder / part
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()
    write_json_atomic(folder / "run.json", rec)


def recover_runs(runs_root: Path, ledger_dir: Path) -> list[str]:
    """Finish what a killed subkit left in ``runs_root``; returns what was done, in words."""
    notes: list[str] = []
    try:
        folders = sorted(p for p in Path(runs_root).iterdir() if p.is_dir())
    except OSError:
        return notes
    for folder in folders:
        if not abandoned(folder):
            continue
        rec = _read_record(folder)
        if rec.get("status") == "complete" and isinstance(rec.get("ledger_row"), dict):
            if _append_missing(ledger_dir, rec["ledger_row"]):
                notes.append(f"recorded the run {folder.name} in the ledger (subkit was stopped "
                             "after the run, before its ledger row)")
        elif rec.get("status") != "complete":
            mark_incomplete(folder, INCOMPLETE)
            notes.append(f"the run {folder.name} never finished (subkit was stopped): marked "
                         "incomplete")
        try:
            os.unlink(folder / ".subkit-lock")
        except OSError:
            pass
    return notes


def _append_missing(ledger_dir: Path, row: dict) -> bool:
    from subkit.ledger import Ledger

    ledger = Ledger(ledger_dir, on_warning=lambda m: None)
    if any(r.get("kind") == row.get("kind") and r.get("run_dir") == row.get("run_dir")
           for r in ledger.records()):
        return False
    ledger.append(row)
    return True
