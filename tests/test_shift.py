"""The shift suite (subkit.shift) and `score-local --shift / --tta-compare`.

Transforms are checked in-process on small synthetic batches; the suite runs through the
real child path with numpy-only models (fast), and once with a tiny Keras model and the
template model.py (TTA on and off)."""

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

from conftest import make_zip
from subkit import shift as S
from test_report_html import CENTROID_MODEL, centroid_zip


@pytest.fixture(scope="module")
def batch():
    from subkit.data.synthetic import generate

    return generate(40, seed=7)["images"]


ALL = [(n, s) for n in S.SHIFTS for s in (1, 2, 3)]
DETERMINISTIC = {"blur", "jpeg"}  # no random parameters


# -- transforms -----------------------------------------------------------------------------
@pytest.mark.parametrize("name,sev", ALL)
def test_every_shift_keeps_shape_dtype_range_and_is_reproducible(batch, name, sev):
    y = S.apply(batch, name, sev, seed=3)
    assert y.shape == batch.shape and y.dtype == np.uint8
    assert not np.array_equal(y, batch), "the shift changed nothing"
    assert np.array_equal(y, S.apply(batch, name, sev, seed=3))
    if name not in DETERMINISTIC:
        assert not np.array_equal(y, S.apply(batch, name, sev, seed=4))


@pytest.mark.parametrize("name", list(S.SHIFTS))
def test_severity_increases_the_change(batch, name):
    d = [np.abs(S.apply(batch, name, s).astype(int) - batch).mean() for s in (1, 2, 3)]
    assert d[0] < d[1] < d[2], d


def test_float_images_stay_in_their_range(batch):
    xf = batch.astype(np.float32) / 255
    for name in ("randaugment", "noise", "jpeg", "occlusion"):
        y = S.apply(xf, name, 3, value_range=(0, 1))
        assert y.dtype == np.float32 and y.min() >= 0 and y.max() <= 1
        yu = S.apply(batch, name, 3)
        assert np.abs(y * 255 - yu).mean() < 1.0  # the same shift, up to rounding


def test_grayscale_images(batch):
    g = batch[..., :1].copy()
    assert S.apply(g, "blur", 2).shape == g.shape
    assert S.apply(g, "jpeg", 2).shape == g.shape
    with pytest.raises(S.SuiteError, match="RGB"):
        S.apply(g, "hue_shift", 1)
    plan = S.make_plan(g, "hue_shift:1,blur:1", 0, Path("/tmp/unused-subkit-plan"))
    assert [e["key"] for e in plan.entries] == ["blur-1"] and plan.skipped == ["hue_shift-1"]
    plan.cleanup()


def test_warp_identity_rotation_and_mirror(batch):
    x = batch.astype(np.float32) / 255
    n = len(x)
    eye = np.broadcast_to(np.eye(2, dtype=np.float32), (n, 2, 2))
    assert np.array_equal(S.warp(x, eye), x)
    assert np.allclose(S.warp(x, S._rot(np.full(n, 180.0))), x[:, ::-1, ::-1], atol=1e-5)
    t = np.zeros((n, 2), np.float32)
    t[:, 0] = -3  # the source is 3 pixels left: the image moves right, the border mirrors
    y = S.warp(x, eye, t)
    assert np.array_equal(y[:, :, 3:], x[:, :, :-3])
    assert np.array_equal(y[:, :, :3], x[:, :, 2::-1])


def test_blur_and_jpeg_primitives(batch):
    flat = np.full((2, 32, 32, 3), 0.4, np.float32)
    assert np.allclose(S.gaussian_blur(flat, 2.0), 0.4, atol=1e-6)
    assert np.allclose(S._K64 @ S._K64.T, np.eye(64), atol=1e-5)  # orthonormal 2-D DCT
    x = batch.astype(np.float32) / 255
    err = {q: np.abs(S._jpeg(x, None, q) - x).mean() * 255 for q in (95, 40, 8)}
    assert err[95] < err[40] < err[8]
    grey = x[..., :1]  # no chroma subsampling: near-lossless at quality 95
    assert np.abs(S._jpeg(grey, None, 95) - grey).mean() * 255 < 2.0


def test_zero_strength_parameters_are_the_identity(batch):
    x = batch.astype(np.float32) / 255
    rng = np.random.default_rng(0)
    assert np.allclose(S._colour_cast(x, rng, 0.0, 0.0), x)
    assert np.allclose(S._hue_shift(x, rng, 0.0), x, atol=1e-5)
    assert np.allclose(S._stain_jitter(np.clip(x, 1 / 255, 1), rng, 0.0, 0.0),
                       np.clip(x, 1 / 255, 1), atol=1e-4)


def test_parse_suite():
    assert len(S.parse_suite("default")) == 3 * len(S.SHIFTS) == 42
    assert S.parse_suite(None) == S.parse_suite("default")
    assert len(S.parse_suite("quick")) == 6
    assert S.parse_suite("blur:3,noise") == [("blur", 3), ("noise", 1), ("noise", 2), ("noise", 3)]
    for required in ("colour_cast", "hue_shift", "brightness_contrast", "blur", "noise", "jpeg",
                     "stain_jitter", "rotate_flip", "zoom_crop", "augmix", "occlusion",
                     "randaugment"):
        assert required in S.SHIFTS
    with pytest.raises(S.SuiteError, match="unknown shift"):
        S.parse_suite("blurr")
    with pytest.raises(S.SuiteError, match="severity"):
        S.parse_suite("blur:4")


def test_suite_table_in_the_docstring_lists_every_shift():
    doc = S.__doc__
    for name in S.SHIFTS:
        assert f"\n{name} " in doc, name


