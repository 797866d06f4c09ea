"""subkit.ui, the reporter library code talks through: silent by default, quiet under
--json (results dropped, progress kept), a command's own line printer; and what build and
check say through it."""

from __future__ import annotations

import json

from subkit import ui


class Recorder(ui.Reporter):
    live = True

    def __init__(self):
        self.seen: list[tuple[str, str]] = []

    def info(self, message, *, bold=False, fg=None):
        self.seen.append(("info", message + (f" [{fg}]" if fg else "")))

    def warn(self, message):
        self.seen.append(("warn", message))

    def progress(self, message):
        self.seen.append(("progress", message))


def _say_everything() -> None:
    ui.echo("a result")
    ui.echo("PASSED", bold=True, fg="green")
    ui.warn("act on this")
    ui.progress("step 1")


def test_the_default_reporter_is_silent_and_draws_no_progress_bar():
    assert ui.reporter() is ui.SILENT and ui.live() is False
    _say_everything()  # nothing to see, nothing raised


def test_quiet_keeps_warnings_and_progress_and_drops_results():
    rec = Recorder()
    with ui.use(rec):
        assert ui.live() is True
        with ui.quiet():
            assert ui.live() is False  # --json: no progress bar either
            _say_everything()
        ui.echo("after")
    assert rec.seen == [("warn", "act on this"), ("progress", "step 1"), ("info", "after")]


def test_lines_sends_every_message_to_one_printer():
    said: list[str] = []
    with ui.use(ui.Lines(said.append)):
        assert ui.live() is True
        _say_everything()
    assert said == ["a result", "PASSED", "act on this", "step 1"]
    assert ui.reporter() is ui.SILENT  # restored on leaving the block


def test_a_failed_build_says_its_failure_once(cli, workspace, keras_weights, tmp_path):
    bad = tmp_path / "model.py"
    bad.write_text("class Model:\n    def __init__(self)\n        pass\n")
    r = cli("build", "--weights", keras_weights, "--model", bad, "--no-smoke")
    assert r.code == 1
    assert r.err.count("syntax error at line 2") == 1 and r.err.count("hint:") == 1
    assert "[FAIL]" not in r.out and "syntax error" not in r.out
    assert r.out.splitlines()[0].startswith("building a submission for ")


def test_check_json_prints_only_the_report(cli, workspace, tmp_path):
    from conftest import make_zip

    z = make_zip(tmp_path / "nested.zip", {"submission/model.py": "class Model: pass\n"})
    r = cli("check", z, "--json")
    assert r.code == 1
    assert json.loads(r.out)["status"] == "FAILED"  # no `checking ...` line before the JSON
    plain = cli("check", z)
    assert plain.out.splitlines()[0] == f"checking {z}"
    assert plain.out.splitlines()[-1] == "FAILED"
    assert "  [FAIL] layout: model.py is not at the zip root (found submission/model.py)" \
        in plain.out.splitlines()


def test_the_terminal_draws_a_bar_on_a_tty_only(monkeypatch, capsys):
    """Library code asks ``ui.bar``; the terminal reporter draws tqdm on stderr when it
    is a terminal, and nothing otherwise."""
    import sys

    from subkit.cli.options import TerminalReporter

    with ui.use(TerminalReporter()):
        quiet = ui.bar("upload", 100, unit="B")
        quiet.advance(50)
        quiet.close()
        assert type(quiet) is ui.Bar and capsys.readouterr().err == ""
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
        drawn = ui.bar("child: predict", 60, unit="s")
        drawn.set(30, "child: predict")
        drawn.close()
    assert type(drawn) is not ui.Bar and "30/60 s of the time limit" in capsys.readouterr().err


def test_a_run_s_time_bar_follows_the_child_s_stage(tmp_path, recording_bars):
    from subkit.grader.run import TimeBar

    status = tmp_path / "ingestion.json"
    bar = TimeBar("score-local", 600.0, status)
    for t, stage in ((1.0, "import"), (1.2, "init"), (2.0, "init"), (3.0, "predict")):
        status.write_text(json.dumps({"stage": stage}))
        bar.tick(t)
    bar.close()
    [drawn] = recording_bars
    assert (drawn.label, drawn.total, drawn.unit, drawn.closed) == ("score-local", 600.0, "s",
                                                                     True)
    # ticks closer than half a second are skipped; the description changes with the stage
    assert drawn.sets == [(1.0, "child: import"), (2.0, "child: init"), (3.0, "child: predict")]
