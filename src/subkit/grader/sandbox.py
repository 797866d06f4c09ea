"""Running untrusted submission code the way a grader does, without trusting it.

- ``safe_extract``: unzip a submission, refusing absolute paths, ``..``, links, device
  files and archives that would expand past a bound (zip bombs).
- ``run_child``: run a command in a child process in its own process group, with a
  working directory, an environment without credentials, no network where the machine
  allows it (a new network namespace via ``unshare``), stdout/stderr captured to files
  with a cap (a child printing gigabytes cannot fill the disk or block on a pipe), killed
  at the time limit, and its peak memory measured from the kernel's rusage.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from subkit.errors import CheckFailed

MAX_UNZIPPED_BYTES = 8 * 1024**3  # 8 GiB: well past any real submission
MAX_MEMBERS = 10_000
MAX_RATIO = 200  # compressed -> uncompressed ratio of a single member
LOG_CAP_BYTES = 16 * 1024**2  # keep the first 16 MiB of each stream ...
LOG_TAIL_BYTES = 64 * 1024  # ... and its last 64 KiB

_SECRET = re.compile(r"(TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|COOKIE|SESSION)", re.I)
_SECRET_PREFIXES = ("KAGGLE_", "CODABENCH_", "AWS_", "GOOGLE_APPLICATION", "AZURE_", "HF_TOKEN",
                    "GITHUB_", "GH_", "OPENAI", "ANTHROPIC", "WANDB_", "NETRC")
_KEEP = {"PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME",
         "SHELL", "TERM", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
         "CUDA_VISIBLE_DEVICES", "VIRTUAL_ENV", "PYTHONPATH", "LD_LIBRARY_PATH"}


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The parent's environment minus anything that looks like a credential."""
    env = {}
    for k, v in os.environ.items():
        if k in _KEEP:
            env[k] = v
            continue
        if _SECRET.search(k) or k.upper().startswith(_SECRET_PREFIXES):
            continue
        env[k] = v
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if extra:
        env.update(extra)
    return env


def safe_extract(zip_path: Path, dest: Path, *, max_bytes: int = MAX_UNZIPPED_BYTES) -> list[str]:
    """Extract ``zip_path`` into ``dest`` (which must not exist or be empty).

    Returns the member names. Raises CheckFailed on anything a grader would not unpack
    the same way, or anything dangerous.
    """
    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile:
        raise CheckFailed(f"{zip_path} is not a zip archive",
                          hint="build it with `subkit build`, or `zip sub.zip model.py weights.keras`") from None
    except OSError as exc:
        raise CheckFailed(f"cannot read {zip_path}: {exc.strerror}", hint="check the path") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise CheckFailed(f"{zip_path} has {len(infos)} members",
                              hint="a submission holds model.py and its weights; leave data out")
        total = 0
        names = []
        for info in infos:
            name = info.filename
            p = PurePosixPath(name.replace("\\", "/"))
            if p.is_absolute() or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
                raise CheckFailed(f"zip member {name!r} has an absolute path",
                                  hint="zip files relative to the submission folder")
            if ".." in p.parts:
                raise CheckFailed(f"zip member {name!r} points outside the archive ('..')",
                                  hint="zip files relative to the submission folder")
            # Unix file-type bits (only meaningful when a Unix tool wrote the entry)
            ftype = stat.S_IFMT((info.external_attr >> 16) & 0xFFFF) if info.create_system == 3 else 0
            if ftype == stat.S_IFLNK:
                raise CheckFailed(f"zip member {name!r} is a symbolic link",
                                  hint="zip the real file (zip without -y)")
            if ftype and ftype not in (stat.S_IFREG, stat.S_IFDIR):
                raise CheckFailed(f"zip member {name!r} is not a regular file",
                                  hint="a submission holds only files and folders")
            total += info.file_size
            if total > max_bytes:
                raise CheckFailed(f"{zip_path} expands past {max_bytes // 1024**2} MiB",
                                  hint="this looks like a zip bomb or holds data it should not")
            if info.compress_size and info.file_size / info.compress_size > MAX_RATIO and info.file_size > 50 * 1024**2:
                raise CheckFailed(f"zip member {name!r} expands {info.file_size / info.compress_size:.0f}x",
                                  hint="this looks like a zip bomb")
            names.append(name)
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        written = 0
        for info in infos:
            target = (dest / info.filename).resolve()
            if root != target and root not in target.parents:
                raise CheckFailed(f"zip member {info.filename!r} escapes the folder",
                                  hint="zip files relative to the submission folder")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                while True:
                    chunk = src.read(1024 * 1024)
                    if not chunk:
                        break
                    written += len(chunk)
                    if written > max_bytes:  # the header lied about sizes
                        raise CheckFailed(f"{zip_path} expands past {max_bytes // 1024**2} MiB",
                                          hint="this looks like a zip bomb")
                    out.write(chunk)
    return names


