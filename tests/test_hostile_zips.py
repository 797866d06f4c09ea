"""Hostile zips: each refused with one clear error before anything is written, by
score-local (no run folder left behind) and by check (FAILED)."""

from __future__ import annotations

import json
import struct
import time
import zipfile
from pathlib import Path

import pytest

from subkit.errors import CheckFailed
from subkit.grader import safezip

from conftest import make_zip

GOOD = ("import numpy as np\nclass Model:\n    def predict(self, X):\n"
        "        return np.zeros(len(X), int)\n")


def _patch(path: Path, member: str, *, method: int | None = None, flags: int | None = None) -> Path:
    """Rewrite one member's compression method or flag bits in both of its headers."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        local = zf.getinfo(member).header_offset
    name = member.encode()
    central = next(i for i in range(len(data)) if data[i:i + 4] == b"PK\x01\x02"
                   and data[i + 46:i + 46 + len(name)] == name)
    for start, flag_at, method_at in ((local, 6, 8), (central, 8, 10)):
        if flags is not None:
            struct.pack_into("<H", data, start + flag_at, flags)
        if method is not None:
            struct.pack_into("<H", data, start + method_at, method)
    path.write_bytes(bytes(data))
    return path


def _bomb(path: Path, members: int, mb: int) -> Path:
    """members x mb MiB of zeros, deflated: a few KB a member."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(members):
            with zf.open(f"part{i:04d}.bin", "w") as fh:
                chunk = bytes(1 << 20)
                for _ in range(mb):
                    fh.write(chunk)
    return path


def _dup(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("model.py", GOOD)
        zf.writestr("model.py", "raise SystemExit('the last copy wins on the grader')\n")
    return path


CASES = {
    # name -> (make the zip, words of the error)
    "duplicate": (_dup, "holds 'model.py' twice"),
    "file_and_folder": (lambda p: make_zip(p, {"model.py": GOOD, "weights": "x",
                                                "weights/w.h5": "y"}),
                        "both as a file and as a folder"),
    "unsupported_method": (lambda p: _patch(make_zip(p, {"model.py": GOOD, "w.bin": "x"}),
                                            "w.bin", method=99), "compression method 99"),
    "encrypted": (lambda p: _patch(make_zip(p, {"model.py": GOOD, "w.bin": "x"}), "w.bin",
                                   flags=1), "is encrypted"),
    "long_name": (lambda p: make_zip(p, {"model.py": GOOD, "a" * 300 + ".h5": "x"}),
                  "name too long"),
    "dot_parts": (lambda p: make_zip(p, {"model.py": GOOD, "./x/../../evil.py": "x"}),
                  "points outside"),
    "too_many_members": (lambda p: make_zip(p, {"model.py": GOOD,
                                                **{f"f{i}.txt": "x" for i in range(1000)}}),
                         "1001 members, more than the 1000 allowed"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_zip_refused_by_score_local_and_check(case, cli, workspace, tmp_path, test_npz):
    make, words = CASES[case]
    z = make(tmp_path / f"{case}.zip")
    r = cli("score-local", z, "--data", test_npz)
    assert r.code == 1 and words in r.err and "hint:" in r.err, r.text
    assert r.err.count("error:") == 1
    runs = workspace / "submissions" / "runs"
    assert not runs.exists() or not list(runs.iterdir()), "a refused zip left a run folder"
    r = cli("check", z, "--json")
    rep = json.loads(r.out)
    assert r.code == 1 and rep["status"] == "FAILED"
    assert words in rep["checks"][0]["message"] and rep["checks"][0]["name"] == "zip"


def test_a_zip_bomb_of_many_members_is_refused_before_writing(cli, workspace, tmp_path, test_npz):
    """A zip bomb of many members, in small: each member passes the ratio check, together they
    exceed the bound ([limits] unzipped_mb; 4096 MB by default)."""
    toml = workspace / "subkit.toml"
    toml.write_text(toml.read_text() + "\n[limits]\nunzipped_mb = 64\n")
    z = _bomb(tmp_path / "bomb.zip", members=20, mb=4)
    assert z.stat().st_size < 200_000
    t0 = time.monotonic()
    r = cli("score-local", z, "--data", test_npz)
    assert time.monotonic() - t0 < 10
    assert r.code == 1 and "expands past 64 MiB (20 members)" in r.err and "unzipped_mb" in r.err
    assert not (workspace / "submissions" / "runs").exists() or \
        not list((workspace / "submissions" / "runs").iterdir())


def test_a_header_that_lies_about_sizes_is_caught_while_writing(tmp_path):
    z = tmp_path / "liar.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model.py", GOOD)
        zf.writestr("big.bin", bytes(8 << 20))
    data = bytearray(z.read_bytes())
    cd = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 4)  # big.bin's central entry
    struct.pack_into("<I", data, cd + 24, 1000)  # uncompressed size: "1000 bytes"
    z.write_bytes(bytes(data))
    dest = tmp_path / "out"
    with pytest.raises(CheckFailed) as exc:
        safezip.safe_extract(z, dest, max_bytes=4 << 20)
    assert "expands past 4 MiB" in exc.value.message or "cannot be read" in exc.value.message
    assert not dest.exists(), "a failed extraction left files behind"


def test_the_bounds_follow_the_profile():
    from subkit import profile

    prof = profile.load("an2dl-2024-blood-cells", workspace=False)
    assert safezip.bounds(prof) == (4096 * 2**20, 1000)  # the zip size limit is unknown
    prof.data["submission"]["zip_size_limit_mb"] = 300
    assert safezip.bounds(prof) == (1200 * 2**20, 1000)  # four times the zip limit
    prof.data["limits"]["unzipped_mb"] = 10
    prof.data["limits"]["zip_members"] = 5
    assert safezip.bounds(prof) == (10 * 2**20, 5)


def test_the_profiles_limits_are_the_sandboxs_defaults():
    from subkit import profile
    from subkit.grader.sandbox import Limits

    for name in profile.builtin_names():
        lim = profile.load(name, workspace=False).data["limits"]
        assert {k: lim[k] for k in Limits.__dataclass_fields__} == Limits().__dict__


def test_bad_limits_in_a_profile_are_refused(workspace, cli):
    toml = workspace / "subkit.toml"
    toml.write_text(toml.read_text() + "\n[limits]\nprocesses = 0\n")
    r = cli("profile", "show")
    assert r.code == 1 and "[limits] processes must be positive" in r.err
    toml.write_text(toml.read_text().replace("processes = 0", "forks = 3"))
    r = cli("profile", "show")
    assert r.code == 1 and "unknown key 'forks' in [limits]" in r.err


def _many_members(path: Path, members: int, mib: int) -> Path:
    """``members`` x ``mib`` MiB of zeros, deflated, written by hand: the member is
    compressed once and its bytes repeated under each name (zipfile would deflate 4 GB)."""
    import zlib

    raw = bytes(mib << 20)
    pack = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = pack.compress(raw) + pack.flush()
    crc, central, offset = zlib.crc32(raw), [], 0
    with open(path, "wb") as fh:
        for i in range(members):
            name = f"part{i:04d}.bin".encode()
            head = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data),
                               len(raw), len(name), 0)
            fh.write(head + name + data)
            central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0,
                                       0x21, crc, len(data), len(raw), len(name), 0, 0, 0, 0,
                                       0, offset) + name)
            offset += len(head) + len(name) + len(data)
        cd = b"".join(central)
        fh.write(cd + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, members, members, len(cd),
                                  offset, 0))
    return path


