"""One end-to-end run per built-in profile, through the CLI a participant uses.

`subkit init --profile NAME` (the kind's template model.py), a tiny Keras model of that
kind, synthetic test data, then build (with its smoke test in a child) -> check ->
score-local (the sandboxed child, the kind's metric) -> on Kaggle profiles predict and the
CSV read back by check. Tiny untrained networks: the scores are not the point, the path is.
"""

from __future__ import annotations

import csv
import json
import re
import zipfile

import numpy as np
import pytest

from subkit import profile
from subkit.data import io, synthetic

pytestmark = pytest.mark.slow


def _save(model, path):
    model.save(path)
    return path


def plants(keras, path):
    i = keras.Input((96, 96, 3))
    x = keras.layers.Rescaling(1 / 255.0)(i)
    x = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return _save(keras.Model(i, keras.layers.Dense(2, activation="softmax")(x)), path)


def blood(keras, path):
    from conftest import tiny_model

    return _save(tiny_model(optimizer=False), path)


def series(steps, features, k):
    def build(keras, path):
        i = keras.Input((steps, features))
        x = keras.layers.BatchNormalization()(i)
        x = keras.layers.Conv1D(4, 3, activation="relu")(x)
        x = keras.layers.GlobalAveragePooling1D()(x)
        return _save(keras.Model(i, keras.layers.Dense(k, activation="softmax")(x)), path)
    return build


def forecaster(keras, path):
    x_in, c_in = keras.Input((200,)), keras.Input((6,))
    x = keras.layers.Concatenate()([x_in, c_in])
    return _save(keras.Model([x_in, c_in], keras.layers.Dense(18)(x)), path)


