"""`subkit data inspect | dedupe | split | weights` and the hashing behind them."""

from __future__ import annotations

import base64
import io as _io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from subkit.data import duplicates as D
from subkit.data import split as S
from subkit.data import subsets
from subkit.data import weights as W

from data_helpers import digest, listing, make_set, save

NAMES = ["Basophil", "Eosinophil", "Erythroblast", "Immature granulocytes",
         "Lymphocyte", "Monocyte", "Neutrophil", "Platelet"]


@pytest.fixture(autouse=True)
def _no_workspace(in_tmp, monkeypatch):
    """Every test runs in an empty folder, outside any workspace, with no browser."""
    import webbrowser

    def _refuse(*a, **k):
        raise AssertionError("a browser must never open in tests")

    monkeypatch.setattr(webbrowser, "open", _refuse)


@pytest.fixture(scope="module")
def traps():
    """240 clean images, 40 joke copies (3 images, conflicting labels), 12 brightness-shifted
    near copies and 6 byte-identical copies with the same label."""
    return make_set(240, duplicates=40, n_near=12, consistent_copies=6, seed=11)


@pytest.fixture(scope="module")
def traps_file(traps, tmp_path_factory):
    return save(tmp_path_factory.mktemp("data") / "train.npz", images=traps["images"],
                labels=traps["labels"], is_duplicate=traps["is_duplicate"])


@pytest.fixture(scope="module")
def jokes_file(traps, tmp_path_factory):
    """Only the reference's trap: clean images plus joke copies, labels (n, 1) uint8."""
    keep = (traps["near_of"] < 0) & (traps["copy_of"] < 0)
    return save(tmp_path_factory.mktemp("data") / "jokes.npz", images=traps["images"][keep],
                labels=traps["labels"][keep], is_duplicate=traps["is_duplicate"][keep])


def assert_error(code: int, err: str, *needles: str) -> None:
    assert code != 0
    lines = err.strip().splitlines()
    assert any(ln.startswith("error: ") for ln in lines), err
    assert any(ln.startswith("hint: ") for ln in lines), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


# -- hashing ------------------------------------------------------------------------------------
def test_exact_groups_are_exactly_the_injected_copies(traps):
    keep = (traps["near_of"] < 0) & (traps["copy_of"] < 0)
    images, is_dup = traps["images"][keep], traps["is_duplicate"][keep]
    groups = D.exact_groups(images)
    assert len(groups) == 3  # three joke images
    assert sorted(np.concatenate(groups).tolist()) == np.flatnonzero(is_dup).tolist()
    for g in groups:
        assert (images[g] == images[g[0]]).all()
        assert list(g) == sorted(g)
    assert [int(g[0]) for g in groups] == sorted(int(g[0]) for g in groups)


def test_exact_groups_never_merge_different_images_even_on_hash_collision():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    images = np.stack([a, b, a, b, a])
    fake = np.zeros((5, 2), np.uint64)  # every image "collides"
    groups = D.exact_groups(images, hashes=fake)
    assert sorted(g.tolist() for g in groups) == [[0, 2, 4], [1, 3]]
    # odd row sizes are padded to whole 64-bit words
    odd = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    odd[2] = odd[0]
    assert [g.tolist() for g in D.exact_groups(odd)] == [[0, 2]]


def test_phash_is_robust_to_brightness_and_separates_distinct_images(traps):
    clean = traps["images"][~traps["is_duplicate"]][:200]
    h, f = D.perceptual(clean)
    for delta in (-12, 8, 15):
        shifted = np.clip(clean.astype(np.int16) + delta, 0, 255).astype(np.uint8)
        hs, fs = D.perceptual(shifted)
        dist = D.hamming(h, hs)
        assert np.percentile(dist, 99) <= 3, delta
        assert dist.max() <= D.DEFAULT_NEAR + 1, (delta, dist.max())
        sim = np.einsum("ij,ij->i", f, fs)
        assert sim.min() >= D.DEFAULT_SIMILARITY
    # contrast scaling leaves the hash (median threshold) nearly unchanged
    assert D.hamming(h, D.phash((clean * 0.8).astype(np.uint8))).max() <= 2


