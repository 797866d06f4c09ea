"""The CodaLab years' path end to end, in the real TensorFlow 2.15 + Keras 2 grader
environment of the an2dl-2023-plants profile (`.ci/run` creates it): a tiny SavedModel
folder and a tiny tf.keras .h5 (with a PolynomialDecay schedule in its optimizer, as
students' files had), made by that environment's own TensorFlow in a subprocess, zipped
CodaLab-style (`class model: __init__(self, path)`, a `metadata` file), checked and scored;
then the same SavedModel in front of a Keras 3 grader, whose failure names the format and the
versions that load it."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.grader_env]

PLANTS = "an2dl-2023-plants"

MAKE_MODELS = r"""
import os, pickle, sys
import numpy as np
import tensorflow as tf
from sklearn.preprocessing import StandardScaler

out = sys.argv[1]
inp = tf.keras.Input((96, 96, 3))
x = tf.keras.layers.GlobalAveragePooling2D()(inp)
y = tf.keras.layers.Dense(2, activation="softmax")(x)
m = tf.keras.Model(inp, y)
# mean pixel v: logits (100 - v, v - 100), so dark images are class 0 and bright ones 1
m.layers[-1].set_weights([np.array([[-1, 1], [0, 0], [0, 0]], "float32"),
                          np.array([100, -100], "float32")])
sched = tf.keras.optimizers.schedules.PolynomialDecay(1e-3, 100, 1e-5)
m.compile(optimizer=tf.keras.optimizers.Adam(sched), loss="categorical_crossentropy")
m.save(os.path.join(out, "Classifier"))          # no extension: a SavedModel folder (TF 2)
m.save(os.path.join(out, "clf.h5"))               # the legacy HDF5, optimizer config kept
scaler = StandardScaler().fit(np.array([[-1.0], [1.0]]))   # mean 0, scale 1: the identity
with open(os.path.join(out, "scaler.pkl"), "wb") as fh:
    pickle.dump(scaler, fh)
import keras
print("made with tensorflow", tf.__version__, "keras", keras.__version__)
"""

SAVEDMODEL_PY = """import os
import tensorflow as tf


class model:
    def __init__(self, path):
        self.model = tf.keras.models.load_model(os.path.join(path, 'Classifier'))

    def predict(self, X):
        return tf.argmax(self.model.predict(X, verbose=0), axis=-1)
"""

H5_PY = """import os
import pickle

import numpy as np
import scipy.special
import tensorflow as tf


class model:
    def __init__(self, path):
        with open(os.path.join(path, 'SubmissionModel', 'scaler.pkl'), 'rb') as fh:
            self.scaler = pickle.load(fh)
        self.model = tf.keras.models.load_model(os.path.join(path, 'SubmissionModel/clf.h5'))

    def predict(self, X):
        flat = self.scaler.transform(np.asarray(X, 'float64').reshape(-1, 1))
        X = flat.reshape(np.shape(X)).astype('float32')
        logits = np.log(self.model.predict(X, verbose=0) + 1e-9)
        return tf.argmax(scipy.special.softmax(logits, axis=-1), axis=-1)
"""

METADATA = "description: Provides prediction model to be executed by the ingestion program\n"


def _env_python(name: str) -> str:
    from subkit import profile
    from subkit.errors import SubkitError
    from subkit.grader import environment

    try:
        return str(environment.ensure_env(profile.load(name, workspace=False), create=False))
    except SubkitError as exc:
        if os.environ.get("SUBKIT_REQUIRE_GRADER_ENV"):
            pytest.fail(f"SUBKIT_REQUIRE_GRADER_ENV is set but: {exc.message}")
        pytest.skip(f"needs the grader environment of {name} (tensorflow 2.15 + Keras 2): "
                    f"`subkit env create --profile {name}`")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The models, made by the TF 2.15 environment's TensorFlow, and the two zips."""
    python = _env_python(PLANTS)
    out = tmp_path_factory.mktemp("keras2")
    r = subprocess.run([python, "-c", MAKE_MODELS, str(out)], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                                         "CUDA_VISIBLE_DEVICES": ""})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "made with tensorflow 2.15.0 keras 2.15.0" in r.stdout
    assert (out / "Classifier" / "saved_model.pb").is_file()
    saved = _zip(out / "savedmodel.zip", {"model.py": SAVEDMODEL_PY, "metadata": METADATA},
                 out / "Classifier", "Classifier")
    h5 = _zip(out / "h5.zip", {"model.py": H5_PY, "metadata": METADATA,
                               "SubmissionModel/clf.h5": (out / "clf.h5").read_bytes(),
                               "SubmissionModel/scaler.pkl": (out / "scaler.pkl").read_bytes()})
    return {"saved": saved, "h5": h5, "folder": out / "Classifier"}


