"""The store of grader environments: one venv per pinned set under the cache folder, its
marker (written last), its lock, and building, reusing, removing one."""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from subkit import ui
from subkit.errors import SubkitError
from subkit.fsutil import write_json_atomic
from subkit.grader.environment import installers, interpreters
from subkit.grader.environment.installers import (
    DOWNLOAD_HINT_MB,
    Installer,
    Runner,
    _run_capture,
    venv_python,
)
from subkit.grader.environment.pinset import pins, requirements

if TYPE_CHECKING:
    from subkit.profile import Profile

MARKER = "subkit-env.json"


def cache_root() -> Path:
    """``$SUBKIT_CACHE``, else ``$XDG_CACHE_HOME/subkit``, else ``~/.cache/subkit``."""
    if os.environ.get("SUBKIT_CACHE"):
        return Path(os.environ["SUBKIT_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "subkit"


def envs_root() -> Path:
    return cache_root() / "envs"


def env_key(pin_set: dict, interpreter_version: str) -> str:
    """The folder name of an environment: a hash of the pins and the venv's Python X.Y."""
    blob = json.dumps({"pins": pin_set, "interpreter": interpreter_version}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def env_dir(profile: Profile) -> Path:
    """Where the profile's grader environment lives (whether or not it exists yet)."""
    p = pins(profile)
    return envs_root() / env_key(p, interpreters.find_interpreter(p["python"])["version"])


def read_marker(folder: Path, pin_set: dict | None = None) -> dict | None:
    """The marker of a complete environment, or None (missing, unreadable, other pins,
    or its python gone)."""
    try:
        marker = json.loads((folder / MARKER).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("status") != "ok":
        return None
    if pin_set is not None and marker.get("pins") != pin_set:
        return None
    if not venv_python(folder).exists():
        return None
    return marker


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            ui.progress(f"another subkit process is building this environment ({path.parent}); "
                        "waiting for it...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tree_size(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    if folder.exists():  # pragma: no cover - a file we could not delete
        raise SubkitError(f"could not remove the broken environment {folder}",
                          hint="remove the folder by hand")


def create_env(pin_set: dict, folder: Path, interpreter: dict, *,
               progress: bool = False, installer: Installer | None = None,
               check: Callable[[str, dict], dict] | None = None,
               runner: Runner = _run_capture, profile_name: str = "",
               sizer: Callable[[str, list], dict | None] | None = None) -> dict:
    """Build the environment in ``folder`` (which must not exist); write the marker last.

    On any failure (or Ctrl-C) the folder is removed before the error goes on.
    ``sizer`` measures the download (default: ``installers.download_size``, not asked when a
    test passes its own ``installer``).
    """
    if sizer is None:
        sizer = installers.download_size if installer is None else (lambda python, reqs: None)
    installer = installer or installers.pip_install
    check = check or installers.import_check
    if interpreter.get("note"):
        ui.progress(f"note: {interpreter['note']}")
    installers.check_pins_available(interpreter["path"], pin_set, interpreter["version"],
                                    runner)
    reqs = requirements(pin_set)
    log_path = folder.parent / f"{folder.name}.log"
    ui.progress(f"creating the grader environment{' of ' + profile_name if profile_name else ''}: "
                f"Python {interpreter['version']} + {' '.join(reqs)}")
    ui.progress(f"  in {folder}")
    start = time.monotonic()
    try:
        python = installers.make_venv(interpreter["path"], folder)
        ui.progress("  measuring the download (asking the package index)...")
        size = sizer(str(python), reqs)
        what = (f"{size['bytes'] / 1e6:.0f} MB in {size['packages']} packages" if size
                else f"about {DOWNLOAD_HINT_MB} MB (the index did not say)")
        ui.progress(f"  downloading {what} with {installers.installer_kind()}, once: later runs "
                    f"reuse it (log: {log_path})")
        installer(str(python), reqs, log_path, progress)
        ui.progress("  checking that the new environment imports tensorflow, keras and numpy...")
        found = check(str(python), pin_set)
        marker: dict[str, Any] = {
            "status": "ok",
            "pins": pin_set,
            "key": folder.name,
            "python": str(python),
            "interpreter": {k: interpreter[k] for k in ("path", "version", "exact")},
            "note": interpreter.get("note"),
            "versions": found,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "install_seconds": round(time.monotonic() - start, 1),
            "download_bytes": size["bytes"] if size else None,
            "size_bytes": _tree_size(folder),
        }
        write_json_atomic(folder / MARKER, marker)
    except BaseException:
        _remove(folder)
        raise
    ui.progress(f"grader environment ready in {marker['install_seconds']:.0f} s "
                f"({marker['size_bytes'] / 1e6:.0f} MB): {python}")
    return marker


def ensure_env(profile: Profile, *, create: bool = True,
               progress: bool | None = None, force: bool = False,
               installer: Installer | None = None,
               check: Callable[[str, dict], dict] | None = None,
               runner: Runner = _run_capture) -> Path:
    """The python executable of the profile's grader environment, created on demand.

    ``create=False`` raises SubkitError (with the command that creates it) instead of
    installing. ``force`` rebuilds an existing environment. A folder without the marker is
    a broken install: it is removed and rebuilt, never used. ``installer``/``check``/
    ``runner`` replace pip, the import check and the registry query (tests).
    """
    if progress is None:
        progress = sys.stderr.isatty()
    p = pins(profile)
    interpreter = interpreters.find_interpreter(p["python"])
    folder = envs_root() / env_key(p, interpreter["version"])
    marker = None if force else read_marker(folder, p)
    if marker:
        return Path(marker["python"])
    if not create:
        state = "is broken (an install that did not finish)" if folder.exists() else \
            "does not exist yet"
        raise SubkitError(f"the grader environment of profile {profile.name} {state}",
                          hint=f"create it with `subkit env create --profile {profile.name}` "
                               f"(downloads about {DOWNLOAD_HINT_MB} MB once)")
    with _lock(folder.parent / f"{folder.name}.lock"):
        marker = None if force else read_marker(folder, p)
        if marker:  # another process finished it while we waited
            return Path(marker["python"])
        if folder.exists():
            ui.progress(("removing the existing grader environment to rebuild it: " if force
                         else "removing a broken grader environment (an earlier install did "
                              "not finish): ") + str(folder))
            _remove(folder)
        marker = create_env(p, folder, interpreter, progress=progress,
                            installer=installer, check=check, runner=runner,
                            profile_name=profile.name)
    return Path(marker["python"])


def remove_env(profile: Profile) -> Path | None:
    """Remove the profile's grader environment (and its install log); the folder removed,
    or None when there was none."""
    folder = env_dir(profile)
    log = folder.parent / f"{folder.name}.log"
    with _lock(folder.parent / f"{folder.name}.lock"):
        existed = folder.exists()
        if existed:
            _remove(folder)
        with contextlib.suppress(OSError):
            log.unlink()
    return folder if existed else None


def env_status(profile: Profile) -> dict:
    """What `subkit env show` prints: pins, folder, state (ready/missing/broken), versions."""
    p = pins(profile)
    interpreter = interpreters.find_interpreter(p["python"])
    folder = envs_root() / env_key(p, interpreter["version"])
    marker = read_marker(folder, p)
    state = "ready" if marker else ("broken" if folder.exists() else "missing")
    return {
        "profile": profile.name,
        "pins": p,
        "state": state,
        "path": str(folder),
        "python": marker["python"] if marker else None,
        "interpreter": {k: interpreter[k] for k in ("path", "version", "exact")},
        "note": interpreter.get("note"),
        "versions": (marker or {}).get("versions"),
        "created": (marker or {}).get("created"),
        "install_seconds": (marker or {}).get("install_seconds"),
        "size_mb": round(marker["size_bytes"] / 1e6, 1) if marker else None,
    }
