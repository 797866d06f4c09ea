"""The grader's pinned environment: pins, cache key, creation, broken installs,
bad pins, locking, `subkit env`, and `resolve_python` for the run record.

Most tests run against a temporary cache with a fake venv maker and a fake installer (no
network, no 600 MB); two ask the real package index and real pip with a version that does
not exist; the ones marked ``grader_env`` use the real environment that `.ci/run` creates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from subkit import profile as profile_mod
from subkit import ui
from subkit.errors import SubkitError, UsageError
from subkit.grader import environment
from subkit.grader.environment import installers, interpreters, store

LOCAL = f"{sys.version_info.major}.{sys.version_info.minor}"


def _profile(python: str = LOCAL, **grader):
    prof = profile_mod.load("an2dl-2024-blood-cells", workspace=False)
    prof.data["grader"]["python"] = python
    prof.data["grader"].update(grader)
    return prof


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache folder, a fake venv maker (a symlink to this python) and a registry
    that has every pinned version."""
    root = tmp_path / "cache"
    monkeypatch.setenv("SUBKIT_CACHE", str(root))
    monkeypatch.setattr(interpreters, "_INTERPRETERS", {})

    def fake_venv(interpreter: str, folder: Path) -> Path:
        (folder / "bin").mkdir(parents=True)
        (folder / "bin" / "python").symlink_to(sys.executable)
        (folder / "pyvenv.cfg").write_text("home = fake\n")
        return folder / "bin" / "python"

    monkeypatch.setattr(installers, "make_venv", fake_venv)
    return root


def _registry_with_everything(cmd):
    name = cmd[cmd.index("versions") + 1]
    have = {"tensorflow": "2.17.0, 2.16.2", "keras": "3.4.1, 3.4.0",
            "numpy": "1.26.4, 1.26.3"}.get(name, "1.0.0")
    return subprocess.CompletedProcess(cmd, 0, f"{name} (x)\nAvailable versions: {have}\n", "")


def _fake_check(python: str, pin_set: dict) -> dict:
    return {"python_version": LOCAL + ".0", "executable": python,
            **{k: v for k, v in pin_set.items() if k != "python"}, "distributions": {}}


class Installer:
    """A pip stand-in: writes a file into the venv, optionally fails half-way."""

    def __init__(self, fail: bool = False, delay: float = 0.0):
        self.fail, self.delay, self.calls = fail, delay, 0

    def __call__(self, python, reqs, log_path, progress):
        self.calls += 1
        site = Path(python).parent.parent / "lib" / "site-packages"
        site.mkdir(parents=True, exist_ok=True)
        (site / "half-installed.txt").write_text("\n".join(reqs))
        log_path.write_text("Collecting tensorflow\nERROR: disk full\n")
        time.sleep(self.delay)
        if self.fail:
            raise SubkitError("pip could not install the grader's packages: ERROR: disk full",
                              hint=f"the partial environment was removed; pip's log: {log_path}")


def _ensure(prof, installer, **kw):
    return environment.ensure_env(prof, progress=False,
                                  installer=installer, check=_fake_check,
                                  runner=_registry_with_everything, **kw)


# -- pins and keys --------------------------------------------------------------------------------
def test_pins_of_the_reference_profile_and_extras():
    prof = profile_mod.load("an2dl-2024-blood-cells", workspace=False)
    assert environment.pins(prof) == {"python": "3.10", "tensorflow": "2.17.0",
                                      "keras": "3.4.1", "numpy": "1.26.4"}
    prof.data["grader"]["extras"] = {"pillow": "10.4.0", "scipy": ">=1.11"}
    p = environment.pins(prof)
    assert list(p) == ["python", "tensorflow", "keras", "numpy", "pillow", "scipy"]
    assert environment.requirements(p) == ["tensorflow==2.17.0", "keras==3.4.1",
                                           "numpy==1.26.4", "pillow==10.4.0", "scipy>=1.11"]
    prof.data["grader"]["extras"] = {"keras": "3.5.0"}
    with pytest.raises(SubkitError, match="repeats 'keras'"):
        environment.pins(prof)


