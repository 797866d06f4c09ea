"""Finishing what a killed subkit left behind, before a command that builds, runs or lists.

- the sandbox's disk caps still mounted and memory cgroups of a dead subkit are removed;
- temporary folders (``subkit-*`` in the system's temp folder: smoke tests, checks, the
  sandbox's scratch, retargeting) whose lock no living process holds are removed;
- builds interrupted after their commit point are rolled forward, earlier ones removed
  (``subkit.publish``);
- runs that never finished are marked incomplete, finished ones get their missing ledger
  row (``subkit.grader.runfolder``).

Each step is cheap when there is nothing to do (a directory listing and a few stats).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from subkit.fsutil import sweep

if TYPE_CHECKING:
    from subkit.profile import Profile


def recover(prof: Profile, out_dir: Path | None = None) -> list[str]:
    """What was finished or cleaned, in words (empty when nothing was left)."""
    from subkit.grader import cgroup, diskcap
    from subkit.grader.runfolder import recover_runs
    from subkit.publish import recover_builds

    diskcap.sweep()  # the sandbox's mounts and cgroups first: they pin the folders below
    cgroup.sweep_stale()
    sweep(tempfile.gettempdir(), "subkit-")
    notes: list[str] = []
    folders = {Path(prof.submissions_dir)}
    if out_dir is not None:
        folders.add(Path(out_dir))
    for folder in sorted(folders):
        notes += recover_builds(folder)
    notes += recover_runs(Path(prof.submissions_dir) / "runs", Path(prof.submissions_dir))
    return notes
