"""What both platforms' submissions share: the options, the notes the user must read, the
file and server arguments, the pre-upload check's verdict, waiting, the ledger rows."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from subkit import ui
from subkit.errors import CheckFailed, InputError, UsageError
from subkit.remote.http import api_host

# the clock of the waits; tests replace it with one that moves with their fake sleep
CLOCK: Callable[[], float] = time.monotonic


@dataclass
class SubmitOptions:
    platform: str  # "codabench" or "kaggle"
    competition: str
    file: Path | None = None
    phase: str | None = None
    message: str | None = None
    wait: bool = False
    force: bool = False
    smoke: bool = True
    env: str | None = None  # the check's environment; None: check_zip's default ("auto")
    server: str | None = None
    wait_timeout: float = 7200.0
    kernel: str | None = None
    version: int | None = None
    tasks: list[int] | None = None
    quiet: bool = False  # --json: the check's own lines are not shown


class Notes(list):
    """Lines the user must read: said now (a progress line) and kept for --json."""

    def note(self, message: str) -> None:
        self.append(message)
        ui.progress(message)


def now() -> float:
    return CLOCK()


def existing_file(path: Path | None, what: str, hint: str) -> Path:
    if path is None:
        raise UsageError(f"give the {what} to submit", hint=hint)
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}", hint=hint)
    return path


def server_of(flag: str | None, fallback: str | None, default: str) -> str:
    return api_host(flag) if flag else (fallback or default)


def interruptible_wait(fn: Callable[[], Any], what: str) -> Any:
    try:
        return fn()
    except KeyboardInterrupt:
        ui.progress(f"\nstopped waiting: {what} goes on and is in the ledger; enter its score "
                    "later with `subkit history score`")
        raise


def run_check(zip_path: Path, profile: Any, *, smoke: bool, quiet: bool,
              env: str | None) -> Any:
    """`subkit check` on the zip (imported lazily: it may load TensorFlow); its lines are
    progress lines of this command (stderr on a terminal), none when ``quiet``."""
    from subkit.checks import check_zip

    kwargs = {"env": env} if env else {}
    outer = ui.reporter()
    with ui.use(ui.SILENT if quiet else ui.Lines(outer.progress)):
        return check_zip(zip_path, profile, smoke=smoke, **kwargs)


def checked(status: str | None, failure: str | None, what: str, force: bool, notes: Notes,
            hint: str) -> None:
    """A FAILED pre-upload check stops the submission, unless --force (then noted)."""
    if status != "FAILED":
        return
    reason = f": {failure}" if failure else ""
    if not force:
        raise CheckFailed(f"{what} FAILED{reason}; nothing was uploaded", hint=hint)
    notes.note(f"warning: {what} FAILED{reason}; uploading anyway (--force)")


def record(ledger: Any, row: dict, result: dict) -> dict:
    """Append a ledger row and name it in the result; returns the stored row."""
    stored = ledger.append(row)
    result.setdefault("ledger_ids", []).append(stored["id"])
    return stored