def _zip(path: Path, members: dict, folder: Path | None = None, arc: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
        if folder is not None:
            for f in sorted(folder.rglob("*")):
                if f.is_file():
                    z.write(f, f"{arc}/{f.relative_to(folder)}")
    return path


def _workspace(tmp_path: Path, grader: str = "") -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "subkit.toml").write_text(f'profile = "{PLANTS}"\n' + grader)
    labels = np.array(["healthy", "unhealthy"] * 6)
    images = np.where((labels == "healthy")[:, None, None, None], 10.0, 200.0)
    np.savez(ws / "test.npz", data=np.broadcast_to(images, (12, 96, 96, 3)).astype("float32"),
             labels=labels)
    return ws


@pytest.mark.parametrize("which, loads", [
    ("saved", "loads Classifier/ (a TensorFlow SavedModel folder)"),
    ("h5", "loads SubmissionModel/clf.h5"),
])
def test_a_keras_2_submission_checks_and_scores_in_the_tf_2_15_grader(cli, made, tmp_path,
                                                                      which, loads):
    ws = _workspace(tmp_path)
    z = made[which]
    r = cli("check", z, "--env", "grader", cwd=ws)
    assert r.code == 0, r.text
    assert loads in r.out and "no named weights file" not in r.out
    assert "in keras 2.15.0, tensorflow 2.15.0" in r.out
    assert "PASSED" in r.out and "FAILED" not in r.out
    r = cli("score-local", z, "--data", "test.npz", "--env", "grader", "--json", cwd=ws)
    assert r.code == 0, r.text
    res = json.loads(r.out)
    assert res["ok"] and res["score"] == 1.0  # dark -> healthy, bright -> unhealthy, as made
    assert res["env"]["keras"] == "2.15.0" and res["env"]["tensorflow"] == "2.15.0"
    assert res["network_isolated"] in (True, False)  # the profile's "off": cut where it can


def test_a_savedmodel_in_front_of_a_keras_3_grader_names_the_format_and_the_versions(
        cli, made, tmp_path, grader_python):
    # grader_python: the Keras 3 environment (blood cells' pins, the same set) must exist
    ws = _workspace(tmp_path, '[grader]\ntensorflow = "2.17.0"\nkeras = "3.4.1"\n'
                              'extras = {}\n')
    r = cli("check", made["saved"], "--env", "grader", cwd=ws)
    assert r.code != 0 and "FAILED" in r.out, r.text
    assert "Classifier/: a TensorFlow SavedModel folder" in r.out  # the static warning
    assert "Classifier/ is a TensorFlow SavedModel folder" in r.out  # the smoke test's cause
    assert "tensorflow<=2.15 (Keras 2) loads it" in r.out


def test_build_zips_a_savedmodel_folder_for_a_keras_2_grader(cli, made, tmp_path):
    ws = _workspace(tmp_path)
    (ws / "model.py").write_text(SAVEDMODEL_PY)
    r = cli("build", "--weights", made["folder"], "--env", "grader", "--json", cwd=ws)
    assert r.code == 0, r.text
    manifest = json.loads(r.out[r.out.index("{"):])
    names = {m["name"] for m in manifest["members"]}
    assert {"model.py", "metadata", "Classifier/saved_model.pb",
            "Classifier/variables/variables.index"} <= names
    assert manifest["status"] == "PASSED", manifest["checks"]
    (w,) = manifest["weights"]
    assert w["kind"] == "savedmodel" and w["keras_version"] == "2.15.0"
    assert "retarget" not in w  # no Keras 3 rules for a Keras 2 grader
    assert manifest["env"]["keras"] == "2.15.0"