def test_env_dir_is_keyed_by_the_pinned_set(cache):
    a = environment.env_dir(_profile())
    assert a.parent == cache / "envs"
    assert environment.env_dir(_profile()) == a
    assert environment.env_dir(_profile(keras="3.5.0")) != a
    assert environment.env_key({"keras": "1"}, "3.10") != environment.env_key({"keras": "1"},
                                                                             "3.11")


def test_cache_root_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("SUBKIT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert environment.cache_root() == tmp_path / "xdg" / "subkit"
    monkeypatch.setenv("SUBKIT_CACHE", str(tmp_path / "mine"))
    assert environment.envs_root() == tmp_path / "mine" / "envs"


def test_a_python_that_is_not_here_is_said_and_the_local_one_used(monkeypatch, tmp_path):
    monkeypatch.setattr(interpreters, "_INTERPRETERS", {})
    monkeypatch.setenv("PATH", str(tmp_path))  # no python3.99 on it
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    monkeypatch.delenv("SUBKIT_GRADER_PYTHON", raising=False)
    found = environment.find_interpreter("3.99")
    assert found["path"] == sys.executable and not found["exact"]
    assert "Python 3.99" in found["note"] and f"local Python {LOCAL}" in found["note"]
    # the local version itself: no note
    assert environment.find_interpreter(LOCAL)["note"] is None
    # an explicit interpreter wins, and a version mismatch is said
    monkeypatch.setattr(interpreters, "_INTERPRETERS", {})
    monkeypatch.setenv("SUBKIT_GRADER_PYTHON", sys.executable)
    forced = environment.find_interpreter("3.98")
    assert forced["path"] == sys.executable and "SUBKIT_GRADER_PYTHON" in forced["note"]


# -- creation, reuse, broken installs -------------------------------------------------------------
def test_create_writes_the_marker_last_and_reuses_it(cache):
    prof = _profile()
    inst = Installer()
    python = _ensure(prof, inst)
    folder = environment.env_dir(prof)
    assert python == folder / "bin" / "python"
    marker = json.loads((folder / environment.MARKER).read_text())
    assert marker["status"] == "ok" and marker["pins"] == environment.pins(prof)
    assert marker["versions"]["keras"] == "3.4.1" and marker["size_bytes"] > 0
    assert _ensure(prof, inst) == python and inst.calls == 1  # reused, not reinstalled
    assert environment.ensure_env(prof, create=False) == python


def test_missing_env_without_create_says_how_to_create_it(cache):
    with pytest.raises(SubkitError) as exc:
        environment.ensure_env(_profile(), create=False)
    assert "does not exist yet" in exc.value.message
    assert "subkit env create --profile an2dl-2024-blood-cells" in exc.value.hint


def test_an_install_that_fails_half_way_is_removed(cache):
    prof = _profile()
    messages: list[str] = []
    with pytest.raises(SubkitError, match="disk full") as exc:
        with ui.use(ui.Lines(messages.append)):
            environment.ensure_env(prof, progress=False,
                                   installer=Installer(fail=True), check=_fake_check,
                                   runner=_registry_with_everything)
    folder = environment.env_dir(prof)
    assert not folder.exists(), "a half-installed environment must not stay"
    assert "partial environment was removed" in exc.value.hint
    assert (folder.parent / f"{folder.name}.log").exists()  # pip's log is kept to read
    assert any("creating the grader environment" in m for m in messages)


def test_a_folder_without_marker_is_removed_not_reused(cache):
    prof = _profile()
    folder = environment.env_dir(prof)
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "python").symlink_to(sys.executable)
    (folder / "leftover-from-a-killed-install").write_text("x")
    with pytest.raises(SubkitError, match="broken"):
        environment.ensure_env(prof, create=False)
    assert environment.env_status(prof)["state"] == "broken"
    messages: list[str] = []
    inst = Installer()
    with ui.use(ui.Lines(messages.append)):
        python = environment.ensure_env(prof, progress=False,
                                        installer=inst, check=_fake_check,
                                        runner=_registry_with_everything)
    assert inst.calls == 1
    assert not (folder / "leftover-from-a-killed-install").exists()
    assert any("removing a broken grader environment" in m for m in messages)
    assert environment.read_marker(folder)["python"] == str(python)