# -- the child side: --extra-input, --proba -----------------------------------------------------
INGESTION = Path(S.__file__).parent / "grader" / "ingestion.py"
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


SUITE = "randaugment:2,occlusion:1,occlusion:3,colour_cast:2,blur:3"


def test_shift_scores_are_what_the_model_gives_on_the_shifted_images(cli, ws_data):
    ws, d = ws_data
    z = centroid_zip(ws / "centroid.zip")
    r = cli("score-local", z, "--data", "test.npz", "--shift", SUITE, "--seed", "5", "--json")
    assert r.code == 0, r.text
    res = json.loads(r.out)
    sh = res["shift"]
    assert sh["clean_score"] == res["score"] and sh["suite"] == SUITE and sh["seed"] == 5
    assert sh["n_shifted_sets"] == sh["n_scored"] == 5 and not sh["failures"]
    # the same model in this process on the same shifted images gives the same accuracy
    with zipfile.ZipFile(z) as zf:
        zf.extractall(ws / "unzipped")
    ns: dict = {"__file__": str(ws / "unzipped" / "model.py")}
    exec(CENTROID_MODEL, ns)
    model = ns["Model"]()
    y = d["labels"].ravel()
    values = []
    for row in sh["shifts"]:
        for sev, got in zip(row["severity"], row["scores"], strict=True):
            shifted = S.apply(d["images"], row["name"], sev, seed=5)
            want = float(np.mean(model.predict(shifted) == y))
            assert got == pytest.approx(want), (row["name"], sev)
            values.append(want)
    assert sh["shifted_score"] == pytest.approx(np.mean(values))
    assert sh["drop"] == pytest.approx(res["score"] - np.mean(values))
    assert sh["shifted_score"] < res["score"]  # colour statistics suffer under shift
    # clean timing only against the limit; the extra work is reported apart
    t = res["timings"]
    assert t["child_total_s"] >= t["child_s"] and "extra_total_s" in t
    rec = json.loads((ws / "submissions" / "ledger.jsonl").read_text().splitlines()[-1])
    assert rec["shifted_score"] == pytest.approx(sh["shifted_score"])
    rd = Path(res["run_dir"])
    assert not (rd / "input_data" / "shifts").exists()  # the shifted copies are removed
    with np.load(rd / "output" / "shift_samples.npz") as smp:
        want = [f"{r_['name']}-{s}" for r_ in sh["shifts"] for s in r_["severity"]]
        assert sorted(smp.files) == sorted(want)
    assert (rd / "report.html").is_file()


def _calls(r) -> list[str]:
    """What the COUNTING model wrote next to itself in that run."""
    return (Path(json.loads(r.out)["run_dir"]) / "submission" / "calls.txt").read_text().splitlines()


def test_each_shifted_set_is_predicted_once_and_runs_are_reproducible(cli, ws_data, tmp_path):
    ws, _ = ws_data
    z = make_zip(tmp_path / "count.zip", {"model.py": COUNTING})
    r1 = cli("score-local", z, "--data", "test.npz", "--shift", "quick", "--json")
    assert r1.code == 0, r1.text
    calls = _calls(r1)
    assert len(calls) == 1 + 6 and all(c.split()[0] == "40" for c in calls)
    r2 = cli("score-local", z, "--data", "test.npz", "--shift", "quick", "--json")
    calls2 = _calls(r2)
    assert calls2 == calls  # the same images, bit for bit (checksums)
    s1, s2 = (json.loads(r.out)["shift"] for r in (r1, r2))
    assert [x["scores"] for x in s1["shifts"]] == [x["scores"] for x in s2["shifts"]]
    assert s1["shifted_score"] == s2["shifted_score"]
    r3 = cli("score-local", z, "--data", "test.npz", "--shift", "quick", "--seed", "1", "--json")
    calls3 = _calls(r3)
    assert calls3[0] == calls[0] and calls3[1:] != calls[1:]  # clean same, shifted differ


def test_a_failing_shifted_predict_leaves_the_clean_score(cli, ws_data, tmp_path):
    model = COUNTING.replace("if X.mean() > 250:", "if open(CALLS).read().count('\\n') == 2:")
    z = make_zip(tmp_path / "flaky.zip", {"model.py": model})
    r = cli("score-local", z, "--data", "test.npz", "--shift", "blur:1,noise:1,jpeg:1", "--json")
    assert r.code == 0, r.text
    res = json.loads(r.out)
    sh = res["shift"]
    assert sh["n_scored"] == 2 and sh["failures"][0]["key"] == "blur-1"
    assert "too bright" in sh["failures"][0]["error"]
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


def test_cli_shift_options(cli, ws_data, tmp_path):
    ws, _ = ws_data
    z = centroid_zip(ws / "c.zip")
    r = cli("score-local", "--data", "test.npz", "--shift", "c.zip")  # --shift takes no zip
    assert r.code == 0, r.text
    assert "shifted score" in r.out and "distribution shift (suite default" in r.out
    for name in S.SHIFTS:
        assert f"  {name} " in r.out
    r = cli("score-local", z, "--data", "test.npz", "--shift", "blurr")
    assert r.code != 0 and "unknown shift" in r.err and "hint:" in r.err
    r = cli("score-local", z, "--data", "test.npz", "--shift", "blur", "--seed", "-1")
    assert r.code == 2
    r = cli("score-local", z, "--bundle", str(tmp_path), "--shift")
    assert r.code == 2 and "--shift" in r.err


@pytest.mark.slow
def test_template_keras_model_with_tta_on_shifted_data(cli, ws_data, tmp_path):
    """The real path: a tiny Keras model saved as weights.keras with the template model.py."""
    from conftest import tiny_model
    from subkit.workspace import template_text

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
