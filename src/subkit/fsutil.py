"""Writing files so that nothing half-written is ever left under the final name, and
temporary folders that the next run cleans up when subkit was killed."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def temp_sibling(path: str | os.PathLike, suffix: str = ".tmp", *, private: bool = False) -> Path:
    """A new empty file next to ``path`` (same folder, so a rename is atomic), with the
    permissions a plain ``open()`` would give under the user's umask (``mkstemp`` makes
    them 0600), or 0600 when ``private``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        if not private:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
    finally:
        os.close(fd)
    return Path(tmp)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, private: bool = False,
                fsync: bool = False) -> Iterator[IO]:
    """Write ``path`` through a temp file in the same folder, renamed into place when the
    block ends; on any error the temp file goes and ``path`` is untouched. ``mode``: "w"
    (UTF-8 text) or "wb"; ``private``: mode 0600 from the first byte on."""
    tmp = temp_sibling(path, private=private)
    try:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a temp file in the same folder, then rename it into place."""
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, default=str))


# -- temporary folders that survive no crash ---------------------------------------------------
LOCK_NAME = ".subkit-lock"


def hold_lock(folder: Path) -> int:
    """Create and hold ``folder/.subkit-lock`` (flock, released by the kernel when this
    process dies); returns the descriptor to pass to ``release_lock``."""
    fd = os.open(Path(folder) / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def release_lock(folder: Path, fd: int) -> None:
    try:
        os.unlink(Path(folder) / LOCK_NAME)
    except OSError:
        pass
    os.close(fd)


def abandoned(folder: Path) -> bool:
    """True when ``folder`` holds a lock file that no living process holds: what a killed
    subkit left behind."""
    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # a running subkit holds it
    finally:
        os.close(fd)
    return True


@contextmanager
def scratch_dir(prefix: str, parent: str | os.PathLike | None = None) -> Iterator[Path]:
    """A temporary folder that a killed subkit leaves recognisable: it holds a lock file
    while in use, and ``sweep`` removes it once nobody holds that lock."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    fd = hold_lock(d)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
        os.close(fd)


def sweep(parent: str | os.PathLike[str], prefix: str) -> list[Path]:
    """Remove the folders ``parent/prefix*`` that a killed subkit left (``abandoned``)."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for e in entries:
        if e.name.startswith(prefix) and e.is_dir(follow_symlinks=False) \
                and abandoned(Path(e.path)):
            shutil.rmtree(e.path, ignore_errors=True)
            removed.append(Path(e.path))
    return removed
