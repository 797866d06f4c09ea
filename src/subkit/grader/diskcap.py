"""A kernel cap on what a run writes: its writable folders on a tmpfs of the run's own.

Each writable folder of the sandbox (the submission's working copy ``/app/ingested_program``,
``/app/output``, a bundle's folders) is shown to the child as an overlay: the host folder
read-only below, an upper layer on one tmpfs per run above, so that every byte the child
writes (new files, copies of the files it changes, ``fallocate``, ``O_TMPFILE`` files,
files unlinked while open) is a page of that tmpfs, which the kernel refuses past its
size (``ENOSPC``), whatever the speed of the writes. The child's ``/tmp`` and home
(``/tmp``) and ``/dev/shm`` are bwrap's own ``--size`` tmpfs (``[limits] tmp_mb``).

Sizes: the tmpfs holds ``disk_mb`` plus a margin (a quarter of it, at most 64 MB) and
``MAX_FILES`` plus a margin of inodes; a thread reads its use every 5 ms and the sandbox
stops the child once it reaches ``disk_mb`` (the verdict: the disk limit) or
``MAX_FILES``. A burst can therefore pass ``disk_mb`` by the margin at most (ten 256 MB
``fallocate``s in 20 ms passed it 11 times with the polling of the host's file system);
a single request past the whole tmpfs is refused at once and leaves nothing (the child
sees ``ENOSPC``).

After the run the upper layers are applied to the host folders (new and changed plain
files copied, deleted ones removed; links, FIFOs, sockets and devices never copied), one
file at a time through ``O_NOFOLLOW`` opens, then everything is unmounted. After a disk
kill nothing of the upper layers is applied: what the submission wrote is gone, the host
folders are as subkit made them, and the logs (written by subkit outside) stay.

Why this storage: a tmpfs needs no image to make (a loop-mounted ext4 costs ``mkfs`` and a
loop device per run, and containers often have none), counts every kind of write, and the
overlay means nothing is copied in (a working copy with a 400 MB weights file costs
nothing until the child changes it) and only what the child wrote is copied out. Measured
here (kernel 6.18, 2 cores, load 8): the tmpfs, two binds and two overlays, made and
removed, 11 ms a run (the memory cgroup: under 1 ms); score-local's whole cost in
BENCHMARKS.md. Its pages are memory: what the child writes counts against the run's memory
cgroup too, as in a container with a tmpfs.

It needs to mount (root, with CAP_SYS_ADMIN); elsewhere ``available()`` says why not, and
the sandbox polls the folders as before (``untrusted.DiskWatch``). Mount points are named
``subkit-disk-<pid>-<hex>`` in the temporary folder: ``sweep`` unmounts those of a subkit
that died.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import stat
import tempfile
import threading
from pathlib import Path

from subkit.grader.cgroup import CAPS_ENV, pid_alive

MiB = 1024**2
PREFIX = "subkit-disk-"
MS_BIND, MS_NOSUID, MS_NODEV, MNT_DETACH = 4096, 2, 4, 2
SAMPLE_S = 0.005
_WHITEOUT = 0  # overlayfs marks a deleted lower file by a character device 0/0
_libc = None
_STATE: tuple[bool, str] | None = None


def _mount(src: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    rc = _libc.mount(src.encode(), target.encode(), fstype.encode() if fstype else None,
                     ctypes.c_ulong(flags), data.encode() if data else None)
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {fstype or 'bind'} on {target}: {os.strerror(e)}")


def _umount(target: str) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.umount2(target.encode(), 0) != 0:
        _libc.umount2(target.encode(), MNT_DETACH)  # busy: detach it, the kernel frees it later


def available() -> tuple[bool, str]:
    """(True, "") where this process can mount the cap (tried once), else (False, why)."""
    global _STATE
    if os.environ.get(CAPS_ENV, "").strip().lower() == "off":
        return False, f"turned off ({CAPS_ENV}=off)"
    if _STATE is None:
        if os.geteuid() != 0:
            _STATE = (False, "not root: no tmpfs and overlay of the run's own")
        else:
            cap = DiskCap.create([], 1 * MiB, 16)
            if cap is None:
                _STATE = (False, "this machine refuses subkit's tmpfs mount")
            else:
                cap.finish(apply=False)
                _STATE = (True, "")
    return _STATE


def _mounted(base: str = "") -> list[str]:
    """Mount points; with ``base``, overlays whose upper layer is in a cap's stage are given
    as that stage's path + the mount point after a NUL (a host folder a crash left covered)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        pre, _, post = line.partition(" - ")
        fields = pre.split()
        if len(fields) <= 4:
            continue
        point = fields[4].replace("\\040", " ")
        up = [o[len("upperdir="):] for o in post.split(" ")[-1].split(",")
              if o.startswith("upperdir=")]
        out.append(f"{up[0]}\0{point}" if base and up else point)
    return out


