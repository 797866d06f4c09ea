"""Writing files so that nothing half-written is ever left under the final name."""

from __future__ import annotations

import json
import os
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
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
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
