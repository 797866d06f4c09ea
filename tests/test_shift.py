"""The shift suite (subkit.shift) and `score-local --shift / --tta-compare`.

Families are checked in-process on a small synthetic batch (each family at each severity
computed once, module-wide); the generator process for reproducibility byte for byte; the
suite through the real child path with numpy-only models (fast); and, marked slow, with
small Keras CNNs trained with and without augmentation against a hidden shifted test made
with Pillow (tests/robustness_helpers.py), which the suite must rank alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from subkit import shift as S
from subkit.shift import generate as G
from subkit.shift import ops

from conftest import make_zip
from test_report_html import CENTROID_MODEL, centroid_zip

N_BATCH = 12
ALL = [(n, s) for n, f in S.FAMILIES.items() for s in range(1, len(f.severities) + 1)]
# no random draw: the same output whatever the seed
DETERMINISTIC = {"blur", "jpeg", "jpeg_compression", "pixelate", "defocus_blur",
                 "brightness_up", "brightness_down", "contrast_up", "contrast_down", "saturate"}


@pytest.fixture(scope="module")
def batch():
    from subkit.data.synthetic import generate

    d = generate(N_BATCH, seed=7)
    return d["images"], d["labels"].ravel()


@pytest.fixture(scope="module")
def outputs(batch):
    """Every family at every severity (seed 3), and at its top severity with seeds 3, 4."""
    X, y = batch
    out = {}
    for name, sev in ALL:
        out[name, sev] = S.apply(X, name, sev, seed=3, labels=y, n_classes=8)
    for name, f in S.FAMILIES.items():
        top = len(f.severities)
        out[name, "again"] = S.apply(X, name, top, seed=3, labels=y, n_classes=8)
        out[name, "seed4"] = S.apply(X, name, top, seed=4, labels=y, n_classes=8)
    return out


# -- families -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(S.FAMILIES))
def test_every_family_keeps_shape_dtype_range_and_is_reproducible(batch, outputs, name):
    X, y = batch
    fam = S.FAMILIES[name]
    for sev in range(1, len(fam.severities) + 1):
        img, lab = outputs[name, sev]
        assert img.shape == X.shape and img.dtype == np.uint8
        assert not np.array_equal(img, X), (name, sev, "changed nothing")
        assert (lab is not None) == fam.mixes
        if lab is not None:
            assert lab.shape == y.shape and lab.min() >= 0 and lab.max() < 8
    top = len(fam.severities)
    assert np.array_equal(outputs[name, "again"][0], outputs[name, top][0])
    if name not in DETERMINISTIC:
        assert not np.array_equal(outputs[name, "seed4"][0], outputs[name, top][0])


@pytest.mark.parametrize("name", [n for n, f in S.FAMILIES.items() if not f.mixes])
def test_severity_increases_the_change(batch, outputs, name):
    X, _ = batch
    n = len(S.FAMILIES[name].severities)
    d = [np.abs(outputs[name, s][0].astype(int) - X).mean() for s in range(1, n + 1)]
    # MedMNIST-C's published severities 3 and 4 of stain_deposit are the same, and a
    # stronger Keras policy factor keeps more posterization bits (Keras' wiring): a
    # neighbour may dip a little, the top severity changes the images most
    assert all(b >= a * 0.95 for a, b in zip(d, d[1:])) and d[-1] == max(d) > d[0], d


def test_mixing_families_label_each_image_by_its_larger_part(batch, outputs):
    X, y = batch
    for name in ("cutmix", "mixup", "h24_mix"):
        lab = outputs[name, 3][1]
        assert 0 < np.mean(lab != y) < 1, name  # some images are mostly their partner
    one = np.full(len(X), 5)  # a single class: any mix keeps it
    img, lab = S.apply(X, "mixup", 3, seed=3, labels=one, n_classes=8)
    assert np.array_equal(lab, one) and not np.array_equal(img, X)
    with pytest.raises(S.SuiteError, match="labels"):
        S.apply(X, "cutmix", 1)


def test_float_images_stay_in_their_range(batch):
    X, y = batch
    xf = X.astype(np.float32) / 255
    for name in ("jpeg", "blur", "pixelate", "randaugment", "noise"):
        img, _ = S.apply(xf, name, 2, value_range=(0, 1))
        assert img.dtype == np.float32 and img.min() >= 0 and img.max() <= 1
        if name in DETERMINISTIC:  # the same shift as on uint8, up to rounding
            assert np.abs(img * 255 - S.apply(X, name, 2)[0]).mean() < 1.0


def test_grayscale_images(batch, tmp_path):
    X, _ = batch
    g = X[..., :1].copy()
    for name in ("blur", "jpeg", "randaugment", "erasing", "bubble"):
        img, _ = S.apply(g, name, 2)
        assert img.shape == g.shape and not np.array_equal(img, g)
    assert S.apply(g[..., 0], "blur", 2)[0].shape == g.shape[:3]  # (n, h, w)
    with pytest.raises(S.SuiteError, match="RGB"):
        S.apply(g, "colour_jitter", 1)
    plan = S.make_plan(g, "colour_jitter:1,blur:1", 0, tmp_path / "plan")
    assert [e["key"] for e in plan.entries] == ["blur-1"] and plan.skipped == ["colour_jitter-1"]
    with pytest.raises(S.SuiteError, match="images"):
        S.make_plan(np.zeros((4, 200), np.float32), "blur", 0, tmp_path / "plan2")


def test_microscopy_uses_medmnistc_published_bloodmnist_severities():
    """francescodisalvo05/medmnistc-api, medmnistc/corruptions/registry.py,
    CORRUPTIONS_DS['bloodmnist']: the five severities of each corruption."""
    published = {
        "pixelate": [0.6, 0.5, 0.40, 0.30, 0.25],
        "jpeg_compression": [50, 30, 15, 10, 7],
        "defocus_blur": [(2, 0.01), (3, 0.1), (4, 0.1), (5, 0.1), (6, 0.1)],
        "motion_blur": [(3, 3), (5, 5), (10, 5), (10, 7), (10, 9)],
        "brightness_up": [1.1, 1.2, 1.3, 1.35, 1.4],
        "brightness_down": [0.9, 0.8, 0.7, 0.6, 0.5],
        "contrast_up": [1.1, 1.15, 1.2, 1.25, 1.3],
        "contrast_down": [0.9, 0.8, 0.7, 0.6, 0.5],
        "saturate": [0.05, 0.10, 0.15, 0.17, 0.20],
        "stain_deposit": [1, 2, 3, 3, 3],
        "bubble": [(5, 10), (7, 10), (10, 10), (12, 12), (15, 12)],
    }
    suite = S.SUITES["microscopy"]
    assert sorted({n for n, _ in suite.pairs}) == sorted(published)
    for name, values in published.items():
        got = [tuple(p.values())[:2] if len(p) > 1 else next(iter(p.values()))
               for p in S.FAMILIES[name].severities]
        want = [tuple(v) if isinstance(v, tuple) else v for v in values]
        if name == "stain_deposit":
            got = [g[0] for g in got]
        assert got == want, name


def test_parse_suite_and_suites():
    sizes = {name: len(s.pairs) for name, s in S.SUITES.items()}
    assert sizes == {"default": 48, "quick": 6, "hidden-2024": 15, "microscopy": 55}
    assert S.parse_suite(None) == S.parse_suite("default")
    assert S.parse_suite("blur:3,noise") == [("blur", 3), ("noise", 1), ("noise", 2),
                                             ("noise", 3)]
    assert S.parse_suite("bubble:5") == [("bubble", 5)]
    for spec, msg in (("blurr", "unknown shift"), ("blur:4", "1 to 3"), ("bubble:6", "1 to 5"),
                      ("blur:x", "1 to 3"), (" , ", "empty")):
        with pytest.raises(S.SuiteError, match=msg):
            S.parse_suite(spec)
    assert "Keras augmentation layers" in S.hypothesis("hidden-2024")
    assert "MedMNIST-C" in S.hypothesis("microscopy")
    assert S.hypothesis("blur:1") == "a custom list of shifts"
    d = S.describe("bubble")
    assert len(d["shown"]) == 5 and d["source"].startswith("Pillow")


def test_ops_apply_each_op_once_to_the_images_that_drew_it():
    calls = []

    def op(tag):
        def f(v):
            calls.append((tag, len(v)))
            return v + tag
        return f

    x = np.zeros((6, 2, 2, 3), np.float32)
    out = ops.by_image(x, [op(1), op(2)], np.array([0, 1, 1, -1, 0, 1]))
    assert sorted(calls) == [(1, 2), (2, 3)]
    assert out[:, 0, 0, 0].tolist() == [1, 2, 2, 0, 1, 2]


def test_blur_kernels_keep_flat_images_flat():
    assert ops._disk(2.0).sum() == pytest.approx(1.0)
    assert ops._disk(2.0)[2, 2] > ops._disk(2.0)[0, 0]
    flat = np.full((3, 32, 32, 3), 100.0, np.float32)
    ctx = ops.Ctx(np.random.default_rng(0), 32)
    for name, kw in (("defocus_blur", {"radius": 6, "alias": .1}),
                     ("motion_blur", {"radius": 10, "sigma": 9})):
        assert np.allclose(getattr(ops, name)(flat, ctx, **kw), 100.0, atol=1e-3), name
    edge = np.zeros((1, 32, 32, 3), np.float32)
    edge[:, :, 16:] = 255
    out = ops.motion_blur(edge, ops.Ctx(np.random.default_rng(1), 224), radius=10, sigma=9)
    assert 0 < out[0, 16, 14, 0] < 255 or 0 < out[0, 16, 17, 0] < 255  # smeared across


def test_generator_refuses_an_old_keras(monkeypatch):
    import keras

    monkeypatch.setattr(keras, "__version__", "3.4.1")
    msg = G._keras_check()
    assert "keras >= 3.9" in msg and "3.4.1" in msg


# -- the generator process --------------------------------------------------------------------
@pytest.mark.slow
def test_generator_process_is_byte_reproducible_and_matches_in_process(batch, tmp_path):
    X, y = batch
    spec = "randaugment:2,cutmix:3,jpeg:1,h24_compose:2,bubble:4"
    a = S.prepare(X, y, spec, 11, tmp_path / "a", n_classes=8)
    assert a.versions["keras"] and a.versions["backend"] == "tensorflow"
    # the same seed, the same bytes: the worker (its own process, one TensorFlow thread)
    # and this process (the `outputs` fixture checks that it repeats itself) agree
    for e in a.entries:
        img, lab = S.apply(X, e["name"], e["severity"], seed=11, labels=y, n_classes=8)
        assert np.array_equal(np.load(e["path"]), img), e["key"]
        assert np.array_equal(a.labels_for(e, y), y if lab is None else lab)
        other, _ = S.apply(X, e["name"], e["severity"], seed=12, labels=y, n_classes=8)
        assert np.array_equal(other, img) == (e["name"] == "jpeg"), e["key"]
    assert set(a.samples()) == {e["key"] for e in a.entries}
    assert a.samples()["jpeg-1"].shape == (3, 96, 96, 3)


def test_generator_marks_a_broken_set_and_goes_on(batch, tmp_path):
    X, y = batch
    plan = S.make_plan(X, "blur:1,jpeg:1", 0, tmp_path / "p", n_classes=8)
    plan.entries[0]["name"] = "no_such_family"
    plan.generate(X, y)
    assert plan.error is None and plan.generated
    assert "keras" not in plan.versions  # Pillow only: TensorFlow was not imported
    assert "unknown shift" in plan.failure(plan.entries[0])
    # the child's folder says only that the set is not there; the reason stays private
    assert Path(plan.entries[0]["path"] + ".failed").read_text() == S.plan.NOT_MADE
    assert Path(plan.entries[1]["path"]).is_file()
    assert sorted(p.name for p in plan.folder.iterdir()) == ["blur-1.npy.failed", "jpeg-1.npy"]
    assert {"plan.json", "source.npy", "labels.npy", "generate.log", "generate.json",
            "blur-1.failed"} <= {p.name for p in plan.work.iterdir()}
    plan.cleanup()
    assert not plan.folder.exists() and not plan.work.exists()


def test_a_plans_private_folder_is_never_inside_its_images_folder(batch, tmp_path):
    X, _ = batch
    with pytest.raises(ValueError, match="inside"):
        S.make_plan(X, "blur:1", 0, tmp_path / "p", work=tmp_path / "p" / "w")
    plan = S.make_plan(X, "blur:1", 0, tmp_path / "q")  # no work folder: a temporary one
    assert tmp_path not in plan.work.parents and plan.work.is_dir()
    plan.cleanup()


def test_generator_stops_when_the_child_has_ended(batch, tmp_path):
    X, y = batch
    plan = S.make_plan(X, "augmix", 0, tmp_path / "p", n_classes=8)
    stop = threading.Event()
    stop.set()
    t0 = time.monotonic()
    plan.generate(X, y, stop)
    assert time.monotonic() - t0 < 30 and not plan.generated
    for e in plan.entries:
        assert Path(e["path"]).exists() or "stopped" in plan.failure(e)


def test_generator_failure_is_reported(batch, tmp_path, monkeypatch):
    X, y = batch
    plan = S.make_plan(X, "blur:1", 0, tmp_path / "p", n_classes=8)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    plan.generate(X, y)
    assert plan.error and "FileNotFoundError" in plan.error
    assert plan.failure(plan.entries[0]) == plan.error


def test_set_progress_counts_sets_on_a_live_reporter(tmp_path, recording_bars):
    status = tmp_path / "ingestion.json"
    bar = S.SetProgress(4, "clean + 3 shifted sets", 60.0, status, enabled=True)
    for t, st in ((1.0, {"stage": "predict", "ok": False}),
                  (2.0, {"stage": "extra:blur-1", "ok": True, "extra": {}}),
                  (3.0, {"stage": "extra:noise-1", "ok": True, "extra": {"blur-1": {}}})):
        status.write_text(json.dumps(st))
        bar.tick(t)
    bar.close()
    quiet = S.SetProgress(4, "x", 60.0, status, enabled=False)
    quiet.tick(10.0)
    quiet.close()
    [drawn] = recording_bars  # the quiet one asked for no display
    assert (drawn.label, drawn.total, drawn.unit, drawn.closed) == (
        "clean + 3 shifted sets", 4, "set", True)
    assert drawn.sets == [(0, "clean set: predict"), (1, "shifted set blur-1"),
                          (2, "shifted set noise-1")]


# -- the child side: --extra-input, --proba -----------------------------------------------------
from subkit.grader.run import INGESTION  # noqa: E402

# counts its calls in COUNT_DIR, else next to itself (in the sandbox: its copy in the run folder)
COUNTING = """
import os
import numpy as np
CALLS = os.path.join(os.environ.get("COUNT_DIR", os.path.dirname(os.path.abspath(__file__))),
                     "calls.txt")
