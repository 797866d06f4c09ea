"""The built-in profiles' era (the grader's versions of the CodaLab years), the grader's
network as a profile setting, and the profile's default shift suite."""

from __future__ import annotations

import pytest

from subkit import profile as profile_mod
from subkit.errors import ProfileError

CODALAB = ("an2dl-2022-ts-classification", "an2dl-2023-forecasting", "an2dl-2023-plants")


@pytest.mark.parametrize("name", CODALAB)
def test_the_codalab_years_run_tensorflow_2_15_with_keras_2_and_the_students_extras(name):
    g = profile_mod.load(name, workspace=False).grader
    assert (g["tensorflow"], g["keras"]) == ("2.15.0", "2.15.0")
    assert g["extras"] == {"scikit-learn": "1.2.2", "scipy": "1.11.4"}
    # the evidence is cited next to the pins
    text = (profile_mod.resources.files("subkit") / "profiles" / f"{name}.toml").read_text()
    assert "Davide-Console/AN2DL_2022_homework2 requirements.txt" in text
    assert "keras_metadata.pb" in text and "FACTS.md section 8" in text


def test_each_profile_says_whether_its_grader_has_the_network():
    got = {n: profile_mod.load(n, workspace=False).network for n in profile_mod.builtin_names()}
    # Codabench's worker leaves it on unless the queue cuts it, and whether the course's queue
    # did is not known; CodaLab's queue unknown; Kaggle runs no code: off, the safe side
    assert set(got.values()) == {"off"} and len(got) == 6
    cb = profile_mod.load("an2dl-2024-blood-cells", workspace=False)
    assert cb.isolate_network() is True
    assert cb.isolate_network(False) is False  # the command line wins
    plants = profile_mod.load("an2dl-2023-plants", workspace=False)
    assert plants.isolate_network() is True and plants.isolate_network(False) is False


def test_the_blood_cells_profile_names_its_hypothesis_as_the_default_suite():
    assert profile_mod.load("an2dl-2024-blood-cells", workspace=False).default_shift_suite \
        == "hidden-2024"
    assert profile_mod.load("an2dl-2023-plants", workspace=False).default_shift_suite \
        == "default"


def test_a_workspace_overrides_the_network_and_the_suite(tmp_path):
    (tmp_path / "subkit.toml").write_text(
        'profile = "an2dl-2024-blood-cells"\n[sandbox]\nnetwork = "on"\n'
        '[shift]\ndefault = "microscopy"\n')
    prof = profile_mod.load(workspace=tmp_path)  # the probe found the grader's network on
    assert prof.network == "on" and prof.isolate_network() is False
    assert prof.default_shift_suite == "microscopy"


@pytest.mark.parametrize("table, message", [
    ('[sandbox]\nnetwork = "maybe"\n', "[sandbox] network 'maybe' is not off or on"),
    ('[sandbox]\nnetwork = true\n', "[sandbox] network should be str, got True"),
    ('[shift]\ndefault = " "\n', "[shift] default is empty"),
    ('[sandbox]\nproxy = "x"\n', "unknown key 'proxy' in [sandbox]"),
])
def test_bad_network_or_suite_settings_are_refused(tmp_path, table, message):
    (tmp_path / "subkit.toml").write_text('profile = "an2dl-2024-blood-cells"\n' + table)
    with pytest.raises(ProfileError) as err:
        profile_mod.load(workspace=tmp_path)
    assert message in err.value.message and err.value.hint


# -- the static checks: SavedModel folders, folder listings, the smoke test's word -----------
SAVEDMODEL_PY = """import os
import tensorflow as tf


class model:
    def __init__(self, path):
        self.m = tf.keras.models.load_model(os.path.join(path, 'Forecaster'))

    def predict(self, X):
        return tf.argmax(self.m.predict(X), axis=-1)
"""
SAVEDMODEL_FILES = ["model.py", "metadata", "Forecaster/saved_model.pb",
                    "Forecaster/keras_metadata.pb", "Forecaster/variables/variables.index",
                    "Forecaster/variables/variables.data-00000-of-00001"]
LISTS_FOLDER_PY = """import os
import keras


class Model:
    def __init__(self):
        here = os.path.dirname(os.path.abspath(__file__))
        name = [f for f in os.listdir(here) if f.endswith('.keras')][0]
        self.m = keras.models.load_model(os.path.join(here, name))

    def predict(self, X):
        return self.m.predict(X).argmax(-1)
"""


def _static(tmp_path, prof, source, files):
    from subkit.checks import CheckReport, static_checks

    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text(source if f == "model.py" else "x")
    rep = CheckReport(zip="z")
    static_checks(tmp_path, files, prof, rep)
    return rep


