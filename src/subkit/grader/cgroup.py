"""A kernel cap on the memory of a whole run: one memory cgroup per sandboxed program.

``[limits] memory_mb`` then holds for every process of the run together, shared memory,
``/dev/shm`` and ``memfd_create`` included (they are charged to the cgroup of the process
that touched the pages; ``RLIMIT_DATA`` counts none of them). cgroup v2: ``memory.max``,
``memory.swap.max = 0`` and ``memory.oom.group = 1``; v1: ``memory.limit_in_bytes`` and,
where the kernel has it, ``memory.memsw.limit_in_bytes`` (memory and swap together) at the
same value.

Where: a child of subkit's own cgroup (``/proc/self/cgroup``), so that every limit the
machine puts on subkit still holds, named ``subkit-<pid>-<random>`` so that a later run
removes the ones a crashed subkit left (``sweep``: no process in them, their pid dead).
Possible as root, or where the user's own cgroup is delegated to them (v2, systemd's
``user@.service``, with the memory controller enabled for its children); elsewhere
``available()`` says why not and the sandbox keeps its per-process limits.

The OOM priority: the child cannot be trusted with its ``oom_score_adj`` (an unprivileged
process may lower it to ``oom_score_adj_min``, and a root without CAP_SYS_RESOURCE, as in
many containers, cannot raise that minimum). It does not matter here: at the cap the
kernel's cgroup OOM killer chooses only among the cgroup's processes, never the user's;
and at the first OOM kill in the cgroup subkit kills the whole run (v2 does it itself with
``memory.oom.group``), so that a submission cannot get its own helpers killed in its place
and run on.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from pathlib import Path

CAPS_ENV = "SUBKIT_KERNEL_CAPS"  # auto | off (off: the per-process limits only, as before)
PREFIX = "subkit-"


def _mount_point(v2: bool) -> str | None:
    """Where the memory controller's hierarchy (v1) or the unified one (v2) is mounted."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        pre, _, post = line.partition(" - ")
        fields, rest = pre.split(), post.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        if v2 and rest[0] == "cgroup2":
            return fields[4]
        if not v2 and rest[0] == "cgroup" and "memory" in rest[2].split(","):
            return fields[4]
    return None


def _own(v2: bool) -> str | None:
    """subkit's own cgroup in that hierarchy, from /proc/self/cgroup."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hid, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if v2 and hid == "0" and controllers == "":
            return path
        if not v2 and "memory" in controllers.split(","):
            return path
    return None


def _parent() -> tuple[int, Path] | tuple[None, str]:
    """(version, the folder new cgroups go into) or (None, why not)."""
    if os.environ.get(CAPS_ENV, "").strip().lower() == "off":
        return None, f"turned off ({CAPS_ENV}=off)"
    why = "no memory cgroup controller is mounted"
    for v2 in (True, False):
        mnt, own = _mount_point(v2), _own(v2)
        if not mnt or own is None:
            continue
        parent = Path(mnt + own.rstrip("/")) if own != "/" else Path(mnt)
        if v2:
            try:
                ctl = (parent / "cgroup.subtree_control").read_text().split()
            except OSError:
                continue
            if "memory" not in ctl:
                why = "the memory controller is not enabled for this user's cgroup (v2)"
                continue
        elif not (parent / "memory.limit_in_bytes").exists():
            continue
        if not os.access(parent, os.W_OK) or not os.access(parent / "cgroup.procs", os.W_OK):
            why = ("subkit may not create a cgroup here (not root, and no cgroup delegated "
                   "to this user)")
            continue
        return (2 if v2 else 1), parent
    return None, why


def available() -> tuple[bool, str]:
    """(True, "cgroup v1"/"cgroup v2") where a run's memory can be capped, else (False, why)."""
    version, where = _parent()
    if version is None:
        return False, str(where)
    return True, f"cgroup v{version}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one of another user's counts: the kernel refused to
    signal it, so it is there). The owners of stale cgroups and disk caps are checked so."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(parent: Path) -> int:
    """Remove the cgroups a crashed subkit left: named by us, empty, their subkit dead."""
    removed = 0
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return 0
    for e in entries:
        if not e.name.startswith(PREFIX) or not e.is_dir(follow_symlinks=False):
            continue
        try:
            pid = int(e.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not pid_alive(pid):
            try:
                os.rmdir(e.path)
                removed += 1
            except OSError:
                pass
    return removed


def sweep_stale() -> int:
    """``sweep`` in the folder this process's cgroups go into (nothing where there is none)."""
    version, parent = _parent()
    return sweep(parent) if version is not None and isinstance(parent, Path) else 0


class MemoryCap:
    """One run's memory cgroup: made before the child starts (``create``), entered by the
    child before it executes anything (``enter``), read and removed after (``close``)."""

    def __init__(self, path: Path, version: int, limit: int):
        self.path, self.version, self.limit = path, version, limit
        self._procs = os.open(path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)

    @classmethod
    def create(cls, limit_bytes: int) -> MemoryCap | None:
        version, parent = _parent()
        if version is None or not isinstance(parent, Path):
            return None
        sweep(parent)
        path = parent / f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            path.mkdir(mode=0o755)
        except OSError:
            return None
        try:
            if version == 2:
                _write(path / "memory.max", limit_bytes)
                _write(path / "memory.swap.max", 0, missing_ok=True)
                _write(path / "memory.oom.group", 1, missing_ok=True)
            else:
                _write(path / "memory.limit_in_bytes", limit_bytes)
                _write(path / "memory.memsw.limit_in_bytes", limit_bytes, missing_ok=True)
            return cls(path, version, limit_bytes)
        except OSError:
            _rmdir(path)
            return None

    def enter(self) -> None:
        """In the child, after fork and before exec: it and all it starts are in the cgroup.
        Raises (the child fails to start) rather than run uncapped."""
        os.write(self._procs, b"0")

    def _read(self, name: str) -> str:
        try:
            return (self.path / name).read_text()
        except OSError:
            return ""

    def oom_kills(self) -> int:
        text = self._read("memory.events" if self.version == 2 else "memory.oom_control")
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value or 0)
        return 0  # a kernel before the oom_kill counter (4.13): the exit signal tells

    def peak_mb(self) -> float | None:
        raw = self._read("memory.peak" if self.version == 2 else "memory.max_usage_in_bytes")
        try:
            return round(int(raw.strip()) / 1024**2, 1)
        except ValueError:
            return None

    def pids(self) -> list[int]:
        return [int(x) for x in self._read("cgroup.procs").split() if x.isdigit()]

    def kill(self, wait_s: float = 5.0) -> None:
        """Every process in the cgroup, until none is left."""
        if self.version == 2 and (self.path / "cgroup.kill").exists():
            try:
                _write(self.path / "cgroup.kill", 1)
            except OSError:
                pass
        end = time.monotonic() + wait_s
        while (pids := self.pids()) and time.monotonic() < end:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.01)

    def close(self) -> None:
        self.kill()
        try:
            os.close(self._procs)
        except OSError:
            pass
        _rmdir(self.path)


def _write(path: Path, value: int, *, missing_ok: bool = False) -> None:
    try:
        with open(path, "w") as fh:
            fh.write(str(value))
    except FileNotFoundError:
        if not missing_ok:
            raise


def _rmdir(path: Path) -> None:
    for _ in range(50):  # the kernel may need a moment after the last process exited
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)
