"""The local verdict is the grader's verdict.

- ``--env auto|grader|current``: which versions run the submission, the loud fallback when
  the grader's cannot be set up, and every summary naming the versions (fakes: fast);
- the installers: pip and uv, each for real, offline, on a tiny wheel made here;
- real version pairs (``grader_env``): weights saved by the current Keras, loaded by the
  grader environment's keras 3.4.1 + tensorflow 2.17.0: a zip built with no flags runs
  there with the same predictions, a hand-made zip with current-Keras weights fails
  score-local by default, the false-alarm corpus passes check, a file that a newer Keras
  saved but that loads there is fine, a rebuild of the same weights is served from the
  cache, a legacy .h5 model that does not load there is refused with the conversion;
- the demo's workspace folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from subkit import profile as profile_mod
from subkit import ui
from subkit.errors import SubkitError, UsageError
from subkit.grader import environment
from subkit.grader.environment import installers, interpreters, store

from conftest import make_zip

LOCAL = f"{sys.version_info.major}.{sys.version_info.minor}"

NUMPY_MODEL = """
import numpy as np

class Model:
    def __init__(self):
        pass

    def predict(self, X):
        return (np.asarray(X).reshape(len(X), -1).astype(np.int64).sum(axis=1) // 7) % 8
"""


# -- fakes: a grader environment that is this interpreter under another name -------------------
class FakeInstaller:
    def __init__(self, fail: bool = False):
        self.fail, self.calls = fail, 0

    def __call__(self, python, reqs, log_path, progress):
        self.calls += 1
        log_path.write_text("ERROR: No matching distribution found for tensorflow==2.17.0\n")
        if self.fail:
            raise SubkitError("pip could not install the grader's packages: ERROR: No matching "
                              "distribution found for tensorflow==2.17.0")


def _fake_check(python, pin_set):
    return {"python_version": "3.10.13", "executable": python, "tensorflow": "2.17.0",
            "keras": "3.4.1", "numpy": "1.26.4", "distributions": {}}


def _registry(cmd):
    name = cmd[cmd.index("versions") + 1]
    return subprocess.CompletedProcess(cmd, 0, f"{name} (x)\nAvailable versions: 3.4.1, "
                                               "2.17.0, 1.26.4\n", "")


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    """A private cache; `ensure_env` creates a "grader environment" whose python is a link
    to this interpreter (so numpy-only submissions run) and whose marker says keras 3.4.1;
    ``fake_env.installer.fail = True`` makes the creation fail (offline, no wheel)."""
    monkeypatch.setenv("SUBKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SUBKIT_ENV", raising=False)
    monkeypatch.setattr(interpreters, "_INTERPRETERS", {})

    def fake_venv(interpreter, folder):
        (folder / "bin").mkdir(parents=True)
        (folder / "bin" / "python").symlink_to(sys.executable)
        return folder / "bin" / "python"

    monkeypatch.setattr(installers, "make_venv", fake_venv)
    installer = FakeInstaller()
    real = environment.ensure_env

    def ensure(prof, **kw):
        return real(prof, installer=installer, check=_fake_check, runner=_registry, **kw)

    monkeypatch.setattr(environment, "ensure_env", ensure)
    monkeypatch.setattr(store, "ensure_env", ensure)  # what the `--env` choice calls
    ensure.installer = installer
    return ensure


def _prof(**grader):
    prof = profile_mod.load("an2dl-2024-blood-cells", workspace=False)
    prof.data["grader"].update(grader)
    return prof


def _current_pins() -> dict:
    cur = environment.current_description()
    return {"python": LOCAL, "tensorflow": cur["tensorflow"], "keras": cur["keras"],
            "numpy": cur["numpy"]}


# -- select_env --------------------------------------------------------------------------------
def test_auto_uses_the_current_versions_when_they_are_the_grader_pins(fake_env):
    python, desc = environment.select_env(_prof(**_current_pins()), "auto")
    assert python == sys.executable
    assert desc["name"] == "current" and desc["matches_grader"] is True
    assert desc["differences"] == [] and "warning" not in desc
    assert fake_env.installer.calls == 0  # nothing created


def test_auto_uses_the_grader_environment_when_versions_differ(fake_env):
    prof = _prof()  # python 3.10, tensorflow 2.17.0, keras 3.4.1, numpy 1.26.4
    python, desc = environment.select_env(prof, None)  # None: $SUBKIT_ENV, else auto
    assert python == str(environment.env_dir(prof) / "bin" / "python")
    assert desc["name"] == "grader" and desc["requested"] == "auto"
    assert (desc["keras"], desc["tensorflow"], desc["numpy"]) == ("3.4.1", "2.17.0", "1.26.4")
    assert any(d.startswith("keras ") and d.endswith("(grader 3.4.1)") for d in desc["differences"])
    assert "warning" not in desc and fake_env.installer.calls == 1
    environment.select_env(prof, "auto")
    assert fake_env.installer.calls == 1  # created once, then cached


def test_auto_falls_back_loudly_when_the_env_cannot_be_created(fake_env):
    prof = _prof()
    fake_env.installer.fail = True
    python, desc = environment.select_env(prof, "auto")
    assert python == sys.executable and desc["name"] == "current" and desc["fallback"]
    assert desc["warning"].startswith("NOT the grader's versions: the grader environment "
                                      "(python 3.10, tensorflow 2.17.0, keras 3.4.1, numpy 1.26.4)")
    assert "No matching distribution" in desc["warning"]
    assert "`subkit env create` retries" in desc["warning"]
    # not retried on every command for an hour (offline pip waits on its retries)
    _py, again = environment.select_env(prof, "auto")
    assert fake_env.installer.calls == 1 and "min ago" in again["warning"]
    # --env grader retries at once, and its failure is an error, not a fallback
    with pytest.raises(SubkitError, match="No matching distribution"):
        environment.select_env(prof, "grader")
    assert fake_env.installer.calls == 2
    # once it can be created, auto uses it again
    fake_env.installer.fail = False
    environment.clear_failure(prof)
    assert environment.select_env(prof, "auto")[1]["name"] == "grader"


def test_env_grader_raises_when_it_cannot_be_created(fake_env):
    fake_env.installer.fail = True
    with pytest.raises(SubkitError, match="No matching distribution"):
        environment.select_env(_prof(), "grader")


def test_a_bad_subkit_env_value_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("SUBKIT_ENV", "colab")
    with pytest.raises(UsageError, match="SUBKIT_ENV='colab'"):
        environment.select_env(_prof(), None)
    with pytest.raises(UsageError, match="unknown environment 'colab'"):
        environment.select_env(_prof(), "colab")


# -- every summary names the versions ------------------------------------------------------------
def test_score_local_summaries_name_the_grader_versions(cli, workspace, fake_env, test_npz):
    z = make_zip(workspace / "hand.zip", {"model.py": NUMPY_MODEL})
    r = cli("score-local", z, "--data", test_npz)
    assert r.code == 0, r.text
    last = r.out.strip().splitlines()[-1]
    assert last.strip() == ("ran in the grader's versions: python 3.10.13, tensorflow 2.17.0, "
                            "keras 3.4.1, numpy 1.26.4")
    r = cli("score-local", z, "--data", test_npz, "--json")
    d = json.loads(r.out)
    assert d["env"]["name"] == "grader" and d["env"]["keras"] == "3.4.1" and d["warnings"] == []
    run = json.loads((Path(d["run_dir"]) / "run.json").read_text())
    assert run["env"]["name"] == "grader" and run["env"]["requested"] == "auto"


def test_the_fallback_is_loud_in_the_summary_json_and_run_record(cli, workspace, fake_env,
                                                                 test_npz):
    fake_env.installer.fail = True
    z = make_zip(workspace / "hand.zip", {"model.py": NUMPY_MODEL})
    r = cli("score-local", z, "--data", test_npz, "--json")
    assert r.code == 0, r.text
    d = json.loads(r.out)
    assert d["env"]["name"] == "current" and d["env"]["fallback"] is True
    assert d["warnings"][0].startswith("NOT the grader's versions")
    run = json.loads((Path(d["run_dir"]) / "run.json").read_text())
    assert run["warnings"][0] == d["warnings"][0] and run["env"]["warning"] == d["warnings"][0]
    r = cli("score-local", z, "--data", test_npz)
    lines = r.out.splitlines()
    assert lines[1].strip().startswith("WARNING: NOT the grader's versions")  # under the headline
    assert lines[-1].strip().startswith("ran in the current versions: python "
                                        f"{sys.version.split()[0]}")
    r = cli("check", z)
    assert "[WARN] environment: NOT the grader's versions" in r.out
    assert r.out.strip().splitlines()[-1] == "PASSED with warnings"
    r = cli("predict", z, "--data", test_npz, "--out", workspace / "p.csv")
    assert r.code == 0 and "warning: NOT the grader's versions" in r.out
    assert r.out.strip().splitlines()[-1].startswith("ran in the current versions")


def test_check_and_predict_name_the_versions(cli, workspace, fake_env, test_npz):
    z = make_zip(workspace / "hand.zip", {"model.py": NUMPY_MODEL})
    r = cli("check", z, "--json")
    rep = json.loads(r.out)
    assert rep["status"] == "PASSED" and rep["env"]["keras"] == "3.4.1"
    assert "in keras 3.4.1, tensorflow 2.17.0" in rep["checks"][-1]["message"]
    r = cli("predict", z, "--data", test_npz, "--out", workspace / "p.csv", "--json")
    assert json.loads(r.out)["env"]["name"] == "grader"
    r = cli("check", z, "--env", "current")
    assert r.out.strip().splitlines()[-2].strip().startswith("ran in the current versions")


# -- the installers, for real and offline ----------------------------------------------------------
def _tiny_wheel(folder: Path) -> Path:
    """A pure-Python wheel `subkittiny 1.0` (one module), written by hand."""
    import base64
    import hashlib

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "subkittiny-1.0-py3-none-any.whl"
    files = {"subkittiny.py": "VALUE = 42\n",
             "subkittiny-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: subkittiny\n"
                                                  "Version: 1.0\n",
             "subkittiny-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: subkit-test\n"
                                               "Root-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    record.append("subkittiny-1.0.dist-info/RECORD,,")
    files["subkittiny-1.0.dist-info/RECORD"] = "\n".join(record) + "\n"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


@pytest.mark.parametrize("kind", ["pip", "uv"])
def test_both_installers_fill_a_venv_offline(tmp_path, monkeypatch, kind):
    if kind == "uv" and environment.uv_binary() is None:
        pytest.skip("uv is not installed (pip install uv; the test extra has it)")
    wheels = _tiny_wheel(tmp_path / "wheels").parent
    monkeypatch.setenv("SUBKIT_INSTALLER", kind)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.setenv("UV_FIND_LINKS", str(wheels))
    python = environment.make_venv(sys.executable, tmp_path / "venv")
    said: list[str] = []
    cmd = environment.install_command(str(python), ["subkittiny==1.0"], attached=False,
                                      log_path=tmp_path / "log")
    assert ("uv" in Path(cmd[0]).name) == (kind == "uv")
    with ui.use(ui.Lines(said.append)):
        environment.pip_install(str(python), ["subkittiny==1.0"], tmp_path / "log", True)
    out = subprocess.run([str(python), "-c", "import subkittiny; print(subkittiny.VALUE)"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "42", out.stderr
    assert said and all(m.startswith("  [") for m in said)  # the installer's lines, timed
    with pytest.raises(SubkitError, match=f"^{kind} could not install"):
        environment.pip_install(str(python), ["subkittiny==9.9"], tmp_path / "log2", False)


def test_a_bad_installer_choice_is_refused(monkeypatch):
    monkeypatch.setenv("SUBKIT_INSTALLER", "conda")
    with pytest.raises(UsageError, match="SUBKIT_INSTALLER='conda'"):
        environment.installer_kind()
    monkeypatch.setenv("SUBKIT_INSTALLER", "uv")
    monkeypatch.setattr(installers, "uv_binary", lambda: None)
    with pytest.raises(SubkitError, match="uv is not installed"):
        environment.installer_kind()
    monkeypatch.delenv("SUBKIT_INSTALLER")
    assert environment.installer_kind() == "pip"  # pip is the fallback


# -- the demo's folder -----------------------------------------------------------------------------
def test_the_demo_goes_to_home_not_into_a_source_checkout(tmp_path, monkeypatch):
    from subkit.commands import demo_reference as demo

    home, checkout = tmp_path / "home", tmp_path / "src" / "subkit"
    (checkout / "docs").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("[project]\nname = 'subkit'\n")
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(checkout / "docs")
    folder, why = demo.demo_directory(None)
    assert folder == home / "subkit-demo" and str(checkout) in why
    (home / "subkit-demo").mkdir()
    (home / "subkit-demo" / "x").write_text("taken")
    assert demo.demo_directory(None)[0] == home / "subkit-demo-2"
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.chdir(plain)
    assert demo.demo_directory(None) == (plain / "subkit-demo", "in the current folder")
    assert demo.demo_directory(Path("mine"))[0] == plain / "mine"


# -- real version pairs: the grader environment ----------------------------------------------------
@pytest.fixture
def auto(monkeypatch, grader_python):
    """The default path: SUBKIT_ENV unset, the real grader environment in the cache."""
    monkeypatch.delenv("SUBKIT_ENV", raising=False)
    return grader_python


@pytest.fixture(scope="session")
def retargeted(tmp_path_factory, keras_weights, grader_python) -> Path:
    """The tiny model saved by the current Keras, rewritten for (and verified in) 3.4.1."""
    from subkit import keras_compat

    out = tmp_path_factory.mktemp("rt") / "weights.keras"
    rep = keras_compat.retarget(keras_weights, out, "3.4.1", env_python=grader_python)
    assert rep["verified"] is True
    return out


LOAD_MODEL = """
import os
import numpy as np
import keras

class Model:
    def __init__(self):
        here = os.path.dirname(os.path.abspath(__file__))
        self.model = keras.models.load_model(os.path.join(here, "weights.keras"), compile=False)

    def predict(self, X):
        return np.argmax(self.model.predict(X, verbose=0), axis=-1)
"""

CORPUS = {
    "a print names another weights file": ("""
        import os
        import numpy as np
        import tensorflow as tf

        class Model:
            def __init__(self):
                here = os.path.dirname(os.path.abspath(__file__))
                print("Loading best_model_v3.keras (exported as weights.keras) ...")
                self.model = tf.keras.models.load_model(os.path.join(here, "weights.keras"))
                print("loaded", "best_model_v3.keras")

            def predict(self, X):
                return np.argmax(self.model.predict(X, verbose=0), axis=-1)
        """, {}),
    "__MACOSX and .DS_Store entries (Codabench's Mini-MNIST sample has them)": (
        LOAD_MODEL, {"__MACOSX/._weights.keras": b"\x00\x05\x16\x07AppleDouble",
                     "__MACOSX/._model.py": b"\x00\x05\x16\x07AppleDouble",
                     ".DS_Store": b"\x00\x00\x00\x01Bud1"}),
    "an absolute Colab path in an except fallback": ("""
        import os
        import numpy as np
        import keras

        class Model:
            def __init__(self):
                try:
                    path = os.path.join(os.path.dirname(__file__), "weights.keras")
                    self.model = keras.models.load_model(path)
                except (OSError, ValueError):
                    self.model = keras.models.load_model(
                        "/content/drive/MyDrive/AN2DL/homework1/weights.keras")

            def predict(self, X):
                return self.model.predict(X, verbose=0).argmax(axis=1)
        """, {}),
    "a dict of alternative weights names, one zipped": ("""
        import os
        import numpy as np
        import keras

        CHECKPOINTS = {"effnet": "effnetv2b0_ft.keras", "convnext": "weights.keras"}
        BACKBONE = "convnext"

        class Model:
            def __init__(self):
                here = os.path.dirname(os.path.abspath(__file__))
                self.model = keras.models.load_model(os.path.join(here, CHECKPOINTS[BACKBONE]))

            def predict(self, X):
                return np.argmax(self.model.predict(X, verbose=0), axis=-1)
        """, {}),
}


@pytest.mark.slow
@pytest.mark.grader_env
@pytest.mark.parametrize("case", list(CORPUS))
def test_the_false_alarm_corpus_passes_check(cli, workspace, auto, retargeted, case, tmp_path):
    source, extra = CORPUS[case]
    z = make_zip(tmp_path / "sub.zip", {"model.py": source, "weights.keras": retargeted, **extra})
    r = cli("check", z, "--json")
    rep = json.loads(r.out)
    assert r.code == 0 and rep["status"] != "FAILED", rep
    assert rep["smoke"]["ok"] and rep["env"]["name"] == "grader"
    assert rep["smoke"]["versions"]["keras"] == "3.4.1"
    assert not [c for c in rep["checks"] if c["status"] == "failed"]
    if "__MACOSX" in case:
        (note,) = [c for c in rep["checks"] if c["status"] == "note" and c["name"] == "zip"]
        assert "ignored 3 macOS metadata entries" in note["message"]


@pytest.mark.slow
@pytest.mark.grader_env
def test_a_hand_made_zip_with_current_keras_weights_fails_score_local_by_default(
        cli, workspace, auto, keras_weights, test_npz, tmp_path):
    z = make_zip(tmp_path / "hand.zip", {"model.py": LOAD_MODEL, "weights.keras": keras_weights})
    r = cli("score-local", z, "--data", test_npz, "--json")
    d = json.loads(r.out)
    assert r.code == 1 and not d["ok"]
    assert d["env"]["name"] == "grader" and d["env"]["keras"] == "3.4.1"
    assert d["failure"]["stage"] == "init"
    assert "could not load the weights" in d["failure"]["message"]
    assert "input_axes" in d["failure"]["message"] + d["failure"]["tail"]
    assert d["failure"]["hint"].startswith("the weights were saved by a newer Keras than this "
                                           "one: rebuild the zip with `subkit build --weights")
    # the same zip in the current versions passes: only the grader's versions tell
    r = cli("score-local", z, "--data", test_npz, "--env", "current", "--json")
    assert r.code == 0 and json.loads(r.out)["env"]["name"] == "current"


@pytest.mark.slow
@pytest.mark.grader_env
def test_a_zip_built_with_no_flags_runs_in_the_grader_versions_the_same(
        cli, workspace, auto, keras_weights, test_npz):
    r = cli("build", "--weights", keras_weights, "--json")
    assert r.code == 0, r.text
    man = json.loads(r.out)
    rt = man["weights"][0]["retarget"]
    assert (rt["status"] == "rewritten" and rt["verified"] is True
            and rt["target_version"] == "3.4.1")
    assert man["env"]["name"] == "grader" and man["smoke"]["versions"]["keras"] == "3.4.1"
    assert man["status"] == "PASSED"
    (kv,) = [c for c in man["checks"] if c["name"] == "keras version"]
    assert "rewritten for Keras 3.4.1" in kv["message"] and "proven by loading" in kv["message"]
    zp = Path(man["path"])
    grader = json.loads(cli("score-local", zp, "--data", test_npz, "--json").out)
    current = json.loads(cli("score-local", zp, "--data", test_npz, "--env", "current",
                             "--json").out)
    assert grader["ok"] and current["ok"]
    assert grader["env"]["keras"] == "3.4.1" and current["env"]["name"] == "current"
    a = np.load(Path(grader["run_dir"]) / "output" / "labels.npy")
    b = np.load(Path(current["run_dir"]) / "output" / "labels.npy")
    np.testing.assert_array_equal(a, b)
    # a rebuild of the same weights skips the rewrite: served from the cache
    r = cli("build", "--weights", keras_weights, "--no-smoke", "--json")
    again = json.loads(r.out)["weights"][0]
    assert again["retarget"]["cached"] is True and again["retarget"]["verified"] is True
    with zipfile.ZipFile(zp) as z1, zipfile.ZipFile(json.loads(r.out)["path"]) as z2:
        assert z1.read("weights.keras") == z2.read("weights.keras")


@pytest.mark.slow
@pytest.mark.grader_env
def test_a_newer_keras_file_that_loads_in_the_grader_is_fine(cli, workspace, auto, retargeted,
                                                             tmp_path):
    # say it was saved by 3.6.0 (as a real 3.6.0 file that loads in 3.4.1): the verdict
    # comes from loading it there, not from comparing the numbers
    from subkit.keras_compat.rewrite import write_keras

    with zipfile.ZipFile(retargeted) as zf:
        meta = json.loads(zf.read("metadata.json"))
    newer = tmp_path / "weights.keras"
    write_keras(retargeted, newer, None, dict(meta, keras_version="3.6.0"))
    z = make_zip(tmp_path / "sub.zip", {"model.py": LOAD_MODEL, "weights.keras": newer})
    rep = json.loads(cli("check", z, "--json").out)
    assert rep["status"] == "PASSED", rep
    (kv,) = [c for c in rep["checks"] if c["name"] == "keras version"]
    assert kv["status"] == "ok"
    assert kv["message"] == ("weights.keras: saved by Keras 3.6.0, and it loads in the grader's "
                             "keras 3.4.1 (the smoke test ran there)")


@pytest.mark.slow
@pytest.mark.grader_env
def test_a_legacy_h5_model_that_does_not_load_there_is_refused_with_the_conversion(
        cli, workspace, auto, tmp_path):
    from conftest import tiny_model

    h5 = tmp_path / "weights.h5"
    tiny_model(optimizer=False).save(h5)
    (workspace / "model.py").write_text(textwrap.dedent(LOAD_MODEL).replace("weights.keras",
                                                                            "weights.h5"))
    r = cli("build", "--weights", h5)
    assert r.code == 1
    assert "weights.h5 is a legacy HDF5 model saved by Keras" in r.err
    assert "keras 3.4.1 cannot load weights.h5" in r.err
    assert "hint: save it as .keras (keras.models.load_model('weights.h5').save('weights.keras'))" \
        in r.err
    assert not list((workspace / "submissions").glob("*.zip"))


@pytest.mark.slow
@pytest.mark.grader_env
def test_the_demo_passes_check_in_the_grader_versions_and_says_so(cli, tmp_path, auto):
    out = tmp_path / "demo"
    r = cli("demo", out, "--n", "400", "--epochs", "1")
    assert r.code == 0, r.text[-3000:]
    last = r.out.strip().splitlines()[-1]
    assert last.startswith("local score: accuracy ")
    assert last.endswith("ran in the grader's versions: python 3.10.13, tensorflow 2.17.0, "
                         "keras 3.4.1, numpy 1.26.4")
    (zp,) = (out / "submissions").glob("demo-*.zip")
    r = cli("check", zp, "--env", "grader")
    assert r.code == 0 and r.out.strip().splitlines()[-1].startswith("PASSED"), r.out


def test_the_download_size_comes_from_the_resolution_and_the_index(monkeypatch, tmp_path):
    import requests

    urls = {"https://files.example/tensorflow-2.17.0-cp310.whl": 601_300_000,
            "https://files.example/keras-3.4.1-py3.whl": 1_100_000}

    def fake_run(cmd, **kw):
        assert "--dry-run" in cmd and "--ignore-installed" in cmd
        report = Path(cmd[cmd.index("--report") + 1])
        report.write_text(json.dumps({"install": [{"download_info": {"url": u}} for u in urls]}))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    class Head:
        def __init__(self, url, **kw):
            self.headers = {"Content-Length": str(urls[url])}

    monkeypatch.setattr(installers.subprocess, "run", fake_run)
    monkeypatch.setattr(requests, "head", Head)
    assert environment.download_size(sys.executable, ["tensorflow==2.17.0", "keras==3.4.1"]) \
        == {"packages": 2, "bytes": 602_400_000}
    monkeypatch.setattr(installers.subprocess, "run",
                        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "offline"))
    assert environment.download_size(sys.executable, ["keras==3.4.1"]) is None


def test_creating_the_env_says_what_it_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBKIT_INSTALLER", "pip")

    def fake_venv(interpreter, folder):
        (folder / "bin").mkdir(parents=True)
        (folder / "bin" / "python").symlink_to(sys.executable)
        return folder / "bin" / "python"

    monkeypatch.setattr(installers, "make_venv", fake_venv)
    said: list[str] = []
    interp = {"path": sys.executable, "version": LOCAL, "exact": True, "note": None}
    folder = tmp_path / "envs" / "k"
    folder.parent.mkdir()
    with ui.use(ui.Lines(said.append)):
        environment.create_env({"python": LOCAL, "keras": "3.4.1"}, folder, interp,
                               installer=FakeInstaller(), check=_fake_check, runner=_registry,
                               sizer=lambda py, reqs: {"packages": 38, "bytes": 649_000_000})
    assert "  downloading 649 MB in 38 packages with pip, once: later runs reuse it" in \
        " ".join(said)
    marker = json.loads((folder / environment.MARKER).read_text())
    assert marker["download_bytes"] == 649_000_000
