"""Handling an untrusted child from the outside: its capped logs, the watch on what it
writes, killing every process of it, and reading and sealing the files it leaves.

Used by ``sandbox.Sandbox``; nothing here runs the child's code.
"""

from __future__ import annotations

import collections
import ctypes
import json
import math
import os
import platform
import re
import signal
import stat
import subprocess
import threading
import unicodedata
import weakref
from pathlib import Path
from typing import Any

MiB = 1024**2
LOG_CAP_BYTES = 16 * MiB  # keep the first 16 MiB of each stream ...
LOG_TAIL_BYTES = 64 * 1024  # ... and its last 64 KiB
MAX_FILES = 100_000  # files the child may create in its writable folders


# -- text the child wrote, made safe to show --------------------------------------------------
TEXT_LIMIT = 2000  # characters of one untrusted text shown, unless the caller says otherwise
_CUT_SLACK = 48  # a text at most this much past its limit is not cut again (the mark's room)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SUSPECT = re.compile("[^\x20-\x7e]")  # what is not plain printable ASCII gets a look
_UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}  # controls, bidi/zero-width, surrogates,
# line and paragraph separators


def _escape(m: re.Match) -> str:
    ch = m.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if code < 0xA0:  # C0, DEL, C1: the bytes of every terminal escape sequence
        return f"\\x{code:02x}"
    if unicodedata.category(ch) in _UNSAFE_CATEGORIES:
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
    return ch


def _cut(text: str, limit: int | None, keep_end: bool, total: int) -> str:
    if limit is None or len(text) <= limit + _CUT_SLACK:
        return text
    mark = f"[... cut, {total} characters in all]"
    return mark + " " + text[-limit:] if keep_end else text[:limit] + " " + mark


def printable(text: object, limit: int | None = TEXT_LIMIT, *, one_line: bool = False,
              keep_end: bool = False) -> str:
    """The one way a text that a submission or a bundle's program controls reaches a
    terminal, a JSON record or an HTML page: every control character, escape sequence byte,
    bidi or zero-width character and lone surrogate shown escaped (``\\x1b``, ``\\u202e``),
    so that it can neither clear the screen, paint a fake score, reorder a line nor crash an
    encoder; then cut to ``limit`` characters with a mark saying so (``keep_end``: keep the
    last ones, for a log's tail).

    ``one_line``: a field of one line (a message, a stage, a file name): newlines shown as
    ``\\n``, so that it cannot print a line of its own. Otherwise (a traceback, a log tail)
    the text keeps its lines, each one escaped; ``\\r\\n`` counts as a newline, a lone
    ``\\r`` (which would overwrite the line) does not. Idempotent: what it returns comes back
    unchanged."""
    text = text if isinstance(text, str) else str(text)
    total = len(text)
    if limit is not None and total > limit + _CUT_SLACK:  # escape only what is kept
        text = text[-(limit + _CUT_SLACK + 1):] if keep_end else text[:limit + _CUT_SLACK + 1]
    if one_line:
        out = _SUSPECT.sub(_escape, text)
    else:
        lines = text.replace("\r\n", "\n").split("\n")
        out = "\n".join(_SUSPECT.sub(_escape_keep_tab, line) for line in lines)
    return _cut(out, limit, keep_end, total)


def _escape_keep_tab(m: re.Match) -> str:
    return m.group() if m.group() == "\t" else _escape(m)


