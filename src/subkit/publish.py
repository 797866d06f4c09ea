"""Putting a built zip in place so that ``kill -9`` at any moment leaves no zip without its
ledger row and no ledger row without its zip.

The build's staging folder (``<out>/.subkit-build-*``, locked while the build runs) is its
journal:

1. ``candidate.zip`` and ``manifest.json`` are complete in it;
2. ``commit.json`` (the final names, the ledger folder and the ledger row) is written
   atomically: from this moment the build rolls forward, whatever happens;
3. the ledger row is appended, unless the ledger already holds it;
4. the zip is linked under its final name (never over another file), then the manifest;
5. the staging folder is removed.

The next command (``recover_builds``, through ``subkit.recovery``) finds a staging folder
whose lock nobody holds: without ``commit.json`` nothing was published and it is removed;
with it, steps 3-5 run again (each one does nothing when already done).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from subkit.errors import SubkitError
from subkit.fsutil import abandoned, hold_lock, release_lock, write_json_atomic

STAGE_PREFIX = ".subkit-build-"
CANDIDATE, MANIFEST, COMMIT = "candidate.zip", "manifest.json", "commit.json"


@contextmanager
def staging(out: Path) -> Iterator[Path]:
    """The staging folder of one build, in ``out`` (the same file system as the zip)."""
    d = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=out))
    fd = hold_lock(d)
    try:
        yield d
    finally:
        if not (d / COMMIT).exists():  # never committed: nothing was published
            shutil.rmtree(d, ignore_errors=True)
        release_lock(d, fd)


def commit(stage: Path, out: Path, zip_name: str, manifest_name: str, ledger_dir: Path,
           row: dict | None) -> None:
    """Steps 2-5: from here on the zip, its manifest and its ledger row all appear."""
    write_json_atomic(stage / COMMIT, {"zip": zip_name, "manifest": manifest_name,
                                       "out": str(out), "ledger_dir": str(ledger_dir),
                                       "row": row})
    roll_forward(stage)


def roll_forward(stage: Path) -> str:
    """Steps 3-5 of a committed stage; returns the zip's name."""
    from subkit.ledger import Ledger

    c = json.loads((stage / COMMIT).read_text())
    out, row = Path(c["out"]), c["row"]
    ledger = Ledger(Path(c["ledger_dir"]), on_warning=lambda m: None)
    if row is not None and not any(r.get("kind") == "build"
                                   and r.get("zip_sha256") == row.get("zip_sha256")
                                   and r.get("zip") == row.get("zip") for r in ledger.records()):
        ledger.append(row)
    for src, name in ((CANDIDATE, c["zip"]), (MANIFEST, c["manifest"])):
        _link(stage / src, out / name)
    shutil.rmtree(stage, ignore_errors=True)
    return c["zip"]


def _link(src: Path, dst: Path) -> None:
    """Link ``src`` as ``dst`` unless that is done; never replace another file."""
    try:
        os.link(src, dst)
    except FileExistsError:
        if src.exists() and not os.path.samefile(src, dst):
            raise SubkitError(f"{dst} appeared while building; nothing was overwritten",
                              hint="build again (the name has the time in it)") from None
    except FileNotFoundError:
        if not dst.exists():  # neither the staged file nor the published one
            raise


def recover_builds(out: Path) -> list[str]:
    """Finish or remove what killed builds left in ``out``; returns what was done."""
    notes: list[str] = []
    try:
        stages = [Path(e.path) for e in os.scandir(out)
                  if e.name.startswith(STAGE_PREFIX) and e.is_dir(follow_symlinks=False)]
    except OSError:
        return notes
    for stage in stages:
        if not abandoned(stage):
            continue
        if (stage / COMMIT).exists():
            try:
                name = roll_forward(stage)
                notes.append(f"finished the build of {name} that subkit was stopped in the middle "
                             "of (the zip, its manifest and its ledger row are all in place)")
            except (OSError, ValueError, KeyError, SubkitError) as exc:
                notes.append(f"could not finish the interrupted build in {stage}: {exc}")
        else:
            shutil.rmtree(stage, ignore_errors=True)
            notes.append("removed the staging folder of a build that never finished")
    return notes