def test_phash_matches_imagehash_bit_order():
    import imagehash
    from PIL import Image

    from subkit.data import synthetic

    imgs = synthetic.generate(40, seed=3, duplicates=0)["images"]
    ours = D.phash(imgs)
    theirs = np.array([int(str(imagehash.phash(Image.fromarray(x))), 16) for x in imgs], np.uint64)
    # same construction (32x32 luminance, DCT, 8x8 block, median): a few bits differ from
    # the resize filter only; a different bit order would give ~32
    assert D.hamming(ours, theirs).mean() < 2.5


def test_phash_any_shape_and_dtype_and_flat_images_are_deterministic():
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (6, 64, 128), dtype=np.uint8)
    assert D.phash(gray).shape == (6,)
    assert np.array_equal(D.phash(gray), D.phash(gray[..., None]))
    as_float = gray.astype(np.float32) / 255.0
    assert D.hamming(D.phash(gray), D.phash(as_float)).max() == 0
    flat = np.stack([np.full((96, 96, 3), v, np.uint8) for v in (40, 120, 200)])
    hf = D.phash(flat)
    assert hf.tolist() == [1 << 63] * 3  # only the DC bit: float noise never sets AC bits
    groups = D.near_groups(hf, 0, features=D.perceptual(flat)[1], min_similarity=0.98)
    assert [g.tolist() for g in groups] == [[0, 1, 2]]


def test_popcount_and_hamming():
    x = np.array([0, 1, 3, 2**64 - 1, 0x8000000000000000], np.uint64)
    assert D.popcount64(x).tolist() == [0, 1, 2, 64, 1]
    assert D.hamming(np.uint64(0b1011), np.uint64(0b0110)).item() == 3


def _brute_groups(h: np.ndarray, d: int) -> list[list[int]]:
    n = len(h)
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    dist = D.hamming(h[:, None], h[None, :])
    for i in range(n):
        for j in np.flatnonzero(dist[i, i + 1:] <= d) + i + 1:
            ri, rj = find(i), find(int(j))
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    comp: dict[int, list[int]] = {}
    for i in range(n):
        comp.setdefault(find(i), []).append(i)
    return sorted(v for v in comp.values() if len(v) > 1)


@pytest.mark.parametrize("d", [0, 1, 3, 4, 6])
def test_banded_grouping_equals_brute_force(d):
    rng = np.random.default_rng(d)
    base = rng.integers(0, 2**63, 300, dtype=np.uint64) * np.uint64(2)
    # plant neighbours at distances 0..8 (chains included)
    flips = rng.integers(0, 9, 300)
    near = base.copy()
    for i, k in enumerate(flips):
        for bit in rng.choice(64, k, replace=False):
            near[i] ^= np.uint64(1) << np.uint64(int(bit))
    h = np.concatenate([base, near, near[:50]])
    got = sorted(g.tolist() for g in D.near_groups(h, d))
    assert got == _brute_groups(h, d)


def test_candidate_pairs_are_far_fewer_than_all_pairs():
    rng = np.random.default_rng(5)
    h = rng.integers(0, 2**63, 20000, dtype=np.uint64)
    n_pairs = sum(len(a) for a, _ in D.candidate_pairs(h, 4))
    assert n_pairs < 0.001 * 20000 * 19999 / 2


def test_removal_plan_policies():
    groups = [np.array([0, 3, 5]), np.array([1, 4])]  # group 0 agrees, group 1 conflicts
    labels = np.array([2, 1, 7, 2, 6, 2, 0])
    idx, rec = D.removal_plan(groups, labels, "keep-one")
    assert idx.tolist() == [1, 3, 4, 5]
    assert {r["index"]: r["group"] for r in rec} == {1: 1, 3: 0, 4: 1, 5: 0}
    assert "which is kept" in rec[1]["reason"] and "conflicting" in rec[0]["reason"]
    assert D.removal_plan(groups, labels, "conflicting")[0].tolist() == [1, 4]
    assert D.removal_plan(groups, labels, "all-copies")[0].tolist() == [0, 1, 3, 4, 5]


# -- weights --------------------------------------------------------------------------------------
def test_balanced_weights_and_focal_alpha():
    labels = np.repeat([0, 1, 2], [10, 30, 60])
    rep = W.class_weights(labels, ["a", "b", "c", "d"])
    # n / (k * count), k = 4 classes of the profile
    assert rep["class_weight"] == {0: 2.5, 1: round(100 / 120, 6), 2: round(100 / 240, 6), 3: 0.0}
    assert abs(sum(rep["alpha"]) - 1) < 1e-5
    assert rep["alpha"][0] == pytest.approx(2.5 / (2.5 + 100 / 120 + 100 / 240), abs=1e-6)
    assert rep["missing"] == ["d"] and rep["imbalance_ratio"] == 6.0
    text = W.to_python(rep)
    ns: dict = {}
    exec(text, ns)  # paste-ready Python
    assert ns["class_weight"][0] == 2.5 and len(ns["alpha"]) == 4


