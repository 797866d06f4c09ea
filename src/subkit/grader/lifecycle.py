"""A run's one lifecycle: a frozen spec in, the run folder opened, the child run, the folder
finished or abandoned, a typed result out.

A command builds a ``RunSpec`` (what to run, on what, under which limit, in which
interpreter) and runs its work inside ``conduct(spec)``::

    with lifecycle.conduct(spec) as run:
        cr = run.child(X)                     # the clean run; run.child(X, plan=...) shifts
        result = ...                          # scored by the command's kind
        run.done(result, ledger_row)          # what run.json and the ledger will say

On leaving the block the folder ends in exactly one of three ways, whatever happened in it:

- a result was handed to ``done``: ``run.json`` is written once, complete (the "running"
  marker of ``RunFolder`` was the only write before it), then the ledger row; an exception
  raised after ``done`` (a command that reports a failed run as an error) still finishes
  the folder first;
- no result, but a child ran: the folder is abandoned (``"status": "incomplete"``, never
  ok, its input copies removed): Ctrl-C, an error of subkit's;
- no result and nothing ran (the user's input was refused while setting up): the folder is
  removed, so a refused zip or bundle leaves nothing behind.

The ledger row is the command's to make (``done``'s second argument); the lifecycle only
appends it after run.json, as ``RunFolder.finish`` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from subkit.grader import safezip, sandbox
from subkit.grader.runfolder import RunFolder

if TYPE_CHECKING:
    from subkit.grader.run import ChildRun
    from subkit.profile import Profile


class Record(Protocol):
    """A run's typed result: what ``run.json`` holds is its ``to_dict()``."""

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class RunSpec:
    """What a run is, fixed before it starts.

    ``command``: run.json's ``kind`` ("score-local", "predict"); ``stem``: the run folder's
    name before its time stamp; ``unzip``: unzip the submission into ``submission/`` when
    the folder opens (a bundle's runner places it itself); ``what``: more fields of the
    "running" marker (the bundle's path)."""

    prof: Profile
    zip: Path
    command: str
    stem: str
    time_limit: float
    python: str
    env: dict[str, Any]
    data: Path | None = None
    isolate_network: bool = True
    progress: bool = False
    unzip: bool = True
    what: dict[str, Any] = field(default_factory=dict)


class Run:
    """The open run: its folder, its children, and the result it ends with."""

    def __init__(self, spec: RunSpec, folder: RunFolder):
        self.spec, self.folder = spec, folder
        self.path = folder.path
        self.submission = folder.path / "submission"
        self.children = 0
        self.result: Record | None = None
        self.ledger_row: dict[str, Any] | None = None
        self.warning: str | None = None  # the ledger refused the row

    def child(self, X: np.ndarray, *, plan: Any = None, labels: np.ndarray | None = None,
              proba: bool = False, inputs: dict[str, np.ndarray] | None = None,
              extra_env: dict[str, str] | None = None, label: str | None = None,
              folder: str | None = None) -> ChildRun:
        """One sandboxed child on ``X`` (and on each set of ``plan``, the shift suite's;
        ``proba``: also ``predict_proba``), in the spec's interpreter, limits and network.
        ``folder``: a subfolder of the run for a second child (the run without TTA); the
        submission's working copy is the same."""
        from subkit.grader import run as grun

        s = self.spec
        run_dir = self.path / folder if folder else self.path
        self.children += 1
        if plan is None and not proba:
            return grun.run_submission(self.submission, X, s.prof, run_dir=run_dir,
                                       time_limit=s.time_limit, python=s.python,
                                       isolate_network=s.isolate_network, progress=s.progress,
                                       extra_env=extra_env, inputs=inputs,
                                       label=label or "running the submission")
        from subkit.grader.sets import run_with_plan

        if label is None:
            label = f"clean + {len(plan)} shifted sets" if plan else "running the submission"
        return run_with_plan(self.submission, X, labels, s.prof, plan, run_dir=run_dir,
                             time_limit=s.time_limit, python=s.python,
                             isolate_network=s.isolate_network, progress=s.progress,
                             extra_env=extra_env, proba=proba, label=label, inputs=inputs)

    def began(self) -> None:
        """Something of the submission's ran outside ``child`` (a bundle's containers): an
        interruption from now on abandons the folder instead of removing it."""
        self.children += 1

    def done(self, result: Record, ledger_row: dict[str, Any] | None = None) -> None:
        """The run's result: run.json (and the ledger row) are written when the block ends."""
        self.result, self.ledger_row = result, ledger_row


def open_folder(spec: RunSpec) -> RunFolder:
    """The run folder, marked running, with the zip safely unzipped into ``submission/``
    (``spec.unzip``); a zip that is refused leaves no folder behind."""
    sandbox.choose_mode()  # SUBKIT_SANDBOX=bwrap where there is none: refused before anything
    what = {"kind": spec.command, "zip": str(spec.zip), **spec.what}
    if spec.data is not None:
        what["data"] = str(spec.data)
    folder = RunFolder(spec.prof.submissions_dir / "runs", spec.stem, what)
    if spec.unzip:
        max_bytes, max_members = safezip.bounds(spec.prof)
        try:
            safezip.safe_extract(spec.zip, folder.path / "submission", max_bytes=max_bytes,
                                 max_members=max_members)
        except BaseException:
            folder.discard()
            raise
    return folder


@contextmanager
def conduct(spec: RunSpec) -> Iterator[Run]:
    """Open the run, hand it to the block, and end its folder in one of the three ways the
    module says."""
    run = Run(spec, open_folder(spec))
    try:
        yield run
    except BaseException as exc:
        if run.result is not None:
            _finish(run)
        elif run.children:
            run.folder.abandon(f"interrupted: {type(exc).__name__}: {exc}"[:300])
        else:
            run.folder.discard()
        raise
    if run.result is None:  # a command that forgot its result: never a silent success
        run.folder.abandon("subkit ended the run without a result")
        return
    _finish(run)


def _finish(run: Run) -> None:
    assert run.result is not None
    ledger_dir = run.spec.prof.submissions_dir if run.ledger_row is not None else None
    run.warning = run.folder.finish(run.result.to_dict(), ledger_dir, run.ledger_row)


@dataclass
class PlainRecord:
    """A record that is already a dict (``subkit predict``'s)."""

    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)