# -- network isolation ---------------------------------------------------------------------
_NET_PREFIX: list[str] | None = None


def network_isolation_prefix() -> list[str]:
    """The command prefix that runs a program without network here, or [] if refused."""
    global _NET_PREFIX
    if _NET_PREFIX is None:
        _NET_PREFIX = []
        exe = shutil.which("unshare")
        if exe:
            for prefix in ([exe, "--net", "--"], [exe, "--net", "--map-root-user", "--"]):
                try:
                    r = subprocess.run(prefix + ["true"], capture_output=True, timeout=10)
                except (OSError, subprocess.TimeoutExpired):
                    continue
                if r.returncode == 0:
                    _NET_PREFIX = prefix
                    break
    return list(_NET_PREFIX)


# -- running the child -------------------------------------------------------------------------
class _CappedLog(threading.Thread):
    """Copy a pipe into a file: the first LOG_CAP_BYTES, then only a rolling tail."""

    def __init__(self, pipe, path: Path):
        super().__init__(daemon=True)
        self.pipe, self.path = pipe, path
        self.total = 0
        self.tail: collections.deque[bytes] = collections.deque()
        self.tail_len = 0

    def run(self) -> None:
        with open(self.path, "wb") as out:
            while True:
                chunk = self.pipe.read1(65536) if hasattr(self.pipe, "read1") else self.pipe.read(65536)
                if not chunk:
                    break
                if self.total < LOG_CAP_BYTES:
                    keep = chunk[: LOG_CAP_BYTES - self.total]
                    out.write(keep)
                    rest = chunk[len(keep):]
                else:
                    rest = chunk
                self.total += len(chunk)
                if rest:
                    self.tail.append(rest)
                    self.tail_len += len(rest)
                    while self.tail_len - len(self.tail[0]) >= LOG_TAIL_BYTES:
                        self.tail_len -= len(self.tail.popleft())
            if self.total > LOG_CAP_BYTES:
                tail = b"".join(self.tail)[-LOG_TAIL_BYTES:]
                dropped = self.total - LOG_CAP_BYTES - len(tail)
                out.write(f"\n[... subkit dropped {dropped} bytes of output ...]\n".encode())
                out.write(tail)


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
        return "\n".join(text.splitlines()[-lines:])


