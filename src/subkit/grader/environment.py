"""The grader's pinned library versions, as a real environment subkit can run code in.

A profile's ``[grader]`` table (python, tensorflow, keras, numpy, extras) names the
libraries the competition's grader runs with. ``ensure_env`` turns that pinned set into a
virtual environment under the user's cache folder::

    ${SUBKIT_CACHE:-${XDG_CACHE_HOME:-~/.cache}/subkit}/envs/<key>/

``<key>`` is a hash of the pinned set and of the Python minor version the venv is built on,
so two profiles with the same pins share one environment and a change of any pin makes a new
one. The folder is complete only when its marker ``subkit-env.json`` exists: the marker is
written last, after pip finished and a post-install import check (``import numpy,
tensorflow, keras`` and the installed versions compared with the pins) passed. A folder
without the marker is what an interrupted or failed install leaves: it is removed and never
reused. A lock file (``envs/<key>.lock``, ``flock``) keeps two processes from building the
same environment at once; the second one waits and then reuses the first one's result.

Python: where the profile's Python (e.g. 3.10) is not the local one, subkit looks for that
interpreter (``$SUBKIT_GRADER_PYTHON``, ``pythonX.Y`` on PATH, pyenv's versions folder);
without one it says so and builds the venv on the local interpreter with the pinned
packages. Which one was used is in the marker and in every run record.

Nothing here imports TensorFlow: versions of the current environment are read from package
metadata, those of the grader environment from its marker.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from subkit import ui
from subkit.errors import SubkitError, UsageError
from subkit.fsutil import write_json_atomic

MARKER = "subkit-env.json"
ENV_NAMES = ("current", "grader")
ENV_CHOICES = ("auto", "grader", "current")
MAIN_PACKAGES = ("tensorflow", "keras", "numpy")
DOWNLOAD_HINT_MB = 650  # measured: tensorflow 2.17 + keras 3.4 + numpy 1.26 and 35 others
PIP_TIMEOUT_S = 3600
FAILED_RETRY_S = 3600  # after a failed automatic creation, `auto` waits this long to retry

# installer(python, requirements, log_path, progress) -> None; raises on failure; its lines
# go through subkit.ui
Installer = Callable[[str, list, Path, bool], None]


# -- the pinned set ----------------------------------------------------------------------------
def pins(profile) -> dict:
    """The grader's pinned versions of a profile: python, tensorflow, keras, numpy, extras.

    ``{"python": "3.10", "tensorflow": "2.17.0", "keras": "3.4.1", "numpy": "1.26.4", ...}``;
    the profile's ``extras`` (distribution name -> version) follow the four main ones.
    """
    g = profile.grader
    out = {"python": str(g["python"])}
    for name in MAIN_PACKAGES:
        out[name] = str(g[name])
    for name, version in sorted((g.get("extras") or {}).items()):
        if name in out:
            raise SubkitError(f"[grader] extras repeats {name!r}",
                              hint=f"set it once, as [grader] {name}")
        out[str(name)] = str(version)
    return out


def requirements(pin_set: dict) -> list[str]:
    """pip requirement strings of a pinned set: ``name==version`` (a version that already
    starts with an operator, like ``>=1.2``, is passed as it is)."""
    out = []
    for name, version in pin_set.items():
        if name == "python":
            continue
        version = version.strip()
        if not version or version == "*":
            out.append(name)
        elif version[0].isdigit():
            out.append(f"{name}=={version}")
        else:
            out.append(f"{name}{version}")
    return out


def cache_root() -> Path:
    """``$SUBKIT_CACHE``, else ``$XDG_CACHE_HOME/subkit``, else ``~/.cache/subkit``."""
    if os.environ.get("SUBKIT_CACHE"):
        return Path(os.environ["SUBKIT_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "subkit"


def envs_root() -> Path:
    return cache_root() / "envs"


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


def env_key(pin_set: dict, interpreter_version: str) -> str:
    """The folder name of an environment: a hash of the pins and the venv's Python X.Y."""
    blob = json.dumps({"pins": pin_set, "interpreter": interpreter_version}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def env_dir(profile) -> Path:
    """Where the profile's grader environment lives (whether or not it exists yet)."""
    p = pins(profile)
    return envs_root() / env_key(p, find_interpreter(p["python"])["version"])


def _venv_python(folder: Path) -> Path:
    if os.name == "nt":  # pragma: no cover - subkit runs graders on POSIX
        return folder / "Scripts" / "python.exe"
    return folder / "bin" / "python"


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
    if not _venv_python(folder).exists():
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


# -- the registry ------------------------------------------------------------------------------
Runner = Callable[[list], "subprocess.CompletedProcess"]


def _run_capture(cmd: list) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def available_versions(python: str, name: str, runner: Runner = _run_capture) -> list[str] | None:
    """Versions of ``name`` the package index offers to ``python`` (newest first), or None
    when the index cannot be asked (offline, old pip): then pip's own error decides."""
    try:
        out = runner([python, "-m", "pip", "index", "versions", name,
                      "--disable-pip-version-check"])
    except (OSError, subprocess.SubprocessError):
        return None
    text = (out.stdout or "") + "\n" + (out.stderr or "")
    m = re.search(r"Available versions:\s*(.+)", text)
    if m:
        return [v.strip() for v in m.group(1).split(",") if v.strip()]
    if re.search(r"No matching distribution found", text):
        return []
    return None


def check_pins_available(python: str, pin_set: dict, python_version: str,
                         runner: Runner = _run_capture) -> None:
    """Refuse a pinned version the package index does not have, listing the ones it has."""
    for req in requirements(pin_set):
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^,;\s]+)", req)
        if not m:
            continue
        name, version = m.groups()
        versions = available_versions(python, name, runner)
        if versions is None or version in versions:
            continue
        if not versions:
            raise SubkitError(
                f"the package index has no {name} for Python {python_version} "
                f"(pinned: {name}=={version})",
                hint="check the name in the profile's [grader] table")
        major = version.split(".")[0]
        near = [v for v in versions if v.split(".")[0] == major] or versions[:20]
        shown = ", ".join(near[:40]) + (", ..." if len(near) > 40 else "")
        if len(near) < len(versions):
            shown += f" ({len(versions)} versions in all)"
        raise SubkitError(
            f"{name}=={version} is not on the package index for Python {python_version}; "
            f"it has: {shown}",
            hint=f"set [grader] {name} to one of these in subkit.toml (or the profile)")


