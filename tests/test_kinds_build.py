"""Build and check per platform and kind (static checks; the smoke test
of real models runs in tests/test_kinds_end_to_end.py)."""

from __future__ import annotations

import json

import pytest

from conftest import make_zip

METADATA = "description: Provides prediction model to be executed by the ingestion program\n"
CODALAB = '''
import os
import tensorflow as tf

class model:
    def __init__(self, path):
        self.model = tf.keras.models.load_model(os.path.join(path, "weights.keras"))

    def predict(self, X):
        return tf.argmax(self.model.predict(X), axis=-1)
'''

pytestmark = pytest.mark.usefixtures("in_tmp")


def check(cli, zp, profile, *extra):
    r = cli("check", zp, "--no-smoke", "--profile", profile, "--json", *extra)
    return r, json.loads(r.out)


def failed(report):
    return [c for c in report["checks"] if c["status"] == "failed"]


def test_a_codalab_zip_needs_its_metadata_file(cli, tmp_path, keras_weights):
    zp = make_zip(tmp_path / "s.zip", {"model.py": CODALAB, "weights.keras": b"x"})
    r, rep = check(cli, zp, "an2dl-2023-plants")
    (f,) = [c for c in failed(rep) if c["name"] == "required files"]
    assert f["message"] == ("the zip has no 'metadata' file at its root "
                            "(it marks a CodaLab code submission)")
    assert f["hint"].startswith("add a file named metadata holding "
                                "'description: Provides prediction")
    assert r.code == 1
    r = cli("check", zp, "--no-smoke", "--profile", "an2dl-2023-plants")
    assert "[FAIL] required files: the zip has no 'metadata' file" in r.out and "FAILED" in r.out
    zp = make_zip(tmp_path / "t.zip", {"model.py": CODALAB, "metadata": METADATA,
                                       "weights.keras": keras_weights})
    r, rep = check(cli, zp, "an2dl-2023-plants")
    assert not failed(rep), failed(rep)
    assert any(c["message"] == "metadata is at the zip root" for c in rep["checks"])
    ok = [c for c in rep["checks"] if c["name"] == "model.py"][0]
    assert "defines model(path) and predict(X)" in ok["message"]


def test_a_metadata_file_inside_a_folder_is_named(cli, tmp_path):
    zp = make_zip(tmp_path / "s.zip", {"model.py": CODALAB, "sub/metadata": METADATA})
    _, rep = check(cli, zp, "an2dl-2023-plants")
    assert "found sub/metadata" in failed(rep)[0]["message"]


def test_a_codabench_profile_needs_no_metadata_and_refuses_init_with_a_path(cli, tmp_path,
                                                                            keras_weights):
    src = CODALAB.replace("class model", "class Model")
    zp = make_zip(tmp_path / "s.zip", {"model.py": src, "weights.keras": keras_weights})
    r, rep = check(cli, zp, "an2dl-2024-blood-cells")
    (f,) = failed(rep)
    assert f["message"] == ("Model.__init__ requires argument(s) path, the submission's path as "
                            "CodaLab's model(path) passed it, but a codabench grader calls Model() "
                            "with no argument")
    assert f["hint"] == ("define def __init__(self): and find the folder yourself: "
                         "os.path.dirname(os.path.abspath(__file__))")
    assert r.code == 1


@pytest.mark.parametrize("profile,source,needle,hint", [
    ("an2dl-2023-plants", CODALAB.replace("(self, path)", "(self)").replace("path, ", ""),
     "model.__init__ takes no path, but the grader calls model(path)", "def __init__(self, path):"),
    ("an2dl-2023-plants", CODALAB.replace("class model", "class Model"),
     "model.py defines no top-level class 'model' (it has 'Model': names are case-sensitive)",
     "from model import model"),
    ("an2dl-2023-forecasting", CODALAB,
     "model.predict takes 1 input, but the grader calls predict(X, categories)",
     "define def predict(self, X, categories):"),
    ("an2dl-2023-forecasting", CODALAB.replace("(self, X)", "(self, X, categories, phase)"),
     "model.predict requires 3 arguments, but the grader calls predict(X, categories)",
     "any other parameter given a default"),
])
def test_interface_mistakes_per_kind(cli, tmp_path, profile, source, needle, hint):
    zp = make_zip(tmp_path / "s.zip", {"model.py": source, "metadata": METADATA})
    _, rep = check(cli, zp, profile)
    msgs = [(c["message"], c["hint"]) for c in failed(rep)]
    assert any(needle == m and hint in h for m, h in msgs), msgs


def test_a_forecasting_predict_with_categories_passes(cli, tmp_path, keras_weights):
    src = CODALAB.replace("(self, X)", "(self, X, categories)")
    zp = make_zip(tmp_path / "s.zip", {"model.py": src, "metadata": METADATA,
                                       "weights.keras": keras_weights})
    _, rep = check(cli, zp, "an2dl-2023-forecasting")
    assert not failed(rep)
    assert any("defines model(path) and predict(X, categories)" in c["message"]
               for c in rep["checks"])