def segmenter(keras, path):
    i = keras.Input((64, 128, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(i)
    return _save(keras.Model(i, keras.layers.Conv2D(5, 1, activation="softmax")(x)), path)


MODELS = {
    "an2dl-2024-blood-cells": blood,
    "an2dl-2023-plants": plants,
    "an2dl-2023-forecasting": forecaster,
    "an2dl-2022-ts-classification": series(36, 6, 12),
    "an2dl-2024-mars-terrain": segmenter,
    "an2dl-2025-pirate-pain": series(160, 38, 3),
}


SERIES_PROFILES = ("an2dl-2023-forecasting", "an2dl-2022-ts-classification",
                   "an2dl-2025-pirate-pain")


@pytest.fixture
def kind_workspace(cli, tmp_path, monkeypatch):
    def make(name):
        import keras

        ws = tmp_path / "ws"
        assert cli("init", ws, "--profile", name).code == 0
        toml = ws / "subkit.toml"  # the grader's Keras = this one: no retarget (fast)
        toml.write_text(toml.read_text() + f'\n[grader]\nkeras = "{keras.__version__}"\n')
        monkeypatch.chdir(ws)
        monkeypatch.delenv("SUBKIT_WORKSPACE", raising=False)
        keras.utils.set_random_seed(0)
        weights = MODELS[name](keras, ws / "weights.keras")
        prof = profile.load(name, workspace=False)
        data = ws / "local_test.npz"
        io.save_npz(data, **synthetic.for_profile(prof, 20, seed=1))
        return ws, prof, weights, data
    return make


def build(cli, weights, *extra):
    r = cli("build", "--weights", weights, "--tag", "e2e", "--json", *extra)
    assert r.code == 0, r.err
    return json.loads(r.out)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_build_check_score_predict(cli, kind_workspace, name):
    ws, prof, weights, data = kind_workspace(name)
    manifest = build(cli, weights)
    assert manifest["smoke"]["ok"], manifest["checks"]
    with zipfile.ZipFile(manifest["path"]) as zf:  # build adds CodaLab's metadata file
        assert set(zf.namelist()) == {"model.py", "weights.keras", *prof.required_files}
        for name, text in prof.required_files.items():
            assert zf.read(name).decode() == text
    assert any(m["name"] == "metadata" for m in manifest["members"]) == bool(prof.required_files)
    r = cli("check", manifest["path"])
    assert r.code == 0 and "PASSED" in r.out, r.out
    # the smoke test says what a sample is (subkit.kinds: Kind.noun), not always "images"
    noun = "series" if prof.name in SERIES_PROFILES else "images"
    assert f"predict on 4 {noun} in the sandbox" in r.text, r.text[-2000:]
    r = cli("score-local", manifest["path"], "--data", data, "--json")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    assert res["ok"] and res["kind"] == prof.kind and res["metric"] == prof.metric
    assert np.isfinite(res["score"]) and res["n"] == len(np.load(data)[prof.images_key])
    scores = json.loads((ws / "submissions" / "runs" / res["run_dir"].split("/")[-1]
                         / "scores.json").read_text())
    assert scores[prof.metric] == pytest.approx(res["score"])
    # report.html by default for every kind, with the kind's own sections and words
    run_dir = ws / "submissions" / "runs" / res["run_dir"].split("/")[-1]
    page = (run_dir / "report.html").read_text()
    assert f"{res['n']} local test {noun}" in page
    assert ("Most confident mistakes" in page) == (prof.kind == "classification")
    own = {"forecasting": "Error per forecast step", "segmentation": "IoU per class",
           "series-classification": "Per class", "classification": "Per class"}[prof.kind]
    assert own in page
    if prof.kind == "segmentation":
        assert "Masks: truth and prediction" in page and "data:image/png" in page
    r = cli("score-local", manifest["path"], "--data", data)
    assert r.code == 0, r.err  # the summary ends like every kind's: report, then the versions
    tail = r.out.rstrip().splitlines()
    assert tail[-2].startswith("  report: ") and "ran in " in tail[-1], r.out[-1500:]
    if prof.platform != "kaggle":
        return
    out = ws / "submission.csv"
    r = cli("predict", manifest["path"], "--data", data, "--out", out)
    assert r.code == 0, r.err
    with open(out) as fh:
        rows = list(csv.reader(fh))
    n = res["n"]
    if prof.csv.layout == "pixels":
        assert rows[0] == ["id"] + [str(i) for i in range(64 * 128)]
        assert [r[0] for r in rows[1:]] == [str(i) for i in range(n)]
    else:
        assert rows[0] == ["sample_index", "label"] and rows[1][0] == "000"
        assert {r[1] for r in rows[1:]} <= set(prof.class_names)
    r = cli("check", out, "--data", data)
    assert r.code == 0 and "PASSED" in r.out, r.out


def test_forecasting_phases_end_to_end(cli, kind_workspace):
    ws, prof, weights, data = kind_workspace("an2dl-2023-forecasting")
    first = build(cli, weights, "--no-smoke")["path"]
    r = cli("score-local", first, "--data", data, "--phase", "final")
    assert r.code == 1 and "error: predict returned 9 steps per series; the profile wants 18 in " \
                          "the final phase" in r.err
    model_py = ws / "model.py"
    model_py.write_text(re.sub(r"^HORIZON = 9$", "HORIZON = 18", model_py.read_text(), flags=re.M))
    final = build(cli, weights, "--phase", "final")
    smoke = [c for c in final["checks"] if c["name"] == "smoke test"]
    assert "horizon 18 in the final phase" in smoke[-1]["message"]
    r = cli("score-local", final["path"], "--data", data, "--phase", "final", "--json")
    assert r.code == 0 and json.loads(r.out)["phase"] == "final"


def test_demo_of_a_kaggle_series_competition(cli, tmp_path):
    out = tmp_path / "demo"
    r = cli("demo", out, "--profile", "an2dl-2025-pirate-pain", "--n", "200", "--epochs", "1")
    assert r.code == 0, r.text[-3000:]
    for step in ("[1/6]", "[3/6] train", "[5/6] score-local", "[6/6] predict", "PASSED",
                 "demo finished", f"next: cd {out} && subkit history", "local score: "):
        assert step in r.out
    lines = (out / "submission.csv").read_text().splitlines()
    assert (lines[0] == "sample_index,label"
            and len(lines) == 1 + len(np.load(out / "data" / "local_test.npz")["X"]))
    train, test = np.load(out / "data" / "train.npz"), np.load(out / "data" / "local_test.npz")
    assert len(train["X"]) + len(test["X"]) == 200 and set(test["labels"].ravel()) == {0, 1, 2}
    assert 'local_test = "data/local_test.npz"' in (out / "subkit.toml").read_text()