# -- installing --------------------------------------------------------------------------------
def _pip_for(python: str) -> list[str]:
    """The pip command that installs into the venv of ``python``: subkit's own pip with
    ``--python`` (the venv is made without pip: ensurepip costs 5-15 s), else the venv's
    pip, bootstrapped with ensurepip when subkit's interpreter has none."""
    import importlib.util

    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip", "--python", python]
    out = subprocess.run([python, "-m", "ensurepip", "--default-pip"], capture_output=True,
                         text=True, timeout=600)
    if out.returncode != 0:
        raise SubkitError(f"no pip to install the grader's packages with: "
                          f"{(out.stderr or out.stdout).strip()[-300:]}",
                          hint="install pip for this Python (python -m ensurepip)")
    return [python, "-m", "pip"]


def uv_binary() -> str | None:
    """The ``uv`` executable: the one the ``uv`` package ships (``pip install uv``), else
    one on PATH; None without uv."""
    try:
        import uv

        return uv.find_uv_bin()
    except (ImportError, FileNotFoundError, AttributeError):
        return shutil.which("uv")


def installer_kind() -> str:
    """"uv" when uv is installed (it installs the 650 MB several times faster than pip),
    else "pip". ``$SUBKIT_INSTALLER=pip|uv`` picks one."""
    want = os.environ.get("SUBKIT_INSTALLER", "").strip().lower()
    if want not in ("", "pip", "uv"):
        raise UsageError(f"SUBKIT_INSTALLER={want!r} is not pip or uv",
                         hint="unset SUBKIT_INSTALLER, or set it to pip or uv")
    if want == "pip":
        return "pip"
    if uv_binary():
        return "uv"
    if want == "uv":
        raise SubkitError("SUBKIT_INSTALLER=uv, but uv is not installed",
                          hint="pip install uv (or unset SUBKIT_INSTALLER to use pip)")
    return "pip"