def test_a_savedmodel_folder_loaded_by_its_name_is_the_weights(tmp_path):
    prof = profile_mod.load("an2dl-2023-plants", workspace=False)  # Keras 2 grader
    rep = _static(tmp_path, prof, SAVEDMODEL_PY, SAVEDMODEL_FILES)
    assert rep.status == "PASSED", rep.checks
    ok = next(c for c in rep.checks if c["name"] == "model.py")
    assert "loads Forecaster/ (a TensorFlow SavedModel folder)" in ok["message"]
    assert "no named weights file" not in ok["message"]
    kv = next(c for c in rep.checks if c["name"] == "keras version")
    assert kv["status"] == "ok" and "format of the grader's keras 2.15.0" in kv["message"]


def test_a_keras_3_grader_facing_a_savedmodel_says_which_versions_load_it(tmp_path):
    prof = profile_mod.load("an2dl-2023-plants", workspace=False)
    prof.data["grader"].update(tensorflow="2.17.0", keras="3.4.1")
    rep = _static(tmp_path, prof, SAVEDMODEL_PY, SAVEDMODEL_FILES)
    kv = next(c for c in rep.checks if c["name"] == "keras version")
    assert kv["status"] == "warning"  # model.py may read it otherwise: the smoke test decides
    assert "grader's keras 3.4.1 cannot load it with load_model" in kv["message"]
    assert "tensorflow<=2.15 (Keras 2) loads it" in kv["hint"]


def test_a_suffix_in_a_folder_listing_names_no_file(tmp_path):
    prof = profile_mod.load("an2dl-2024-blood-cells", workspace=False)
    rep = _static(tmp_path, prof, LISTS_FOLDER_PY, ["model.py", "best.keras"])
    assert rep.status == "PASSED", rep.checks
    assert "'.keras'" not in json_text(rep)


def json_text(rep) -> str:
    import json

    return json.dumps(rep.to_dict())


def test_a_static_failure_the_grader_smoke_test_contradicts_is_a_warning():
    from subkit.checks import CheckReport, reconcile_with_smoke

    def report(env_name):
        rep = CheckReport(zip="z")
        rep.add("model.py", "failed", "model.py loads 'x.keras', which is not in the submission")
        rep.add("smoke test", "ok", "Model() 1.0 s")
        rep.smoke = {"ok": True, "env": {"name": env_name}}
        reconcile_with_smoke(rep)
        return rep

    graded = report("grader")
    assert graded.status == "PASSED with warnings"
    assert "the smoke test in the grader's versions passed" in graded.checks[0]["message"]
    # in other versions than the grader's, the static finding stands
    assert report("current").status == "FAILED"


def test_the_cause_of_a_failed_run_is_named(tmp_path):
    from subkit.modelcheck import cause_hints

    cb = profile_mod.load("an2dl-2024-blood-cells", workspace=False)
    plants = profile_mod.load("an2dl-2023-plants", workspace=False)
    tb = ("ValueError: File format not supported: filepath=/sub/Forecaster. Keras 3 only "
          "supports V3 `.keras` files and legacy H5 format files")
    (msg, hint), = cause_hints(tb, cb, savedmodels=["Forecaster"], h5_models={},
                               network_cut=True)
    assert "Forecaster/ is a TensorFlow SavedModel folder" in msg and "keras 3.4.1" in msg
    assert "tensorflow<=2.15" in hint
    # the same folder in front of a Keras 2 grader is no cause
    assert cause_hints(tb, plants, savedmodels=["Forecaster"], h5_models={},
                       network_cut=True) == []
    tb = "TypeError: Could not locate class 'PolynomialDecay'"
    (msg, hint), = cause_hints(tb, cb, savedmodels=[], h5_models={"m.h5": "2.15.0"},
                               network_cut=True)
    assert "m.h5 (Keras 2.15.0): a Keras 2 (tf.keras) HDF5 model" in msg
    (msg, hint), = cause_hints("ModuleNotFoundError: No module named 'sklearn'", cb,
                               savedmodels=[], h5_models={}, network_cut=True)
    assert "does not have (its [grader] extras: none)" in msg
    assert '"scikit-learn" = "VERSION"' in hint
    (msg, _), = cause_hints("ModuleNotFoundError: No module named 'cv2'", plants,
                            savedmodels=[], h5_models={}, network_cut=True)
    assert "scikit-learn 1.2.2, scipy 1.11.4" in msg
    tb = ("weights='imagenet'\nException: URL fetch failure on https://storage.googleapis.com"
          "/x.h5: None -- [Errno -3] Temporary failure in name resolution")
    (msg, hint), = cause_hints(tb, plants, savedmodels=[], h5_models={}, network_cut=True)
    assert "model.py tried to reach the network (weights='imagenet')" in msg
    assert "the grader of an2dl-2023-plants has the network off too" in msg
    (tmp_path / "subkit.toml").write_text('profile = "an2dl-2024-blood-cells"\n'
                                          '[sandbox]\nnetwork = "on"\n')
    online = profile_mod.load(workspace=tmp_path)  # a grader measured with the network on
    (msg, hint), = cause_hints(tb, online, savedmodels=[], h5_models={}, network_cut=True)
    assert "has the network on" in msg and "--no-network-isolation" in hint
    # a run that had the network is not told the cut was the cause
    assert cause_hints(tb, online, savedmodels=[], h5_models={}, network_cut=False) == []