class Model:
    def __init__(self):
        pass
    def predict(self, X):
        with open(CALLS, "a") as fh:
            fh.write(f"{len(X)} {int(X.sum()) % 1000003}\\n")
        if X.mean() > 250:
            raise ValueError("too bright")
        return (X.reshape(len(X), -1).mean(1) > 128).astype(np.int64)
"""


def _ingest(tmp_path, args, env=None):
    sub = tmp_path / "sub"
    sub.mkdir(exist_ok=True)
    (sub / "model.py").write_text(COUNTING)
    x = tmp_path / "X.npy"
    np.save(x, np.zeros((5, 4, 4, 3), np.uint8))
    out = tmp_path / "out"
    e = dict(os.environ, COUNT_DIR=str(tmp_path), **(env or {}))
    p = subprocess.run([sys.executable, str(INGESTION), "--submission", str(sub), "--input", str(x),
                        "--output", str(out), *args], env=e, capture_output=True, text=True,
                       timeout=60)
    return p, json.loads((out / "ingestion.json").read_text()), out


def test_ingestion_without_options_is_unchanged(tmp_path):
    p, st, out = _ingest(tmp_path, [])
    assert p.returncode == 0 and st["ok"] and st["stage"] == "done"
    assert "extra" not in st and "proba" not in st and "proba_s" not in st["timings"]
    assert sorted(f.name for f in out.iterdir()) == ["ingestion.json", "predictions.npy"]
    assert (tmp_path / "calls.txt").read_text().count("\n") == 1


def test_ingestion_extra_inputs_wait_fail_and_go_on(tmp_path):
    a, late, bright, never = (tmp_path / f"{k}.npy" for k in ("a", "late", "bright", "never"))
    np.save(a, np.full((3, 4, 4, 3), 200, np.uint8))
    np.save(bright, np.full((2, 4, 4, 3), 255, np.uint8))
    Path(str(never) + ".failed").write_text("generator crashed")

    def write_late():  # once the child waits for it
        status = tmp_path / "out" / "ingestion.json"
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                if json.loads(status.read_text()).get("stage") == "extra:late":
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        time.sleep(0.8)
        tmp = tmp_path / "late.part.npy"
        np.save(tmp, np.full((4, 4, 4, 3), 7, np.uint8))
        os.replace(tmp, late)

    th = threading.Thread(target=write_late)
    th.start()
    p, st, out = _ingest(tmp_path, ["--extra-input", f"a={a}", "--extra-input", f"late={late}",
                                    "--extra-input", f"bright={bright}", "--extra-input",
                                    f"never={never}", "--proba"])
    th.join()
    assert p.returncode == 0, p.stderr
    assert st["ok"] and st["stage"] == "done"
    ex = st["extra"]
    assert ex["a"]["ok"] and ex["late"]["ok"] and ex["late"]["wait_s"] > 0.5
    assert not ex["bright"]["ok"] and ex["bright"]["error"] == "too bright"
    assert not ex["never"]["ok"] and "generator crashed" in ex["never"]["error"]
    assert np.array_equal(np.load(out / "predictions_a.npy"), [1, 1, 1])
    assert np.array_equal(np.load(out / "predictions_late.npy"), [0, 0, 0, 0])
    assert st["proba"]["ok"] is False and "predict_proba" in st["proba"]["error"]
    calls = (tmp_path / "calls.txt").read_text().split("\n")[:-1]
    assert [c.split()[0] for c in calls] == ["5", "3", "4", "2"]  # once per set, in order


def test_ingestion_stops_the_extra_work_when_its_parent_dies(tmp_path):
    """subkit killed mid-suite: the orphaned child must not predict on for hours."""
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "model.py").write_text(COUNTING)
    x = tmp_path / "X.npy"
    np.save(x, np.zeros((5, 4, 4, 3), np.uint8))
    out = tmp_path / "out"
    never = tmp_path / "never.npy"  # never written: the child waits for it
    child = [sys.executable, str(INGESTION), "--submission", str(sub), "--input", str(x),
             "--output", str(out), "--extra-input", f"a={never}", "--extra-input", f"b={never}"]
    wrapper = ("import subprocess, sys, time; subprocess.Popen(sys.argv[1:]); time.sleep(2)")
    env = dict(os.environ, COUNT_DIR=str(tmp_path))
    subprocess.run([sys.executable, "-c", wrapper, *child], env=env, timeout=60)
    deadline = time.monotonic() + 20
    st = {}
    while time.monotonic() < deadline:
        try:
            st = json.loads((out / "ingestion.json").read_text())
        except (OSError, ValueError):
            st = {}
        if st.get("stage") == "done":
            break
        time.sleep(0.2)
    assert st.get("stage") == "done", st
    assert st["ok"] and st["extra_stopped"] == "the parent process ended"
    assert st["extra"]["a"]["error_type"] == "MissingInput" and "b" not in st["extra"]


# -- score-local --shift through the child ----------------------------------------------------
@pytest.fixture
def ws_data(workspace):
    from subkit.data.synthetic import generate

    d = generate(40, seed=5)
    np.savez(workspace / "test.npz", images=d["images"], labels=d["labels"])
    return workspace, d


SUITE = "randaugment:2,erasing:1,erasing:3,cutmix:3,blur:3,stain_deposit:5"


@pytest.mark.slow
def test_shift_scores_are_what_the_model_gives_on_the_shifted_images(cli, ws_data):
    ws, d = ws_data
    z = centroid_zip(ws / "centroid.zip")
    r = cli("score-local", z, "--data", "test.npz", "--shift", SUITE, "--seed", "5", "--json")
    assert r.code == 0, r.text
    res = json.loads(r.out)
    sh = res["shift"]
    assert sh["clean_score"] == res["score"] and sh["suite"] == SUITE and sh["seed"] == 5
    assert sh["n_shifted_sets"] == sh["n_scored"] == 6 and not sh["failures"]
    assert sh["hypothesis"] == "a custom list of shifts" and sh["generator"]["keras"]
    # the same model in this process on the same shifted images (and, for CutMix, the
    # mixed labels) gives the same accuracy
    with zipfile.ZipFile(z) as zf:
        zf.extractall(ws / "unzipped")
    ns: dict = {"__file__": str(ws / "unzipped" / "model.py")}
    exec(CENTROID_MODEL, ns)
    model = ns["Model"]()
    y = d["labels"].ravel()
    values = []
    for row in sh["shifts"]:
        for sev, got in zip(row["severity"], row["scores"], strict=True):
            img, lab = S.apply(d["images"], row["name"], sev, seed=5, labels=y, n_classes=8)
            want = float(np.mean(model.predict(img) == (y if lab is None else lab)))
            assert got == pytest.approx(want), (row["name"], sev)
            assert sh["scores"][f"{row['name']}-{sev}"] == pytest.approx(want)
            values.append(want)
    assert sh["shifted_score"] == pytest.approx(np.mean(values))
    assert sh["drop"] == pytest.approx(res["score"] - np.mean(values))
    assert sh["shifted_score"] < res["score"]  # colour statistics suffer under shift
    t = res["timings"]  # clean timing only against the limit; the extra work apart
    assert t["child_total_s"] >= t["child_s"] and "extra_total_s" in t
    rec = json.loads((ws / "submissions" / "ledger.jsonl").read_text().splitlines()[-1])
    assert rec["shifted_score"] == pytest.approx(sh["shifted_score"])
    assert rec["shift_suite"] == SUITE and rec["shift_seed"] == 5
    assert rec["shift_scores"] == pytest.approx(sh["scores"])
    from subkit.calibration import test_set_id

    assert rec["data_sha256"] == sh["data_sha256"] == test_set_id(d["images"], d["labels"])
    assert res["predicted_leaderboard"]["score"] is None  # no leaderboard scores yet
    assert "at least 2 other zips" in res["predicted_leaderboard"]["message"]
    rd = Path(res["run_dir"])
    assert not (rd / "input_data" / "shifts").exists()  # the shifted copies are removed
    with np.load(rd / "output" / "shift_samples.npz") as smp:
        assert sorted(smp.files) == sorted(sh["scores"])
    assert (rd / "report.html").is_file()


def _calls(r) -> list[str]:
    """What the COUNTING model wrote next to itself in that run."""
    return (Path(json.loads(r.out)["run_dir"]) / "submission"
            / "calls.txt").read_text().splitlines()


@pytest.mark.slow
def test_each_shifted_set_is_predicted_once_and_runs_are_reproducible(cli, ws_data, tmp_path):
    z = make_zip(tmp_path / "count.zip", {"model.py": COUNTING})
    r1 = cli("score-local", z, "--data", "test.npz", "--shift", "quick", "--json")
    assert r1.code == 0, r1.text
    calls = _calls(r1)
    assert len(calls) == 1 + 6 and all(c.split()[0] == "40" for c in calls)
    r2 = cli("score-local", z, "--data", "test.npz", "--shift", "quick", "--json")
    calls2 = _calls(r2)
    assert calls2 == calls  # the same images, bit for bit (checksums)
    s1, s2 = (json.loads(r.out)["shift"] for r in (r1, r2))
    assert s1["scores"] == s2["scores"] and s1["shifted_score"] == s2["shifted_score"]
    assert len(set(calls)) == len(calls)  # every set differs from the clean one and each other


@pytest.mark.slow
def test_a_failing_shifted_predict_leaves_the_clean_score(cli, ws_data, tmp_path):
    model = COUNTING.replace("if X.mean() > 250:", "if open(CALLS).read().count('\\n') == 2:")
    z = make_zip(tmp_path / "flaky.zip", {"model.py": model})
    r = cli("score-local", z, "--data", "test.npz", "--shift", "blur:1,noise:1,jpeg:1", "--json")
    assert r.code == 0, r.text
    res = json.loads(r.out)
    sh = res["shift"]
    assert sh["n_scored"] == 2 and sh["failures"][0]["key"] == "blur-1"
    assert "too bright" in sh["failures"][0]["error"] and sh["scores"]["blur-1"] is None
    assert any("not scored" in w for w in res["warnings"])


def test_the_clean_run_must_fit_the_time_limit(cli, ws_data, tmp_path):
    slow = "import time, numpy as np\nclass Model:\n    def predict(self, X):\n" \
           "        time.sleep(2.5)\n        return np.zeros(len(X), int)\n"
    z = make_zip(tmp_path / "slow.zip", {"model.py": slow})
    r = cli("score-local", z, "--data", "test.npz", "--shift", "blur:1", "--time-limit", "2")
    assert r.code == 1
    assert "exceeded the time limit of 2 s" in r.err


TTA_SWITCH = """
import os
import numpy as np
TTA = True
if os.environ.get("SUBKIT_TTA") == "0":
    TTA = False