# -- reading what the child wrote -------------------------------------------------------------
def read_untrusted(path: Path | str, max_bytes: int) -> bytes | None:
    """The bytes of a file a child wrote, or None: never follows a link, never blocks on a
    FIFO, never reads past ``max_bytes``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes:
            return None
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, MiB))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        return data if len(data) <= max_bytes else None
    except OSError:
        return None
    finally:
        os.close(fd)


MAX_JSON_DEPTH = 32  # nesting a status or scores file may have (the grader's needs 4)
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def loads_json(data: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` of a text a child wrote, refused (json.JSONDecodeError) when it
    nests deeper than ``max_depth``: the standard parser recurses once a level, and a 600 KB
    ``[[[[...`` would end in RecursionError. The depth is measured first on the brackets
    outside strings, at C speed (innermost pairs removed, one level a pass)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    skeleton = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    for _ in range(max_depth):
        if not skeleton:
            break
        shorter = skeleton.replace(b"[]", b"").replace(b"{}", b"")
        if len(shorter) == len(skeleton):
            break
        skeleton = shorter
    if skeleton:  # a JSONDecodeError (a ValueError): callers catch what json.loads raises
        raise json.JSONDecodeError(f"nested deeper than {max_depth} levels, or malformed",
                                   "", 0)
    try:
        return json.loads(raw)
    except RecursionError:  # cannot happen after the check; never a crash all the same
        raise json.JSONDecodeError("nested too deep", "", 0) from None


def read_untrusted_json(path: Path | str, max_bytes: int = MiB) -> dict:
    """A JSON object a child wrote (its status file), or {} when it is not one: at most
    ``max_bytes``, nested at most MAX_JSON_DEPTH levels, read as ``read_untrusted`` reads."""
    data = read_untrusted(path, max_bytes)
    try:
        obj = loads_json(data) if data is not None else {}
    except ValueError:  # not JSON, not UTF-8, too deep, a number too long for int()
        return {}
    return obj if isinstance(obj, dict) else {}


# one-line texts of the status file, and their lengths; the others keep their lines
_TEXT = {"stage": 40, "error_type": 100, "python": 40, "executable": 300, "extra_stopped": 200}
_LINES = {"error": 2000, "traceback": 8000}


def sane_status(raw: dict) -> dict:
    """The child's status file, as far as it can be read: the types subkit expects, every
    text through ``printable`` (one-line fields on one line), cut to size. Whatever a
    hostile child wrote, nothing downstream can trip on it, nor print it raw (its claims
    stay claims: no verdict rests on them)."""
    out: dict[str, Any] = {k: printable(raw[k], n, one_line=True) for k, n in _TEXT.items()
                           if isinstance(raw.get(k), str)}
    out.update({k: printable(raw[k], n, keep_end=k == "traceback") for k, n in _LINES.items()
                if isinstance(raw.get(k), str)})
    out["ok"] = raw.get("ok") is True
    out["timings"] = _numbers(raw.get("timings"))
    if _number(raw.get("peak_rss_mb")) is not None:
        out["peak_rss_mb"] = _number(raw.get("peak_rss_mb"))
    for key in ("versions", "input", "output"):
        if isinstance(raw.get(key), dict):
            out[key] = _plain(raw[key])
    if isinstance(raw.get("proba"), dict):
        out["proba"] = _result(raw["proba"])
    if isinstance(raw.get("extra"), dict):
        out["extra"] = {_key(k, 80): _result(v) for k, v in list(raw["extra"].items())[:200]
                        if isinstance(v, dict)}
    return out


def _key(k: object, n: int = 40) -> str:
    return printable(k, n, one_line=True)


def _number(v) -> float | None:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except OverflowError:  # an int of 400 digits
        return None
    return f if math.isfinite(f) else None


def _numbers(d) -> dict:
    return {_key(k): _number(v) for k, v in list(d.items())[:40]
            if _number(v) is not None} if isinstance(d, dict) else {}


def _plain(d: dict) -> dict:
    """Strings (on one line), numbers, booleans and short lists of them."""
    out: dict[str, Any] = {}
    for k, v in list(d.items())[:20]:
        if isinstance(v, str):
            out[_key(k)] = printable(v, 300, one_line=True)
        elif isinstance(v, bool) or _number(v) is not None:
            out[_key(k)] = v
        elif isinstance(v, list):
            out[_key(k)] = [printable(x, 100, one_line=True) if isinstance(x, str) else x
                            for x in v[:8] if isinstance(x, str)
                            or (isinstance(x, int) and not isinstance(x, bool)
                                and _number(x) is not None)]
    return out


def _result(d: dict) -> dict:
    out = _plain(d)
    out["ok"] = d.get("ok") is True
    for key in ("predict_s", "wait_s"):
        if key in out and _number(out[key]) is None:
            out.pop(key)
    if isinstance(d.get("output"), dict):
        out["output"] = _plain(d["output"])
    return out


def walk(folders: list[Path], hidden: list[str] | None = None):
    """(path, lstat) of everything below ``folders``, links not followed. A folder that
    cannot be read (too deep for a path, no permission) goes to ``hidden``."""
    stack = [str(f) for f in folders]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        except OSError:
            if hidden is not None:
                hidden.append(folder)
            continue
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError:
                if hidden is not None:
                    hidden.append(e.path)
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(e.path)
            yield e.path, st


_SEALED: collections.OrderedDict[str, str] = collections.OrderedDict()  # path -> what it was
_SEALED_KEEP = 4096
_SEALED_LOCK = threading.Lock()
_KINDS = {stat.S_IFLNK: "a symbolic link", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
          stat.S_IFCHR: "a device", stat.S_IFBLK: "a device"}


def seal(folders: list[Path]) -> int:
    """After the child is gone: remove from its writable folders everything that is not a
    plain file or folder (links, FIFOs, sockets, devices, files with other hard links), so
    that nothing subkit reads or writes there later can be redirected; give every folder
    back to its owner (a child that made ``/app/output`` read-only would make subkit's own
    writes there fail). Returns how many entries were removed; ``sealed(path)`` says what
    stood at a removed path."""
    removed = 0
    roots = tuple(os.path.join(os.path.abspath(f), "") for f in folders)
    with _SEALED_LOCK:  # what an earlier run left in the same folders is history
        for old in [p for p in _SEALED if p.startswith(roots)]:
            del _SEALED[old]
    for folder in folders:
        _owner_rwx(folder)
    for path, st in walk(folders):
        if stat.S_ISDIR(st.st_mode):
            if st.st_mode & 0o700 != 0o700:  # before walk looks inside
                _owner_rwx(path)
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            try:
                os.unlink(path)
                removed += 1
            except OSError:
                continue
            kind = _KINDS.get(stat.S_IFMT(st.st_mode), "a hard link to another file")
            with _SEALED_LOCK:
                _SEALED[os.path.abspath(path)] = kind
                while len(_SEALED) > _SEALED_KEEP:
                    _SEALED.popitem(last=False)
    return removed


def _owner_rwx(folder: Path | str) -> None:
    try:
        os.chmod(folder, stat.S_IMODE(os.lstat(folder).st_mode) | 0o700)
    except OSError:
        pass


def sealed(path: Path | str) -> str | None:
    """What ``seal`` removed at ``path`` ("a symbolic link", "a FIFO", ...), or None: the
    verdict on a predictions file names what the child put there."""
    with _SEALED_LOCK:
        return _SEALED.get(os.path.abspath(path))


# -- watching it run ---------------------------------------------------------------------------
class CappedLog(threading.Thread):
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
                chunk = (self.pipe.read1(65536) if hasattr(self.pipe, "read1")
                         else self.pipe.read(65536))
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


class DiskWatch:
    """Bytes and files written into the writable folders, against the limits: statvfs every
    tick (cheap), a scan of the folders only when the file system lost more than a limit
    (other programs write too)."""

    def __init__(self, folders: list[Path], limit_bytes: int):
        self.folders = [Path(f) for f in folders if Path(f).is_dir()]
        self.limit = limit_bytes
        self.base_bytes, self.base_files, _ = self._scan()
        self.free0: dict[Path, tuple[int, int]] = {}
        seen: set[int] = set()
        for f in self.folders:
            try:
                dev, vfs = f.stat().st_dev, os.statvfs(f)
            except OSError:
                continue
            if dev not in seen:
                seen.add(dev)
                self.free0[f] = (vfs.f_bavail * vfs.f_frsize, vfs.f_favail)

    def _scan(self) -> tuple[int, int, bool]:
        """(bytes, files) added to the folders, and whether some of them could not be read
        (a child hiding what it wrote in paths too deep to measure)."""
        total = files = 0
        hidden: list[str] = []
        stop_bytes = getattr(self, "base_bytes", 0) + 2 * self.limit
        stop_files = getattr(self, "base_files", 0) + 2 * MAX_FILES
        for _, st in walk(self.folders, hidden):
            files += 1
            total += st.st_blocks * 512
            if total > stop_bytes or files > stop_files:
                break
        return total, files, bool(hidden)

    def _lost(self) -> int:
        """The most bytes any watched file system lost since the start (or the last reset)."""
        lost = 0
        for folder, (free_bytes, _) in self.free0.items():
            try:
                vfs = os.statvfs(folder)
            except OSError:
                continue
            lost = max(lost, free_bytes - vfs.f_bavail * vfs.f_frsize)
        return lost

    def written(self) -> tuple[int, str | None]:
        """(bytes the child added, the limit it passed or None). Bytes that cannot be
        measured count as past the limit when the file system lost that much."""
        total, files, hidden = self._scan()
        wrote, made = max(0, total - self.base_bytes), max(0, files - self.base_files)
        if wrote > self.limit or (hidden and self._lost() > self.limit):
            return wrote, "disk"
        return wrote, "files" if made > MAX_FILES else None

    def exceeded(self) -> str | None:
        """"disk" or "files" when the child wrote past a limit, else None."""
        for folder, (free_bytes, free_files) in self.free0.items():
            try:
                vfs = os.statvfs(folder)
            except OSError:
                continue
            if free_bytes - vfs.f_bavail * vfs.f_frsize <= self.limit \
                    and free_files - vfs.f_favail <= MAX_FILES:
                continue
            wrote, passed = self.written()
            if passed:
                return passed
            # other programs wrote that much: count again from here
            self.free0[folder] = (vfs.f_bavail * vfs.f_frsize + wrote,
                                  vfs.f_favail + self.base_files)
        return None


# -- processes ----------------------------------------------------------------------------------
_libc = None
_KEYCTL = {"x86_64": 250, "aarch64": 219, "riscv64": 219, "ppc64le": 271, "s390x": 280}
_SPAWNED: weakref.WeakSet = weakref.WeakSet()  # sandboxed processes subkit started


def prctl(option: int, value: int) -> None:
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux
        pass


def die_with_parent() -> None:
    """In the child, before exec: SIGKILL when subkit dies, even by SIGKILL (Linux); the
    first in line for the kernel's OOM killer (a memory hog of many processes, each under
    its own limit, kills itself, not the user's programs); a session keyring of its own (it
    would inherit the user's, and read the keys there)."""
    prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    try:
        with open("/proc/self/oom_score_adj", "w") as fh:
            fh.write("1000")
    except OSError:
        pass
    nr = _KEYCTL.get(platform.machine())
    if nr is not None and _libc is not None:
        _libc.syscall(nr, 1, None)  # keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)