def install_command(python: str, reqs: list, *, attached: bool, log_path: Path) -> list[str]:
    """The command that installs ``reqs`` into the venv of ``python``. ``attached``: the
    installer draws its own progress bars on the terminal (pip then also logs to
    ``log_path``)."""
    if installer_kind() == "uv":
        return [str(uv_binary()), "pip", "install", "--python", python, *reqs]
    cmd = [*_pip_for(python), "install", "--disable-pip-version-check", "--no-input",
           "--progress-bar", "on" if attached else "off"]
    if attached:
        cmd += ["--log", str(log_path)]
    return cmd + list(reqs)


def download_size(python: str, reqs: list, *, timeout: float = 180) -> dict | None:
    """What installing ``reqs`` into the venv of ``python`` downloads: ``{"packages": n,
    "bytes": total}`` from pip's resolution (``install --dry-run --report``) and the size
    of each file the index serves; None when the index cannot be asked (then the install
    itself says why)."""
    import concurrent.futures

    import requests

    with tempfile.TemporaryDirectory(prefix="subkit-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = [*_pip_for(python), "install", "--dry-run", "--ignore-installed", "--quiet",
               "--disable-pip-version-check", "--no-input", "--report", str(report), *reqs]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            items = json.loads(report.read_text("utf-8")).get("install", []) \
                if out.returncode == 0 else None
        except (OSError, ValueError, subprocess.SubprocessError):
            items = None
    if not items:
        return None
    urls = [(it.get("download_info") or {}).get("url", "") for it in items]

    def size(url: str) -> int:
        if not url.startswith(("http://", "https://")):
            return 0
        resp = requests.head(url, allow_redirects=True, timeout=20)
        return int(resp.headers.get("Content-Length") or 0)

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            total = sum(pool.map(size, urls))
    except (requests.RequestException, ValueError):
        return None
    return {"packages": len(items), "bytes": total}


def pip_install(python: str, reqs: list, log_path: Path, progress: bool) -> None:
    """Install ``reqs`` into the venv of ``python`` with uv or pip (``installer_kind``).

    On a terminal (``progress`` and a tty) the installer draws its own progress bars there;
    otherwise its output goes to ``log_path`` and, with ``progress``, one line at a time to
    ``subkit.ui.progress``. Raises SubkitError with the installer's last error on failure."""
    attached = progress and sys.stderr.isatty()
    kind = installer_kind()
    cmd = install_command(python, reqs, attached=attached, log_path=log_path)
    start = time.monotonic()
    if attached:
        try:
            rc = subprocess.run(cmd, timeout=PIP_TIMEOUT_S).returncode
        except subprocess.TimeoutExpired:
            rc = -1
        if rc != 0:
            raise SubkitError(f"{kind} could not install the grader's packages (its error is "
                              "above)",
                              hint="the partial environment was removed; fix what it says and "
                                   "run `subkit env create`" + (f" (log: {log_path})"
                                                                if kind == "pip" else ""))
        return
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                log.write(line)
                if progress:
                    line = line.rstrip()
                    if line and not line.startswith("  "):  # skip pip's indented detail
                        ui.progress(f"  [{time.monotonic() - start:5.0f}s] {line}")
            rc = proc.wait(timeout=PIP_TIMEOUT_S)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if rc != 0:
        lines = log_path.read_text("utf-8", "replace").splitlines()
        errors = [ln.strip() for ln in lines if ln.lstrip().lower().startswith("error")]
        why = errors[-1] if errors else (lines[-1].strip() if lines else "no output")
        raise SubkitError(f"{kind} could not install the grader's packages: {why}",
                          hint=f"the partial environment was removed; {kind}'s log: {log_path}")