class Model:
    def predict(self, X):
        if TTA:
            return np.asarray(np.load(os.path.join(os.path.dirname(__file__), "y.npy"))[:len(X)])
        return np.zeros(len(X), np.int64)
"""


def test_tta_compare_runs_without_tta_and_compares(cli, ws_data, tmp_path):
    ws, d = ws_data
    import io

    buf = io.BytesIO()
    np.save(buf, d["labels"].ravel().astype(np.int64))
    z = make_zip(tmp_path / "tta.zip", {"model.py": TTA_SWITCH, "y.npy": buf.getvalue()})
    r = cli("score-local", z, "--data", "test.npz", "--tta-compare", "--shift", "blur:1", "--json")
    assert r.code == 0, r.text
    t = json.loads(r.out)["tta_compare"]
    assert t["available"] and t["ok"]
    assert t["clean"]["tta"] == 1.0  # "TTA" = the true labels here
    assert t["clean"]["no_tta"] == pytest.approx(np.mean(d["labels"].ravel() == 0))
    assert t["shifted"]["tta"] == 1.0 and t["shifts"][0]["name"] == "blur"
    r = cli("score-local", z, "--data", "test.npz", "--tta-compare")
    assert r.code == 0 and "test-time augmentation" in r.out and "without" in r.out


def test_tta_compare_not_available_without_the_switch(cli, ws_data, tmp_path):
    z = centroid_zip(tmp_path / "c.zip")
    r = cli("score-local", z, "--data", "test.npz", "--tta-compare", "--json")
    assert r.code == 0
    t = json.loads(r.out)["tta_compare"]
    assert t["available"] is False and "SUBKIT_TTA" in t["reason"]
    off_text = TTA_SWITCH.replace("TTA = True", "TTA = False")
    off = make_zip(tmp_path / "off.zip", {"model.py": off_text})
    r = cli("score-local", off, "--data", "test.npz", "--tta-compare", "--json")
    assert "TTA = False" in json.loads(r.out)["tta_compare"]["reason"]


@pytest.mark.slow
def test_cli_shift_options(cli, ws_data, tmp_path):
    ws, _ = ws_data
    z = centroid_zip(ws / "c.zip")
    r = cli("score-local", "--data", "test.npz", "--shift", "c.zip")  # --shift takes no zip
    assert r.code == 0, r.text
    # `--shift` without a suite: the profile's [shift] default (blood cells: hidden-2024)
    assert "--shift: suite hidden-2024 (the profile's [shift] default)" in r.err
    assert "shifted score" in r.out and "distribution shift (suite hidden-2024" in r.out
    for name, _ in S.SUITES["hidden-2024"].pairs:
        assert f"  {name} " in r.out
    assert "predicted leaderboard: - (needs the leaderboard scores" in r.out
    r = cli("score-local", z, "--data", "test.npz", "--shift", "microscopy", "--json")
    sh = json.loads(r.out)["shift"]
    assert sh["n_scored"] == 55 and "MedMNIST-C" in sh["hypothesis"]
    assert all(row["severity"] == [1, 2, 3, 4, 5] for row in sh["shifts"])
    r = cli("score-local", z, "--data", "test.npz", "--shift", "blurr")
    assert r.code != 0 and "unknown shift" in r.err and "hint:" in r.err
    r = cli("score-local", z, "--data", "test.npz", "--shift", "blur", "--seed", "-1")
    assert r.code == 2
    r = cli("score-local", z, "--bundle", str(tmp_path), "--shift")
    assert r.code == 2 and "--shift" in r.err


def test_shift_refuses_a_test_set_that_is_not_images(cli, workspace, tmp_path):
    np.savez(workspace / "series.npz", images=np.zeros((6, 200), np.float32),
             labels=np.arange(6) % 8)
    z = centroid_zip(workspace / "c.zip")
    r = cli("score-local", z, "--data", "series.npz", "--shift", "blur")
    assert r.code != 0
    assert "error:" in r.err and "hint:" in r.err and "Traceback" not in r.err


@pytest.mark.slow
def test_template_keras_model_with_tta_on_shifted_data(cli, ws_data, tmp_path):
    """The real path: a tiny Keras model saved as weights.keras with the template model.py."""
    from subkit.workspace import template_text

    from conftest import tiny_model

    w = tmp_path / "weights.keras"
    tiny_model(optimizer=False).save(w)
    z = make_zip(tmp_path / "keras.zip",
                 {"model.py": template_text("model.py"), "weights.keras": w})
    r = cli("score-local", z, "--data", "test.npz", "--shift", "randaugment:3,jpeg:2",
            "--tta-compare", "--json")
    assert r.code == 0, r.text
    res = json.loads(r.out)
    assert res["shift"]["n_scored"] == 2
    t = res["tta_compare"]
    assert t["available"] and t["ok"] and t["shifted"]["no_tta"] is not None
    assert res["env"]["versions"]["keras"]
    proba = np.load(Path(res["run_dir"]) / "output" / "proba.npy")
    assert proba.shape == (40, 8) and np.allclose(proba.sum(1), 1, atol=1e-4)
    labels = np.load(Path(res["run_dir"]) / "output" / "labels.npy")
    assert np.array_equal(labels, proba.argmax(1))


# -- the proof: the suite ranks models like a hidden test made with other code ----------------
@pytest.mark.slow
def test_hidden_2024_ranks_models_with_and_without_augmentation_like_a_pillow_hidden_test(
        tmp_path):
    """Two small CNNs on synthetic cells, one trained without augmentation and one with
    numpy augmentation; a hidden test made with a Pillow RandAugment + Cutout + noise
    (robustness_helpers.hidden_shift: no Keras layer). The failure this guards
    against: a suite that ranks such a pair the wrong way round, with a score farther from
    the hidden one."""
    from subkit.data.synthetic import generate

    import robustness_helpers as R

    tr, te = generate(1000, seed=11), generate(200, seed=12)
    Xtr, ytr = tr["images"], tr["labels"].ravel()
    Xte, yte = te["images"], te["labels"].ravel()
    hidden = R.hidden_shift(Xte)
    plan = S.prepare(Xte, yte, "hidden-2024", 0, tmp_path / "sets", n_classes=8)
    sets = [(np.load(e["path"]), plan.labels_for(e, yte)) for e in plan.entries]
    scores = {}
    for strength in (0.0, 0.5):
        m = R.train(Xtr, ytr, strength, epochs=12)
        scores[strength] = {"clean": R.accuracy(m, Xte, yte),
                            "hidden": R.accuracy(m, hidden, yte),
                            "shifted": float(np.mean([R.accuracy(m, x, y) for x, y in sets]))}
    plain, aug = scores[0.0], scores[0.5]
    print(scores)
    assert aug["hidden"] > plain["hidden"] + 0.05  # augmentation helps on the hidden test
    assert aug["shifted"] > plain["shifted"]  # and the suite says so
    for s in scores.values():  # nearer the hidden score than the clean one is
        assert abs(s["shifted"] - s["hidden"]) < abs(s["clean"] - s["hidden"])


def test_the_docs_list_every_family_of_every_suite():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "shift-and-report.md").read_text()
    for name in S.FAMILIES:
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{name}` |")), "")
        assert row, name
        for shown in S.describe(name)["shown"]:  # the parameters as the code has them
            assert f"| {shown} |" in row, (name, shown)
