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


# -- each option declared once (cli/options.py Opt): the click option and the Options field -------
def _declared():
    from subkit.cli import app, env, ledger, report
    from subkit.commands.build import BuildOptions, CheckOptions
    from subkit.commands.demo import DemoOptions
    from subkit.commands.env import EnvCreateOptions
    from subkit.commands.history import HistoryOptions, NoteOptions, ScoreOptions
    from subkit.commands.report import ReportOptions
    from subkit.commands.score_local import PredictOptions, ScoreLocalOptions
    from subkit.commands.submit import SubmitOptions

    return [(app.build, app.BUILD, BuildOptions), (app.check, app.CHECK, CheckOptions),
            (app.score_local, app.SCORE_LOCAL, ScoreLocalOptions),
            (app.predict, app.PREDICT, PredictOptions), (app.demo, app.DEMO, DemoOptions),
            (ledger.history, ledger.HISTORY, HistoryOptions),
            (ledger.history_note, ledger.NOTE, NoteOptions),
            (ledger.history_score, ledger.SCORE, ScoreOptions),
            (ledger.submit, ledger.SUBMIT, SubmitOptions),
            (env.create, env.CREATE, EnvCreateOptions), (report.report, report.REPORT,
                                                         ReportOptions)]


def test_every_declared_option_is_the_commands_parameter_and_an_options_field():
    import dataclasses

    for command, opts, cls in _declared():
        assert [p.name for p in command.params] == [o.dest for o in opts], command.name
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = [o.field for o in opts if o.field is not None and o.field not in fields]
        assert not missing, (command.name, missing)


def _options_of(command, opts, cls, args, **extra):
    from subkit.cli.options import fill

    ctx = command.make_context(command.name, list(args))
    return fill(cls, opts, ctx.params, **extra)


def test_parsed_options_fill_the_same_fields_as_before():
    """The Options each command built by hand before the options were declared once."""
    from subkit.cli import app, ledger
    from subkit.commands.build import BuildOptions, CheckOptions
    from subkit.commands.score_local import PredictOptions, ScoreLocalOptions
    from subkit.commands.submit import SubmitOptions

    got = _options_of(app.build, app.BUILD, BuildOptions,
                      ["--weights", "a.keras", "--weights", "b.h5", "--no-smoke", "--include",
                       "x.txt", "--out-dir", "out", "--env", "grader", "--phase", "final"],
                      quiet=True)
    assert got == BuildOptions(weights=[Path("a.keras"), Path("b.h5")], model_py=None,
                               includes=[Path("x.txt")], tag="submission", out_dir=Path("out"),
                               keep_optimizer=False, smoke=False, env="grader",
                               target_keras=None, phase="final", quiet=True)
    assert _options_of(app.check, app.CHECK, CheckOptions, ["s.zip"]) == CheckOptions(
        path=Path("s.zip"), smoke=True, env=None, data=None, phase=None)
    got = _options_of(app.score_local, app.SCORE_LOCAL, ScoreLocalOptions,
                      ["s.zip", "--no-network-isolation", "--shift", "--task", "2", "--seed",
                       "3", "--bundle", "b.zip"], progress=False)
    assert got == ScoreLocalOptions(zip=Path("s.zip"), data=None, time_limit=None,
                                    isolate_network=False, bundle=Path("b.zip"), phase=None,
                                    task=2, shift="", seed=3, tta_compare=False,
                                    proba=False, env=None, progress=False)
    got = _options_of(app.predict, app.PREDICT, PredictOptions,
                      ["--data", "t.npz", "--out", "p.csv", "--time-limit", "9"])
    assert got == PredictOptions(data=Path("t.npz"), out=Path("p.csv"), zip=None, force=False,
                                 time_limit=9.0, env=None, phase=None)
    got = _options_of(ledger.submit, ledger.SUBMIT, SubmitOptions,
                      ["s.zip", "--codabench", "1234", "--no-smoke", "--version", "2",
                       "--wait"], platform="codabench", competition="1234")
    assert got == SubmitOptions(platform="codabench", competition="1234", file=Path("s.zip"),
                                wait=True, smoke=False, version=2, wait_timeout=7200.0)


def test_one_reporting_path_no_echo_parameters_below_the_cli():
    """Library code reports through subkit.ui, never through a line printer handed down:
    no function outside cli/ takes an ``echo`` parameter."""
    import ast

    src = ROOT / "src" / "subkit"
    found = []
    for path in src.rglob("*.py"):
        rel = path.relative_to(src).as_posix()
        if rel.startswith(("cli/", "templates/")) or rel == "ui.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                a = node.args
                names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
                if "echo" in names:
                    found.append(f"{rel}:{node.lineno}")
    assert found == []


def test_the_terminal_reporter_draws_the_prompts_on_stderr(monkeypatch):
    from click.testing import CliRunner

    from subkit.cli.options import TerminalReporter

    monkeypatch.setattr(TerminalReporter, "interactive", True)
    with CliRunner().isolation(input="alice\ncorrect horse\n") as streams:
        rep = TerminalReporter()
        assert rep.ask("Codabench user name or e-mail") == "alice"
        assert rep.ask("Codabench password", secret=True) == "correct horse"
        out, err = streams[0].getvalue().decode(), streams[1].getvalue().decode()
    assert out == ""
    assert "Codabench user name or e-mail: alice" in err  # typed text is echoed...
    assert "Codabench password: " in err and "correct horse" not in err  # ...a password not
