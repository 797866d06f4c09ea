"""With --json, an error is also one JSON object on stdout ({"ok": false, "error", "hint",
"exit_code"}), besides the error:/hint: lines on stderr; a command that printed its own
JSON result (a failed run) keeps that as its only stdout."""

from __future__ import annotations

import json


def test_an_error_with_json_is_json_on_stdout_too(workspace, cli, tmp_path):
    res = cli("score-local", str(tmp_path / "nope.zip"), "--json")
    assert res.code != 0
    out = json.loads(res.out)
    assert out["ok"] is False and out["exit_code"] == res.code
    error, hint = res.err.strip().splitlines()[-2:]
    assert error == f"error: {out['error']}" and hint == f"hint: {out['hint']}"


def test_a_usage_error_with_json_too(workspace, cli):
    res = cli("history", "--sort", "nope", "--json")
    assert res.code == 2
    out = json.loads(res.out)
    assert "unknown column 'nope'" in out["error"] and out["hint"].startswith("valid columns")


def test_without_json_stdout_stays_empty_on_error(workspace, cli, tmp_path):
    res = cli("score-local", str(tmp_path / "nope.zip"))
    assert res.code != 0 and res.out == "" and res.err.startswith("error: ")
