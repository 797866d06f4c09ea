"""The one sandbox: every program a participant or an organiser wrote runs in it.

A submission (and a Codabench bundle's programs) is untrusted code. Like the grader's
container it must see only its own files, its input and one output folder, hold no
credentials, reach no network, stay within limits on time, processes, memory and disk, and
die whole at the limit. subkit trusts only what it writes itself, after the sandbox is gone.

With bubblewrap (``bwrap``; the default where it works, ``SUBKIT_SANDBOX=bwrap`` requires it):

- new user, pid, network, ipc and uts namespaces, all capabilities dropped, no new
  privileges (bwrap always sets it), no user namespace of its own, ``--die-with-parent``, a
  new session and a session keyring of its own; the program is the init of its pid
  namespace (``--as-pid-1``, as a container's command): when it ends, all of it ends;
- the child runs as an unprivileged user: uid 1000 inside, the user's own uid outside, or
  when subkit runs as root a uid of no account (``ROOT_MODE_UID``: subkit writes the uid map
  itself, bwrap's ``--userns-block-fd``; ``setpriv`` drops to it keeping the parent-death
  signal), so that the process limit holds and the child owns none of root's files;
- it sees the system read-only (``/usr``, ``/lib*``, ``/bin``, ``/sbin``, a few files of
  ``/etc``, a made-up ``/etc/passwd``), the folders the interpreter needs read-only (its
  prefix and base prefix: a cached grader venv and the interpreter its python links to), the
  binds its caller gives (read-only unless writable), a private size-limited ``/tmp`` and
  ``/dev/shm``, a fresh ``/proc`` of its own pid namespace; nothing else: no home folder, no
  workspace, no ledger, no other zip, no test labels, no UNIX socket of the host, no
  ``/proc/<pid>`` of subkit;
- its environment is an allow-list (``child_env``), not the parent's minus a deny-list.

Without bubblewrap (macOS, Windows, containers without user namespaces, or
``SUBKIT_SANDBOX=none`` to test that path) the child runs as today plus what can be done:
a new session, rlimits, the same allow-listed environment, ``HOME`` and ``TMPDIR`` in a
scratch folder, TCP/IP cut by ``unshare --net --map-root-user`` where allowed, subkit made
non-dumpable during the run (its ``/proc/<pid>/environ`` then needs CAP_SYS_PTRACE), and
descendants that escaped the session swept up as orphans (subkit is their subreaper).
``describe()`` then says plainly: not isolated, what the child could reach, how to install
bubblewrap.

Limits (``Limits``, from the profile's ``[limits]``): processes (RLIMIT_NPROC, counted in
the sandbox's own user namespace), memory (the whole run, shared memory and memfd included,
in a memory cgroup of its own: ``grader/cgroup.py``; and RLIMIT_DATA per process, which
gives a plain MemoryError for the common case: TensorFlow reserves gigabytes of address
space it never touches, so RLIMIT_AS would refuse it while the private writable memory
RLIMIT_DATA counts stays near its real use), file size (RLIMIT_FSIZE), total bytes and
files written into the writable folders (a tmpfs of the run's own under overlays, refused
by the kernel past its size: ``grader/diskcap.py``), ``/tmp`` and ``/dev/shm`` (tmpfs
sizes), and the time limit on the monotonic clock: the loop kills the sandbox at the limit,
a ``timeout`` process outside the sandbox kills it even while subkit itself is stopped, and
a child that ended while subkit was stopped past the limit fails as on the grader.

Where the machine offers no cgroup or no mount (not root and nothing delegated, no
bubblewrap for the disk cap, ``SUBKIT_KERNEL_CAPS=off``), the per-process limits hold and
the folders are polled as before (``untrusted.DiskWatch``: statvfs every tick, a scan to
confirm), and ``caps()`` (in ``describe()``, run.json and the summary) says what the kernel
does not enforce and why. What this machine offers is probed in ``grader/host.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from subkit.errors import SubkitError, UsageError
from subkit.grader import cgroup, diskcap, untrusted
from subkit.grader.host import (
    bwrap_executable,
    network_isolation_prefix,
    physical_memory_mb,
    python_layout,
    python_links,
)
from subkit.grader.host import bwrap_features as _bwrap_features
from subkit.grader.host import gpu_devices as _gpu_devices
from subkit.grader.host import narrow as _narrow
from subkit.grader.host import root_mode as _root_mode
from subkit.grader.host import setpriv_keeps_pdeathsig as _setpriv_keeps_pdeathsig
from subkit.grader.host import under as _under
from subkit.grader.untrusted import MiB

if TYPE_CHECKING:
    from subkit.profile import Profile

SANDBOX_ENV = "SUBKIT_SANDBOX"  # auto | bwrap | none
INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf "
                "install bubblewrap; Arch: pacman -S bubblewrap) on Linux with user namespaces "
                "allowed; on macOS or Windows run subkit in a Linux VM or container")
INSIDE_UID = 1000
ROOT_MODE_UID = 2147418112  # no account has it: what a root-run sandbox's processes are outside
TICK_S = 0.05
PAUSED_S = 1.0  # a gap this long between two ticks: subkit itself was stopped
KILL_GRACE_S = 2.0  # the outside `timeout` fires this long after subkit's own kill

# /etc: only what programs need to start (the dynamic linker's cache, time zones, certificates)
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "nsswitch.conf",
        "host.conf", "hosts", "alternatives", "ssl/certs", "ssl/openssl.cnf", "pki/ca-trust",
        "pki/tls/certs", "ca-certificates", "ca-certificates.conf", "mime.types", "os-release",
        "debian_version", "fonts", "gai.conf", "protocols", "services")
_SYSTEM = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
# the parent's variables a child may see, each only with a value of its kind
_LOCALE = r"(C|POSIX|[a-z]{2,3}(_[A-Z]{2})?)(\.[A-Za-z0-9-]{1,20})?(@[a-z]{1,20})?"
_ENV_PASS = {
    **dict.fromkeys(("LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "LC_NUMERIC"), _LOCALE),
    "LANGUAGE": rf"{_LOCALE}(:{_LOCALE})*",
    "TZ": r":?[A-Za-z0-9_+-]{1,30}(/[A-Za-z0-9_+-]{1,30}){0,2}",
    "TERM": r"[a-z0-9.+-]{1,40}",
    **dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                     "TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_CPP_MIN_LOG_LEVEL",
                     "TF_ENABLE_ONEDNN_OPTS", "OPENBLAS_L2_SIZE"), r"[0-9]{1,6}"),
    "OPENBLAS_CORETYPE": r"[A-Za-z0-9_]{1,30}",
    "KERAS_BACKEND": r"tensorflow|jax|torch|numpy",
    "CUDA_VISIBLE_DEVICES": r"[0-9,-]{0,40}|(GPU|MIG)-[A-Za-z0-9,/-]{1,200}",
}


# -- limits --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    """What one sandboxed program may use (the profile's ``[limits]``)."""

    processes: int = 512  # processes and threads (TensorFlow starts dozens of threads)
    memory_mb: int = 0  # per process; 0: three quarters of this machine's memory
    file_size_mb: int = 2048  # one file
    disk_mb: int = 4096  # everything written into the writable folders together
    tmp_mb: int = 512  # the private /tmp and /dev/shm (memory-backed), each

    @classmethod
    def of(cls, prof: Profile | None) -> Limits:
        raw = prof.limits if prof is not None else {}
        return cls(**{k: int(raw[k]) for k in cls.__dataclass_fields__ if k in raw})

    @property
    def memory_bytes(self) -> int:
        return (self.memory_mb or max(2048, physical_memory_mb() * 3 // 4)) * MiB

    def to_dict(self) -> dict:
        d = asdict(self)
        d["memory_mb"] = self.memory_bytes // MiB
        return d


# -- the environment -------------------------------------------------------------------------
def child_env(home: str, extra: dict[str, str] | None = None,
              path_first: str | None = None) -> dict[str, str]:
    """The child's whole environment: an allow-list of the parent's harmless variables, each
    only with a value of its kind (a locale, a time zone, a thread count: never a URL with
    credentials) and subkit's own settings. No token, key, password or cookie can pass:
    their names are not on the list, and no value on it can hold one."""
    env = {k: v for k, kind in _ENV_PASS.items()
           if (v := os.environ.get(k)) is not None and re.fullmatch(kind, v)}
    path = "/usr/local/bin:/usr/bin:/bin"
    env.update(PATH=f"{path_first}:{path}" if path_first else path, HOME=home, TMPDIR=home,
               PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg")
    env.setdefault("LANG", "C.UTF-8")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    env.update(extra or {})
    return env


# -- bubblewrap ----------------------------------------------------------------------------------
_BWRAP_STATE: tuple[bool, str] | None = None


def bwrap_available() -> tuple[bool, str]:
    """(True, "") where the sandbox starts here, else (False, why). Measured once."""
    global _BWRAP_STATE
    if _BWRAP_STATE is None:
        if not bwrap_executable():
            _BWRAP_STATE = (False, "bubblewrap (bwrap) is not installed")
        elif not {"--size", "--perms", "--ro-bind-data"} <= _bwrap_features():
            _BWRAP_STATE = (False, "this bubblewrap is too old (0.8 or newer is needed)")
        elif _root_mode() and not (_setpriv_keeps_pdeathsig()
                                   and "--userns-block-fd" in _bwrap_features()):
            _BWRAP_STATE = (False, "running as root needs setpriv (util-linux 2.33 or newer) to "
                                   "drop to an unprivileged user in the sandbox")
        else:
            box = Sandbox(Limits(), mode="bubblewrap")
            try:
                proc = box.spawn(["true"], cwd=None, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
                _, err = proc.communicate(timeout=30)
                ok = proc.returncode == 0
                why = "" if ok else (err.decode("utf-8", "replace").strip()
                                     or f"bwrap exited with {proc.returncode}")
            except (OSError, subprocess.SubprocessError) as exc:
                ok, why = False, f"bwrap could not start: {exc}"
            finally:
                box.close()
            _BWRAP_STATE = (ok, "" if ok else f"this machine refuses the sandbox ({why})")
    return _BWRAP_STATE


def choose_mode(requested: str | None = None) -> tuple[str, str]:
    """("bubblewrap", "") or ("none", why). ``requested`` (else ``$SUBKIT_SANDBOX``, else
    auto): auto, bwrap (refuse to run without it) or none (the unisolated path)."""
    req = requested if requested not in (None, "", "auto") else os.environ.get(SANDBOX_ENV)
    req = (req or "auto").strip().lower()
    if req not in ("auto", "bwrap", "bubblewrap", "none"):
        raise UsageError(f"unknown sandbox mode {req!r} (from {SANDBOX_ENV} or --sandbox)",
                         hint="auto, bwrap or none")
    if req == "none":
        return "none", f"the sandbox was turned off ({SANDBOX_ENV}=none)"
    ok, why = bwrap_available()
    if ok:
        return "bubblewrap", ""
    if req in ("bwrap", "bubblewrap"):
        raise SubkitError(f"the bubblewrap sandbox is not available: {why}", hint=INSTALL_HINT)
    return "none", why


# -- the child's result ----------------------------------------------------------------------------
@dataclass
class ChildResult:
    returncode: int | None
    signal: int | None
    timed_out: bool
    elapsed_s: float
    peak_rss_mb: float | None
    stdout_path: Path
    stderr_path: Path
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    network_isolated: bool = False
    command: list[str] = field(default_factory=list)
    limit: str | None = None  # "time" | "memory" | "disk" | "files": the limit enforced
    paused_s: float = 0.0  # how long subkit itself was stopped during the run
    written_mb: float = 0.0
    sandbox: dict = field(default_factory=dict)

    def tail(self, which: str = "stderr", lines: int = 25) -> str:
        path = self.stderr_path if which == "stderr" else self.stdout_path
        try:
            with open(path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 16384))
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return untrusted.printable("\n".join(text.splitlines()[-lines:]))


# -- the sandbox -----------------------------------------------------------------------------------
@dataclass
class Bind:
    host: Path
    inside: str
    writable: bool = False


class Sandbox:
    """One sandboxed program: what it sees (``bind``), its limits, how it runs (``run``)."""

    def __init__(self, limits: Limits, *, python: str | None = None, network: bool = False,
                 mode: str | None = None):
        if mode in ("bubblewrap", "none"):
            self.mode, self.why = mode, ("" if mode == "bubblewrap" else
                                         f"the sandbox was turned off ({SANDBOX_ENV}=none)")
        else:
            self.mode, self.why = choose_mode(mode)
        self.limits = limits
        self.python = python
        self.network = network
        self.binds: list[Bind] = []
        self.scratch: Path | None = None
        self._scratch_cm: contextlib.AbstractContextManager[Path] | None = None
        self._caps: list[cgroup.MemoryCap] = []  # the memory cgroup of each spawn
        self.memory_cap, self.memory_why = cgroup.available()
        self.disk_cap, self.disk_why = diskcap.available() if self.isolated else (
            False, "without bubblewrap the child writes into the host's folders themselves")
        self._disk: diskcap.Claim | None = None  # run(): the writable folders' tmpfs
        self._given = False  # root mode: the writable binds already belong to the sandbox

    @property
    def isolated(self) -> bool:
        return self.mode == "bubblewrap"

    def bind(self, host: Path | str, inside: str | None = None, *, writable: bool = False) -> str:
        """Show ``host`` to the child at ``inside`` (default: the same path); returns the path
        the child sees. Without bubblewrap the child sees every path as it is."""
        host = Path(host).resolve()
        inside = inside or str(host)
        self.binds.append(Bind(host, inside, writable))
        return self.path(host)

    def path(self, host: Path | str) -> str:
        """The path the child sees for a host path inside one of the binds."""
        h = str(Path(host).resolve())
        if not self.isolated:
            return h
        for b in sorted(self.binds, key=lambda b: len(str(b.host)), reverse=True):
            if _under(h, str(b.host)):
                return b.inside + h[len(str(b.host)):]
        raise ValueError(f"{host} is not visible in the sandbox")

    def args_inside(self, args: list[str]) -> list[str]:
        """Arguments with the bound host paths in them rewritten to what the child sees."""
        if not self.isolated or not self.binds:
            return list(args)
        hosts = sorted((str(b.host) for b in self.binds), key=len, reverse=True)
        pat = re.compile("(%s)(?=/|$|[^A-Za-z0-9_.-])" % "|".join(re.escape(h) for h in hosts))
        return [pat.sub(lambda m: self.path(m.group(1)), a) for a in args]

    # -- what the record says ----------------------------------------------------------------------
    def caps(self) -> dict:
        """Which limits the kernel enforces for the whole run, and why not where it does not
        (then the per-process rlimits and the polling of the disk hold, as before)."""
        mb = self.limits.memory_bytes // MiB
        out: dict[str, Any] = {"memory_capped": bool(self.memory_cap)}
        if self.memory_cap:
            out["memory"] = (f"all the run's processes together, shared memory and memfd "
                             f"included, under {mb} MB (a {self.memory_why} memory cgroup)")
        else:
            out["memory"] = (f"{mb} MB a process (RLIMIT_DATA); shared memory, /dev/shm and "
                             f"memfd are not counted: no memory cgroup ({self.memory_why})")
        disk = self.limits.disk_mb
        out["disk_capped"] = bool(self.disk_cap)
        if self.disk_cap:
            out["disk"] = (f"what it writes into its folders, under {disk} MB: a tmpfs of the "
                           "run's own below them, the kernel refuses more")
        else:
            out["disk"] = (f"{disk} MB into its folders, watched every {TICK_S * 1000:.0f} ms, "
                           f"not enforced by the kernel ({self.disk_why})")
        missing = [] if self.memory_cap else [f"memory (no cgroup: {self.memory_why})"]
        missing += [] if self.disk_cap else [f"disk ({self.disk_why})"]
        out["not_capped"] = "; ".join(missing)
        return out

    def describe(self) -> dict:
        limits = self.limits.to_dict()
        if self.isolated:
            sees = ["the system read-only (/usr, /lib, /bin, a few files of /etc)",
                    "the interpreter's folders read-only"]
            sees += [f"{b.inside} ({'writable' if b.writable else 'read-only'})"
                     for b in self.binds]
            sees += [f"a private /tmp and /dev/shm ({self.limits.tmp_mb} MB each)"]
            sees += ["the NVIDIA GPUs (/dev/nvidia*)"] if _gpu_devices() else []
            return {"isolated": True, "mode": "bubblewrap", "network_cut": not self.network,
                    "user": f"unprivileged (uid {INSIDE_UID} inside"
                            + (f", {ROOT_MODE_UID} outside)" if _root_mode() else ")"),
                    "sees": sees, "limits": limits,
                    "processes_limited": bool(shutil.which("prlimit")), **self.caps()}
        return {"isolated": False, "mode": "none", "why": self.why,
                "network_cut": bool(not self.network and network_isolation_prefix()),
                "could_reach": "everything your user can: your home folder and its credentials "
                               "(~/.kaggle/kaggle.json, saved tokens), the workspace, its ledger "
                               "and other zips, the test labels, UNIX sockets on disk, and your "
                               "other processes",
                "install": INSTALL_HINT, "limits": limits,
                "processes_limited": os.geteuid() != 0, **self.caps()}

    # -- running -----------------------------------------------------------------------------------
    def _home(self) -> str:
        if self.isolated:
            return "/tmp"
        if self.scratch is None:
            from subkit.fsutil import scratch_dir

            cm = scratch_dir("subkit-box-")
            self.scratch, self._scratch_cm = cm.__enter__(), cm
        return str(self.scratch)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        py_env: tuple = ()
        first = None
        if self.python:
            _, py_env = python_layout(self.python)
            first = os.path.dirname(self.python)
        return child_env(self._home(), {**dict(py_env), **(extra or {})}, path_first=first)

    def spawn(self, cmd: list[str], *, cwd: Path | str | None, env: dict[str, str] | None = None,
              time_limit: float | None = None, **popen) -> subprocess.Popen:
        """Start ``cmd`` (paths as the child sees them; ``cwd`` a host path inside a bind) in
        the sandbox; a Popen whose kill() ends every process of it."""
        full_env = self.env(env)
        cap = cgroup.MemoryCap.create(self.limits.memory_bytes) if self.memory_cap else None
        if self.memory_cap and cap is None:
            self.memory_cap, self.memory_why = False, "the memory cgroup could not be made"
        if cap is not None:
            self._caps.append(cap)
        timeout = shutil.which("timeout")
        pre = [timeout, "--signal=KILL", f"{time_limit + KILL_GRACE_S:.1f}s"] \
            if time_limit and timeout else []
        if self.isolated:
            proc = self._spawn_bwrap(pre, cmd, cwd, full_env, popen)
        else:
            proc = self._spawn_plain(pre, cmd, cwd, full_env, popen)
        return untrusted.spawned(proc)

    def _spawn_plain(self, pre, cmd, cwd, env, popen) -> subprocess.Popen:
        net = network_isolation_prefix() if not self.network else []
        limits = self.limits
        # in its own user namespace (unshare) the child's processes are counted alone
        nproc = limits.processes + (0 if net else untrusted.tasks_of_user())

        cap = self._caps[-1] if self._caps else None

        def preexec() -> None:
            if cap is not None:
                cap.enter()
            untrusted.die_with_parent()
            for res, value in ((resource.RLIMIT_NPROC, nproc),
                               (resource.RLIMIT_FSIZE, limits.file_size_mb * MiB),
                               (resource.RLIMIT_DATA, limits.memory_bytes),
                               (resource.RLIMIT_CORE, 0)):
                try:
                    resource.setrlimit(res, (value, value))
                except (ValueError, OSError):
                    pass

        return subprocess.Popen(pre + net + list(cmd), cwd=cwd, env=env, start_new_session=True,
                                preexec_fn=preexec, **popen)

    def _spawn_bwrap(self, pre, cmd, cwd, env, popen) -> subprocess.Popen:
        root = _root_mode()
        if root and not self._given:
            self._give()
        fds: list[int] = []
        passwd = _data_fd("root:x:0:0::/:/usr/sbin/nologin\n"
                          f"sandbox:x:{INSIDE_UID}:{INSIDE_UID}:sandbox:/tmp:/bin/sh\n"
                          "nobody:x:65534:65534::/:/usr/sbin/nologin\n", fds)
        group = _data_fd(f"root:x:0:\nsandbox:x:{INSIDE_UID}:\nnobody:x:65534:\n", fds)
        # --as-pid-1: the program is the init of its pid namespace, as a container's command
        # is (Codabench's docker runs no init): when it ends, every other process of the
        # namespace dies, and its peak memory reaches subkit through bwrap's wait.
        args = [bwrap_executable(), "--unshare-user", "--unshare-pid", "--as-pid-1",
                "--unshare-ipc", "--unshare-uts", "--hostname", "sandbox",
                "--unshare-cgroup-try", "--die-with-parent", "--new-session"]
        if not self.network:
            args.append("--unshare-net")
        info_r, info_w = os.pipe()  # bwrap tells the sandbox's init pid
        fds.append(info_w)
        args += ["--info-fd", str(info_w)]
        block_w = -1
        if root:  # subkit writes the uid map: inside 1000 = ROOT_MODE_UID outside
            block_r, block_w = os.pipe()
            fds.append(block_r)
            args += ["--userns-block-fd", str(block_r)]
        else:
            args += ["--uid", str(INSIDE_UID), "--gid", str(INSIDE_UID)]
            if "--disable-userns" in _bwrap_features():
                args.append("--disable-userns")
        args += self._mount_args(passwd, group)
        args += ["--chdir", self.path(cwd) if cwd is not None else "/", "--cap-drop", "ALL"]
        if root:
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--",
                     shutil.which("setpriv"), f"--reuid={INSIDE_UID}", f"--regid={INSIDE_UID}",
                     "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
                     # changing the uid clears the parent-death signal bwrap set: keep it, or
                     # the sandbox would outlive bwrap
                     "--pdeathsig=keep"]
        args.append("--")
        lim, prlimit = self.limits, shutil.which("prlimit")
        if prlimit:  # applied inside: the processes are counted in the sandbox's user namespace
            args += [prlimit, f"--nproc={lim.processes}", f"--fsize={lim.file_size_mb * MiB}",
                     f"--data={lim.memory_bytes}", "--core=0", "--"]
        cap = self._caps[-1] if self._caps else None

        def preexec() -> None:
            if cap is not None:
                cap.enter()  # bwrap, and all the sandbox will hold, in the run's cgroup
            untrusted.die_with_parent()

        try:
            proc = subprocess.Popen(pre + args + list(cmd), env=env, start_new_session=True,
                                    preexec_fn=preexec, pass_fds=fds, **popen)
        except BaseException:
            os.close(info_r)
            if root:
                os.close(block_w)
            raise
        finally:
            for fd in fds:
                os.close(fd)
        proc.sandbox_init = _start(info_r, block_w)  # type: ignore[attr-defined]
        return proc

    def _mount_args(self, passwd_fd: int, group_fd: int) -> list[str]:
        args: list[str] = []
        made, bound = {"/", "/etc", "/tmp", "/proc", "/dev"}, set()
        for name in _SYSTEM:
            p = "/" + name
            if os.path.islink(p):
                args += ["--symlink", os.readlink(p), p]
            elif os.path.isdir(p):
                args += ["--ro-bind", p, p]
                bound.add(p)
        args += ["--perms", "0755", "--dir", "/etc"]
        for name in _ETC:
            p = "/etc/" + name
            if os.path.islink(p):
                args += _parents(p, made, bound) + ["--symlink", os.readlink(p), p]
            elif os.path.exists(p):
                args += _parents(p, made, bound) + ["--ro-bind", p, p]
        args += ["--ro-bind-data", str(passwd_fd), "/etc/passwd",
                 "--ro-bind-data", str(group_fd), "/etc/group",
                 "--proc", "/proc", "--dev", "/dev",
                 # the GPUs, as a grader's container with --gpus gets them (TF finds none else)
                 *[a for d in _gpu_devices() for a in ("--dev-bind", d, d)],
                 "--perms", "1777", "--size", str(self.limits.tmp_mb * MiB), "--tmpfs", "/dev/shm",
                 "--perms", "1777", "--size", str(self.limits.tmp_mb * MiB), "--tmpfs", "/tmp"]
        folders: list[str] = []
        private = [str(b.host) for b in self.binds] + [os.getcwd()]
        for f in python_layout(self.python)[0] if self.python else ():
            # a prefix that holds the workspace or the run (a venv made in the workspace's
            # own folder) would show them: only its interpreter's parts are bound
            folders += _narrow(f) if any(_under(p, f) for p in private) else [f]
        for f in folders:
            args += _parents(f, made, bound) + ["--ro-bind", f, f]
            bound.add(f)
        for target, link in python_links(self.python) if self.python else ():
            if not any(_under(link, b) for b in bound):  # a link outside its folders
                args += _parents(link, made, bound) + ["--symlink", target, link]
        for b in sorted(self.binds, key=lambda b: (b.inside.count("/"), b.inside)):
            args += _parents(b.inside, made, bound)
            args += ["--bind" if b.writable else "--ro-bind", str(b.host), b.inside]
            bound.add(b.inside)
        return args + ["--remount-ro", "/", "--remount-ro", "/dev"]

    def run(self, cmd: list[str], *, cwd: Path, log_dir: Path, time_limit: float,
            env: dict[str, str] | None = None, on_tick: Callable[[float], None] | None = None,
            log_prefix: str = "") -> ChildResult:
        """Run ``cmd`` to its end or its limit; never raises for what the child does. When it
        returns, every process of the sandbox is gone and its writable folders are sealed."""
        log_dir.mkdir(parents=True, exist_ok=True)
        out_path, err_path = (log_dir / f"{log_prefix}stdout.txt",
                              log_dir / f"{log_prefix}stderr.txt")
        writable = [b.host for b in self.binds if b.writable and b.host.is_dir()]
        if not self.isolated:
            writable.append(Path(self._home()))
            untrusted.make_subreaper()
            untrusted.set_dumpable(False)
        disk = self._cap_disk(writable)
        watch = untrusted.DiskWatch(writable, self.limits.disk_mb * MiB) if disk is None else None
        t0 = time.monotonic()
        try:
            proc = self.spawn(cmd, cwd=cwd, env=env, time_limit=time_limit,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
        except BaseException:
            self._after(writable)
            raise
        readers = [untrusted.CappedLog(proc.stdout, out_path),
                   untrusted.CappedLog(proc.stderr, err_path)]
        for r in readers:
            r.start()
        limit, paused, status, rusage = None, 0.0, None, None
        seen_alive = t0
        try:
            while True:
                pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
                now = time.monotonic()
                gap = now - seen_alive
                if gap > PAUSED_S:  # subkit itself was stopped (SIGSTOP, Ctrl-Z, a debugger)
                    paused += gap - TICK_S
                if pid:
                    # it ended while subkit was stopped past the limit: the grader's clock ran on
                    if gap > PAUSED_S and now - t0 > time_limit:
                        limit = "time"
                    break
                seen_alive = now
                guard = disk or watch
                assert guard is not None  # a DiskWatch is made whenever there is no disk cap
                limit = "time" if now - t0 > time_limit else (
                    self._oom() or guard.exceeded())
                if limit:
                    untrusted.kill_group(proc.pid)
                    _, status, rusage = os.wait4(proc.pid, 0)
                    break
                if on_tick:
                    on_tick(now - t0)
                time.sleep(TICK_S)
        except BaseException:  # Ctrl-C in the parent: the child must not outlive us
            untrusted.kill_group(proc.pid)
            _end(getattr(proc, "sandbox_init", None))
            try:
                os.wait4(proc.pid, 0)
            except ChildProcessError:
                pass
            proc.returncode = -9
            self._after(writable)
            raise
        elapsed = time.monotonic() - t0
        proc.returncode = 0  # reaped here; keep Popen from waiting again
        untrusted.kill_group(proc.pid)
        _end(getattr(proc, "sandbox_init", None))
        for cap in self._caps:  # what the pid namespace did not take (no bubblewrap)
            cap.kill()
        for r in readers:
            r.join(timeout=10)
        oom = self._oom()
        memory_peak = self._caps[-1].peak_mb() if self._caps else None
        wrote, passed = self._after(writable, watch)
        limit = limit or oom or passed
        rc, sig = self._exit_status(status, limit)
        return ChildResult(returncode=rc, signal=sig, timed_out=limit == "time", elapsed_s=elapsed,
                           peak_rss_mb=rusage.ru_maxrss / 1024.0 if rusage is not None else None,
                           stdout_path=out_path, stderr_path=err_path,
                           stdout_bytes=readers[0].total, stderr_bytes=readers[1].total,
                           network_isolated=self.isolated and not self.network,
                           command=list(cmd), limit=limit, paused_s=round(paused, 1),
                           written_mb=round(wrote / MiB, 1),
                           sandbox={**self.describe(), "memory_peak_mb": memory_peak})

    def _exit_status(self, status: int | None, limit: str | None) -> tuple[int | None, int | None]:
        """(exit code, signal) of the child. bwrap and `timeout` report a child killed by a
        signal as exit code 128 + signal, as a container engine does: read it back."""
        if status is None:
            return None, None
        if os.WIFSIGNALED(status):
            return None, os.WTERMSIG(status)
        rc = os.WEXITSTATUS(status)
        if (self.isolated or limit) and 128 < rc <= 128 + 64:
            return None, rc - 128
        return rc, None

    def _after(self, writable: list[Path],
               watch: untrusted.DiskWatch | None = None) -> tuple[int, str | None]:
        """The child is gone (with bubblewrap its whole pid namespace died with it; without,
        the orphans are swept up); measure and seal the writable folders. With the disk cap,
        what the child wrote reaches the host folders now, unless it passed the limit."""
        if not self.isolated:
            untrusted.kill_orphans()
            untrusted.set_dumpable(True)
        self._release()
        disk, self._disk = self._disk, None
        if disk is not None:
            passed = disk.exceeded()
            disk.finish(apply=passed != "disk")
            wrote = disk.peak_bytes
        else:
            wrote, passed = watch.written() if watch is not None else (0, None)
        untrusted.seal(writable)
        self._given = False  # subkit may add files before a next run: given again then
        return wrote, passed

    def _give(self) -> None:
        for b in self.binds:
            if b.writable:
                _give(b.host, ROOT_MODE_UID)
        self._given = True

    def _cap_disk(self, writable: list[Path]) -> diskcap.Claim | None:
        """The writable folders on a tmpfs of disk_mb (diskcap.py), where it can be had."""
        if not (self.isolated and self.disk_cap):
            return None
        if _root_mode():
            self._give()  # before the overlays: their upper folders take the owner
        self._disk = diskcap.claim(writable, self.limits.disk_mb * MiB, untrusted.MAX_FILES)
        if self._disk is None:
            self.disk_cap, self.disk_why = False, "the disk cap's tmpfs could not be mounted"
        return self._disk

    def _oom(self) -> str | None:
        """"memory" once the kernel killed a process of the run at the cgroup's cap: then
        the whole run is over (v2's memory.oom.group; v1 has none, subkit does it)."""
        return "memory" if self._caps and self._caps[-1].oom_kills() else None

    def _release(self) -> None:
        """Every memory cgroup of this sandbox: its processes killed, the cgroup removed."""
        while self._caps:
            self._caps.pop().close()

    def close(self) -> None:
        self._release()
        if self._scratch_cm is not None:
            self._scratch_cm.__exit__(None, None, None)
            self._scratch_cm = self.scratch = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _parents(path: str, made: set[str], bound: set[str]) -> list[str]:
    """--dir for each missing ancestor of ``path`` (mode 0755: bwrap would copy 0700 from
    /root), so that the child can walk to a bind whose host parents it could not read.
    ``made``: folders that exist in the sandbox; ``bound``: bound folders (their insides
    exist too)."""
    args: list[str] = []
    cur = ""
    for part in Path(path).parts[1:-1]:
        cur += "/" + part
        if cur in made or any(_under(cur, b) for b in bound):
            continue
        args += ["--perms", "0755", "--dir", cur]
        made.add(cur)
    return args


def _data_fd(text: str, fds: list[int]) -> int:
    r, w = os.pipe()
    os.write(w, text.encode())
    os.close(w)
    fds.append(r)
    return r


def _start(info_r: int, block_w: int, timeout: float = 20.0) -> int | None:
    """The host pid of the sandbox's init, from bwrap's --info-fd; in root mode also write
    its uid/gid maps (inside 0 stays root for bwrap's own setup, inside 1000 is
    ROOT_MODE_UID) and let bwrap go on. None when bwrap ended first (its stderr says why)."""
    pid = None
    try:
        data, end = b"", time.monotonic() + timeout
        while pid is None and time.monotonic() < end:
            ready, _, _ = select.select([info_r], [], [], max(0.0, end - time.monotonic()))
            chunk = os.read(info_r, 4096) if ready else b""
            if not chunk:
                return None
            data += chunk
            try:
                pid = int(json.loads(data)["child-pid"])
            except (ValueError, KeyError):
                continue
        if pid is not None and block_w != -1:
            mapping = f"0 0 1\n{INSIDE_UID} {ROOT_MODE_UID} 1\n"
            for name in ("uid_map", "gid_map"):
                with open(f"/proc/{pid}/{name}", "w") as fh:
                    fh.write(mapping)
            _no_nested_userns(pid)
            os.write(block_w, b"1")
        return pid
    except OSError:
        return None  # bwrap fails on its own and says so
    finally:
        os.close(info_r)
        if block_w != -1:
            os.close(block_w)


def _no_nested_userns(pid: int) -> None:
    """Root mode (bwrap refuses --disable-userns with --userns-block-fd): no user namespace
    may be made inside the sandbox's, so that the child never holds capabilities, not even
    in a namespace of its own (the kernel's surface for them is large)."""
    nsenter = shutil.which("nsenter")
    if nsenter:
        subprocess.run([nsenter, "--user", f"--target={pid}", "--", "/bin/sh", "-c",
                        "echo 0 > /proc/sys/user/max_user_namespaces"],
                       capture_output=True, timeout=20)


def _end(init_pid: int | None, wait_s: float = 5.0) -> None:
    """Kill the sandbox's init (its whole pid namespace dies with it) and wait until it is
    gone: a zombie init means every other process of the namespace was reaped."""
    if init_pid is None:
        return
    try:
        os.kill(init_pid, signal.SIGKILL)
    except OSError:
        return
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        try:
            with open(f"/proc/{init_pid}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    return
        except (OSError, IndexError):
            return
        time.sleep(0.01)


def _give(folder: Path, uid: int) -> None:
    """Root mode: a writable bind belongs to the sandbox's uid, so that it can write there
    (and its folders can be entered by bwrap, which sets up as root without capabilities)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            try:
                os.lchown(name, uid, uid)
                if name == dirpath or name[len(dirpath) + 1:] in dirnames:
                    os.chmod(name, os.stat(name).st_mode | 0o711)
            except OSError:
                pass
    if folder.is_file():
        os.lchown(folder, uid, uid)


