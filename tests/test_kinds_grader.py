"""The child, the scoring and the CSVs of every kind of competition.

The submissions here are numpy-only model.py files (no TensorFlow in the child: fast), each
written to produce one output a grader of that kind accepts or refuses; the refusals must
read as one error and one hint. Real Keras models run in tests/test_kinds_end_to_end.py.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from subkit import kaggle_csv, profile
from subkit.data import io, synthetic

from conftest import make_zip

METADATA = "description: Provides prediction model to be executed by the ingestion program\n"
TENSORISH = '''
class Tensorish:  # what tf.argmax returns, as far as the grader can tell: it has .numpy()
    def __init__(self, a):
        self.a = a
    def numpy(self):
        return self.a
'''

pytestmark = pytest.mark.usefixtures("in_tmp")


def load(name):
    return profile.load(name, workspace=False)


def make_test_set(tmp_path, name, n=24, seed=0, **kw):
    prof = load(name)
    path = tmp_path / f"{name}-test.npz"
    io.save_npz(path, force=True, **synthetic.for_profile(prof, n, seed=seed, **kw))
    return path


def codalab_zip(tmp_path, body, name="sub.zip", metadata=True, extra=None):
    files = {"model.py": "import os\nimport numpy as np\n" + TENSORISH + body}
    if metadata:
        files["metadata"] = METADATA
    files.update(extra or {})
    return make_zip(tmp_path / name, files)


def score(cli, zip_path, data, name, *extra):
    r = cli("score-local", zip_path, "--data", data, "--profile", name, "--json", *extra)
    return r, (json.loads(r.out) if r.out.strip().startswith("{") else None)


FORECAST = '''
class model:
    def __init__(self, path):
        self.h = int(open(os.path.join(path, "h.txt")).read())   # model(path): the folder
    def predict(self, X, categories):
        assert len(categories) == len(X) and set(categories) <= set("ABCDEF")
        out = np.repeat(X[:, -1:], self.h, axis=1)
        return Tensorish(out.reshape(SHAPE(out)))
'''


def forecast_zip(tmp_path, h, shape="lambda o: o.shape", name=None):
    body = FORECAST.replace("SHAPE", f"({shape})")
    return codalab_zip(tmp_path, body, name or f"f{h}.zip", extra={"h.txt": str(h)})


# -- forecasting -------------------------------------------------------------------------------
def test_forecasts_are_scored_in_each_phase(cli, tmp_path):
    data = make_test_set(tmp_path, "an2dl-2023-forecasting", 40)
    d = np.load(data)
    r, res = score(cli, forecast_zip(tmp_path, 9), data, "an2dl-2023-forecasting")
    assert r.code == 0 and res["ok"] and res["phase"] == "development" and res["metric"] == "mse"
    naive = ((d["y"][:, :9] - d["X"][:, -1:]) ** 2)
    assert res["score"] == pytest.approx(float(naive.mean()), rel=1e-6)
    assert res["scores"]["mae"] == pytest.approx(float(np.sqrt(naive).mean()), rel=1e-6)
    r, res = score(cli, forecast_zip(tmp_path, 18), data, "an2dl-2023-forecasting",
                   "--phase", "final")
    assert r.code == 0 and res["phase"] == "final" and len(res["scores"]["mse_per_step"]) == 18
    out = np.load(tmp_path / "submissions" / "runs" / res["run_dir"].split("/")[-1] / "output"
                  / "forecasts.npy")
    assert out.shape == (40, 18)


@pytest.mark.parametrize("h,phase,needle,hint", [
    (9, "final", "predict returned 9 steps per series; the profile wants 18 in the final phase",
     "predict 18 steps"),
    (18, None, "predict returned 18 steps per series; the profile wants 9 in the development phase",
     "return out[:, :9]"),
])
def test_a_wrong_horizon_for_the_phase(cli, tmp_path, h, phase, needle, hint):
    data = make_test_set(tmp_path, "an2dl-2023-forecasting", 16)
    extra = ("--phase", phase) if phase else ()
    r = cli("score-local", forecast_zip(tmp_path, h), "--data", data, "--profile",
            "an2dl-2023-forecasting", *extra)
    assert r.code == 1 and f"error: {needle}" in r.err and f"hint: {hint}" in r.err
    assert "Traceback" not in r.err


def test_forecasts_with_a_trailing_axis_are_refused(cli, tmp_path):
    data = make_test_set(tmp_path, "an2dl-2023-forecasting", 16)
    zp = forecast_zip(tmp_path, 9, "lambda o: o.shape + (1,)", "f9x1.zip")
    r = cli("score-local", zp, "--data", data, "--profile", "an2dl-2023-forecasting")
    assert r.code == 1 and "predict returned shape (16, 9, 1), not (16, 9)" in r.err
    assert "hint: drop the last axis: return out[..., 0]" in r.err


def test_predict_without_categories_is_named_with_the_call(cli, tmp_path):
    data = make_test_set(tmp_path, "an2dl-2023-forecasting", 8)
    zp = codalab_zip(tmp_path, "class model:\n    def __init__(self, path):\n        pass\n"
                               "    def predict(self, X):\n        return X[:, :9]\n")
    r = cli("score-local", zp, "--data", data, "--profile", "an2dl-2023-forecasting")
    assert r.code == 1 and "predict could not be called as predict(X, categories)" in r.err
    assert "hint: define def predict(self, X, categories)" in r.err


def test_forecasting_refuses_a_test_set_too_short_for_the_final_phase(cli, tmp_path):
    d = synthetic.for_profile(load("an2dl-2023-forecasting"), 8)
    d["y"] = d["y"][:, :9]
    np.savez(tmp_path / "short.npz", **d)
    r = cli("score-local", forecast_zip(tmp_path, 18), "--data", tmp_path / "short.npz",
            "--profile", "an2dl-2023-forecasting", "--phase", "final")
    assert r.code == 1 and "holds 9 future steps; the horizon of the final phase is 18" in r.err
    r = cli("score-local", forecast_zip(tmp_path, 18), "--data", tmp_path / "short.npz",
            "--profile", "an2dl-2023-forecasting", "--phase", "last")
    assert r.code == 2 and "has no phase 'last'" in r.err and "development, final" in r.err


# -- segmentation ------------------------------------------------------------------------------
SEG = '''
class Model:
    def predict(self, X):
        n = len(X)
        truth = np.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "truth.npy"))[:n]
        return OUT
'''


def seg_zip(tmp_path, out, truth, name="seg.zip"):
    buf = tmp_path / "truth.npy"
    np.save(buf, truth)
    return make_zip(tmp_path / name, {"model.py": "import os\nimport numpy as np\n" +
                                      SEG.replace("OUT", out), "truth.npy": buf})


def test_masks_are_scored_by_mean_iou_without_the_background(cli, tmp_path):
    data = make_test_set(tmp_path, "an2dl-2024-mars-terrain", 12)
    truth = np.load(data)["masks"].astype(np.int64)
    noisy = truth.copy()
    noisy[:, :, :20] = 1  # a band of wrong "Soil"
    r, res = score(cli, seg_zip(tmp_path, "truth", noisy), data, "an2dl-2024-mars-terrain")
    assert r.code == 0 and res["metric"] == "mean_iou" and res["kind"] == "segmentation"
    from subkit.grader import scoring

    want = scoring.segmentation_metrics(truth, noisy, load("an2dl-2024-mars-terrain").class_names,
                                        [0])
    assert res["score"] == pytest.approx(want["mean_iou"]) and 0.5 < res["score"] < 0.95
    assert res["per_class"][0]["ignored"] and res["per_class"][0]["iou"] is None
    assert "pixel_accuracy" in res["scores"]
    r = cli("score-local", tmp_path / "seg.zip", "--data", data,
            "--profile", "an2dl-2024-mars-terrain")
    assert "mean_iou" in r.out and "ignored" in r.out and "confusion matrix of pixels" in r.out


@pytest.mark.parametrize("out,needle,hint", [
    ("np.eye(5, dtype=np.float32)[truth]",
     "predict returned per-pixel class probabilities of shape "
     "(6, 64, 128, 5), not masks of shape (6, 64, 128)", "np.argmax(output, axis=-1)"),
    ("truth[..., None]", "predict returned shape (6, 64, 128, 1)", "masks[..., 0]"),
    ("truth[:, ::2, ::2]", "predict returned masks of 32x64 pixels; the images are 64x128",
     "resize the network's output back"),
    ("truth.reshape(n, -1)", "predict returned flattened masks (6, 8192)", "reshape(-1, 64, 128)"),
    ("truth * 0.5", "predict returned fractional values per pixel",
     "np.argmax(probabilities, axis=-1)"),
    ("truth + 3", "pixels hold classes outside 0..4", "class indices"),
    ("truth[:-1]", "predict returned shape (5, 64, 128) for 6 images", "one mask per input image"),
])
def test_bad_masks(cli, tmp_path, out, needle, hint):
    data = make_test_set(tmp_path, "an2dl-2024-mars-terrain", 6)
    zp = seg_zip(tmp_path, out, np.load(data)["masks"].astype(np.int64))
    r = cli("score-local", zp, "--data", data, "--profile", "an2dl-2024-mars-terrain")
    assert r.code == 1 and needle in r.err and hint in r.err and "Traceback" not in r.err
    assert r.err.count("error: ") == 1 and r.err.count("hint: ") == 1


# -- CodaLab classification: model(path), tensors, string labels -----------------------------
PLANTS = '''
class model:
    def __init__(self, path):
        self.path = path
    def predict(self, X):
        return OUT
'''


@pytest.mark.parametrize("out,code,needle", [
    ("Tensorish((X.mean(axis=(1, 2, 3)) > 100).astype(np.int64))", 0, None),
    ("np.where(X.mean(axis=(1, 2, 3)) > 100, 'unhealthy', 'healthy')", 1,
     "predict returned strings, class names (e.g. 'healthy'), not class indices"),
    ("np.array(['healthy', 'sick'] * (len(X) // 2))", 1,
     "predict returned labels the profile does not know: 'sick' (its classes: healthy, unhealthy)"),
    ("np.full(len(X), 2)", 1, "12 labels are outside 0..1"),
])
def test_plants_outputs(cli, tmp_path, out, code, needle):
    data = make_test_set(tmp_path, "an2dl-2023-plants", 12)
    zp = codalab_zip(tmp_path, PLANTS.replace("OUT", out))
    r = cli("score-local", zp, "--data", data, "--profile", "an2dl-2023-plants")
    assert r.code == code, r.err
    if needle:
        assert f"error: {needle}" in r.err and "hint: " in r.err
    else:
        assert "accuracy" in r.out


def test_a_codabench_profile_calls_Model_without_the_path(cli, tmp_path, test_npz):
    zp = make_zip(tmp_path / "p.zip", {"model.py": "class Model:\n    def __init__(self, path):\n"
                                                   "        pass\n    def predict(self, X):\n"
                                                   "        return [0] * len(X)\n"})
    r = cli("score-local", zp, "--data", test_npz, "--profile", "an2dl-2024-blood-cells")
    assert r.code == 1 and "error: Model() needs arguments" in r.err
    assert "hint: the grader calls Model() with no argument (CodaLab's model(path)" in r.err


# -- Kaggle CSVs -------------------------------------------------------------------------------
def test_predict_writes_the_mars_csv_exactly(cli, tmp_path):
    data = make_test_set(tmp_path, "an2dl-2024-mars-terrain", 5)
    truth = np.load(data)["masks"].astype(np.int64)
    truth[2, 1, 3] = 4  # pixel (row 1, col 3) of image 2 -> column 1 * 128 + 3 = 131
    r = cli("predict", seg_zip(tmp_path, "truth", truth), "--data", data,
            "--out", tmp_path / "m.csv", "--profile", "an2dl-2024-mars-terrain")
    assert r.code == 0, r.err
    rows = list(csv.reader(open(tmp_path / "m.csv")))
    assert rows[0] == ["id"] + [str(i) for i in range(8192)]
    assert [row[0] for row in rows[1:]] == ["0", "1", "2", "3", "4"]
    assert rows[3][1 + 131] == "4"
    for i in range(5):
        assert [int(v) for v in rows[1 + i][1:]] == truth[i].reshape(-1).tolist()
    r = cli("check", tmp_path / "m.csv", "--data", data, "--profile", "an2dl-2024-mars-terrain")
    assert r.code == 0 and "PASSED" in r.out and "5 rows in the pixels layout" in r.out


def test_predict_writes_the_pirate_pain_csv_exactly(cli, tmp_path):
    data = make_test_set(tmp_path, "an2dl-2025-pirate-pain", 12)
    zp = make_zip(tmp_path / "pp.zip", {"model.py": "import numpy as np\nclass Model:\n"
                                                    "    def predict(self, X):\n"
                                                    "        return np.arange(len(X)) % 3\n"})
    r = cli("predict", zp, "--data", data, "--out", tmp_path / "pp.csv", "--profile",
            "an2dl-2025-pirate-pain")
    assert r.code == 0, r.err
    lines = (tmp_path / "pp.csv").read_text().splitlines()
    assert lines[:4] == ["sample_index,label", "000,no_pain", "001,low_pain", "002,high_pain"]
    assert len(lines) == 13
    r = cli("check", tmp_path / "pp.csv", "--data", data, "--profile", "an2dl-2025-pirate-pain")
    assert r.code == 0 and "PASSED" in r.out


PP = ["sample_index,label", "000,no_pain", "001,low_pain", "002,high_pain", "003,no_pain"]


@pytest.mark.parametrize("lines,needle", [
    ([PP[0], PP[2], PP[1], PP[3], PP[4]],
     "the ids are shuffled: line 2 has id '001', the test set has '000' there (write the rows "
     "in the test set's order)"),
    (["id,label"] + PP[1:],
     "the header is not the competition's: missing sample_index; unexpected id"),
    (["label,sample_index"] + [",".join(ln.split(",")[::-1]) for ln in PP[1:]],
     "the columns are in another order than the competition's"),
    (PP[:4], "3 rows, the competition expects 4"),
    (PP + ["003,no_pain"], "line 6: the id '003' appears twice"),
    ([PP[0], "0,no_pain", "1,low_pain", "2,high_pain", "3,no_pain"],
     "ids the test set does not have: 0, 1, 2 (it has 000..003"),
    (PP[:4] + ["003,medium_pain"],
     "line 5: 'medium_pain' is not a class name (no_pain, low_pain, high_pain)"),
    (PP[:4] + ["003,0"], "line 5: '0' is not a class name"),
])
def test_a_bad_pirate_pain_csv(cli, tmp_path, lines, needle):
    data = make_test_set(tmp_path, "an2dl-2025-pirate-pain", 4)
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    r = cli("check", tmp_path / "bad.csv", "--data", data, "--profile", "an2dl-2025-pirate-pain")
    assert r.code == 1 and "FAILED" in r.out and needle in r.out, r.out
    assert "hint: write it with `subkit predict`" in r.out


@pytest.mark.parametrize("edit,needle", [
    (lambda rows: [rows[0][:-1]] + [r[:-1] for r in rows[1:]],
     "the header is not the competition's: missing 8191"),
    (lambda rows: [rows[0]] + [rows[2], rows[1]] + rows[3:],
     "the ids are shuffled: line 2 has id '1'"),
    (lambda rows: [rows[0]] + [rows[1][:5] + ["7"] + rows[1][6:]] + rows[2:],
     "line 2: '7' is not a class id (0..4)"),
    (lambda rows: [rows[0]] + [rows[1][:5] + ["0.5"] + rows[1][6:]] + rows[2:],
     "line 2: '0.5' is not a class id"),
    (lambda rows: [rows[0][:2] + [rows[0][3], rows[0][2]] + rows[0][4:]] + rows[1:],
     "the columns are in another order than the competition's"),
])
def test_a_bad_mars_csv(cli, tmp_path, edit, needle):
    prof = load("an2dl-2024-mars-terrain")
    data = make_test_set(tmp_path, "an2dl-2024-mars-terrain", 3)
    masks = np.load(data)["masks"]
    kaggle_csv.write(tmp_path / "ok.csv", masks, ["0", "1", "2"], prof)
    rows = list(csv.reader(open(tmp_path / "ok.csv")))
    with open(tmp_path / "bad.csv", "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(edit(rows))
    r = cli("check", tmp_path / "bad.csv", "--data", data, "--profile", "an2dl-2024-mars-terrain")
    assert r.code == 1 and needle in r.out, r.out


def test_a_csv_checked_without_the_test_set_warns(cli, tmp_path):
    (tmp_path / "p.csv").write_text("\n".join(PP) + "\n")
    r = cli("check", tmp_path / "p.csv", "--profile", "an2dl-2025-pirate-pain")
    assert r.code == 0 and "PASSED with warnings" in r.out and "pass --data" in r.out


def test_the_test_sets_own_ids_are_used(cli, tmp_path):
    prof = load("an2dl-2025-pirate-pain")
    d = synthetic.for_profile(prof, 3)
    d["sample_index"] = np.array(["a7", "b2", "c9"])
    np.savez(tmp_path / "t.npz", **d)
    assert kaggle_csv.test_ids(tmp_path / "t.npz", prof, 3) == ["a7", "b2", "c9"]
    kaggle_csv.write(tmp_path / "o.csv", np.array([2, 0, 1]), ["a7", "b2", "c9"], prof)
    assert ((tmp_path / "o.csv").read_text().splitlines()[1:]
            == ["a7,high_pain", "b2,no_pain", "c9,low_pain"])