_UNDUMPABLE: list[Any] = [0, threading.Lock()]  # children running that need subkit undumpable


def set_dumpable(on: bool) -> None:
    """Without bubblewrap, while a child runs: subkit's /proc/<pid>/environ, mem and fds
    then need CAP_SYS_PTRACE (a child of the same user cannot read them). Counted: dumpable
    again only when the last such child is gone (a bundle runs two at once)."""
    with _UNDUMPABLE[1]:
        _UNDUMPABLE[0] += -1 if on else 1
        prctl(4, 0 if _UNDUMPABLE[0] > 0 else 1)  # PR_SET_DUMPABLE


def make_subreaper() -> None:
    """Orphans of the child (a double-forked setsid grandchild) become subkit's children
    instead of init's, so that kill_orphans finds them."""
    prctl(36, 1)  # PR_SET_CHILD_SUBREAPER


def spawned(proc: subprocess.Popen) -> subprocess.Popen:
    _SPAWNED.add(proc)
    return proc


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _children() -> list[tuple[int, int]]:
    """(pid, session id) of this process's children."""
    me = os.getpid()
    out: list[tuple[int, int]] = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me:
            out.append((int(name), int(fields[3])))
    return out


def kill_orphans(rounds: int = 50) -> int:
    """Kill the children subkit did not start: orphans reparented to it (not in subkit's
    session, not a sandboxed process it is still running). Repeated: a killed orphan's own
    children come next. Returns how many were killed."""
    mine, killed = os.getsid(0), 0
    for _ in range(rounds):
        live = {p.pid for p in list(_SPAWNED) if p.returncode is None}
        strays = [pid for pid, sid in _children() if sid != mine and pid not in live]
        if not strays:
            break
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                killed += 1
            except (ProcessLookupError, ChildProcessError, PermissionError):
                pass
    return killed


def tasks_of_user() -> int:
    """Threads this user runs now: outside a user namespace RLIMIT_NPROC counts them all."""
    uid, n = os.getuid(), 0
    try:
        names = os.listdir("/proc")
    except OSError:
        return 4096
    for name in names:
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    n += len(os.listdir(f"/proc/{name}/task"))
            except OSError:
                continue
    return n
