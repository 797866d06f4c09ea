"""`subkit tta tune`: the search from kept probabilities, the halves, the settings written by
--apply, the wrapper's views against the template's, and the command end to end."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from subkit.grader import scoring
from subkit.tta import search, settings
from subkit.workspace import template_text

from conftest import make_zip


# -- the metrics and the halves -------------------------------------------------------------
@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy", "macro_f1"])
def test_metric_from_confusion_matrices_equals_the_graders(metric):
    rng = np.random.default_rng(1)
    names = [f"c{i}" for i in range(5)]
    for trial in range(20):
        y = rng.integers(0, 5 if trial % 3 else 3, 60)  # some classes absent
        p = np.where(rng.random(60) < 0.6, y, rng.integers(0, 5, 60))
        cm = np.asarray(scoring.metrics(y, p, names)["confusion_matrix"])
        assert search.metric_from_cm(cm[None], metric)[0] == pytest.approx(
            scoring.metrics(y, p, names)[metric])


def test_halves_are_stratified_seeded_and_refuse_a_tiny_set():
    y = np.repeat(np.arange(4), [10, 11, 4, 7])
    a, b = search.stratified_halves(y, 0), search.stratified_halves(y, 0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, search.stratified_halves(y, 1))
    for c, n in zip(range(4), [10, 11, 4, 7]):
        k = int((a[y == c] == 1).sum())
        assert k in (n // 2, n - n // 2)
    assert abs(int((a == 1).sum()) - int((a == 0).sum())) <= 1
    with pytest.raises(search.SplitError) as exc:
        search.stratified_halves(np.repeat(np.arange(3), [6, 3, 8]), 0)
    assert exc.value.args[0] == [(1, 3)]


# -- the search ----------------------------------------------------------------------------
def _scorer(y_img: np.ndarray, n_sets: int, half: np.ndarray, k: int, metric="accuracy"):
    n = len(y_img)
    image = np.tile(np.arange(n), n_sets)
    return search.Scorer(labels=np.tile(y_img, n_sets),
                         group=np.repeat(np.arange(n_sets), n) * 2 + half[image],
                         n_sets=n_sets, n_classes=k, metric=metric, image=image, half=half)


def _noisy(y, k, acc, rng):
    """Probabilities whose argmax is right with probability ``acc``."""
    wrong = (y + rng.integers(1, k, len(y))) % k
    top = np.where(rng.random(len(y)) < acc, y, wrong)
    p = rng.random((len(y), k)) * 0.2
    p[np.arange(len(y)), top] += 1.0
    return p / p.sum(-1, keepdims=True)


def test_the_front_finds_the_view_that_survives_the_shift_and_the_fewest_within_noise():
    rng = np.random.default_rng(0)
    n, k, sets = 400, 4, 3  # clean + 2 shifted
    y = rng.integers(0, k, n)
    half = search.stratified_halves(y, 0)
    # view 0 (identity) is good clean, poor shifted; view 2 is good everywhere; 1, 3 are noise
    acc = {0: (0.95, 0.3), 1: (0.25, 0.25), 2: (0.9, 0.85), 3: (0.25, 0.25)}
    probs = np.stack([np.concatenate([_noisy(y, k, acc[v][0] if s == 0 else acc[v][1], rng)
                                      for s in range(sets)]) for v in range(4)])
    sc = _scorer(y, sets, half, k)
    points = search.search(probs, sc)
    assert len(points) == 4 + 4 * (6 + 4 + 1)  # one-view subsets have one labelling
    fr = search.front(points)
    assert [len(p["views"]) for p in fr] == [1, 2, 3, 4]
    assert fr[0]["views"] == (2,)
    # the scores of a point are the metric of its labels on each half, recomputed here
    pred = search.labels_of(probs, fr[0]["views"], fr[0]["merge"])
    for h in (0, 1):
        shifted = np.mean([np.mean((pred[s * n:(s + 1) * n] == y)[half == h])
                           for s in range(1, sets)])
        assert fr[0]["shifted"][h] == pytest.approx(shifted)
    boot = sc.bootstrap([search.labels_of(probs, p["views"], p["merge"]) for p in fr], 0, b=100)
    assert boot.shape == (100, 4)
    chosen, best, noise = search.choose(fr, boot)
    assert chosen == 0 and noise[best] == 0.0  # one good view is within noise of the best


def test_choose_takes_more_views_only_beyond_noise():
    fr = [{"views": (0,), "shifted": (0.5, 0.50)}, {"views": (0, 1), "shifted": (0.6, 0.60)}]
    boot = np.column_stack([np.full(50, 0.5), np.full(50, 0.6)]) + \
        np.random.default_rng(0).normal(0, 0.001, (50, 1))  # paired: tiny noise
    assert search.choose(fr, boot)[0] == 1
    noisy = np.column_stack([np.full(50, 0.5) + np.random.default_rng(1).normal(0, 0.2, 50),
                             np.full(50, 0.6)])
    assert search.choose(fr, noisy)[0] == 0
    # decided on the choose half only: a report half that favours two views changes nothing
    flattering = [{"views": (0,), "shifted": (0.6, 0.50)}, {"views": (0, 1),
                                                            "shifted": (0.5, 0.70)}]
    assert search.choose(flattering, boot)[:2] == (0, 0)


@pytest.mark.parametrize("merge", search.MERGES)
def test_merges_give_the_templates_labels(merge):
    from test_template import reference  # the template's merges, one predict per view

    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(6), (3, 50)).astype(np.float32)

    class Fixed:
        def __init__(self):
            self.i = -1

        def predict(self, x, verbose=0):
            self.i += 1
            return probs[self.i]

    ref = reference(Fixed(), np.zeros((50, 2, 2, 3)), ["identity"] * 3, merge)
    np.testing.assert_array_equal(search.labels_of(probs, (0, 1, 2), merge), ref.argmax(-1))


# -- the settings ---------------------------------------------------------------------------
def test_apply_writes_the_three_settings_and_nothing_else(tmp_path):
    p = tmp_path / "model.py"
    text = template_text("model.py")
    p.write_text(text)
    before = settings.read(text)
    assert before == {"tta": True, "views": ["identity", "flip_lr", "flip_ud", "rot90", "rot270"],
                      "merge": "mean"}
    done = settings.apply(p, ["flip_lr", "zoom"], "tsharpen")
    new = p.read_text()
    assert done["after"] == {"tta": True, "views": ["flip_lr", "zoom"], "merge": "tsharpen"}
    assert 'TTA_VIEWS = ["flip_lr", "zoom"]\n' in new and 'TTA_MERGE = "tsharpen"\n' in new
    changed = [(a, b) for a, b in zip(text.splitlines(), new.splitlines()) if a != b]
    assert [a.split(" =")[0] for a, _ in changed] == ["TTA_VIEWS", "TTA_MERGE"]
    assert len(text.splitlines()) == len(new.splitlines())


def test_apply_refuses_a_model_py_without_the_settings_and_changes_nothing(tmp_path):
    from subkit.errors import InputError

    p = tmp_path / "model.py"
    p.write_text("class Model:\n    def predict(self, X):\n        return X[:, 0, 0, 0]\n")
    before = p.read_bytes()
    with pytest.raises(InputError) as exc:
        settings.apply(p, ["identity", "flip_lr"], "max")
    assert "no TTA settings" in exc.value.message
    assert 'TTA_VIEWS = ["identity", "flip_lr"]' in exc.value.hint
    assert 'TTA_MERGE = "max"' in exc.value.hint
    assert p.read_bytes() == before
    old = template_text("model.py").replace('    "zoom": lambda', '    "zoomx": lambda')
    p.write_text(old)
    with pytest.raises(InputError) as exc:
        settings.apply(p, ["zoom"], "mean")
    assert "does not define the view(s) ['zoom']" in exc.value.message
    assert p.read_text() == old


# -- the wrapper's views are the template's -------------------------------------------------
@pytest.mark.slow
def test_the_wrappers_views_equal_the_templates():
    import tensorflow as tf

    from subkit.tta import child_views

    ns: dict = {"__file__": "model.py"}
    exec(compile(template_text("model.py"), "model.py", "exec"), ns)
    x = np.random.default_rng(0).integers(0, 256, (3, 12, 12, 3)).astype(np.float32)
    assert set(ns["_VIEWS"]) == set(child_views.VIEWS)
    for name, fn in ns["_VIEWS"].items():
        np.testing.assert_allclose(child_views.VIEWS[name](x), fn(tf.constant(x), tf).numpy(),
                                   atol=1e-4, err_msg=name)


# -- the command ------------------------------------------------------------------------------
@pytest.fixture
def tuned_ws(workspace, keras_weights):
    """A workspace with the template zip of a tiny model and a 64-image test set."""
    from subkit.data.synthetic import generate

    d = generate(64, seed=5)
    np.savez(workspace / "local_test.npz", images=d["images"], labels=d["labels"])
    z = make_zip(workspace / "sub.zip", {"model.py": (workspace / "model.py").read_text(),
                                        "weights.keras": keras_weights})
    return workspace, z, d


@pytest.fixture
def cheap_ws(workspace):
    """The same without a real model (for what is refused before anything runs)."""
    from subkit.data.synthetic import generate

    d = generate(64, seed=5)
    np.savez(workspace / "local_test.npz", images=d["images"], labels=d["labels"])
    z = make_zip(workspace / "sub.zip", {"model.py": (workspace / "model.py").read_text(),
                                        "weights.keras": b"not read"})
    return workspace, z, d


VIEWS3 = "identity,flip_lr,rot90"


@pytest.mark.slow
def test_tune_end_to_end_kept_probabilities_ledger_history_report_and_apply(
        tuned_ws, cli, keras_weights):
    import keras
    from test_template import VIEWS, load_template, reference

    ws, z, d = tuned_ws
    r = cli("tta", "tune", z, "--data", "local_test.npz", "--shift", "blur:1,noise:1",
            "--views", VIEWS3, "--json", "--apply")
    assert r.code == 0, r.text
    rec = json.loads(r.out)
    assert rec["ok"] and rec["candidates"] == ["identity", "flip_lr", "rot90"]
    assert rec["sets"] == ["clean", "blur-1", "noise-1"]
    assert rec["n_candidates_scored"] == 3 + 4 * (3 + 1)
    assert [p["n_views"] for p in rec["front"]] == [1, 2, 3]
    assert rec["chosen"] == rec["front"][rec["chosen_index"]]
    assert rec["n_choose"] + rec["n_report"] == 64
    run = Path(rec["run_dir"])
    # the kept probabilities: one pass of the model per view, exactly what predict gives
    probs = np.load(run / "output" / "predictions.npy")
    assert probs.shape == (3, 64, 8)
    model = keras.models.load_model(keras_weights, compile=False)
    for i, v in enumerate(["identity", "flip_lr", "rot90"]):
        np.testing.assert_allclose(
            probs[i], model.predict(VIEWS[v](d["images"]).astype("float32"), verbose=0),
            atol=1e-5)
    assert np.load(run / "output" / "predictions_blur-1.npy").shape == (3, 64, 8)
    assert not (run / "shift_work").exists()
    saved = json.loads((run / "run.json").read_text())
    assert saved["status"] == "complete" and saved["chosen"] == rec["chosen"]
    html = (run / "report.html").read_text()
    assert "<svg" in html and "which views earn their cost" in html
    row = json.loads((ws / "submissions" / "ledger.jsonl").read_text().splitlines()[-1])
    assert row["kind"] == "tta-tune" and row["tta_views"] == rec["chosen"]["views"]
    assert row["tta_shifted_score"] == rec["chosen"]["report"]["shifted"]
    assert row["tta_cost"] == rec["chosen"]["n_views"]
    h = cli("history", "--json")
    hrow = json.loads(h.out)[-1]
    assert hrow["tta_views"] == rec["chosen"]["views"] and hrow["tta"].startswith("TTA ")
    assert hrow["shifted_score"] is None  # the tuning does not pose as a score-local run
    # --apply: the settings in model.py; the template then gives one predict per view + merge
    applied = settings.read((ws / "model.py").read_text())
    assert applied == {"tta": True, "views": rec["chosen"]["views"],
                       "merge": rec["chosen"]["merge"]}
    assert rec["applied"]["ok"]
    (ws / "check").mkdir()
    mod = load_template(ws / "check", keras_weights, TTA_VIEWS=applied["views"],
                        TTA_MERGE=applied["merge"])
    got = mod.Model().predict(d["images"])
    ref = reference(model, d["images"], applied["views"], applied["merge"])
    np.testing.assert_array_equal(got, ref.argmax(-1))
    b = cli("build", "--weights", keras_weights, "--no-smoke")
    assert b.code == 0, b.text
    built = sorted((ws / "submissions").glob("*.zip"))[-1]
    with zipfile.ZipFile(built) as zf:
        assert settings.read(zf.read("model.py").decode()) == applied


@pytest.mark.slow
def test_a_model_py_that_is_not_the_template_is_tuned_and_apply_refuses(tuned_ws, cli):
    ws, _, d = tuned_ws
    own = ("import numpy as np\n\nclass Model:\n    def predict(self, X):\n"
           "        X = np.asarray(X, np.float32)\n"
           "        return (X[:, :8, :, 0].mean((1, 2)) > X[:, -8:, :, 0].mean((1, 2)))"
           ".astype(int)\n")
    (ws / "model.py").write_text(own)
    z = make_zip(ws / "own.zip", {"model.py": own})
    r = cli("tta", "tune", z, "--data", "local_test.npz", "--shift", "blur:1",
            "--views", "identity,flip_ud", "--apply")
    assert r.code == 1, r.text
    assert "no SUBKIT_TTA switch" in r.out  # the warning: its own TTA would be measured too
    assert "views  subset" in r.out  # the table came first
    assert "error: --apply:" in r.err and "no TTA settings" in r.err
    assert "hint:" in r.err and "TTA_VIEWS = [" in r.err
    assert (ws / "model.py").read_text() == own
    rec = json.loads(sorted((ws / "submissions" / "runs").glob("own-tta-*/run.json"))[-1]
                     .read_text())
    # labels only: one-hot votes; flip_ud swaps top and bottom, so the labels flip
    p = np.load(Path(rec["run_dir"]) / "output" / "predictions.npy")
    assert p.shape == (2, 64, 8) and set(np.unique(p)) <= {0.0, 1.0}
    np.testing.assert_array_equal(p[0].argmax(-1)[p[0].sum(-1) > 0] ^ 1,
                                  p[1].argmax(-1)[p[0].sum(-1) > 0])


def _unchanged(ws: Path, r, *words: str) -> None:
    assert r.code != 0, r.text
    assert "Traceback" not in r.text
    assert r.err.count("error:") == 1 and "hint:" in r.err, r.err
    for w in words:
        assert w in r.err, r.err


@pytest.mark.parametrize("args, words", [
    (("--views", "identity,flip_sideways"), ("unknown view(s) 'flip_sideways'", "views: ")),
    (("--views", "identity,identity"), ("named twice",)),
    (("--shift", "nosuch:1"), ("nosuch",)),
])
def test_bad_options_are_refused_before_anything_runs(cheap_ws, cli, args, words):
    ws, z, _ = cheap_ws
    before = (ws / "model.py").read_bytes()
    r = cli("tta", "tune", z, "--data", "local_test.npz", "--apply", *args)
    _unchanged(ws, r, *words)
    assert (ws / "model.py").read_bytes() == before
    assert not (ws / "submissions" / "runs").exists() or \
        not list((ws / "submissions" / "runs").iterdir())


def test_a_test_set_too_small_to_split_is_refused(cheap_ws, cli):
    ws, z, d = cheap_ws
    keep = np.concatenate([np.flatnonzero(d["labels"].ravel() == c)[:3] for c in range(8)])
    np.savez(ws / "small.npz", images=d["images"][keep], labels=d["labels"][keep])
    before = (ws / "model.py").read_bytes()
    r = cli("tta", "tune", z, "--data", "small.npz", "--apply")
    _unchanged(ws, r, "too small to split", "at least 2 images in each half", "--test-size")
    assert (ws / "model.py").read_bytes() == before


@pytest.mark.slow
def test_a_time_limit_one_view_cannot_meet(tuned_ws, cli):
    ws, z, _ = tuned_ws
    before = (ws / "model.py").read_bytes()
    r = cli("tta", "tune", z, "--data", "local_test.npz", "--shift", "blur:1", "--views",
            "identity,flip_lr", "--time-limit", "1", "--apply")
    _unchanged(ws, r, "one candidate view does not meet the time limit of 1 s", "--time-limit")
    assert (ws / "model.py").read_bytes() == before
    rows = (ws / "submissions" / "ledger.jsonl")
    assert not rows.exists() or "tta-tune" not in rows.read_text()


@pytest.mark.parametrize("kind", ["series-classification", "forecasting"])
def test_series_and_forecasting_have_nothing_to_tune(cheap_ws, cli, kind):
    from subkit import profile as profmod

    name = next(n for n in profmod.builtin_names() if profmod.load(n).kind == kind)
    ws, z, _ = cheap_ws
    r = cli("tta", "tune", z, "--profile", name)
    _unchanged(ws, r, "nothing to tune")
