"""What this machine offers the sandbox, probed once: the interpreter's folders, bubblewrap
and its features, setpriv, ``unshare`` for the network, the GPUs, the physical memory, and
the kernel's means to cap a run (a memory cgroup, mounts for the disk cap).

Probing only: nothing here runs untrusted code (``sandbox.bwrap_available`` starts a
sandboxed ``true`` and stays in ``sandbox``). Moved out of ``sandbox.py`` (issue 22).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from typing import Any

MiB = 1024**2


def _probe_env() -> dict[str, str]:
    """The environment of an interpreter probe: nothing of the parent's but a locale."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.path.expanduser("~"),
            "LANG": "C.UTF-8"}


def physical_memory_mb() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MiB
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 8192


# -- what an interpreter needs --------------------------------------------------------------------
_PROBE = ("import json, os, site, sys\n"
          "u = site.getusersitepackages() if site.ENABLE_USER_SITE else None\n"
          "print(json.dumps({'prefixes': [sys.prefix, sys.base_prefix, sys.exec_prefix,"
          " sys.base_exec_prefix], 'executable': sys.executable,"
          " 'usersite': u if u and os.path.isdir(u) else None, 'userbase': site.getuserbase()}))")


@functools.lru_cache(maxsize=8)
def python_layout(python: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(folders the interpreter needs, read-only; environment it needs) for ``python``: its
    prefix and base prefix (a venv and the interpreter its python links to) and the user's
    site-packages when it has one. A prefix that holds the home folder (``--prefix ~``) is
    narrowed to the interpreter's parts (``narrow``)."""
    info: dict[str, Any]
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        import site

        usersite = site.getusersitepackages() if site.ENABLE_USER_SITE else None
        info = {"prefixes": [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix],
                "executable": sys.executable,
                "usersite": usersite if usersite and os.path.isdir(usersite) else None,
                "userbase": site.getuserbase()}
    else:
        try:
            out = subprocess.run([python, "-E", "-c", _PROBE], capture_output=True, text=True,
                                 timeout=60, env=_probe_env())
            info = json.loads(out.stdout.strip().splitlines()[-1])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            info = {"prefixes": [], "executable": python, "usersite": None}
    exe = os.path.realpath(info.get("executable") or python)
    # the prefix of the path as given too: a venv-like folder whose python is a bare link
    # (no pyvenv.cfg) reports the linked interpreter's prefixes only
    candidates = list(info["prefixes"]) + [
        os.path.dirname(os.path.dirname(exe)),
        os.path.dirname(os.path.dirname(os.path.abspath(python)))]
    home = os.path.realpath(os.path.expanduser("~"))
    folders: set[str] = set()
    for p in candidates:
        for q in {os.path.abspath(p), os.path.realpath(p)}:
            if q == "/" or under(q, "/usr"):
                continue
            if under(home, q):  # the prefix holds the home folder: never bind it whole
                folders.update(narrow(q))
            elif os.path.isdir(q):
                folders.add(q)
    env: list[tuple[str, str]] = []
    if info.get("usersite"):
        folders.add(info["usersite"])
        env.append(("PYTHONUSERBASE", info["userbase"]))
    kept = sorted(f for f in folders if not any(f != g and under(f, g) for g in folders))
    return tuple(kept), tuple(env)


def python_links(python: str) -> list[tuple[str, str]]:
    """(target, link) of each symbolic link on the way from ``python`` to the interpreter
    (a venv's bin/python -> python3.10 -> /elsewhere/bin/python3.10): the sandbox makes the
    same links, so that the path the command names exists and leads where it does here."""
    links, path = [], os.path.abspath(python)
    for _ in range(40):
        if not os.path.islink(path):
            break
        target = os.readlink(path)
        links.append((target, path))
        path = os.path.normpath(os.path.join(os.path.dirname(path), target))
    return links


def gpu_devices() -> list[str]:
    import glob

    return sorted(glob.glob("/dev/nvidia*"))


def narrow(prefix: str) -> list[str]:
    """What of a prefix an interpreter needs, for a prefix that also holds other things (the
    home folder, a workspace with a venv at its root)."""
    return [p for n in ("bin", "lib", "lib64", "pyvenv.cfg")
            if os.path.exists(p := os.path.join(prefix, n))]


def under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


# -- bubblewrap ----------------------------------------------------------------------------------
def bwrap_executable() -> str | None:
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=1)
def bwrap_features() -> frozenset[str]:
    exe = bwrap_executable()
    if exe is None:  # not installed
        return frozenset()
    try:
        text = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError, TypeError):
        return frozenset()
    return frozenset(f for f in ("--disable-userns", "--size", "--ro-bind-data", "--perms",
                                 "--userns-block-fd") if f in text)


def setpriv_keeps_pdeathsig() -> bool:
    exe = shutil.which("setpriv")
    if not exe:
        return False
    try:
        return "--pdeathsig" in subprocess.run(
            [exe, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False


def root_mode() -> bool:
    return os.geteuid() == 0


# -- network cut without bubblewrap ---------------------------------------------------------------
_NET_PREFIX: list[str] | None = None


def network_isolation_prefix() -> list[str]:
    """``unshare --net --map-root-user`` where this machine allows it, else []: a new user
    namespace too, so that the child has no capability to setns() back."""
    global _NET_PREFIX
    if _NET_PREFIX is None:
        _NET_PREFIX = []
        exe = shutil.which("unshare")
        if exe:
            prefix = [exe, "--net", "--map-root-user", "--"]
            try:
                ok = subprocess.run(prefix + ["true"], capture_output=True,
                                    timeout=10).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                ok = False
            if ok:
                _NET_PREFIX = prefix
    return list(_NET_PREFIX)

