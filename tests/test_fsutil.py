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


GOOD = ("import numpy as np\nclass Model:\n    def predict(self, X):\n"
        "        return np.zeros(len(X), int)\n")


def test_what_commands_leave_in_the_workspace_keeps_the_umask(umask_022, cli, workspace,
                                                              tmp_path, test_npz):
    """init, a run (run.json, report.html, the child's outputs), the ledger, data files:
    the permissions a plain open() gives, never mkstemp's 0600."""
    from conftest import make_zip

    z = make_zip(tmp_path / "zeros.zip", {"model.py": GOOD})
    r = cli("init", tmp_path / "fresh")
    assert r.code == 0, r.text
    r = cli("score-local", z, "--data", test_npz)
    assert r.code == 0, r.text
    r = cli("data", "split", test_npz, "--out-train", "tr.npz", "--out-test", "te.npz")
    assert r.code == 0, r.text
    r = cli("bundle", "export", "--reference", test_npz, "--out", "bundle.zip")
    assert r.code == 0, r.text
    files = [*workspace.rglob("*"), *(tmp_path / "fresh").rglob("*")]
    modes = {p.name: _mode(p) for p in files if p.is_file()}
    assert {"run.json", "report.html", "ledger.jsonl", "tr.npz", "te.npz", "model.py",
            "bundle.zip"} <= set(modes)
    assert {name: oct(m) for name, m in modes.items() if m != 0o644} == {}