def test_weights_cli(cli, jokes_file, traps):
    code, out, _ = cli("data", "weights", jokes_file)
    assert code == 0
    ns: dict = {}
    exec(out, ns)
    keep = (traps["near_of"] < 0) & (traps["copy_of"] < 0)
    counts = np.bincount(traps["labels"][keep][:, 0], minlength=8)
    assert ns["class_weight"][0] == pytest.approx(keep.sum() / (8 * counts[0]), abs=1e-4)
    assert "Basophil" in out and "CategoricalFocalCrossentropy" in out
    code, out, _ = cli("data", "weights", jokes_file, "--json")
    rep = json.loads(out)
    assert [c["count"] for c in rep["classes"]] == counts.tolist()
    assert rep["class_weight"]["0"] == round(keep.sum() / (8 * counts[0]), 6)


# -- inspect -------------------------------------------------------------------------------------
def test_inspect_json_reports_duplicates_conflicts_outliers(cli, traps_file, traps):
    code, out, err = cli("data", "inspect", traps_file, "--json")
    assert code == 0, err
    rep = json.loads(out)
    n = len(traps["images"])
    assert rep["n_images"] == n
    assert rep["images"] == {"shape": [n, 96, 96, 3], "dtype": "uint8", "min": 0, "max": 255,
                             "mean": rep["images"]["mean"]}
    assert rep["labels"] == {"stored_shape": [n, 1], "dtype": "uint8"}
    counts = np.bincount(traps["labels"][:, 0], minlength=8)
    assert [c["count"] for c in rep["classes"]] == counts.tolist()
    assert [c["name"] for c in rep["classes"]] == NAMES
    assert rep["imbalance_ratio"] == round(counts.max() / counts.min(), 4)
    ex = rep["exact_duplicates"]
    # 3 joke groups (conflicting) + 6 pairs of same-label copies
    assert ex["n_groups"] == 9 and ex["n_images"] == 40 + 12
    assert ex["n_conflicting_groups"] == 3 and ex["n_images_in_conflicting_groups"] == 40
    jokes = sorted(np.flatnonzero(traps["is_duplicate"]).tolist())
    conflicting = [g for g in ex["groups"] if g["conflicting"]]
    assert sorted(m for g in conflicting for m in g["members"]) == jokes
    for g in conflicting:
        assert sum(g["labels"].values()) == g["size"] and len(g["labels"]) > 1
    nd = rep["near_duplicates"]
    near_pairs = {(int(traps["near_of"][i]), int(i)) for i in np.flatnonzero(traps["near_of"] >= 0)}
    beyond = {tuple(nd["groups"][i]["members"]) for i in nd["beyond_exact"]}
    assert beyond == near_pairs  # exactly the brightness-shifted copies, nothing else
    ol = rep["outliers"]
    flagged = {e["index"] for e in ol["images"]}
    assert set(jokes) <= flagged  # cartoons are colour outliers
    assert ol["n_in_exact_groups"] == 40
    assert rep["class_weights"]["class_weight"]["0"] == round(n / (8 * counts[0]), 6)


def test_inspect_text_and_determinism(cli, traps_file):
    code, out, _ = cli("data", "inspect", traps_file)
    assert code == 0
    assert "exact duplicates (same bytes): 9 groups, 52 images" in out
    assert "3 groups with conflicting labels (40 images)" in out
    assert "CONFLICTING" in out and "Immature granulocytes" in out
    assert "near duplicates (pHash distance <= 4" in out
    assert "12 groups not just exact copies" in out  # the 12 brightness-shifted pairs
    code, out2, _ = cli("data", "inspect", traps_file)
    assert out == out2
    j1 = cli("data", "inspect", traps_file, "--json")[1]
    assert j1 == cli("data", "inspect", traps_file, "--json")[1]