_CHECK = r"""
import json, sys, importlib.metadata as md
import numpy, tensorflow, keras
names = json.loads(sys.argv[1])
out = {"python_version": "%d.%d.%d" % sys.version_info[:3], "executable": sys.executable,
       "tensorflow": tensorflow.__version__, "keras": keras.__version__,
       "numpy": numpy.__version__, "distributions": {}}
for n in names:
    try:
        out["distributions"][n] = md.version(n)
    except md.PackageNotFoundError:
        out["distributions"][n] = None
print("@@SUBKIT@@" + json.dumps(out))
"""


def import_check(python: str, pin_set: dict) -> dict:
    """Import numpy, tensorflow and keras in the new environment and compare versions with
    the pins; returns the versions found, raises SubkitError on a mismatch."""
    names = [n for n in pin_set if n != "python"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONNOUSERSITE="1")
    env.pop("PYTHONPATH", None)
    try:
        out = subprocess.run([python, "-c", _CHECK, json.dumps(names)], capture_output=True,
                             text=True, timeout=600, env=env)
    except subprocess.TimeoutExpired:
        raise SubkitError("the grader environment's import check timed out (600 s)",
                          hint="the partial environment was removed; retry") from None
    found = None
    for line in out.stdout.splitlines():
        if line.startswith("@@SUBKIT@@"):
            found = json.loads(line[len("@@SUBKIT@@"):])
    if out.returncode != 0 or found is None:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SubkitError(f"the new grader environment cannot import its packages: {tail[0]}",
                          hint="the partial environment was removed; `subkit env create` "
                               "retries")
    wrong = []
    for name, version in pin_set.items():
        if name == "python" or not version[:1].isdigit():
            continue
        have = found["distributions"].get(name)
        if name in MAIN_PACKAGES:
            have = found[name]
        if have != version:
            wrong.append(f"{name} {have} (pinned {version})")
    if wrong:
        raise SubkitError("the new grader environment has other versions than its pins: "
                          + ", ".join(wrong),
                          hint="a dependency pulled another version; pin it in [grader] extras")
    return found


