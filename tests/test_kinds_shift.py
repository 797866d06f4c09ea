"""Shift families per kind of competition: noise, scaling and missing steps for
series; image shifts for segmentation, geometric ones applied to images and masks alike."""

from __future__ import annotations

import json

import numpy as np
import pytest

from subkit import profile, shift_kinds
from subkit.data import io, synthetic

from conftest import make_zip

FC, SEG, TS = "an2dl-2023-forecasting", "an2dl-2024-mars-terrain", "an2dl-2022-ts-classification"

pytestmark = pytest.mark.usefixtures("in_tmp")


def load(name):
    return profile.load(name, workspace=False)


def test_geometric_shifts_move_images_and_masks_alike():
    prof = load(SEG)
    d = synthetic.terrain(6, seed=1)
    X, M = d["images"], d["masks"]
    for sev, axes in ((1, (2,)), (2, (1,)), (3, (1, 2))):
        Xs, Ms = shift_kinds.apply(prof, "flip", sev, X, M)
        assert np.array_equal(Xs, np.flip(X, axes)) and np.array_equal(Ms, np.flip(M, axes))
    Xs, Ms = shift_kinds.apply(prof, "translate", 3, X, M, seed=4)
    for i in range(len(X)):  # find the offset from the image, check the mask moved with it
        hits = [(u, v) for u in range(-16, 17) for v in range(-16, 17)
                if np.array_equal(Xs[i, 20:40, 40:80], X[i, 20 - u:40 - u, 40 - v:80 - v])]
        (u, v), = hits
        assert np.array_equal(Ms[i, 20:40, 40:80], M[i, 20 - u:40 - u, 40 - v:80 - v])
        if u > 0:
            assert (Ms[i, :u] == 0).all() and (Xs[i, :u] == 0).all()  # border: ignored class
    Xs, Ms = shift_kinds.apply(prof, "blur", 2, X, M)
    assert np.array_equal(Ms, M) and not np.array_equal(Xs, X) and Xs.dtype == X.dtype


def test_series_shifts_and_the_forecast_truth():
    prof = load(FC)
    d = synthetic.forecasting(10, seed=0, windows=2)
    X, y = d["X"], d["y"][:, :9]
    Xs, ys = shift_kinds.apply(prof, "scaling", 3, X, y, seed=1)
    for i in range(len(X)):  # the same gain and offset on the past and the future
        gain, off = np.polyfit(X[i], Xs[i], 1)
        assert np.allclose(ys[i], gain * y[i] + off, atol=1e-4)
    Xn, yn = shift_kinds.apply(prof, "noise", 1, X, y)
    assert np.array_equal(yn, y) and 0 < np.abs(Xn - X).mean() < 0.05
    shares = [float((shift_kinds.apply(prof, "missing", s, X + 1, y)[0] == 0).mean())
              for s in (1, 2, 3)]
    assert shares[0] < shares[1] < shares[2] and 0.15 < shares[2] < 0.45
    a, _ = shift_kinds.apply(prof, "scaling", 2, X, y, seed=5)
    b, _ = shift_kinds.apply(prof, "scaling", 2, X, y, seed=5)
    assert np.array_equal(a, b)
    labels = np.arange(4)
    Xc = synthetic.multivariate(4, seed=0)["X"]
    Xs, same = shift_kinds.apply(load(TS), "scaling", 2, Xc, labels)
    assert same is labels and Xs.shape == Xc.shape


def test_suites_per_kind():
    assert [f for f, _ in shift_kinds.parse(load(FC), "quick")] == ["noise", "scaling", "missing"]
    assert len(shift_kinds.parse(load(SEG), "default")) == 15
    assert shift_kinds.parse(load(TS), "noise:3,missing") == [("noise", 3), ("missing", 1),
                                                               ("missing", 2), ("missing", 3)]
    with pytest.raises(shift_kinds.KindSuiteError) as exc:
        shift_kinds.parse(load(FC), "blur")
    assert "its shifts: noise, scaling, missing" in str(exc.value)


NAIVE = ("import os\nimport numpy as np\nclass model:\n"
         "    def __init__(self, path):\n        pass\n"
         "    def predict(self, X, categories):\n        assert len(categories) == len(X)\n"
         "        return np.repeat(X[:, -1:], 9, axis=1)\n")
THRESHOLD = ("import numpy as np\nclass Model:\n    def predict(self, X):\n"
             "        return np.digitize(X, [80, 118, 128, 150]).astype(int)\n")


def test_score_local_shift_on_forecasts(cli, tmp_path):
    io.save_npz(tmp_path / "t.npz", **synthetic.for_profile(load(FC), 24, seed=0))
    zp = make_zip(tmp_path / "n.zip", {"model.py": NAIVE, "metadata": "description: x\n"})
    r = cli("score-local", zp, "--data", tmp_path / "t.npz", "--profile", FC, "--shift", "quick",
            "--json")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    sh = res["shift"]
    assert sh["n_scored"] == 3 and not sh["failures"] and sh["higher_is_better"] is False
    by = {row["name"]: row["mean"] for row in sh["shifts"]}
    assert by["missing"] > res["score"] and sh["worst"][0] == "missing"  # MSE: higher is worse
    r = cli("score-local", zp, "--data", tmp_path / "t.npz", "--profile", FC, "--shift", "quick")
    assert "rise" in r.out and "missing" in r.out


def test_score_local_shift_on_masks_flips_the_truth_too(cli, tmp_path):
    io.save_npz(tmp_path / "t.npz", **synthetic.for_profile(load(SEG), 8, seed=0))
    zp = make_zip(tmp_path / "s.zip", {"model.py": THRESHOLD})
    r = cli("score-local", zp, "--data", tmp_path / "t.npz", "--profile", SEG, "--shift",
            "flip,blur:3", "--json")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    rows = {row["name"]: row for row in res["shift"]["shifts"]}
    # a per-pixel model: flipping image and truth together changes nothing
    assert rows["flip"]["scores"] == pytest.approx([res["score"]] * 3)
    assert rows["blur"]["scores"][0] != pytest.approx(res["score"])
    r = cli("score-local", zp, "--data", tmp_path / "t.npz", "--profile", SEG, "--tta-compare")
    assert r.code == 1 and "--tta-compare and --proba are for image classification" in r.err
