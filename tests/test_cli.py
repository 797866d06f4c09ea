"""The CLI's shell: help without TensorFlow, exit codes, profiles, init from a wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import subkit_env, subkit_process

ROOT = Path(__file__).resolve().parents[1]


def _modules_after(args: list[str]) -> set[str]:
    code = ("import sys\nfrom subkit.__main__ import run\n"
            f"run({args!r})\n"
            "print('MODS', ' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=subkit_env()).stdout
    return set(out.split("MODS", 1)[1].split())


def test_help_and_version_do_not_import_tensorflow():
    from subkit.cli import main

    commands = [[], ["--version"]] + [[name, "--help"] for name in main.commands]
    for group in ("data", "history", "bundle", "env", "profile"):
        cmd = main.commands.get(group)
        for sub in getattr(cmd, "commands", {}):
            commands.append([group, sub, "--help"])
    for args in commands:
        mods = _modules_after(args + (["--help"] if not args else []))
        heavy = {m for m in mods if m.split(".")[0] in ("tensorflow", "keras", "h5py", "PIL")}
        assert not heavy, (args, sorted(heavy)[:5])


def test_version_and_usage_errors(cli):
    from subkit import __version__

    r = cli("--version")
    assert r.code == 0 and __version__ in r.out
    r = cli("build")  # --weights is required
    assert r.code == 2 and r.err.startswith("error:") and "hint:" in r.err
    r = cli("no-such-command")
    assert r.code == 2 and "error:" in r.err


def test_python_dash_m_works():
    r = subkit_process("--version")
    assert r.returncode == 0 and "subkit" in r.stdout


def test_debug_shows_the_traceback(cli, tmp_path):
    r = cli("score-local", tmp_path / "nope.zip", "--data", tmp_path / "x.npz")
    assert r.code == 1 and "Traceback" not in r.err
    with pytest.raises(Exception):
        cli("--debug", "score-local", tmp_path / "nope.zip", "--data", tmp_path / "x.npz")


def test_profile_show_and_overrides(cli, workspace):
    r = cli("profile", "show", "--json")
    assert r.code == 0
    d = json.loads(r.out)["profile"]
    assert d["input"]["shape"] == [96, 96, 3] and d["grader"]["keras"] == "3.4.1"
    assert d["classes"]["names"][7] == "Platelet" and d["evaluation"]["metric"] == "accuracy"
    toml = workspace / "subkit.toml"
    toml.write_text(toml.read_text() + '\n[grader]\nkeras = "3.5.0"\n')
    d = json.loads(cli("profile", "show", "--json").out)
    assert d["profile"]["grader"]["keras"] == "3.5.0" \
        and "overrides" in json.loads(cli("profile", "show", "--json").out)["source"]
    assert d["profile"]["grader"]["tensorflow"] == "2.17.0"  # the rest stays
    r = cli("profile", "show")
    assert 'keras = "3.5.0"' in r.out


@pytest.mark.parametrize("text,needle", [
    ('profile = "nope"\n', "no built-in profile named 'nope'"),
    ('[grader]\nkeras = 3\n', "should be str"),
    ('[grader]\nkerass = "3.4.1"\n', "unknown key 'kerass'"),
    ('[evaluation]\nmetric = "auc"\n', "metric 'auc' is not known"),
    ('[grader\n', "not valid TOML"),
])
def test_bad_workspace_profiles(cli, workspace, text, needle):
    (workspace / "subkit.toml").write_text(text)
    r = cli("profile", "show")
    assert r.code == 1 and needle in r.err and "hint:" in r.err


def test_profile_list(cli):
    r = cli("profile", "list")
    assert "an2dl-2024-blood-cells" in r.out and "codabench" in r.out


def test_init_refuses_to_overwrite(cli, tmp_path):
    r = cli("init", tmp_path / "w")
    assert r.code == 0
    for f in ("model.py", "train.py", "subkit.toml", "submissions/.gitignore"):
        assert (tmp_path / "w" / f).is_file()
    (tmp_path / "w" / "model.py").write_text("# mine")
    r = cli("init", tmp_path / "w")
    assert r.code == 1 and "refusing to overwrite" in r.err
    assert (tmp_path / "w" / "model.py").read_text() == "# mine"
    r = cli("init", tmp_path / "w", "--force")
    assert r.code == 0 and "class Model" in (tmp_path / "w" / "model.py").read_text()


def test_init_works_from_an_installed_wheel(tmp_path):
    """The templates and profiles are package data: a wheel in a fresh venv finds them."""
    wheels = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(wheels), str(ROOT)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = wheels.glob("subkit-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=True)
    py = env_dir / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                        "--ignore-installed", str(whl)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    ws = tmp_path / "elsewhere"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([str(env_dir / "bin" / "subkit"), "init", str(ws)],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "class Model" in (ws / "model.py").read_text()
    # the installed copy, not the checkout, answered
    loc = subprocess.run([str(py), "-c", "import subkit; print(subkit.__file__)"],
                         capture_output=True, text=True, cwd=tmp_path, env=env).stdout
    assert str(env_dir) in loc