def make_venv(interpreter: str, folder: Path) -> Path:
    out = subprocess.run([interpreter, "-m", "venv", "--without-pip", str(folder)],
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise SubkitError(f"could not create a venv with {interpreter}: "
                          f"{(out.stderr or out.stdout).strip()[-300:]}",
                          hint="install the venv module (Debian: apt-get install python3-venv)")
    return _venv_python(folder)


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
    ``sizer`` measures the download (default: ``download_size``, not asked when a test
    passes its own ``installer``).
    """
    if sizer is None:
        sizer = download_size if installer is None else (lambda python, reqs: None)
    installer = installer or pip_install
    check = check or import_check
    if interpreter.get("note"):
        ui.progress(f"note: {interpreter['note']}")
    check_pins_available(interpreter["path"], pin_set, interpreter["version"], runner)
    reqs = requirements(pin_set)
    log_path = folder.parent / f"{folder.name}.log"
    ui.progress(f"creating the grader environment{' of ' + profile_name if profile_name else ''}: "
                f"Python {interpreter['version']} + {' '.join(reqs)}")
    ui.progress(f"  in {folder}")
    start = time.monotonic()
    try:
        python = make_venv(interpreter["path"], folder)
        ui.progress("  measuring the download (asking the package index)...")
        size = sizer(str(python), reqs)
        what = (f"{size['bytes'] / 1e6:.0f} MB in {size['packages']} packages" if size
                else f"about {DOWNLOAD_HINT_MB} MB (the index did not say)")
        ui.progress(f"  downloading {what} with {installer_kind()}, once: later runs reuse it "
                    f"(log: {log_path})")
        installer(str(python), reqs, log_path, progress)
        ui.progress("  checking that the new environment imports tensorflow, keras and numpy...")
        found = check(str(python), pin_set)
        marker = {
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


def ensure_env(profile, *, create: bool = True,
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
    interpreter = find_interpreter(p["python"])
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


def remove_env(profile) -> Path | None:
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


def env_status(profile) -> dict:
    """What `subkit env show` prints: pins, folder, state (ready/missing/broken), versions."""
    p = pins(profile)
    interpreter = find_interpreter(p["python"])
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


# -- for the run record ------------------------------------------------------------------------
def _dist_version(*names: str) -> str | None:
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def current_description() -> dict:
    """The current interpreter's versions, from package metadata (no TensorFlow import)."""
    return {
        "name": "current",
        "python_version": "%d.%d.%d" % sys.version_info[:3],
        "tensorflow": _dist_version("tensorflow", "tensorflow-cpu", "tensorflow-intel",
                                    "tensorflow-macos", "tf-nightly"),
        "keras": _dist_version("keras", "keras-nightly"),
        "numpy": _dist_version("numpy"),
        "path": sys.executable,
    }


def resolve_python(profile, env: str, *,
                   create: bool = True, progress: bool | None = None) -> tuple[str, dict]:
    """The python to run a submission's child with, and a description for the run record.

    ``env`` is "current" (``sys.executable``) or "grader" (the profile's pinned environment,
    created on demand unless ``create=False``). The description is ``{name,
    python_version, tensorflow, keras, numpy, path}`` (+ ``pins``, ``note`` for grader).
    """
    if env == "current":
        return sys.executable, current_description()
    if env != "grader":
        raise UsageError(f"unknown environment {env!r}",
                         hint=f"use one of: {', '.join(ENV_NAMES)}")
    python = ensure_env(profile, create=create, progress=progress)
    marker = read_marker(python.parent.parent) or {}
    versions = marker.get("versions") or {}
    return str(python), {
        "name": "grader",
        "python_version": versions.get("python_version"),
        "tensorflow": versions.get("tensorflow"),
        "keras": versions.get("keras"),
        "numpy": versions.get("numpy"),
        "path": str(python.parent.parent),
        "pins": marker.get("pins"),
        "note": marker.get("note"),
    }


# -- which versions run the submission: --env auto|grader|current --------------------------------
def default_env() -> str:
    """``$SUBKIT_ENV`` when set (auto, grader or current), else "auto"."""
    value = os.environ.get("SUBKIT_ENV", "").strip().lower() or "auto"
    if value not in ENV_CHOICES:
        raise UsageError(f"SUBKIT_ENV={value!r} is not one of {', '.join(ENV_CHOICES)}",
                         hint="unset SUBKIT_ENV, or set it to auto, grader or current")
    return value


def _same_version(have: str | None, pin: str) -> bool:
    """Whether an installed version satisfies an exact pin ("3.10" matches 3.10.13); a pin
    that is a range (">=1.2") is not compared here."""
    if not pin[:1].isdigit():
        return True
    if have is None:
        return False
    want = pin.split(".")
    return have.split(".")[:len(want)] == want


def differences(pin_set: dict) -> list[str]:
    """How the current interpreter's versions differ from ``pin_set``, in words:
    ``["python 3.11.7 (grader 3.10)", "keras 3.15.1 (grader 3.4.1)", ...]``."""
    cur = current_description()
    have = {"python": cur["python_version"], "tensorflow": cur["tensorflow"],
            "keras": cur["keras"], "numpy": cur["numpy"]}
    out = []
    for name, pin in pin_set.items():
        version = have[name] if name in have else _dist_version(name)
        if not _same_version(version, pin):
            out.append(f"{name} {version or 'not installed'} (grader {pin})")
    return out


def versions_text(desc: dict) -> str:
    """"python 3.10.13, tensorflow 2.17.0, keras 3.4.1, numpy 1.26.4" of an env description."""
    return ", ".join(f"{k} {desc.get(v) or '-'}" for k, v in (
        ("python", "python_version"), ("tensorflow", "tensorflow"), ("keras", "keras"),
        ("numpy", "numpy")))


def _failed_marker(profile) -> Path:
    folder = env_dir(profile)
    return folder.parent / f"{folder.name}.failed.json"


def _recent_failure(profile) -> dict | None:
    """The reason an automatic creation failed less than FAILED_RETRY_S ago, if one did."""
    try:
        info = json.loads(_failed_marker(profile).read_text("utf-8"))
        if time.time() - float(info["time"]) < FAILED_RETRY_S:
            return info
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _note_failure(profile, message: str) -> None:
    path = _failed_marker(profile)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"time": time.time(), "reason": message}), "utf-8")


