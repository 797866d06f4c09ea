"""The installers: asking the package index, uv or pip into a bare venv, the import check."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from subkit import ui
from subkit.errors import SubkitError, UsageError
from subkit.grader.environment.pinset import MAIN_PACKAGES, requirements

DOWNLOAD_HINT_MB = 650  # measured: tensorflow 2.17 + keras 3.4 + numpy 1.26 and 35 others
PIP_TIMEOUT_S = 3600

# installer(python, requirements, log_path, progress) -> None; raises on failure; its lines
# go through subkit.ui
Installer = Callable[[str, list, Path, bool], None]


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
    ``subkit.ui.progress``. Raises SubkitError with the installer's last error on
    failure."""
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
    return venv_python(folder)


def venv_python(folder: Path) -> Path:
    if os.name == "nt":  # pragma: no cover - subkit runs graders on POSIX
        return folder / "Scripts" / "python.exe"
    return folder / "bin" / "python"