def test_build_does_not_retarget_for_a_keras_2_grader():
    from pathlib import Path

    from subkit.packaging import needs_load_proof
    from subkit.weights import WeightsInfo

    info = WeightsInfo(path=Path("m.keras"), kind="keras", size=1, keras_version="3.4.1")
    assert needs_load_proof(info, "3.1.0", False) is True  # Keras 3 rules: rewritten
    assert needs_load_proof(info, "2.15.0", False) is False
    assert needs_load_proof(info, "2.15.0", True) is False


# -- end to end, in the sandbox: the network's verdict, and the smoke test's word --------------
DOWNLOADS_PY = """import urllib.request


class model:
    def __init__(self, path):
        # what keras.applications does for pretrained weights
        urllib.request.urlopen("http://weights.example.invalid/resnet50.h5", timeout=5)

    def predict(self, X):
        return X[:, 0, 0, 0] > 100
"""
METADATA = "description: Provides prediction model to be executed by the ingestion program\n"


def _needs_bwrap():
    import os

    from subkit.grader import sandbox

    if not sandbox.bwrap_available()[0] and not os.environ.get("CI"):
        pytest.skip(f"bubblewrap sandbox unavailable: {sandbox.bwrap_available()[1]}")


def _plants_workspace(tmp_path, extra: str = ""):
    import numpy as np

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "subkit.toml").write_text('profile = "an2dl-2023-plants"\n' + extra)
    labels = np.array(["healthy", "unhealthy"] * 4)
    images = np.where((labels == "healthy")[:, None, None, None], 10.0, 200.0)
    np.savez(ws / "test.npz", data=np.broadcast_to(images, (8, 96, 96, 3)).astype("float32"),
             labels=labels)
    return ws


@pytest.mark.slow
def test_a_download_with_the_network_cut_is_named_with_the_graders_policy(cli, tmp_path):
    import json

    from conftest import make_zip

    _needs_bwrap()
    ws = _plants_workspace(tmp_path)
    z = make_zip(tmp_path / "dl.zip", {"model.py": DOWNLOADS_PY, "metadata": METADATA})
    r = cli("score-local", z, "--data", "test.npz", "--json", cwd=ws)
    assert r.code != 0
    assert ("model.py tried to reach the network (http://weights.example.invalid/resnet50.h5) "
            "and this run had it cut; the grader of an2dl-2023-plants has the network off too"
            in r.text), r.text
    assert "zip what it downloads" in r.text
    run = json.loads(sorted((ws / "runs").glob("*/run.json"))[-1].read_text()) \
        if (ws / "runs").is_dir() else None
    if run is not None:  # the run record keeps the same verdict
        assert "tried to reach the network" in run["failure"]["message"]


LISTING_PY = """import os

import numpy as np


class model:
    def __init__(self, path):
        self.stale = 'model_v1.keras'   # a name from an older version, never loaded
        names = [f for f in os.listdir(path) if f.endswith('.npy')]
        self.threshold = float(np.load(os.path.join(path, names[0])))

    def predict(self, X):
        return (np.asarray(X)[:, 0, 0, 0] > self.threshold).astype(int)
"""


@pytest.mark.slow
def test_check_says_what_the_smoke_test_in_the_graders_versions_says(cli, tmp_path,
                                                                    monkeypatch):
    """model.py names a .keras it never loads and finds its weights by listing the folder:
    the static reading fails it; the smoke test in the grader's versions passes it; the
    verdict is the run's (a warning). In other versions than the grader's, it stays FAILED."""
    import io

    import numpy as np

    from subkit.grader import environment

    from conftest import make_zip

    ws = _plants_workspace(tmp_path)
    buf = io.BytesIO()
    np.save(buf, np.array(100.0))
    z = make_zip(tmp_path / "l.zip", {"model.py": LISTING_PY, "metadata": METADATA,
                                      "threshold.npy": buf.getvalue()})
    r = cli("check", z, cwd=ws)  # SUBKIT_ENV=current (conftest): not the grader's versions
    assert r.code != 0 and "FAILED" in r.out, r.text
    assert "loads 'model_v1.keras', which is not in the submission" in r.text
    # the same zip where the smoke test runs in "the grader's" versions (this interpreter,
    # described as the grader environment)
    real = environment.select_env

    def as_grader(prof, env=None, **kw):
        python, desc = real(prof, "current", **kw)
        return python, dict(desc, name="grader", matches_grader=True)

    monkeypatch.setattr(environment, "select_env", as_grader)
    r = cli("check", z, cwd=ws)
    assert r.code == 0, r.text
    assert "PASSED with warnings" in r.out
    assert ("loads 'model_v1.keras', which is not in the submission (it has: no weights file) "
            "(static reading; the smoke test in the grader's versions passed, so the run's "
            "verdict stands)") in r.text