def test_inspect_html_is_self_contained_with_exact_thumbnails(cli, traps_file, traps, tmp_path):
    from PIL import Image

    page = tmp_path / "report.html"
    code, out, err = cli("data", "inspect", traps_file, "--html", page)
    assert code == 0, err
    assert f"wrote {page}" in out
    text = page.read_text("utf-8")
    assert "<style>" in text and "<script" not in text and "http" not in text.lower().replace(
        "http-equiv", "")
    uris = re.findall(r'<img alt="#(\d+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(uris) >= 9 + 6  # one per exact group, two per near pair, outliers
    for idx, b64 in uris[:20]:
        img = np.asarray(Image.open(_io.BytesIO(base64.b64decode(b64))).convert("RGB"))
        assert np.array_equal(img, traps["images"][int(idx)])
    assert text.count("conflicting labels</span>") == 3


def test_inspect_html_refuses_a_non_html_name(cli, traps_file, tmp_path):
    before = listing(tmp_path)
    code, _, err = cli("data", "inspect", traps_file, "--html", tmp_path / "data.npz")
    assert_error(code, err, ".html")
    assert listing(tmp_path) == before


def test_inspect_unlabelled_and_rescaled_set(cli, tmp_path, traps):
    f = save(tmp_path / "unl.npz", images=traps["images"][:60].astype(np.float32) / 255)
    code, out, err = cli("data", "inspect", f, "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["labels"] is None and "classes" not in rep
    assert any("rescaled to [0, 1]" in w for w in rep["warnings"])
    assert any("float32" in w for w in rep["warnings"])


# -- dedupe --------------------------------------------------------------------------------------
def test_dedupe_all_copies_removes_exactly_the_injected_copies(cli, jokes_file, tmp_path):
    src = np.load(jokes_file)
    before = digest(jokes_file)
    out = tmp_path / "clean.npz"
    code, stdout, err = cli("data", "dedupe", jokes_file, "--out", out,
                            "--drop", "all-copies")
    assert code == 0, err
    n = len(src["images"])
    assert f"{n:,} -> {n - 40:,} images: removed 40 (all-copies)" in stdout
    assert digest(jokes_file) == before  # the input is never changed
    clean = np.load(out)
    assert set(clean.files) == {"images", "labels", "is_duplicate"}
    keep = ~src["is_duplicate"]
    assert np.array_equal(clean["images"], src["images"][keep])
    assert clean["labels"].shape == (n - 40, 1) and clean["labels"].dtype == src["labels"].dtype
    assert np.array_equal(clean["labels"], src["labels"][keep])
    assert not clean["is_duplicate"].any()
    rec = json.loads((tmp_path / "clean.npz.removed.json").read_text())
    assert [r["index"] for r in rec["removed"]] == np.flatnonzero(src["is_duplicate"]).tolist()
    assert all("conflicting labels" in r["reason"] for r in rec["removed"])
    assert {r["group"] for r in rec["removed"]} == {0, 1, 2}
    assert rec["n_input"] == n and rec["n_output"] == n - 40 and rec["drop"] == "all-copies"
    assert [r["label"] for r in rec["removed"]] == src["labels"][src["is_duplicate"]][:, 0].tolist()


def test_dedupe_policies_on_consistent_and_conflicting_groups(cli, traps_file, traps, tmp_path):
    n = len(traps["images"])
    copies = np.flatnonzero(traps["copy_of"] >= 0)
    jokes = np.flatnonzero(traps["is_duplicate"])
    expect = {
        # keep-one: the later copy of each agreeing pair, and every joke copy
        "keep-one": sorted(copies.tolist() + jokes.tolist()),
        "conflicting": sorted(jokes.tolist()),
        "all-copies": sorted(jokes.tolist() + copies.tolist() + traps["copy_of"][copies].tolist()),
    }
    for drop, removed in expect.items():
        out = tmp_path / f"{drop}.npz"
        code, stdout, err = cli("data", "dedupe", traps_file, "--out", out, "--drop", drop,
                                "--json")
        assert code == 0, err
        summary = json.loads(stdout)
        assert summary["n_removed"] == len(removed) and summary["n_output"] == n - len(removed)
        rec = json.loads(Path(summary["record"]).read_text())
        assert [r["index"] for r in rec["removed"]] == removed, drop
        assert len(np.load(out)["images"]) == n - len(removed)


def test_dedupe_near_catches_brightness_shifted_copies(cli, traps_file, traps, tmp_path):
    out = tmp_path / "near.npz"
    code, stdout, err = cli("data", "dedupe", traps_file, "--out", out, "--near", "4",
                            "--drop", "conflicting", "--json")
    assert code == 0, err
    assert json.loads(stdout)["n_removed"] == 40  # near pairs agree on labels: kept
    out2 = tmp_path / "near2.npz"
    code, stdout, err = cli("data", "dedupe", traps_file, "--out", out2, "--near", "4",
                            "--drop", "keep-one", "--json")
    rec = json.loads(Path(json.loads(stdout)["record"]).read_text())
    removed = {r["index"] for r in rec["removed"]}
    near_copies = set(np.flatnonzero(traps["near_of"] >= 0).tolist())
    assert near_copies <= removed  # the shifted copy goes, its original stays
    assert not set(traps["near_of"][list(near_copies)].tolist()) & removed


def test_dedupe_refuses_to_overwrite_without_force(cli, jokes_file, tmp_path):
    out = tmp_path / "clean.npz"
    out.write_bytes(b"precious")
    code, _, err = cli("data", "dedupe", jokes_file, "--out", out)
    assert_error(code, err, "refusing to overwrite", "--force")
    assert out.read_bytes() == b"precious"
    assert not (tmp_path / "clean.npz.removed.json").exists()
    code, _, err = cli("data", "dedupe", jokes_file, "--out", out, "--force")
    assert code == 0, err
    assert len(np.load(out)["images"]) > 0
    # never onto the input, even with --force
    before = digest(jokes_file)
    code, _, err = cli("data", "dedupe", jokes_file, "--out", jokes_file, "--force")
    assert_error(code, err, "input")
    assert digest(jokes_file) == before


def test_dedupe_leaves_nothing_when_a_write_fails(cli, jokes_file, tmp_path, monkeypatch):
    before = listing(tmp_path)

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(subsets.json, "dumps", boom)  # the record fails after the npz is written
    code, _, err = cli("data", "dedupe", jokes_file, "--out", tmp_path / "c.npz")
    assert code != 0 and "No space left" in err
    assert listing(tmp_path) == before  # no npz, no record, no temp file


# -- split ---------------------------------------------------------------------------------------
def _groups_of(images: np.ndarray) -> list[np.ndarray]:
    return D.find(images, near=D.DEFAULT_NEAR).near


def test_split_is_stratified_group_aware_and_deterministic(cli, traps_file, traps, tmp_path):
    args = ["data", "split", traps_file, "--test-size", "0.2", "--seed", "7", "--json"]
    code, out, err = cli(*args, "--out-train", tmp_path / "a_tr.npz",
                         "--out-test", tmp_path / "a_te.npz")
    assert code == 0, err
    rep = json.loads(out)
    tr, te = np.load(tmp_path / "a_tr.npz"), np.load(tmp_path / "a_te.npz")
    n = len(traps["images"])
    assert len(tr["images"]) + len(te["images"]) == n
    assert tr["labels"].shape[1:] == (1,) and te["labels"].dtype == traps["labels"].dtype
    # every image exactly once
    both = np.concatenate([tr["images"], te["images"]])
    hashes_in = sorted(D.exact_hashes(traps["images"])[:, 0].tolist())
    assert sorted(D.exact_hashes(both)[:, 0].tolist()) == hashes_in
    # stratified: each class within one image of its quota, up to the duplicate groups
    counts = np.bincount(traps["labels"][:, 0], minlength=8)
    te_counts = np.bincount(te["labels"][:, 0], minlength=8)
    assert [c["test"] for c in rep["classes"]] == te_counts.tolist()
    assert np.all(np.abs(te_counts - np.floor(counts * 0.2 + 0.5)) <= 1), (te_counts, counts)
    assert np.all(te_counts >= 1) and np.all(counts - te_counts >= 1)
    # group-aware: no duplicate group of the whole set straddles the sides
    side = np.r_[np.zeros(len(tr["images"]), bool), np.ones(len(te["images"]), bool)]
    groups = _groups_of(both)
    assert len(groups) == 3 + 6 + 12  # 3 joke groups, 6 exact pairs, 12 near pairs
    for g in groups:
        assert side[g].all() or not side[g].any()
    assert rep["groups_kept_together"] == 21 and rep["groups_across_sides"] == 0
    # same seed: byte-identical outputs; another seed: another split
    code, _, _ = cli(*args, "--out-train", tmp_path / "b_tr.npz",
                     "--out-test", tmp_path / "b_te.npz")
    assert np.array_equal(np.load(tmp_path / "b_te.npz")["images"], te["images"])
    assert np.array_equal(np.load(tmp_path / "b_tr.npz")["labels"], tr["labels"])
    code, _, _ = cli("data", "split", traps_file, "--test-size", "0.2", "--seed", "8",
                     "--out-train", tmp_path / "c_tr.npz", "--out-test", tmp_path / "c_te.npz")
    assert not np.array_equal(np.load(tmp_path / "c_te.npz")["labels"], te["labels"]) or \
        not np.array_equal(np.load(tmp_path / "c_te.npz")["images"], te["images"])


def test_split_indices_unit_quota_and_groups():
    labels = np.repeat(np.arange(3), [20, 40, 60])
    groups = [np.array([0, 1, 2, 3, 20, 21]), np.array([50, 51])]
    for seed in range(5):
        train, test = S.split_indices(labels, groups, 3, 0.25, seed)
        assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 120
        assert np.bincount(labels[test], minlength=3).tolist() == [5, 10, 15]
        for g in groups:
            assert np.isin(g, test).all() or not np.isin(g, test).any()
    a = S.split_indices(labels, groups, 3, 0.25, 1)
    b = S.split_indices(labels, groups, 3, 0.25, 1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_split_refuses_a_class_whose_images_are_all_one_group():
    labels = np.repeat(np.arange(3), [20, 20, 4])
    groups = [np.array([40, 41, 42, 43])]  # all of class 2: one side only
    with pytest.raises(S.InputError) as exc:
        S.split_indices(labels, groups, 3, 0.25, 0, ["a", "b", "c"])
    assert "class 'c'" in exc.value.message and "cannot be split" in exc.value.message
    assert "--near" in exc.value.hint and "dedupe" in exc.value.hint


def test_split_text_output(cli, jokes_file, tmp_path):
    code, out, err = cli("data", "split", jokes_file, "--out-train", tmp_path / "tr.npz",
                         "--out-test", tmp_path / "te.npz")
    assert code == 0, err
    assert "test size 0.15, seed 0" in out and "Platelet" in out
    assert "duplicate groups kept together: 3 (40 images;" in out
    assert f"wrote {tmp_path / 'tr.npz'} and {tmp_path / 'te.npz'}" in out


WORKSPACE_TOML = """# my workspace
profile = "an2dl-2024-blood-cells"

[workspace]
submissions = "submissions"  # zips go here
# local_test = "data/local_test.npz"

[grader]
keras = "3.5.0"
"""


def test_split_set_default_edits_the_workspace_table(cli, jokes_file, tmp_path):
    from subkit import profile

    (tmp_path / "subkit.toml").write_text(WORKSPACE_TOML)
    (tmp_path / "data").mkdir()
    code, out, err = cli("data", "split", jokes_file, "--out-train", "data/tr.npz",
                         "--out-test", "data/te.npz", "--set-default")
    assert code == 0, err
    assert "set local_test in" in out
    text = (tmp_path / "subkit.toml").read_text()
    assert "# my workspace" in text and "# zips go here" in text  # comments survive
    assert 'local_test = "data/te.npz"' in text
    prof = profile.load()
    assert prof.workspace_path("local_test") == (tmp_path / "data" / "te.npz").resolve()
    assert prof.grader["keras"] == "3.5.0"
    # again: the key is replaced, not repeated
    code, _, err = cli("data", "split", jokes_file, "--out-train", "data/tr2.npz",
                       "--out-test", "data/te2.npz", "--set-default")
    assert code == 0, err
    text = (tmp_path / "subkit.toml").read_text()
    assert re.findall(r"^local_test = .*$", text, re.M) == ['local_test = "data/te2.npz"']


def test_split_set_default_creates_the_table(cli, jokes_file, tmp_path):
    from subkit.profile import tomllib

    (tmp_path / "subkit.toml").write_text('profile = "an2dl-2024-blood-cells"\n')
    code, _, err = cli("data", "split", jokes_file, "--out-train", "tr.npz",
                       "--out-test", "te.npz", "--set-default")
    assert code == 0, err
    data = tomllib.loads((tmp_path / "subkit.toml").read_text())
    assert data == {"profile": "an2dl-2024-blood-cells", "workspace": {"local_test": "te.npz"}}


def test_split_set_default_without_workspace_writes_nothing(cli, jokes_file, tmp_path):
    before = listing(tmp_path)
    code, _, err = cli("data", "split", jokes_file, "--out-train", "tr.npz",
                       "--out-test", "te.npz", "--set-default")
    assert_error(code, err, "subkit init")
    assert listing(tmp_path) == before


def test_split_refuses_same_output_twice_and_existing_files(cli, jokes_file, tmp_path):
    code, _, err = cli("data", "split", jokes_file, "--out-train", "x.npz",
                       "--out-test", "x.npz")
    assert_error(code, err, "same file")
    (tmp_path / "te.npz").write_bytes(b"keep")
    code, _, err = cli("data", "split", jokes_file, "--out-train", "tr.npz",
                       "--out-test", "te.npz")
    assert_error(code, err, "refusing to overwrite")
    assert (tmp_path / "te.npz").read_bytes() == b"keep" and not (tmp_path / "tr.npz").exists()


# -- bad input: one clear error with a hint, nothing written --------------------------------------
def _bad_files(folder: Path, good: dict) -> dict[str, tuple[Path, str]]:
    imgs, labs = good["images"][:40], good["labels"][:40]
    (folder / "text.npz").write_text("not a zip")
    out = {"not an npz": (folder / "text.npz", "not an .npz")}
    out["missing images key"] = (save(folder / "nokey.npz", pictures=imgs, labels=labs),
                                 "no 'images' array")
    out["different lengths"] = (save(folder / "len.npz", images=imgs, labels=labs[:39]),
                                "40 images but 39 labels")
    bad = labs.copy()
    bad[3] = 8
    out["label outside classes"] = (save(folder / "range.npz", images=imgs, labels=bad),
                                    "outside the profile's classes")
    out["wrong image shape"] = (save(folder / "shape.npz", images=imgs[:, :32, :32], labels=labs),
                                "(32, 32, 3)")
    out["empty set"] = (save(folder / "empty.npz", images=imgs[:0], labels=labs[:0]), "empty")
    return out


@pytest.mark.parametrize("command", ["inspect", "dedupe", "split", "weights"])
def test_bad_inputs_give_one_error_with_a_hint_and_write_nothing(cli, tmp_path, traps, command):
    src = tmp_path / "in"
    src.mkdir()
    bad = _bad_files(src, traps)
    if command != "inspect":  # inspect accepts unlabelled sets
        bad["missing labels key"] = (save(src / "nolab.npz", images=traps["images"][:10]),
                                     "no 'labels' array")
    outdir = tmp_path / "out"
    outdir.mkdir()
    extra = {"inspect": ["--html", outdir / "r.html"], "dedupe": ["--out", outdir / "o.npz"],
             "split": ["--out-train", outdir / "a.npz", "--out-test", outdir / "b.npz"],
             "weights": []}[command]
    for case, (path, needle) in bad.items():
        code, out, err = cli("data", command, path, *extra)
        assert_error(code, err, needle)
        assert listing(outdir) == set(), case


def test_test_size_that_empties_a_class_is_refused(cli, tmp_path, traps):
    imgs = traps["images"][:60]
    labs = np.zeros((60, 1), np.uint8)
    labs[:30, 0] = 1
    labs[30:32, 0] = 4  # two Lymphocytes: 15% of 2 rounds to 0 test images
    f = save(tmp_path / "few.npz", images=imgs, labels=labs)
    code, _, err = cli("data", "split", f, "--test-size", "0.15",
                       "--out-train", "tr.npz", "--out-test", "te.npz")
    assert_error(code, err, "Lymphocyte", "no image on the test side")
    assert not (tmp_path / "tr.npz").exists() and not (tmp_path / "te.npz").exists()
    code, _, err = cli("data", "split", f, "--test-size", "1.5",
                       "--out-train", "tr.npz", "--out-test", "te.npz")
    assert code == 2 and "--test-size" in err and "hint:" in err


def test_dedupe_that_would_leave_nothing_is_refused(cli, tmp_path, traps):
    joke = traps["images"][np.flatnonzero(traps["is_duplicate"])[:1]]
    f = save(tmp_path / "jokes_only.npz", images=np.repeat(joke, 4, axis=0),
             labels=np.array([[0], [1], [0], [2]], np.uint8))
    for drop, needle in (("all-copies", "keep-one"), ("keep-one", "labels disagree")):
        code, _, err = cli("data", "dedupe", f, "--out", tmp_path / "o.npz", "--drop", drop)
        assert_error(code, err, "would remove all 4 images", needle)
        assert not (tmp_path / "o.npz").exists()


def test_inspect_a_folder_of_class_folders(cli, tmp_path, traps):
    from PIL import Image

    clean = np.flatnonzero(~traps["is_duplicate"] & (traps["near_of"] < 0) & (traps["copy_of"] < 0))
    for k, i in enumerate(clean[:6]):
        cls = NAMES[k % 2]
        (tmp_path / "imgs" / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(traps["images"][i]).save(tmp_path / "imgs" / cls / f"{k}.png")
    Image.fromarray(traps["images"][clean[0]]).save(tmp_path / "imgs" / NAMES[1] / "copy.png")
    code, out, err = cli("data", "inspect", tmp_path / "imgs", "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["labels"]["stored_shape"] is None
    assert [c["count"] for c in rep["classes"]][:2] == [3, 4]
    ex = rep["exact_duplicates"]
    assert ex["n_groups"] == 1 and ex["groups"][0]["conflicting"]
    assert ex["groups"][0]["labels"] == {NAMES[0]: 1, NAMES[1]: 1}


def test_near_out_of_range_is_a_usage_error(cli, jokes_file):
    code, _, err = cli("data", "inspect", jokes_file, "--near", "40")
    assert code == 2 and "--near" in err and "hint:" in err


def test_segmentation_profile_is_refused_clearly(cli, jokes_file):
    code, _, err = cli("data", "weights", jokes_file,
                       "--profile", "an2dl-2024-mars-terrain")
    assert_error(code, err, "classification")


# -- CLI hygiene -----------------------------------------------------------------------------------
def test_cli_defaults_match_the_library():
    from subkit.cli import data as cli_data

    assert cli_data.DEFAULT_NEAR == D.DEFAULT_NEAR
    assert cli_data.DEFAULT_SIMILARITY == D.DEFAULT_SIMILARITY
    assert cli_data.MAX_NEAR == D.MAX_NEAR


def test_help_never_imports_tensorflow():
    code = ("import sys; from subkit.__main__ import run\n"
            "for a in (['data','--help'],['data','inspect','--help'],['data','dedupe','--help'],"
            "['data','split','--help'],['data','weights','--help']):\n"
            "    try:\n        run(a)\n    except SystemExit:\n        pass\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
            "import subkit.data.duplicates, subkit.data.inspect, subkit.data.split\n"
            "import subkit.data.html, subkit.data.weights\n"
            "assert 'tensorflow' not in sys.modules and 'PIL' not in sys.modules\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    help_text = " ".join(res.stdout.split())
    assert "keep-one: keep the first image of each group whose labels agree" in help_text


def test_dedupe_all_copies_at_the_reference_scale(cli, traps, tmp_path):
    """The reference layout: 13,759 images, 1,800 byte-identical copies of joke images with
    conflicting labels; removing every copy leaves 11,959 (the course's training_set.npz, as
    students' public solutions describe it)."""
    rng = np.random.default_rng(0)
    plain = (~traps["is_duplicate"]) & (traps["near_of"] < 0) & (traps["copy_of"] < 0)
    pick = rng.choice(np.flatnonzero(plain), 11_959)
    noise = rng.integers(-2, 3, (11_959, 96, 96, 3), dtype=np.int16)  # distinct bytes
    clean = np.clip(traps["images"][pick].astype(np.int16) + noise, 0, 255)
    jokes = traps["images"][np.flatnonzero(traps["is_duplicate"])[:3]]
    images = np.concatenate([clean.astype(np.uint8), jokes[rng.integers(0, 3, 1_800)]])
    joke_labels = rng.integers(0, 8, (1_800, 1)).astype(np.uint8)
    labels = np.concatenate([traps["labels"][pick], joke_labels])
    order = rng.permutation(13_759)
    f = save(tmp_path / "training_set.npz", images=images[order], labels=labels[order])
    del clean, images
    code, out, err = cli("data", "dedupe", f, "--out", tmp_path / "clean.npz",
                         "--drop", "all-copies")
    assert code == 0, err
    assert "13,759 -> 11,959 images: removed 1,800 (all-copies)" in out
    rec = json.loads((tmp_path / "clean.npz.removed.json").read_text())
    assert [r["index"] for r in rec["removed"]] == np.flatnonzero(order >= 11_959).tolist()
    assert np.load(tmp_path / "clean.npz")["labels"].shape == (11_959, 1)