def test_a_bomb_of_many_members_under_the_bound_is_refused_for_its_ratio(cli, workspace,
                                                                         tmp_path, test_npz):
    """100 members of 40 MiB of zeros (issue 20): each under the member ratio's floor, 4000
    MiB in all under the 4096 MB bound, but 1000 times the zip's size: refused before
    anything is written, by score-local and by check."""
    z = _many_members(tmp_path / "bomb.zip", members=100, mib=40)
    with zipfile.ZipFile(z) as zf:  # a zip any reader takes
        infos = zf.infolist()
        assert len(infos) == 100 and sum(i.file_size for i in infos) == 4000 << 20
        assert max(i.file_size for i in infos) < safezip.RATIO_FLOOR
    assert z.stat().st_size < 5_000_000
    t0 = time.monotonic()
    with pytest.raises(CheckFailed) as exc:
        safezip.safe_extract(z, tmp_path / "out")
    assert time.monotonic() - t0 < 2
    assert "expands 1026x: 4000 MiB from a 3.9 MiB zip in 100 members" in exc.value.message
    assert "zip bomb" in exc.value.hint and not (tmp_path / "out").exists()
    r = cli("score-local", z, "--data", test_npz)
    assert r.code == 1 and "expands 1026x" in r.err and "hint: this looks like a zip bomb" \
        in r.err, r.text
    runs = workspace / "submissions" / "runs"
    assert not runs.exists() or not list(runs.iterdir())
    rep = json.loads(cli("check", z, "--json").out)
    assert rep["status"] == "FAILED" and "expands 1026x" in rep["checks"][0]["message"]


@pytest.mark.slow
def test_ordinary_submissions_pass_the_archive_ratio(tmp_path):
    """Weights compress little: a stored .keras (Keras stores its members) and a deflated
    .h5 of float32 weights, both past the ratio's floor, unzip; so does a small zip that
    expands a lot (under the floor nothing is refused for its ratio)."""
    import numpy as np

    rng = np.random.default_rng(0)
    weights = rng.normal(0, 0.05, (52 << 20) // 4).astype(np.float32).tobytes()
    inner = tmp_path / "weights.keras"
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("metadata.json", '{"keras_version": "3.4.1"}')
        zf.writestr("config.json", "{}")
        zf.writestr("model.weights.h5", weights)
    stored = make_zip(tmp_path / "stored.zip", {"model.py": GOOD, "weights.keras": inner})
    deflated = tmp_path / "deflated.zip"
    with zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("model.py", GOOD)
        zf.writestr("weights.h5", weights[: 36 << 20] + bytes(16 << 20))  # zeros too
    small = tmp_path / "small.zip"
    with zipfile.ZipFile(small, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model.py", GOOD)
        zf.writestr("zeros.npy", bytes(8 << 20))  # 1000x, but 8 MiB in all
    for z in (stored, deflated, small):
        names = safezip.safe_extract(z, tmp_path / z.stem)
        assert "model.py" in names and (tmp_path / z.stem / "model.py").is_file()
    with zipfile.ZipFile(deflated) as zf:
        total = sum(i.file_size for i in zf.infolist())
    assert total > safezip.RATIO_FLOOR and 1 < total / deflated.stat().st_size < 3
