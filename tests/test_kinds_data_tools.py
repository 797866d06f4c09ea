"""`subkit data` where it makes sense for the other kinds of competition: forecasting
split by series (never by window), segmentation dedupe on the images and the Mars "alien"
outliers found by their shared mask, series classification through the classification
tools."""

from __future__ import annotations

import json

import numpy as np
import pytest

from subkit import profile
from subkit.data import io, synthetic

FC, SEG, TS = "an2dl-2023-forecasting", "an2dl-2024-mars-terrain", "an2dl-2022-ts-classification"

pytestmark = pytest.mark.usefixtures("in_tmp")


def load(name):
    return profile.load(name, workspace=False)


def test_forecasting_split_keeps_each_series_whole(cli, tmp_path):
    d = synthetic.for_profile(load(FC), 240, seed=4)
    io.save_npz(tmp_path / "fc.npz", **d)
    r = cli("data", "split", tmp_path / "fc.npz", "--test-size", "0.25", "--out-train",
            tmp_path / "tr.npz", "--out-test", tmp_path / "te.npz", "--profile", FC, "--json")
    assert r.code == 0, r.err
    rep = json.loads(r.out)
    tr, te = np.load(tmp_path / "tr.npz"), np.load(tmp_path / "te.npz")
    assert not set(tr["series"]) & set(te["series"])  # no series on both sides
    assert len(tr["X"]) + len(te["X"]) == 240 and set(tr.files) == set(te.files) == set(d)
    assert set(te["categories"]) == set(tr["categories"]) == set("ABCDEF")
    assert rep["test_series"] == len(set(te["series"])) and 0.15 < len(te["X"]) / 240 < 0.35
    # the windows of one series overlap: what a split by window would leak
    i, j = np.flatnonzero(d["series"] == d["series"][0])[:2]
    assert np.intersect1d(np.r_[d["X"][i], d["y"][i]], np.r_[d["X"][j], d["y"][j]]).size > 50


def test_forecasting_split_needs_the_series_ids(cli, tmp_path):
    d = synthetic.for_profile(load(FC), 40, seed=4)
    d.pop("series")
    io.save_npz(tmp_path / "fc.npz", **d)
    r = cli("data", "split", tmp_path / "fc.npz", "--out-train", tmp_path / "a.npz",
            "--out-test", tmp_path / "b.npz", "--profile", FC)
    assert r.code == 1 and "has no 'series' array" in r.err and "a split by window leaks" in r.err
    assert not (tmp_path / "a.npz").exists() and not (tmp_path / "b.npz").exists()


@pytest.fixture
def mars(tmp_path):
    d = synthetic.for_profile(load(SEG), 60, seed=2, aliens=7)
    copies = [3, 10, 11]
    d = {k: np.concatenate([v, v[copies]]) for k, v in d.items()}
    io.save_npz(tmp_path / "mars.npz", **d)
    return tmp_path / "mars.npz", d


def test_segmentation_inspect_finds_the_aliens_and_the_copies(cli, mars):
    path, d = mars
    r = cli("data", "inspect", path, "--profile", SEG, "--near", "0", "--json")
    assert r.code == 0, r.err
    rep = json.loads(r.out)
    (shared,) = rep["shared_masks"]
    assert sorted(shared["members"]) == np.flatnonzero(d["is_outlier"]).tolist()
    exact = {tuple(g["members"]) for g in rep["duplicate_images"]}
    assert {(3, 67), (10, 68), (11, 69)} <= exact
    assert rep["classes"][0]["ignored"] and abs(sum(c["share"] for c in rep["classes"]) - 1) < 1e-3
    r = cli("data", "inspect", path, "--profile", SEG)
    assert "7 images share ONE identical mask" in r.out and "--drop-shared-masks" in r.out


def test_segmentation_dedupe_drops_copies_and_shared_masks(cli, mars, tmp_path):
    path, d = mars
    r = cli("data", "dedupe", path, "--out", tmp_path / "clean.npz", "--drop-shared-masks",
            "--profile", SEG, "--json")
    assert r.code == 0, r.err
    s = json.loads(r.out)
    assert (s["n_input"], s["n_output"], s["n_removed_shared_masks"]) == (70, 60, 7)
    clean = np.load(tmp_path / "clean.npz")
    assert not clean["is_outlier"].any() and len({m.tobytes() for m in clean["images"]}) == 60
    record = json.loads((tmp_path / "clean.npz.removed.json").read_text())
    assert sum("shares one identical mask" in x["reason"] for x in record["removed"]) == 7
    r = cli("data", "dedupe", path, "--out", tmp_path / "c2.npz", "--drop-shared-masks",
            "--profile", TS)
    assert r.code == 2 and "--drop-shared-masks is for segmentation profiles" in r.err


def test_segmentation_split_keeps_copies_together(cli, mars, tmp_path):
    path, d = mars
    r = cli("data", "split", path, "--out-train", tmp_path / "tr.npz", "--out-test",
            tmp_path / "te.npz", "--test-size", "0.3", "--profile", SEG, "--json")
    assert r.code == 0, r.err
    tr, te = np.load(tmp_path / "tr.npz"), np.load(tmp_path / "te.npz")
    assert not {m.tobytes() for m in tr["images"]} & {m.tobytes() for m in te["images"]}
    assert len(tr["images"]) + len(te["images"]) == 70 and te["masks"].shape[1:] == (64, 128)


def test_series_classification_uses_the_classification_tools(cli, tmp_path):
    d = synthetic.for_profile(load(TS), 240, seed=1)
    d = {k: np.concatenate([v, v[:5]]) for k, v in d.items()}
    io.save_npz(tmp_path / "ts.npz", **d)
    r = cli("data", "dedupe", tmp_path / "ts.npz", "--out", tmp_path / "c.npz", "--profile", TS,
            "--json")
    assert r.code == 0 and json.loads(r.out)["n_removed"] == 5
    r = cli("data", "split", tmp_path / "c.npz", "--out-train", tmp_path / "tr.npz", "--out-test",
            tmp_path / "te.npz", "--near", "0", "--profile", TS, "--json")
    assert r.code == 0, r.err
    te = np.load(tmp_path / "te.npz")
    assert te["X"].shape[1:] == (36, 6) and len(set(te["labels"].tolist())) == 12