def _owner(path: str, base: str) -> tuple[str, int] | None:
    """(the stage folder, its subkit's pid) of a path inside a cap's stage, else None."""
    if not path.startswith(base + "/" + PREFIX):
        return None
    top = path[len(base) + 1:].split("/", 1)[0]
    try:
        return os.path.join(base, top), int(top[len(PREFIX):].split("-")[0])
    except ValueError:
        return None


def sweep() -> int:
    """Unmount and remove the caps a subkit that died left in the temporary folder."""
    base, stale = tempfile.gettempdir(), 0
    for entry in sorted(_mounted(base), key=lambda e: ("\0" not in e, -len(e))):
        where, _, point = entry.partition("\0")
        owner = _owner(where, base)
        if owner and owner[1] != os.getpid() and not pid_alive(owner[1]):
            _umount(point or where)
            stale += 1
    mounted = set(_mounted())
    for e in os.scandir(base):
        owner = _owner(e.path, base)
        if owner and e.path not in mounted and owner[1] != os.getpid() \
                and not pid_alive(owner[1]) and e.is_dir(follow_symlinks=False):
            shutil.rmtree(e.path, ignore_errors=True)
    return stale


class DiskCap:
    """The writable folders of one sandboxed program on one size-limited tmpfs."""

    def __init__(self, stage: Path, folders: list[Path], limit: int, max_files: int):
        self.stage, self.folders, self.limit, self.max_files = stage, folders, limit, max_files
        self.mounts: list[str] = [str(stage)]
        self.peak_bytes = self.peak_files = 0
        self.base_bytes, self.base_files = self._used()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.users, self.dropped = 0, False  # sandboxes writing into it (``claim``)

    @classmethod
    def create(cls, folders: list[Path], limit_bytes: int, max_files: int) -> DiskCap | None:
        """None when the mounts fail (then nothing is left mounted)."""
        sweep()
        stage = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}-"))
        margin = min(64 * MiB, max(limit_bytes // 4, MiB))
        inodes = max_files + 64 + 8 * len(folders)
        try:
            _mount("subkit-disk", str(stage), "tmpfs", MS_NOSUID | MS_NODEV,
                   f"size={limit_bytes + margin},nr_inodes={inodes},mode=0700")
        except OSError:
            stage.rmdir()
            return None
        cap = cls(stage, [Path(f) for f in folders], limit_bytes, max_files)
        try:
            for i, host in enumerate(cap.folders):
                lower, upper, work = (stage / f"{k}{i}" for k in "luw")
                for d in (lower, upper, work):
                    d.mkdir()
                st = os.stat(host)
                os.chown(upper, st.st_uid, st.st_gid)
                os.chmod(upper, stat.S_IMODE(st.st_mode))
                # the host folder bound first: its path may hold what overlay's options cannot
                _mount(str(host), str(lower), None, MS_BIND, None)
                cap.mounts.append(str(lower))
                # over the host folder itself: subkit reads the child's status and predictions
                # there while it runs, and the sandbox binds it as before
                _mount("overlay", str(host), "overlay", MS_NOSUID | MS_NODEV,
                       f"lowerdir={lower},upperdir={upper},workdir={work},redirect_dir=off,"
                       "metacopy=off,index=off,xino=off")
                cap.mounts.append(str(host))
        except OSError:
            cap.finish(apply=False)
            return None
        cap.base_bytes, cap.base_files = cap._used()
        return cap

    def _used(self) -> tuple[int, int]:
        try:
            v = os.statvfs(self.stage)
        except OSError:
            return 0, 0
        return (v.f_blocks - v.f_bfree) * v.f_frsize, v.f_files - v.f_ffree

    def written(self) -> tuple[int, int]:
        """(bytes, files) the child holds in its folders now, what it deleted not counted."""
        b, f = self._used()
        return max(0, b - self.base_bytes), max(0, f - self.base_files)

    def sample(self) -> None:
        b, f = self.written()
        self.peak_bytes, self.peak_files = max(self.peak_bytes, b), max(self.peak_files, f)

    def start(self) -> None:
        """Read the use every 5 ms (cheap: one statvfs), keeping the peak."""
        def loop() -> None:
            while not self._stop.wait(SAMPLE_S):
                self.sample()
        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def exceeded(self) -> str | None:
        """"disk" once the child held ``limit`` bytes, "files" once ``max_files`` files."""
        self.sample()
        if self.peak_bytes >= self.limit:
            return "disk"
        return "files" if self.peak_files >= self.max_files else None

    def finish(self, apply: bool) -> None:
        """The child is gone: apply what it wrote to the host folders (unless ``apply`` is
        false: a disk kill), unmount everything, remove the mount point."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
        try:
            for point in reversed(self.mounts[1:]):  # the overlays, the host folders' binds
                _umount(point)
            if apply:
                for i, host in enumerate(self.folders):
                    _apply(self.stage / f"u{i}", host)
        finally:
            _umount(str(self.stage))
            self.mounts = []
            shutil.rmtree(self.stage, ignore_errors=True)


    def release(self, apply: bool) -> None:
        """One sandbox is done with it; the last one finishes it (nothing applied if any of
        them passed the limit)."""
        with _LOCK:
            self.users -= 1
            self.dropped = self.dropped or not apply
            if self.users > 0:
                return
            for f in self.folders:
                _ACTIVE.pop(f, None)
        self.finish(apply=not self.dropped)


_ACTIVE: dict[Path, DiskCap] = {}  # host folder -> the cap over it, while a sandbox runs
_LOCK = threading.Lock()


class Claim:
    """The caps one sandbox writes into: its own, and the cap of another sandbox running at
    the same time over a folder they share (a bundle's two programs share /app/output: a
    second overlay would hide each one's writes from the other)."""

    def __init__(self, caps: list[DiskCap]):
        self.caps = caps

    def exceeded(self) -> str | None:
        for c in self.caps:
            if verdict := c.exceeded():
                return verdict
        return None

    @property
    def peak_bytes(self) -> int:
        return sum(c.peak_bytes for c in self.caps)

    def finish(self, apply: bool) -> None:
        for c in self.caps:
            c.release(apply)


def claim(folders: list[Path], limit_bytes: int, max_files: int) -> Claim | None:
    """The caps over ``folders``: the ones already there, a new one for the others; None
    when no new one could be mounted."""
    with _LOCK:
        caps: list[DiskCap] = []
        rest = []
        for f in folders:
            c = _ACTIVE.get(Path(f))
            if c is None:
                rest.append(Path(f))
            elif c not in caps:
                caps.append(c)
        if rest:
            new = DiskCap.create(rest, limit_bytes, max_files)
            if new is None:
                return None
            new.start()
            caps.append(new)
            for f in rest:
                _ACTIVE[f] = new
        for c in caps:
            c.users += 1
        return Claim(caps)


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        os.unlink(path)


def _apply(upper: Path, host: Path) -> None:
    """An overlay's upper layer onto its lower folder: plain files and folders only. What
    cannot be applied (paths past PATH_MAX, a name the host refuses) is dropped."""
    for dirpath, dirnames, filenames in os.walk(upper):
        rel = os.path.relpath(dirpath, upper)
        dest_dir = os.path.normpath(os.path.join(host, rel))
        for name in list(dirnames):
            src, dest = os.path.join(dirpath, name), os.path.join(dest_dir, name)
            try:
                if os.path.islink(src):  # listed with the folders: never followed, copied
                    dirnames.remove(name)
                    _remove(dest)
                elif _opaque(src) or not os.path.isdir(dest) or os.path.islink(dest):
                    _remove(dest)
                    os.mkdir(dest, 0o755)
                    shutil.copystat(src, dest, follow_symlinks=False)
            except OSError:
                dirnames.remove(name)
        for name in filenames:
            src, dest = os.path.join(dirpath, name), os.path.join(dest_dir, name)
            try:
                st = os.lstat(src)
                _remove(dest)  # replaced, deleted (a whiteout), or turned into a link: gone
                if stat.S_ISREG(st.st_mode):
                    _copy(src, dest, st)
            except OSError:
                continue


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _copy(src: str, dest: str, st: os.stat_result) -> None:
    fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fout = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                       stat.S_IMODE(st.st_mode) & 0o777)
        try:
            offset = 0
            while offset < st.st_size:
                n = os.sendfile(fout, fin, offset, min(st.st_size - offset, 1 << 30))
                if n == 0:
                    break
                offset += n
            os.utime(fout, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fout)
    finally:
        os.close(fin)
