"""Unzipping a submission (or a bundle) without trusting it.

Codabench's compute worker unpacks with ``zipfile.ZipFile(...).extractall`` (codalab/
codabench ``compute_worker/compute_worker.py``, ``Run._get_bundle``): a duplicate name
silently takes the last copy, an unsupported compression method or an encrypted member
crashes the run. Here every member is checked **before anything is written**, and each
problem ends in one clear error:

- more members than ``max_members``, or more declared bytes than ``max_bytes`` (a zip bomb
  of many members: 160 members of 49 MiB each is an 8 MB zip that writes 7.7 GB), or more
  than the free space of the destination; a member that expands past a ratio, or the
  whole archive (100 members of 40 MiB, each under the member's floor, 4.2 GB in all:
  under ``max_bytes`` but 1000 times the zip's size);
- absolute paths, ``..``, links, device files, names too long for a file system;
- the same name twice, a file and a folder of the same name;
- a compression method the grader's Python cannot read, an encrypted member.

While writing, the bytes actually written are counted against ``max_bytes`` too: a header
that lies about sizes is caught there.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from subkit.errors import CheckFailed, InputError

if TYPE_CHECKING:
    from subkit.profile import Profile

MiB = 1024**2
DEFAULT_MAX_MB = 4096  # without a known zip size limit: well past any real submission
DEFAULT_MAX_MEMBERS = 1000
MAX_RATIO = 200  # compressed -> uncompressed ratio of a single member ...
RATIO_FLOOR = 50 * MiB  # ... checked for members bigger than this
MAX_NAME_BYTES = 255  # one path component (ext4, APFS, NTFS)
MAX_PATH_BYTES = 1024  # a whole member name
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
            zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}


def require_zip(path: str | Path) -> Path:
    """The zip a command was given, or the one "zip not found" error every command raises."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"zip not found: {path}",
                         hint="give the path of a zip made by `subkit build` "
                              "(or any submission zip)")
    return path


def bounds(prof: Profile) -> tuple[int, int]:
    """(max uncompressed bytes, max members) of a submission zip, from the profile's
    ``[limits]``: ``unzipped_mb`` (0: four times the zip size limit, or 4096 MB when the
    competition's limit is unknown) and ``zip_members``."""
    lim = prof.limits
    mb = int(lim.get("unzipped_mb", 0) or 0)
    if not mb:
        mb = int(4 * prof.zip_size_limit_mb) or DEFAULT_MAX_MB
    return mb * MiB, int(lim.get("zip_members", DEFAULT_MAX_MEMBERS) or DEFAULT_MAX_MEMBERS)


def _open(zip_path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile:
        raise CheckFailed(f"{zip_path} is not a zip archive",
                          hint="build it with `subkit build`, "
                               "or `zip sub.zip model.py weights.keras`") from None
    except OSError as exc:
        raise CheckFailed(f"cannot read {zip_path}: {exc.strerror}",
                          hint="check the path") from None


def check_members(zf: zipfile.ZipFile, zip_path: Path, *, max_bytes: int,
                  max_members: int) -> list[zipfile.ZipInfo]:
    """Every check that needs no writing; returns the members to extract."""
    infos = zf.infolist()
    if len(infos) > max_members:
        raise CheckFailed(f"{zip_path} has {len(infos)} members, more than the {max_members} "
                          "allowed", hint="a submission holds model.py and its weights; leave "
                                          "data out ([limits] zip_members raises the bound)")
    total = 0
    files: set[str] = set()
    folders: set[str] = set()
    for info in infos:
        name = _check_name(info, zip_path)
        _check_kind(info, name, zip_path)
        key = name.rstrip("/")
        if info.is_dir():
            if key in files:
                raise CheckFailed(f"{zip_path} holds {key!r} both as a file and as a folder",
                                  hint="rename one of them; no file system can hold both")
            folders.add(key)
        else:
            if key in files:
                raise CheckFailed(f"{zip_path} holds {key!r} twice",
                                  hint="the grader's unzip keeps the last copy without a word; "
                                       "zip each file once (rebuild with `subkit build`)")
            if key in folders:
                raise CheckFailed(f"{zip_path} holds {key!r} both as a file and as a folder",
                                  hint="rename one of them; no file system can hold both")
            files.add(key)
        parents = PurePosixPath(key).parents
        clash = next((str(p) for p in parents if str(p) in files), None)
        if clash:
            raise CheckFailed(f"{zip_path} holds {clash!r} both as a file and as a folder "
                              f"(of {key!r})", hint="rename one of them; no file system can "
                                                    "hold both")
        folders.update(str(p) for p in parents if str(p) != ".")
        total += info.file_size
        if total > max_bytes:
            raise CheckFailed(f"{zip_path} expands past {max_bytes // MiB} MiB "
                              f"({len(infos)} members)",
                              hint="this looks like a zip bomb or holds data it should not "
                                   "([limits] unzipped_mb raises the bound)")
        if info.file_size > RATIO_FLOOR and info.compress_size \
                and info.file_size / info.compress_size > MAX_RATIO:
            raise CheckFailed(f"zip member {name!r} expands "
                              f"{info.file_size / info.compress_size:.0f}x",
                              hint="this looks like a zip bomb")
    _check_archive_ratio(zip_path, total, len(infos))
    return infos


def _check_archive_ratio(zip_path: Path, total: int, members: int) -> None:
    """The whole archive against its own size: many members, each under the member ratio's
    floor, can still make a bomb (100 members of 40 MiB of zeros: a 4 MB zip that writes
    4.2 GB). Weights do not compress like that (a stored .keras expands 1x, a deflated .h5
    of trained float32 weights about 1.1x), and below RATIO_FLOOR in all nothing is
    refused for its ratio."""
    try:
        size = max(1, os.stat(zip_path).st_size)
    except OSError:
        return  # not a file on disk: the per-member checks and max_bytes still hold
    if total > RATIO_FLOOR and total / size > MAX_RATIO:
        raise CheckFailed(f"{zip_path} expands {total / size:.0f}x: {total // MiB} MiB from a "
                          f"{size / MiB:.1f} MiB zip in {members} members",
                          hint="this looks like a zip bomb: weights and data do not compress "
                               f"more than {MAX_RATIO}x; zip the real files")


def _check_name(info: zipfile.ZipInfo, zip_path: Path) -> str:
    name = info.filename.replace("\\", "/")
    p = PurePosixPath(name)
    if p.is_absolute() or re.match(r"^[A-Za-z]:", name):
        raise CheckFailed(f"zip member {info.filename!r} has an absolute path",
                          hint="zip files relative to the submission folder")
    if ".." in p.parts:
        raise CheckFailed(f"zip member {info.filename!r} points outside the archive ('..')",
                          hint="zip files relative to the submission folder")
    if not p.parts or any(part in ("", ".") for part in name.rstrip("/").split("/")):
        raise CheckFailed(f"zip member {info.filename!r} has an empty or '.' path part",
                          hint="zip files relative to the submission folder, without './'")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES or \
            any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for part in p.parts):
        raise CheckFailed(f"zip member {name[:60]!r}... has a name too long for a file system "
                          f"(more than {MAX_NAME_BYTES} bytes a part or {MAX_PATH_BYTES} in all)",
                          hint="give the file a shorter name")
    return name


