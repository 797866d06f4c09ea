"""The leaderboard prediction (subkit.calibration): the constrained fit, its leave-one-out
band, reading the ledger, `subkit history`'s predicted column, and end to end: numpy-only
models of different robustness, a hidden test made with other code than the suite, three
leaderboard scores recorded by hand, a held-out model's prediction inside its band."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from subkit import calibration as C


# -- the fit ----------------------------------------------------------------------------------
def test_simplex_projection():
    rng = np.random.default_rng(0)
    for _ in range(50):
        v = rng.normal(0, 2, 7)
        w = C.project_simplex(v)
        assert w.min() >= 0 and w.sum() == pytest.approx(1)
        assert np.allclose(C.project_simplex(w), w)  # a point of the simplex stays
        # the nearest point: no random point of the simplex is nearer
        for _ in range(20):
            q = rng.dirichlet(np.ones(7))
            assert np.sum((v - w) ** 2) <= np.sum((v - q) ** 2) + 1e-12


def _data(n, k=12, seed=0, noise=0.0):
    rng = np.random.default_rng(seed)
    S = np.clip(rng.uniform(0.3, 0.95, (n, 1)) + rng.normal(0, 0.12, (n, k)), 0, 1)
    w = np.zeros(k)
    w[[2, 7]] = 0.5
    return S, S @ w + rng.normal(0, noise, n), w


def test_fit_finds_the_sets_that_explain_the_leaderboard_with_many_points():
    S, y, _ = _data(60)
    w = C.fit_weights(S, y)
    assert w.min() >= 0 and w.sum() == pytest.approx(1)
    assert w[2] + w[7] > 0.6  # the two true sets carry most of the weight
    assert np.sqrt(np.mean((S @ w - y) ** 2)) < 0.03  # the prior still costs a little


def test_fit_stays_near_the_plain_mean_with_few_points():
    S, y, _ = _data(2)
    w = C.fit_weights(S, y)
    u = np.full(S.shape[1], 1 / S.shape[1])
    assert np.abs(w - u).max() < 0.1
    far = C.fit_weights(S, y, prior=0.0)  # without the prior it jumps to a corner
    assert np.abs(far - u).max() > np.abs(w - u).max()


def test_band_is_the_leave_one_out_error_at_least():
    S, y, _ = _data(5, seed=3, noise=0.02)
    c = C.calibrate(S, y, S[0] * 0.9)
    loo = np.array([S[i] @ C.fit_weights(np.delete(S, i, 0), np.delete(y, i))
                    for i in range(5)])
    assert np.allclose(c["loo_predicted"], loo)
    resid = y - loo
    rmse = np.sqrt(np.mean(resid ** 2))
    half = max(np.abs(resid).max(), C.t95(4) * rmse * np.sqrt(1 + 1 / 5))
    assert c["loo_error"] == pytest.approx(rmse)
    assert c["high"] - c["score"] == pytest.approx(min(half, 1 - c["score"]))
    assert c["score"] - c["low"] == pytest.approx(min(half, c["score"]))
    two = C.calibrate(S[:2], y[:2], S[2])  # two points: Student t with 1 degree of freedom
    assert two["high"] - two["low"] > 2 * 6.0 * two["loo_error"] or two["low"] == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        C.calibrate(S[:1], y[:1], S[2])


def test_test_set_id_is_about_content():
    from subkit.data.synthetic import generate

    d = generate(10, seed=1)
    a = C.test_set_id(d["images"], d["labels"])
    assert a == C.test_set_id(d["images"].copy(), d["labels"].ravel().astype(np.int64))
    other = d["labels"].copy()
    other[0] = (other[0] + 1) % 8
    assert a != C.test_set_id(d["images"], other)


# -- from the ledger --------------------------------------------------------------------------
KEYS = ["blur-1", "blur-2", "noise-1", "noise-2"]


def _run(sha, scores, data="d" * 64, suite="quick", seed=0, name=None):
    return {"kind": "score-local", "zip_sha256": sha, "zip": name or f"{sha}.zip",
            "data_sha256": data, "shift_suite": suite, "shift_seed": seed,
            "shift_scores": dict(zip(KEYS, scores)), "time": f"2026-01-01T00:00:0{sha[-1]}"}


def _board(sha, score, phase="development", t="2026-01-02"):
    return {"kind": "leaderboard", "zip_sha256": sha, "leaderboard_score": score,
            "phase": phase, "time": t}


GROUP = ("d" * 64, "quick", 0)


def test_fewer_than_two_points_say_what_is_needed():
    recs = [_run("z1", [.8, .7, .6, .5]), _board("z1", .55), _board("z9", .4)]
    p = C.predict(recs, dict(zip(KEYS, [.7, .6, .5, .4])), GROUP, "new")
    assert p["score"] is None and p["calibrated_on"] == 1 and p["needed"] == 2
    assert "at least 2 other zips" in p["message"] and "z1.zip" in p["message"]
    assert "1 zip(s) with a leaderboard score have no such run" in p["message"]
    assert "--shift quick --seed 0" in p["message"]
    assert "subkit history score ZIP --leaderboard SCORE" in p["message"]


def test_prediction_uses_the_same_test_set_suite_and_seed_and_not_the_zip_itself():
    recs = [_run("z1", [.9, .8, .7, .6]), _board("z1", .62),
            _run("z2", [.7, .6, .5, .4]), _board("z2", .45),
            _run("z3", [.8, .7, .6, .5]), _board("z3", .52),
            _run("z4", [.5, .5, .5, .5], data="e" * 64), _board("z4", .99),  # other data
            _run("z5", [.5, .5, .5, .5], seed=1), _board("z5", .99),  # other seed
            _run("z6", [.5, .5, .5, .5], suite="default"), _board("z6", .99)]
    p = C.predict(recs, dict(zip(KEYS, [.8, .7, .6, .5])), GROUP, "z3")
    assert p["calibrated_on"] == 2 and {q["zip"] for q in p["points"]} == {"z1.zip", "z2.zip"}
    assert p["actual"] == .52 and p["phase"] == "development" and p["n_sets"] == 4
    assert p["low"] <= p["score"] <= p["high"] and 0.3 < p["score"] < 0.8
    assert sum(p["weights"].values()) == pytest.approx(1, abs=0.05)


def test_phase_with_most_points_and_common_sets_only():
    recs = [_run("z1", [.9, .8, .7, .6]), _board("z1", .6), _board("z1", .5, "final"),
            _run("z2", [.7, .6, None, .4]), _board("z2", .45), _board("z2", .4, "final"),
            _run("z3", [.8, .7, .6, .5]), _board("z3", .5)]
    p = C.predict(recs, dict(zip(KEYS, [.8, .7, .6, .5])), GROUP, "new")
    assert p["phase"] == "development" and p["calibrated_on"] == 3
    assert p["n_sets"] == 3 and "noise-1" not in p["weights"]  # z2 has no noise-1 score


def test_for_history_predicts_each_zip_from_the_others():
    recs = [_run("z1", [.9, .8, .7, .6]), _board("z1", .62),
            _run("z2", [.7, .6, .5, .4]), _board("z2", .45),
            _run("z3", [.8, .7, .6, .5]), _board("z3", .52),
            _run("z4", [.6, .5, .4, .3])]
    got = C.for_history(recs)
    assert set(got) == {"z1", "z2", "z3", "z4"}
    assert got["z4"]["calibrated_on"] == 3 and got["z4"]["actual"] is None
    assert got["z1"]["calibrated_on"] == 2 and got["z1"]["actual"] == .62
    assert C.for_history(recs[:3]) == {}  # one leaderboard score is not enough


def test_history_shows_the_predicted_column(cli, workspace):
    from subkit.ledger import Ledger

    led = Ledger(workspace / "submissions", fsync=False)
    for rec in [_run("a" * 64, [.9, .8, .7, .6], name="one.zip"), _board("a" * 64, .62),
                _run("b" * 64, [.7, .6, .5, .4], name="two.zip"), _board("b" * 64, .45),
                _run("c" * 64, [.8, .7, .6, .5], name="three.zip")]:
        rec.pop("time")
        led.append(rec)
    r = cli("history", "--json")
    assert r.code == 0, r.text
    rows = {row["zip_name"]: row for row in json.loads(r.out)}
    pred = rows["three.zip"]["predicted_leaderboard"]
    assert pred["calibrated_on"] == 2 and pred["low"] <= pred["score"] <= pred["high"]
    assert rows["one.zip"]["predicted_leaderboard"] is None  # one other zip only
    assert "shift_scores" not in rows["one.zip"]
    r = cli("history")
    head, _, *lines = r.out.splitlines()
    assert "predicted" in head.split()
    three = next(line for line in lines if line.startswith("three.zip"))
    assert f"{pred['score']:.4f} ({pred['low']:.2f}-{pred['high']:.2f})" in three
    r = cli("history", "--csv")
    assert "predicted_leaderboard,predicted_low,predicted_high" in r.out.splitlines()[0]
    r = cli("history", "--sort", "predicted", "--json")
    assert json.loads(r.out)[0]["zip_name"] == "three.zip"


# -- end to end: a held-out model inside its band ---------------------------------------------
ROBUST_MODEL = """
import os
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def feats(X, alpha):
    # colour statistics of the centre, divided by the image's mean colour to the power
    # alpha: alpha 0 is raw colour, 1 is immune to a global gain or colour cast
    X = X.astype(np.float32) / 255 + 0.02
    bg = X.reshape(len(X), -1, 3).mean(1)
    c = X[:, 32:64, 32:64].reshape(len(X), -1, 3) / (bg[:, None, :] ** alpha)
    return np.concatenate([c.mean(1), c.std(1), bg ** (1 - alpha)], 1)