def test_a_marker_of_other_pins_is_not_trusted(cache):
    prof = _profile()
    _ensure(prof, Installer())
    folder = environment.env_dir(prof)
    marker = json.loads((folder / environment.MARKER).read_text())
    marker["pins"]["keras"] = "3.0.0"
    (folder / environment.MARKER).write_text(json.dumps(marker))
    assert environment.read_marker(folder, environment.pins(prof)) is None
    inst = Installer()
    _ensure(prof, inst)
    assert inst.calls == 1


def test_a_failed_import_check_removes_the_env(cache):
    prof = _profile()

    def bad_check(python, pin_set):
        raise SubkitError("the new grader environment cannot import its packages: "
                          "ImportError: libfoo.so", hint="x")

    with pytest.raises(SubkitError, match="cannot import"):
        environment.ensure_env(prof, installer=Installer(),
                               check=bad_check, runner=_registry_with_everything)
    assert not environment.env_dir(prof).exists()


def test_two_processes_build_the_env_once(cache):
    prof = _profile()
    inst = Installer(delay=0.5)
    results, errors = [], []

    def worker():
        try:
            results.append(_ensure(prof, inst))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(results) == 2 and results[0] == results[1]
    assert inst.calls == 1, "the second one must wait for the first and reuse its env"


def test_force_rebuilds(cache):
    prof = _profile()
    _ensure(prof, Installer())
    inst = Installer()
    _ensure(prof, inst, force=True)
    assert inst.calls == 1


# -- bad pins --------------------------------------------------------------------------------------
def test_a_pinned_version_the_registry_lacks_lists_the_versions_it_has(cache):
    prof = _profile(keras="3.99.0")
    with pytest.raises(SubkitError) as exc:
        _ensure(prof, Installer())
    assert "keras==3.99.0 is not on the package index" in exc.value.message
    assert "3.4.1, 3.4.0" in exc.value.message
    assert "[grader] keras" in exc.value.hint
    assert not environment.env_dir(prof).exists()  # refused before anything was made


def test_an_unknown_package_is_refused(cache):
    def runner(cmd):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution "
                                                       "found for nosuchpkg-xyz\n")

    with pytest.raises(SubkitError, match="has no nosuchpkg-xyz"):
        environment.check_pins_available(sys.executable, {"nosuchpkg-xyz": "1.0"}, LOCAL,
                                         runner)


def test_offline_registry_leaves_the_decision_to_pip(cache):
    def runner(cmd):
        return subprocess.CompletedProcess(cmd, 1, "", "WARNING: Retrying... connection "
                                                       "refused\n")

    environment.check_pins_available(sys.executable, {"keras": "3.99.0"}, LOCAL, runner)


def test_the_real_registry_lists_keras_versions_for_a_fake_pin():
    """The real package index, asked by the real pip: keras 3.99.9 does not exist."""
    versions = environment.available_versions(sys.executable, "keras")
    if versions is None:
        pytest.skip("the package index cannot be reached from here")
    assert "3.4.1" in versions
    with pytest.raises(SubkitError) as exc:
        environment.check_pins_available(sys.executable, {"python": LOCAL, "keras": "3.99.9"},
                                         LOCAL)
    assert "keras==3.99.9 is not on the package index" in exc.value.message
    assert "3.4.1" in exc.value.message


def test_real_pip_failing_removes_the_half_made_venv(tmp_path, monkeypatch):
    """A real venv and real pip asked for a version that does not exist (the registry check
    is told it cannot answer, so pip itself fails): the folder goes, the log stays."""
    monkeypatch.setenv("SUBKIT_INSTALLER", "pip")  # uv, when installed, is tested elsewhere
    folder = tmp_path / "envs" / "abc"
    folder.parent.mkdir(parents=True)

    def offline(cmd):
        return subprocess.CompletedProcess(cmd, 1, "", "network is unreachable")

    interp = {"path": sys.executable, "version": LOCAL, "exact": True, "note": None}
    said: list[str] = []
    with pytest.raises(SubkitError) as exc, ui.use(ui.Lines(said.append)):
        environment.create_env({"python": LOCAL, "keras": "3.99.9"}, folder, interp,
                               runner=offline, progress=True)
    log = folder.parent / "abc.log"
    assert not folder.exists()
    assert any("s] " in m and "keras" in m for m in said), said  # pip's lines, timed
    assert "pip could not install" in exc.value.message
    assert "keras==3.99.9" in exc.value.message and "keras==3.99.9" in log.read_text()
    assert "partial environment was removed" in exc.value.hint


