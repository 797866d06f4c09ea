"""The one atomic writer: the user's umask, all or nothing."""

from __future__ import annotations

import os
import stat

import pytest

from subkit.fsutil import atomic_open, write_json_atomic


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_files_get_the_umask_permissions_not_mkstemps_0600(tmp_path, umask_022):
    p = write_json_atomic(tmp_path / "run.json", {"a": 1})
    assert _mode(p) == 0o644 and p.read_text() == '{\n  "a": 1\n}'
    with atomic_open(tmp_path / "x.bin", "wb") as fh:
        fh.write(b"\x00\x01")
    assert _mode(tmp_path / "x.bin") == 0o644 and (tmp_path / "x.bin").read_bytes() == b"\x00\x01"


def test_private_files_are_0600(tmp_path, umask_022):
    with atomic_open(tmp_path / "token.json", "w", private=True, fsync=True) as fh:
        fh.write("secret")
    assert _mode(tmp_path / "token.json") == 0o600


def test_an_error_leaves_the_old_file_and_no_temp_file(tmp_path):
    p = tmp_path / "keep.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_open(p, "w") as fh:
            fh.write("new, half")
            raise RuntimeError("disk full")
    assert p.read_text() == "old" and sorted(x.name for x in tmp_path.iterdir()) == ["keep.txt"]