class Model:
    def __init__(self):
        self.c = np.load(os.path.join(HERE, "centroids.npy"))
        self.alpha = float(np.load(os.path.join(HERE, "alpha.npy")))

    def predict(self, X):
        return np.argmin(((feats(X, self.alpha)[:, None] - self.c[None]) ** 2).sum(-1), 1)
"""


def _robust_zip(path: Path, alpha: float):
    """A nearest-centroid model whose robustness to colour changes grows with ``alpha``;
    returns the zip and the model (for this process)."""
    from subkit.data.synthetic import generate

    ns: dict = {"__file__": str(path)}
    exec(ROBUST_MODEL, ns)
    tr = generate(240, seed=1)
    F, y = ns["feats"](tr["images"], alpha), tr["labels"].ravel()
    files = {"centroids.npy": np.stack([F[y == k].mean(0) for k in range(8)]),
             "alpha.npy": np.array(alpha)}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model.py", ROBUST_MODEL)
        for name, a in files.items():
            buf = io.BytesIO()
            np.save(buf, a)
            z.writestr(name, buf.getvalue())
    model = ns["Model"].__new__(ns["Model"])
    model.c, model.alpha = files["centroids.npy"], alpha
    return path, model


# Pillow-only families: the generator process never imports TensorFlow (fast)
SUITE = "brightness_up,brightness_down,contrast_down,saturate,pixelate:3,jpeg_compression:3"


def test_a_held_out_models_prediction_falls_in_its_band(cli, workspace):
    """Three models' "leaderboard" scores are their accuracy on a hidden test made with
    numpy (robustness_helpers.numpy_augment: not Pillow's ImageEnhance, which the suite
    uses); the fourth model's predicted leaderboard must contain its hidden accuracy."""
    from subkit.data.synthetic import generate

    import robustness_helpers as R

    d = generate(120, seed=5)
    np.savez(workspace / "test.npz", images=d["images"], labels=d["labels"])
    hidden = R.numpy_augment(d["images"], np.random.default_rng(2025), 0.4)
    y = d["labels"].ravel()
    zips, actual = {}, {}
    for alpha in (0.0, 0.33, 0.66, 1.0):
        zips[alpha], model = _robust_zip(workspace / f"m{int(alpha * 100)}.zip", alpha)
        actual[alpha] = float(np.mean(model.predict(hidden) == y))
    assert max(actual.values()) - min(actual.values()) > 0.1  # robustness differs
    held_out = 0.66
    for alpha, z in zips.items():
        if alpha != held_out:
            r = cli("score-local", z, "--data", "test.npz", "--shift", SUITE, "--json")
            assert r.code == 0, r.text
            r = cli("history", "score", z, "--leaderboard", f"{actual[alpha]:.4f}",
                    "--phase", "development")
            assert r.code == 0, r.text
    r = cli("score-local", zips[held_out], "--data", "test.npz", "--shift", SUITE, "--json")
    assert r.code == 0, r.text
    res = json.loads(r.out)
    p = res["predicted_leaderboard"]
    assert p["calibrated_on"] == 3 and p["phase"] == "development"
    assert p["low"] <= actual[held_out] <= p["high"], (p, actual)
    assert p["high"] - p["low"] < 0.8  # not an empty claim either
    run_json = json.loads((Path(res["run_dir"]) / "run.json").read_text())
    assert run_json["predicted_leaderboard"]["score"] == pytest.approx(p["score"])
    page = (Path(res["run_dir"]) / "report.html").read_text()
    assert "Predicted leaderboard score" in page and f"{p['score']:.4f}" in page
    assert "aria-label='predicted and actual leaderboard scores'" in page
    assert page.count("<path d='M") == 3  # the three calibration zips' actual scores
    rows = {row["zip_name"]: row for row in json.loads(cli("history", "--json").out)}
    assert all(rows[z.name]["predicted_leaderboard"] for z in zips.values())


def test_terminal_summary_of_a_prediction(capsys):
    from subkit.cli.terminal import print_prediction

    print_prediction({"score": .61, "low": .52, "high": .7, "calibrated_on": 3,
                      "phase": "final", "loo_error": .031, "actual": None})
    out = capsys.readouterr().out
    assert "predicted leaderboard 0.6100  (0.5200 to 0.7000; calibrated on 3 zips' final " \
           "scores, leave-one-out error 0.0310)" in out
    print_prediction({"score": None, "message": "needs the leaderboard scores of ..."})
    assert "predicted leaderboard: - (needs the leaderboard scores of ...)" in \
           capsys.readouterr().out