def clear_failure(profile) -> None:
    with contextlib.suppress(OSError):
        _failed_marker(profile).unlink()


def select_env(profile, env: str | None = None, *,
               progress: bool | None = None, create: bool = True) -> tuple[str, dict]:
    """The python that runs a submission, and the description every summary shows.

    ``env``: "current" (this interpreter), "grader" (the profile's pinned environment,
    created on demand; an error when it cannot be), or "auto" (the default, or
    ``$SUBKIT_ENV``): the grader environment whenever this interpreter's versions differ
    from the pins, else this interpreter. When ``auto`` cannot create the environment
    (offline, no wheel for this platform or Python, ...), the current versions run the
    submission and the description carries ``warning`` (loud: a pass then proves less);
    a failed automatic creation is not retried for an hour (``subkit env create`` retries
    at once).

    The description: ``{name: "grader"|"current", requested, reason, python_version,
    tensorflow, keras, numpy, path, pins, differences, matches_grader, warning?, note?}``.
    """
    env = env or default_env()
    if env not in ENV_CHOICES:
        raise UsageError(f"unknown environment {env!r}",
                         hint=f"use one of: {', '.join(ENV_CHOICES)}")
    pin_set = pins(profile)
    diff = differences(pin_set)
    grader_text = ", ".join(f"{k} {v}" for k, v in pin_set.items())
    if env == "current" or (env == "auto" and not diff):
        desc = current_description()
        desc.update(requested=env, pins=pin_set, differences=diff, matches_grader=not diff,
                    reason=("they are the grader's pinned versions" if not diff else
                            "--env current: NOT the grader's versions (" + "; ".join(diff)
                            + ")"))
        return sys.executable, desc
    failed = _recent_failure(profile) if env == "auto" else None
    try:
        if failed:
            raise SubkitError(f"{failed['reason']} (an automatic attempt "
                              f"{(time.time() - failed['time']) / 60:.0f} min ago)")
        python, desc = resolve_python(profile, "grader", create=create,
                                      progress=progress)
    except SubkitError as exc:
        if env == "grader":
            raise
        if not failed and create:
            _note_failure(profile, exc.message)
        desc = current_description()
        desc.update(requested=env, pins=pin_set, differences=diff, matches_grader=False,
                    fallback=True, reason="the grader environment could not be set up",
                    warning=(f"NOT the grader's versions: the grader environment ({grader_text}"
                             f") could not be set up ({exc.message}), so the submission ran "
                             f"in the current ones ({versions_text(desc)}); a pass here does "
                             "not prove that the grader accepts it. `subkit env create` "
                             "retries and shows why"))
        return sys.executable, desc
    clear_failure(profile)
    desc.update(requested=env, differences=diff,
                matches_grader=_same_version(desc.get("python_version"), pin_set["python"]),
                reason=("--env grader" if env == "grader" else
                        "the current versions differ from the grader's (" + "; ".join(diff)
                        + ")"))
    return python, desc
