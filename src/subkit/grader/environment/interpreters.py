"""Which interpreter the grader's venv is built on: the profile's Python X.Y when this
machine has it ($SUBKIT_GRADER_PYTHON, pythonX.Y on PATH, pyenv's versions), else the local
one and a note saying so."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

from subkit.errors import SubkitError


def _local_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


# -- which interpreter the venv is built on ----------------------------------------------------
_INTERPRETERS: dict[str, dict] = {}


def _probe_interpreter(path: str, timeout: float = 20) -> str | None:
    """``X.Y`` of an interpreter that runs and can make a venv, else None."""
    try:
        out = subprocess.run(
            [path, "-c", "import sys, venv; "
                         "print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def find_interpreter(want: str) -> dict:
    """The interpreter to build the grader venv on for Python ``want`` ("3.10").

    ``{"path", "version", "exact": bool, "note": str | None}``: the local interpreter when it
    is ``want``; else ``$SUBKIT_GRADER_PYTHON``, ``python<want>`` on PATH or in pyenv's
    versions folder when one of them runs; else the local interpreter and a note saying so.
    """
    if want in _INTERPRETERS:
        return _INTERPRETERS[want]
    local = _local_version()
    want_xy = ".".join(str(want).split(".")[:2])
    result = None
    if want_xy == local:
        result = {"path": sys.executable, "version": local, "exact": True, "note": None}
    else:
        override = os.environ.get("SUBKIT_GRADER_PYTHON")
        if override:
            version = _probe_interpreter(override)
            if version is None:
                raise SubkitError(f"SUBKIT_GRADER_PYTHON={override} does not run or has no "
                                  "venv module",
                                  hint="point it at a Python interpreter, or unset it")
            note = None if version == want_xy else (
                f"the profile's Python is {want_xy}; SUBKIT_GRADER_PYTHON is Python {version}")
            result = {"path": override, "version": version, "exact": version == want_xy,
                      "note": note}
        else:
            candidates = []
            on_path = shutil.which(f"python{want_xy}")
            if on_path:
                candidates.append(on_path)
            pyenv = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
            candidates += sorted(glob.glob(os.path.join(pyenv, "versions", f"{want_xy}.*",
                                                        "bin", f"python{want_xy}")),
                                 reverse=True)
            for cand in candidates:
                if _probe_interpreter(cand) == want_xy:
                    result = {"path": cand, "version": want_xy, "exact": True, "note": None}
                    break
    if result is None:
        result = {"path": sys.executable, "version": local, "exact": False,
                  "note": (f"the profile's grader runs Python {want_xy}, which is not on this "
                           f"machine: the grader environment uses the local Python {local} "
                           "with the pinned packages (set SUBKIT_GRADER_PYTHON to a "
                           f"python{want_xy} to use it)")}
    _INTERPRETERS[want] = result
    return result