# -- resolve_python and the CLI --------------------------------------------------------------------
def test_resolve_current_reads_versions_without_importing_tensorflow():
    code = ("import sys, json; from subkit import profile; from subkit.grader import "
            "environment as e; p = profile.load('an2dl-2024-blood-cells', workspace=False); "
            "py, d = e.resolve_python(p, 'current'); "
            "print(json.dumps([py, d, 'tensorflow' in sys.modules, 'keras' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    py, desc, tf_imported, keras_imported = json.loads(out.stdout)
    assert py == sys.executable and desc["name"] == "current"
    assert set(desc) >= {"name", "python_version", "tensorflow", "keras", "numpy", "path"}
    assert desc["keras"] and desc["numpy"]
    assert not tf_imported and not keras_imported


def test_resolve_grader_describes_the_env_for_the_run_record(cache):
    prof = _profile()
    _ensure(prof, Installer())
    py, desc = environment.resolve_python(prof, "grader", create=False)
    assert py == str(environment.env_dir(prof) / "bin" / "python")
    assert desc["name"] == "grader" and desc["keras"] == "3.4.1"
    assert desc["tensorflow"] == "2.17.0" and desc["path"] == str(environment.env_dir(prof))
    with pytest.raises(UsageError, match="unknown environment"):
        environment.resolve_python(prof, "colab")


def test_cli_show_create_remove(cache, monkeypatch, tmp_path, cli):
    toml = tmp_path / "p.toml"
    base = (Path(profile_mod.__file__).parent / "profiles" / "an2dl-2024-blood-cells.toml")
    toml.write_text(base.read_text().replace('python = "3.10"', f'python = "{LOCAL}"'))
    shown = cli("env", "show", "--profile", toml, "--json")
    assert shown.code == 0, shown.text
    st = json.loads(shown.out)
    assert st["state"] == "missing" and st["pins"]["keras"] == "3.4.1"
    text = cli("env", "show", "--profile", toml).text
    assert "not created yet" in text and "keras 3.4.1" in text
    # create, with the fakes in place of pip
    real = environment.ensure_env
    def fake_ensure(prof, **kw):
        return real(prof, installer=Installer(), check=_fake_check,
                    runner=_registry_with_everything, **kw)

    # the command calls the package's name, the `--env` choice the store's
    monkeypatch.setattr(environment, "ensure_env", fake_ensure)
    monkeypatch.setattr(store, "ensure_env", fake_ensure)
    made = cli("env", "create", "--profile", toml, "--json")
    assert made.code == 0, made.text
    assert json.loads(made.out[made.out.index("{"):])["state"] == "ready"
    again = cli("env", "create", "--profile", toml)
    assert "is ready" in again.text
    gone = cli("env", "remove", "--profile", toml)
    assert gone.code == 0 and "removed" in gone.text
    assert "nothing to remove" in cli("env", "remove", "--profile", toml).text


# -- the real grader environment ------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.grader_env
def test_the_real_grader_env_has_the_pinned_versions(grader_python):
    prof = profile_mod.load("an2dl-2024-blood-cells", workspace=False)
    _py, desc = environment.resolve_python(prof, "grader", create=False)
    assert (desc["tensorflow"], desc["keras"], desc["numpy"]) == ("2.17.0", "3.4.1", "1.26.4")
    out = subprocess.run([grader_python, "-c", "import keras, numpy; print(keras.__version__, "
                          "numpy.__version__)"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.stdout.split() == ["3.4.1", "1.26.4"], out.stderr[-2000:]