def run_child(cmd: list[str], *, cwd: Path, log_dir: Path, time_limit: float,
              env: dict[str, str] | None = None, isolate_network: bool = True,
              on_tick: Callable[[float], None] | None = None,
              log_prefix: str = "") -> ChildResult:
    """Run ``cmd`` isolated; never raises for what the child does."""
    log_dir.mkdir(parents=True, exist_ok=True)
    prefix = network_isolation_prefix() if isolate_network else []
    full = prefix + cmd
    out_path, err_path = log_dir / f"{log_prefix}stdout.txt", log_dir / f"{log_prefix}stderr.txt"
    t0 = time.monotonic()
    proc = subprocess.Popen(full, cwd=cwd, env=env if env is not None else clean_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=_die_with_parent)
    readers = [_CappedLog(proc.stdout, out_path), _CappedLog(proc.stderr, err_path)]
    for r in readers:
        r.start()
    timed_out = False
    status = None
    rusage = None
    try:
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            elapsed = time.monotonic() - t0
            if elapsed > time_limit:
                timed_out = True
                _kill_group(proc.pid)
                _, status, rusage = os.wait4(proc.pid, 0)
                break
            if on_tick:
                on_tick(elapsed)
            time.sleep(0.05)
    except BaseException:  # Ctrl-C in the parent: the child must not outlive us
        _kill_group(proc.pid)
        try:
            os.wait4(proc.pid, 0)
        except ChildProcessError:
            pass
        raise
    elapsed = time.monotonic() - t0
    proc.returncode = 0  # we reaped it ourselves; keep Popen from waiting again
    _kill_group(proc.pid)  # leftovers: grandchildren the submission started
    for r in readers:
        r.join(timeout=10)
    rc = sig = None
    if status is not None:
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
        elif os.WIFEXITED(status):
            rc = os.WEXITSTATUS(status)
    peak = rusage.ru_maxrss / 1024.0 if rusage is not None else None
    return ChildResult(returncode=rc, signal=sig, timed_out=timed_out, elapsed_s=elapsed,
                       peak_rss_mb=peak, stdout_path=out_path, stderr_path=err_path,
                       stdout_bytes=readers[0].total, stderr_bytes=readers[1].total,
                       network_isolated=bool(prefix), command=full)


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when subkit dies, even by SIGKILL (Linux).

    The child runs in its own session (so that the whole group can be killed at the time
    limit), which also means a killed subkit would leave it running; the kernel's
    parent-death signal closes that gap. Kept across exec (unshare execs the program)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: Ctrl-C and the time limit still kill the group
        pass


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# -- bubblewrap: the compute worker's literal /app/... paths, without touching the host -----------
# (issue 7; FACTS.md section 6). A tmpfs is the new root; every top-level folder of the host is
# bound back read-only (links recreated), /tmp read-write, a fresh /dev and /proc, then a tmpfs
# on /app and the run folders bound onto /app/program, /app/output, ... Binding the host root
# itself and mounting on /app would create /app on the host: never done here.
_BWRAP_STATE: tuple[bool, str] | None = None
_BWRAP_SKIP = {"proc", "dev", "app"}


def bwrap_executable() -> str | None:
    return shutil.which("bwrap")


def _host_root_args() -> list[str]:
    args: list[str] = []
    try:
        entries = sorted(os.listdir("/"))
    except OSError:  # pragma: no cover
        entries = []
    for name in entries:
        if name in _BWRAP_SKIP:
            continue
        p = "/" + name
        try:
            if os.path.islink(p):
                args += ["--symlink", os.readlink(p), p]
            elif os.path.isdir(p):
                args += ["--bind" if name == "tmp" else "--ro-bind", p, p]
            elif os.path.isfile(p):
                args += ["--ro-bind", p, p]
        except OSError:
            continue
    return args


def bwrap_prefix(mounts: dict[str, Path | str], *, chdir: str = "/app/program",
                 isolate_network: bool = True) -> list[str]:
    """The command prefix that runs a program with ``mounts`` ({"/app/x": real folder})."""
    exe = bwrap_executable()
    if not exe:
        raise RuntimeError("bwrap is not installed")
    args = [exe, "--die-with-parent", "--unshare-pid"]
    if isolate_network:
        args.append("--unshare-net")
    args += ["--tmpfs", "/"]
    args += _host_root_args()
    args += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/app"]
    for target in sorted(mounts, key=lambda t: (t.count("/"), t)):  # parents before children
        args += ["--bind", str(Path(mounts[target]).resolve()), target]
    args += ["--chdir", chdir, "--"]
    return args


def bwrap_available() -> tuple[bool, str]:
    """(True, "") where a bubblewrap sandbox with the /app layout starts here, else
    (False, why). Measured once per process."""
    global _BWRAP_STATE
    if _BWRAP_STATE is None:
        exe = bwrap_executable()
        if not exe:
            _BWRAP_STATE = (False, "bubblewrap (bwrap) is not installed")
        else:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="subkit-bwrap-") as d:
                try:
                    r = subprocess.run(bwrap_prefix({"/app/program": d}) + ["true"],
                                       capture_output=True, timeout=20)
                    ok = r.returncode == 0
                    why = "" if ok else (r.stderr.decode("utf-8", "replace").strip()
                                         or f"bwrap exited with {r.returncode}")
                except (OSError, subprocess.TimeoutExpired) as exc:
                    ok, why = False, f"bwrap could not start: {exc}"
            _BWRAP_STATE = (ok, why if ok else f"this machine refuses the sandbox ({why})")
    return _BWRAP_STATE