def test_a_keras_2_file_in_front_of_a_keras_3_grader_is_not_called_newer():
    from pathlib import Path

    from subkit.checks import CheckReport, keras_versions
    from subkit.weights import WeightsInfo

    prof = profile_mod.load("an2dl-2024-blood-cells", workspace=False)
    rep = CheckReport(zip="z")
    info = WeightsInfo(path=Path("clf.h5"), kind="h5-model", size=1, keras_version="2.15.0")
    keras_versions([info], prof, rep)
    (c,) = rep.checks
    assert c["status"] == "warning"
    assert "clf.h5: saved by Keras 2.15.0, an older major version than the grader's 3.4.1" \
        in c["message"]


def test_build_refuses_a_savedmodel_folder_for_a_keras_3_grader(cli, tmp_path):
    ws = tmp_path / "ws"
    (ws / "Classifier" / "variables").mkdir(parents=True)
    (ws / "Classifier" / "saved_model.pb").write_bytes(b"\x08\x01")
    (ws / "subkit.toml").write_text('profile = "an2dl-2024-blood-cells"\n')
    r = cli("build", "--weights", ws / "Classifier", cwd=ws)
    assert r.code != 0
    assert "is a TensorFlow SavedModel folder (tf.keras, Keras 2), which the grader's keras " \
           "3.4.1 cannot load with load_model" in r.err
    assert "hint: load it in tensorflow<=2.15" in r.err
    assert not (ws / "submissions").exists() or not list((ws / "submissions").glob("*.zip"))


def test_build_waits_for_the_run_on_a_weights_name_only():
    from subkit.checks import CheckReport, stop_unless_the_run_decides
    from subkit.errors import CheckFailed

    rep = _static_report("model.py loads 'x.keras', which is not in the submission",
                         contestable=True)
    stop_unless_the_run_decides(rep, smoke=True)  # the smoke test decides: no stop
    with pytest.raises(CheckFailed):
        stop_unless_the_run_decides(rep, smoke=False)  # no run to decide: the static verdict
    rep = _static_report("model.py defines no top-level class 'Model'", contestable=False)
    with pytest.raises(CheckFailed, match="defines no top-level class"):
        stop_unless_the_run_decides(rep, smoke=True)
    assert isinstance(rep, CheckReport)


def _static_report(message: str, contestable: bool):
    from subkit.checks import CheckReport

    rep = CheckReport(zip="z")
    rep.add("model.py", "failed", message, "fix it")
    if contestable:
        rep.checks[-1]["contestable"] = True
    return rep


def test_a_missing_weights_name_is_contestable_and_a_missing_class_is_not(tmp_path):
    prof = profile_mod.load("an2dl-2024-blood-cells", workspace=False)
    rep = _static(tmp_path, prof, LISTS_FOLDER_PY.replace("self.m = ", "self.old = "
                                                          "'model_v1.keras'\n        self.m = "),
                  ["model.py", "best.keras"])
    (failed,) = [c for c in rep.checks if c["status"] == "failed"]
    assert "'model_v1.keras'" in failed["message"] and failed.get("contestable") is True
    rep = _static(tmp_path / "b", prof, "class Other:\n    pass\n", ["model.py"])
    assert all(not c.get("contestable") for c in rep.checks if c["status"] == "failed")


def test_the_extras_are_importable_names_for_the_static_check(tmp_path):
    src = ("import os\nimport pickle\nimport sklearn.preprocessing\nimport scipy.fft\n"
           "import cv2\n" + SAVEDMODEL_PY)
    plants = profile_mod.load("an2dl-2023-plants", workspace=False)
    rep = _static(tmp_path, plants, src, SAVEDMODEL_FILES)
    warned = [c["message"] for c in rep.checks if c["status"] == "warning"]
    assert warned == ["model.py imports 'cv2', which the grader may not have installed"]
    hint = next(c["hint"] for c in rep.checks if c["status"] == "warning")
    assert "[grader] extras (now: scikit-learn, scipy)" in hint
    cb = profile_mod.load("an2dl-2024-blood-cells", workspace=False)
    rep = _static(tmp_path / "cb", cb, src, SAVEDMODEL_FILES)
    assert sum("imports 'sklearn'" in c["message"] for c in rep.checks) == 1