def _check_kind(info: zipfile.ZipInfo, name: str, zip_path: Path) -> None:
    # Unix file-type bits (only meaningful when a Unix tool wrote the entry)
    ftype = stat.S_IFMT((info.external_attr >> 16) & 0xFFFF) if info.create_system == 3 else 0
    if ftype == stat.S_IFLNK:
        raise CheckFailed(f"zip member {name!r} is a symbolic link",
                          hint="zip the real file (zip without -y)")
    if ftype and ftype not in (stat.S_IFREG, stat.S_IFDIR):
        raise CheckFailed(f"zip member {name!r} is not a regular file",
                          hint="a submission holds only files and folders")
    if info.flag_bits & 0x1:
        raise CheckFailed(f"zip member {name!r} is encrypted",
                          hint="the grader has no password: zip without -e/--encrypt")
    if info.compress_type not in _METHODS:
        raise CheckFailed(f"zip member {name!r} uses compression method {info.compress_type}, "
                          "which the grader's Python zipfile cannot read",
                          hint="zip with the default method (deflate) or store it: "
                               "`zip sub.zip model.py weights.keras`")


def safe_extract(zip_path: Path, dest: Path, *, max_bytes: int = DEFAULT_MAX_MB * MiB,
                 max_members: int = DEFAULT_MAX_MEMBERS) -> list[str]:
    """Extract ``zip_path`` into ``dest`` (which must not exist or be empty); returns the
    member names. Raises CheckFailed on anything a grader would not unpack the same way, or
    anything dangerous; nothing is written before every member passed the checks, and
    ``dest`` is removed again when the extraction itself fails."""
    with _open(zip_path) as zf:
        infos = check_members(zf, zip_path, max_bytes=max_bytes, max_members=max_members)
        need = sum(i.file_size for i in infos)
        existing = next(p for p in (dest, *dest.parents) if p.exists())
        free = shutil.disk_usage(existing).free
        if need > free:
            raise CheckFailed(f"{zip_path} expands to {need // MiB} MiB; {existing} has only "
                              f"{free // MiB} MiB free", hint="free some disk space")
        dest.mkdir(parents=True, exist_ok=True)
        try:
            _write(zf, infos, dest, zip_path, max_bytes)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    return [i.filename for i in infos]


def _write(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], dest: Path, zip_path: Path,
           max_bytes: int) -> None:
    root = dest.resolve()
    written = 0
    for info in infos:
        target = (dest / info.filename.replace("\\", "/")).resolve()
        if root != target and root not in target.parents:
            raise CheckFailed(f"zip member {info.filename!r} escapes the folder",
                              hint="zip files relative to the submission folder")
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with zf.open(info) as src, open(target, "xb") as out:
                while chunk := src.read(MiB):
                    written += len(chunk)
                    if written > max_bytes:  # the header lied about sizes
                        raise CheckFailed(f"{zip_path} expands past {max_bytes // MiB} MiB",
                                          hint="this looks like a zip bomb")
                    out.write(chunk)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
            if isinstance(exc, FileExistsError):
                raise CheckFailed(f"{zip_path} holds {info.filename!r} twice",
                                  hint="zip each file once") from None
            raise CheckFailed(f"{zip_path}: member {info.filename!r} cannot be read: {exc}",
                              hint="the zip is damaged; build it again") from None
