"""`subkit submit` against loopback replays of Codabench, Kaggle and their storage
(tests/fake_servers.py: each behaviour there cites the service's source).

No test leaves the machine: every URL is 127.0.0.1 with an ephemeral port, and a test that
tries to resolve another host fails. Waits run on a virtual clock.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import types
import zipfile
from pathlib import Path

import pytest

import subkit.commands.submit.common as submit_mod
import subkit.remote.http as http_mod
from subkit import credentials
from subkit.cli.options import TerminalReporter
from subkit.ledger import Ledger, sha256_file
from subkit.remote import codabench as cb

from fake_servers import start_codabench, start_flaky, start_kaggle

SECRET_VARS = ("CODABENCH_TOKEN", "CODABENCH_URL", "KAGGLE_USERNAME", "KAGGLE_KEY",
               "KAGGLE_CONFIG_DIR", "KAGGLE_API_TOKEN", "KAGGLE_KERNEL_RUN_TYPE",
               "KAGGLE_DATA_PROXY_URL", "KAGGLE_API_V1_TOKEN")


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def workspace(workspace, tmp_path, monkeypatch):
    """conftest's workspace, with no credentials of the machine's within reach and no
    terminal to prompt on."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    for var in SECRET_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(TerminalReporter, "interactive", False)
    return workspace


@pytest.fixture
def terminal(monkeypatch):
    """A person at the terminal: the reporter is interactive and answers its questions
    from ``answers`` (question -> answer); ``asked`` records (question, secret)."""
    fake = types.SimpleNamespace(answers={}, asked=[])

    def ask(self, question, *, secret=False, hint=None):
        fake.asked.append((question, secret))
        return fake.answers[question]

    monkeypatch.setattr(TerminalReporter, "interactive", True)
    monkeypatch.setattr(TerminalReporter, "ask", ask)
    return fake


def login_as(terminal, user: str, password: str) -> None:
    terminal.answers.update({"Codabench user name or e-mail": user,
                             "Codabench password": password})


def logins(terminal) -> int:
    """How many logins were asked (each: the user name, then the password, not echoed)."""
    assert all(secret == (q == "Codabench password") for q, secret in terminal.asked)
    return sum(q == "Codabench password" for q, _ in terminal.asked)


@pytest.fixture
def sleeps(monkeypatch):
    """Retry and poll sleeps are recorded, not slept; they move a virtual clock."""
    calls: list[float] = []
    clock = [0.0]

    def fake_sleep(seconds: float) -> None:
        calls.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(http_mod, "SLEEP", fake_sleep)
    monkeypatch.setattr(submit_mod, "CLOCK", lambda: clock[0])
    return calls


@pytest.fixture
def checks(monkeypatch):
    """A stand-in for `subkit check`: tests set .status; each call records what the check
    could see of the credentials."""
    fake = types.SimpleNamespace(status="PASSED", calls=[], seen_env=[], failure=None)

    def run_check(zip_path, profile, *, smoke, quiet, env):
        fake.calls.append((Path(zip_path), smoke, env))
        fake.seen_env.append({k: os.environ[k] for k in credentials.SECRET_ENV
                              if k in os.environ})
        failure = {"message": fake.failure} if fake.failure else None
        return types.SimpleNamespace(status=fake.status, first_failure=lambda: failure)

    monkeypatch.setattr(submit_mod, "run_check", run_check)
    return fake


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """A test that tries to resolve any host but the loopback fails loudly."""
    import socket

    real = socket.getaddrinfo

    def guarded(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise AssertionError(f"a test tried to reach {host!r} outside the machine")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


@pytest.fixture
def codabench(workspace, monkeypatch, sleeps, checks):
    api, storage = start_codabench()
    monkeypatch.setenv("CODABENCH_URL", api.url)
    yield types.SimpleNamespace(api=api, storage=storage, state=api.state,
                                blobs=storage.state, sleeps=sleeps, checks=checks)
    api.stop()
    storage.stop()


@pytest.fixture
def token(codabench, monkeypatch):
    monkeypatch.setenv("CODABENCH_TOKEN", codabench.state.token)
    return codabench.state.token


@pytest.fixture
def zip_file(workspace) -> Path:
    sub = workspace / "submissions"
    sub.mkdir(exist_ok=True)
    p = sub / "submission_241120_101500.zip"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("model.py", "class Model:\n    def predict(self, X):\n        return X\n")
        zf.writestr("weights.keras", os.urandom(200_000))  # stored bytes: not compressible
    return p


def ledger_of(workspace) -> Ledger:
    return Ledger(workspace / "submissions")


def api_calls(state) -> list[tuple[str, str]]:
    return [(c["method"], c["path"].split("?")[0]) for c in state.log]


def one_error(err: str) -> tuple[str, str]:
    """The error and hint lines; asserts there is exactly one of each."""
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    hints = [line for line in err.splitlines() if line.startswith("hint: ")]
    assert len(errors) == 1 and len(hints) == 1, err
    assert "Traceback" not in err
    return errors[0], hints[0]


def nothing_uploaded(codabench) -> bool:
    return codabench.blobs.log == [] and not any(
        p in ("/api/datasets/", "/api/submissions/") for _, p in api_calls(codabench.state))


# -- Codabench: the happy path -----------------------------------------------------------------
def test_codabench_submit_uploads_as_the_web_page_does(codabench, token, workspace, zip_file,
                                                       cli):
    code, out, err = cli("submit", zip_file, "--codabench", "1234", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "Submitting" and result["phase"] == "Development"
    assert result["phase_id"] == 101 and result["check"] == "PASSED"
    key = next(iter(codabench.state.datasets))
    calls = api_calls(codabench.state)
    assert calls == [("GET", "/api/competitions/1234/"),     # anonymous, before the check
                     ("GET", "/api/competitions/1234/"),     # signed in, after it
                     ("GET", "/api/can_make_submission/101/"),
                     ("POST", "/api/datasets/"),
                     ("PUT", f"/api/datasets/completed/{key}/"),
                     ("POST", "/api/submissions/")]
    log = codabench.state.log
    assert "Authorization" not in log[0]["headers"]
    assert all(c["headers"]["Authorization"] == f"Token {token}" for c in log[1:])
    # the upload slot names the competition (else it is an "unused submission")
    slot = json.loads(log[3]["body"])
    assert slot == {"type": "submission", "competition": 1234,
                    "request_sassy_file_name": zip_file.name, "file_name": zip_file.name,
                    "file_size": zip_file.stat().st_size}
    assert json.loads(log[5]["body"]) == {"phase": 101, "data": key}
    # the exact bytes reached storage through the S3 URL signed for application/zip
    put = codabench.blobs.log[-1]
    assert "X-Amz-Signature" in put["path"] and "Authorization" not in put["headers"]
    assert put["headers"]["Content-Type"] == "application/zip"
    assert int(put["headers"]["Content-Length"]) == zip_file.stat().st_size
    assert list(codabench.blobs.blobs.values()) == [zip_file.read_bytes()]
    assert codabench.state.datasets[key]["completed"] is True
    assert "uploading submission_241120_101500.zip (" in err and "KB" in err
    assert token not in out + err and "S3CR3T" not in out + err
    recs = ledger_of(workspace).records()
    assert [r["kind"] for r in recs] == ["submit"]
    assert recs[0]["zip_sha256"] == sha256_file(zip_file)
    assert recs[0]["submission_id"] == result["submission_id"]
    assert recs[0]["platform"] == "codabench" and recs[0]["competition"] == 1234
    assert codabench.checks.calls == [(zip_file, True, None)]


def test_wait_records_the_primary_column_and_says_to_add_it(codabench, token, workspace,
                                                            zip_file, cli):
    code, out, err = cli("submit", zip_file, "--codabench",
                              f"{codabench.api.url}/competitions/1234/", "--wait", "--no-smoke",
                              "--env", "grader")
    assert code == 0, err
    for status in ("Submitted", "Running", "Preparing", "Scoring", "Finished"):
        assert f": {status}" in err
    # primary_index is 1 (accuracy), not the lowest index (duration)
    assert "leaderboard score: 0.7600 (accuracy 0.7600, duration 12.5000)" in out
    assert "rule is 'Add'" in err and "only once you add it" in err
    recs = ledger_of(workspace).records()
    assert [r["kind"] for r in recs] == ["submit", "leaderboard"]
    lb = recs[1]
    assert lb["source"] == "codabench" and lb["leaderboard_score"] == 0.76
    assert lb["column"] == "accuracy" and lb["on_leaderboard"] is False
    assert lb["scores"] == {"accuracy": 0.76, "duration": 12.5}
    assert lb["submission_rule"] == "Add" and lb["scores_pending"] is False
    row = ledger_of(workspace).table()[0]
    assert row["leaderboard"] == {"Development": 0.76} and row["status"] == "Finished"
    assert codabench.checks.calls == [(zip_file, False, "grader")]
    assert codabench.sleeps and max(codabench.sleeps) <= 60


def test_primary_column_follows_primary_index(codabench, token, workspace, zip_file, cli):
    codabench.state.leaderboard["primary_index"] = 0
    codabench.state.leaderboard["submission_rule"] = "Force_Best"
    code, out, err = cli("submit", zip_file, "--codabench", "1234", "--wait", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["column"] == "duration" and result["leaderboard_score"] == 12.5
    assert result["on_leaderboard"] is True and "add it" not in err


def test_scores_that_come_after_finished_are_waited_for(codabench, token, workspace, zip_file,
                                                        cli):
    codabench.state.worker = "scores_late"
    code, out, err = cli("submit", zip_file, "--codabench", "1234", "--wait", "--json")
    assert code == 0, err
    assert json.loads(out)["leaderboard_score"] == 0.76
    assert ledger_of(workspace).records()[-1]["leaderboard_score"] == 0.76


def test_scores_not_in_after_the_grace_are_said_and_recorded(codabench, token, workspace,
                                                             zip_file, cli):
    codabench.state.worker = "scores_never"
    code, out, err = cli("submit", zip_file, "--codabench", "1234", "--wait", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "Finished" and result["leaderboard_score"] is None
    assert result["scores_pending"] is True
    assert any("scores are not in yet" in n for n in result["notes"])
    assert "scores are not in yet after 120 s" in err
    lb = ledger_of(workspace).records()[-1]
    assert lb["kind"] == "leaderboard" and lb["status"] == "Finished"
    assert lb["scores_pending"] is True and lb["leaderboard_score"] is None
    assert sum(codabench.sleeps) < 200  # bounded: the grace, on the virtual clock


@pytest.mark.parametrize("worker,reason", [
    ("no_scores_file", "Could not find scores file, did the scoring program output it?"),
    ("program_failed", "program_rc=1"),
    ("child_failed", "Execution Time Limit exceeded. Limit was 600 seconds"),
])
def test_a_failed_submission_says_why_and_exits_1(codabench, token, workspace, zip_file, cli,
                                                  worker, reason):
    codabench.state.worker = worker
    code, out, err = cli("submit", zip_file, "--codabench", "1234", "--wait")
    assert code == 1
    error, hint = one_error(err)
    assert "failed on codabench" in error and reason in error
    assert "logs" in hint
    lb = ledger_of(workspace).records()[-1]
    assert lb["kind"] == "leaderboard" and lb["status"] == "Failed"
    assert lb["leaderboard_score"] is None and reason in lb["status_details"]


# -- Codabench: --wait keeps the platform's logs (the submission's "Logs" tab) ----------------
def test_wait_keeps_the_logs_next_to_the_ledger_row(codabench, token, workspace, zip_file, cli):
    code, out, err = cli("submit", zip_file, "--codabench", "1234", "--wait")
    assert code == 0, err
    lb = ledger_of(workspace).records()[-1]
    sub_id = lb["submission_id"]
    assert lb["logs"] == f"submission_241120_101500.codabench-{sub_id}.log"
    kept = workspace / "submissions" / lb["logs"]
    text = kept.read_text()
    # the calls the web page makes: get_details, then each log's signed URL, without the token
    assert ("GET", f"/api/submissions/{sub_id}/get_details/") in api_calls(codabench.state)
    reads = [c for c in codabench.blobs.log if c["method"] == "GET"
             and "submission_details" in c["path"]]
    assert all("Authorization" not in c["headers"] for c in codabench.blobs.log)
    assert f"===== submission {sub_id}: prediction_ingestion_stdout =====\n" \
           "Ingestion program: loading model.py\npredicted 400 images in 3.1 s\n" in text
    assert f"===== submission {sub_id}: scoring_stdout =====\naccuracy: 0.76\n" in text
    assert f"===== submission {sub_id}: prediction_stderr (empty) =====" in text
    assert text.index("prediction_stdout") < text.index("scoring_stdout")
    assert f"platform logs: {kept}" in out
    assert "S3CR3T" not in out + err + text
    # the scoring step's output (SubmissionFilesSerializer.scoring_result), kept beside it
    [scoring] = lb["scoring_output"]
    assert scoring == f"submission_241120_101500.codabench-{sub_id}.scoring.zip"
    with zipfile.ZipFile(workspace / "submissions" / scoring) as zf:
        assert json.loads(zf.read("scores.json")) == {"accuracy": 0.76, "duration": 12.5}
    assert len(reads) == 8


def test_a_failed_run_shows_its_failing_lines_and_the_local_rerun(codabench, token, workspace,
                                                                  zip_file, cli):
    codabench.state.worker = "program_failed"
    code, out, err = cli("submit", zip_file, "--codabench", "1234", "--wait", "--no-smoke")
    assert code == 1
    error, hint = one_error(err)
    lb = ledger_of(workspace).records()[-1]
    kept = workspace / "submissions" / lb["logs"]
    assert "ModuleNotFoundError: No module named 'cv2'" in kept.read_text()
    block = err[err.index("--- submission"):err.index("\nerror: ")]
    assert "prediction_ingestion_stderr, its traceback ---" in block
    assert "  ModuleNotFoundError: No module named 'cv2'" in block
    assert '    File "/app/ingested_program/model.py", line 3, in <module>' in block
    # the scoring step never ran: its logs were never created, nothing else is shown
    assert "scoring" not in kept.read_text() and lb["scoring_output"] is None
    assert f"the platform's logs are in {kept}" in hint
    assert f"subkit score-local {zip_file}" in hint


def test_failing_lines_are_made_printable(codabench, token, workspace, zip_file, cli):
    codabench.state.worker = "program_failed"
    codabench.state.log_texts["prediction_stderr"] = (
        "loading\n\x1b[2J\x1b[1;32mscore: 1.0000 PASSED\x1b[0m\u202eevil\n")
    code, out, err = cli("submit", zip_file, "--codabench", "1234", "--wait", "--json")
    assert code == 1
    result = json.loads(out)  # one JSON object: the result with the error
    error, hint = one_error(err)
    assert result["ok"] is False and result["exit_code"] == 1
    assert result["error"] == error.removeprefix("error: ")
    assert result["hint"] == hint.removeprefix("hint: ") and "subkit score-local" in hint
    assert result["failing_log"].endswith("prediction_stderr, its last lines")
    # every control and bidi character shown escaped (grader.untrusted.printable)
    assert result["failing_lines"][-1] == ("\\x1b[2J\\x1b[1;32mscore: 1.0000 PASSED\\x1b[0m"
                                           "\\u202eevil")
    assert "\x1b" not in out + err and "\u202e" not in out + err
    assert result["rerun"] == f"subkit score-local {zip_file}"
    # the kept file has the logs as the platform sent them
    kept = workspace / "submissions" / ledger_of(workspace).records()[-1]["logs"]
    assert "\x1b[2J" in kept.read_text()


def test_a_failed_task_of_several_shows_the_failed_childs_log(codabench, token, workspace,
                                                             zip_file, cli):
    codabench.state.worker = "child_failed"
    code, out, err = cli("submit", zip_file, "--codabench", "1234", "--wait")
    assert code == 1
    children = [s for s in codabench.state.submissions.values() if s["parent"]]
    failed = next(c for c in children if c["status"] == "Failed")
    assert f"--- submission {failed['id']} prediction_ingestion_stderr, its last lines ---" in err
    assert "  Execution Time Limit exceeded. Limit was 600 seconds" in err


def test_missing_and_empty_logs_are_named_in_the_file(codabench, token, workspace, zip_file,
                                                     cli):
    codabench.state.logs_lost = {"scoring_stdout"}
    code, out, err = cli("submit", zip_file, "--codabench", "1234", "--wait", "--json")
    assert code == 0, err
    result = json.loads(out)
    sub_id = result["submission_id"]
    states = result["logs"]["logs"]
    assert states[f"{sub_id}/scoring_stdout"] == "missing"
    assert states[f"{sub_id}/scoring_stderr"] == "empty"
    assert states[f"{sub_id}/prediction_ingestion_stdout"] == "ok"
    text = Path(result["logs"]["file"]).read_text()
    assert f"===== submission {sub_id}: scoring_stdout (missing: listed, but storage has no " \
           "such file) =====" in text


def test_no_logs_at_all_writes_no_file_and_says_so(codabench, token, workspace, zip_file, cli):
    codabench.state.worker = "program_failed"
    codabench.state.hide_output = True
    code, out, err = cli("submit", zip_file, "--codabench", "1234", "--wait")
    assert code == 1
    assert "this phase hides the submissions' output: Codabench shows no logs" in err
    error, hint = one_error(err)
    assert "read its logs on" in hint and "subkit score-local" in hint
    lb = ledger_of(workspace).records()[-1]
    assert lb["logs"] is None and lb["status"] == "Failed"
    assert not list((workspace / "submissions").glob("*.log"))


def test_logs_that_cannot_be_read_still_record_the_result(codabench, token, workspace,
                                                         zip_file, cli, monkeypatch):
    def broken(self, sub_id):
        raise http_mod.HttpError("reading the logs failed: HTTP 502 Bad Gateway", status=502)

    monkeypatch.setattr(cb.CodabenchClient, "submission_details", broken)
    code, out, err = cli("submit", zip_file, "--codabench", "1234", "--wait")
    assert code == 0, err
    assert "could not be read: reading the logs failed: HTTP 502" in err
    lb = ledger_of(workspace).records()[-1]
    assert lb["leaderboard_score"] == 0.76 and lb["logs"] is None


def test_kept_logs_never_overwrite(tmp_path):
    from subkit.commands.submit import logs

    found = logs.PlatformLogs(logs=[logs.Log(7, "prediction_stdout", "one\n")])
    first = logs.keep(found, tmp_path, "sub.zip", 7, "http://x")
    found.logs[0].text = "two\n"
    second = logs.keep(found, tmp_path, "sub.zip", 7, "http://x")
    assert (first.name, second.name) == ("sub.codabench-7.log", "sub.codabench-7-2.log")
    assert "one" in first.read_text() and "two" in second.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, second.name])


def test_a_reporter_without_a_terminal_refuses_to_ask():
    from subkit import ui
    from subkit.errors import SubkitError

    with pytest.raises(SubkitError) as exc:
        ui.ask("Codabench password", secret=True, hint="set CODABENCH_TOKEN")
    assert exc.value.message == "cannot ask for codabench password: no terminal to answer on"
    assert exc.value.hint == "set CODABENCH_TOKEN"
    with ui.use(TerminalReporter()), ui.quiet():
        assert ui.interactive() is False  # pytest's stdin is no terminal
        with pytest.raises(SubkitError, match="no terminal"):
            ui.ask("Codabench user name or e-mail")


def test_organiser_run_competition_is_noted(codabench, token, workspace, zip_file, cli):
    codabench.state.auto_run = False
    code, out, err = cli("submit", zip_file, "--codabench", "1234")
    assert code == 0, err
    assert "runs submissions by hand" in err


def test_private_competition_by_its_url_with_the_secret_key(codabench, token, workspace,
                                                            zip_file, cli):
    codabench.state.published = False
    codabench.state.participants = {"alice": "pending"}
    url = f"{codabench.api.url}/competitions/1234/?secret_key={codabench.state.secret_key}"
    code, out, err = cli("submit", zip_file, "--codabench", url)
    assert code == 1
    error, hint = one_error(err)
    assert "User not approved to participate in this competition" in error
    assert "waits for the organisers' approval" in hint
    assert all("secret_key=" in c["path"] for c in codabench.state.log
               if c["path"].startswith("/api/competitions/"))
    assert nothing_uploaded(codabench)


# -- Codabench: phases ---------------------------------------------------------------------------
def test_phase_by_name_and_by_id(codabench, token, workspace, zip_file, cli):
    code, out, err = cli("submit", zip_file, "--codabench", "1234", "--phase",
                              "development", "--json")
    assert code == 0, err
    assert json.loads(out)["phase_id"] == 101
    code, out, err = cli("submit", zip_file, "--codabench", "1234", "--phase", "101",
                              "--json")
    assert code == 0 and json.loads(out)["phase"] == "Development"


@pytest.mark.parametrize("phase", ["Warmup", "999"])
def test_a_phase_that_does_not_exist_is_refused_before_the_check(codabench, token, workspace,
                                                                 zip_file, cli, phase):
    code, out, err = cli("submit", zip_file, "--codabench", "1234", "--phase", phase)
    assert code == 2
    error, hint = one_error(err)
    assert f"--phase {phase!r}: no phase of this competition match" in error
    assert "101 'Development' (Current)" in hint and "102 'Final' (Next)" in hint
    assert codabench.checks.calls == []  # found out before the long check
    assert nothing_uploaded(codabench)


def test_a_phase_that_is_not_open_needs_force(codabench, token, workspace, zip_file, cli):
    code, out, err = cli("submit", zip_file, "--codabench", "1234", "--phase", "Final")
    assert code == 1
    error, hint = one_error(err)
    assert "phase 'Final' (id 102) is not open: Next (it starts" in error
    assert "does not check the dates" in hint and "--force" in hint
    assert nothing_uploaded(codabench)
    # the server takes it (no date check on the API path): --force submits
    code, out, err = cli("submit", zip_file, "--codabench", "1234", "--phase", "Final",
                              "--force", "--json")
    assert code == 0, err
    assert json.loads(out)["phase_id"] == 102 and "is Next; submitting anyway" in err


def test_no_open_phase_lists_the_phases(codabench, token, workspace, zip_file, cli):
    codabench.state.phases.pop(0)
    code, out, err = cli("submit", zip_file, "--codabench", "1234")
    assert code == 1
    error, hint = one_error(err)
    assert "no phase of this competition is open" in error
    assert "102 'Final' (Next)" in hint and "--force" in hint


# -- Codabench: the check ----------------------------------------------------------------------
def test_failed_check_stops_the_upload(codabench, token, workspace, zip_file, cli):
    codabench.checks.status = "FAILED"
    codabench.checks.failure = "model.py loads 'weights.h5', which is not in the zip"
    code, out, err = cli("submit", zip_file, "--codabench", "1234")
    assert code == 1
    error, hint = one_error(err)
    assert "subkit check of submission_241120_101500.zip FAILED: model.py loads" in error
    assert "nothing was uploaded" in error and "--force" in hint
    assert nothing_uploaded(codabench) and ledger_of(workspace).records() == []


def test_force_uploads_despite_a_failed_check(codabench, token, workspace, zip_file, cli):
    codabench.checks.status = "FAILED"
    code, out, err = cli("submit", zip_file, "--codabench", "1234", "--force", "--json")
    assert code == 0, err
    assert "warning: subkit check of submission_241120_101500.zip FAILED" in err
    rec = ledger_of(workspace).records()[0]
    assert rec["check"] == "FAILED" and rec["forced"] is True


def test_run_check_calls_check_zip_and_passes_env_only_when_given(monkeypatch, tmp_path):
    seen = []
    fake_checks = types.ModuleType("subkit.checks")
    fake_checks.check_zip = lambda path, profile, **kw: seen.append((path, profile, kw))
    monkeypatch.setitem(sys.modules, "subkit.checks", fake_checks)
    submit_mod.run_check(tmp_path / "x.zip", "PROFILE", smoke=False, quiet=True, env=None)
    submit_mod.run_check(tmp_path / "x.zip", "PROFILE", smoke=True, quiet=False, env="current")
    assert seen == [(tmp_path / "x.zip", "PROFILE", {"smoke": False}),
                    (tmp_path / "x.zip", "PROFILE", {"smoke": True, "env": "current"})]


# -- Codabench: credentials only after the check ----------------------------------------------
def test_the_check_runs_with_no_token_in_the_environment_or_read(codabench, token, workspace,
                                                                 zip_file, cli, monkeypatch):
    order = []
    real_saved = credentials.codabench_saved_token
    monkeypatch.setattr(credentials, "codabench_saved_token",
                        lambda server: order.append("token read") or real_saved(server))
    real_check = submit_mod.run_check
    monkeypatch.setattr(submit_mod, "run_check",
                        lambda *a, **k: order.append("check") or real_check(*a, **k))
    monkeypatch.delenv("CODABENCH_TOKEN")
    credentials.codabench_save_token(codabench.api.url, token, "alice")
    monkeypatch.setenv("CODABENCH_TOKEN", "")  # set but empty: the saved token is used
    monkeypatch.setenv("KAGGLE_KEY", "kaggle-secret-key")
    code, out, err = cli("submit", zip_file, "--codabench", "1234")
    assert code == 0, err
    assert order == ["check", "token read"]
    # during the check, no secret variable was in the environment a child inherits
    assert codabench.checks.seen_env == [{}]
    # afterwards the process environment is as it was
    assert os.environ["KAGGLE_KEY"] == "kaggle-secret-key"


def test_withheld_env_blanks_proc_environ_for_children(tmp_path):
    """A child (as the check's smoke test) cannot read the token from the parent's
    environment block (/proc/<ppid>/environ), which os.environ.pop alone leaves intact."""
    if not Path("/proc/self/environ").exists():
        pytest.skip("needs /proc")
    program = textwrap.dedent("""
        import os, subprocess, sys
        from subkit.credentials import withheld_env
        child = ("import os; raw = open(f'/proc/{os.getppid()}/environ', 'rb').read(); "
                 "print('LEAK' if b'tok-secret-123456' in raw else 'CLEAN', "
                 "os.environ.get('CODABENCH_TOKEN'))")
        with withheld_env() as held:
            print(subprocess.run([sys.executable, "-c", child], capture_output=True,
                                 text=True).stdout.strip())
            print("held", held["CODABENCH_TOKEN"])
        print("after", os.environ["CODABENCH_TOKEN"])
    """)
    env = dict(os.environ, CODABENCH_TOKEN="tok-secret-123456",
               PYTHONPATH=str(Path(submit_mod.__file__).parents[2]))
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         env=env, timeout=60).stdout.split("\n")
    assert out[0] == "CLEAN None"
    assert out[1] == "held tok-secret-123456" and out[2] == "after tok-secret-123456"


def test_no_credentials_without_a_terminal_stops_before_the_check(codabench, workspace,
                                                                  zip_file, cli):
    code, out, err = cli("submit", zip_file, "--codabench", "1234")
    assert code == 1
    error, hint = one_error(err)
    assert f"no Codabench credentials for {codabench.api.url}" in error
    assert "CODABENCH_TOKEN" in hint and f"{codabench.api.url}/api/api-token-auth/" in hint
    assert codabench.checks.calls == [] and codabench.state.log == []


def test_a_refused_env_token_403_is_named_and_never_printed(codabench, workspace, zip_file,
                                                            cli, monkeypatch):
    monkeypatch.setenv("CODABENCH_TOKEN", "wrong-token-123456")
    code, out, err = cli("submit", zip_file, "--codabench", "1234")
    assert code == 1
    error, hint = one_error(err)
    assert error == "error: Codabench refused the token in CODABENCH_TOKEN: Invalid token."
    assert "unset it to log in" in hint
    assert "wrong-token-123456" not in out + err
    assert nothing_uploaded(codabench)


def test_a_refused_saved_token_is_forgotten_and_login_hinted(codabench, workspace, zip_file,
                                                             cli):
    credentials.codabench_save_token(codabench.api.url, "stale-token-abcdef", "alice")
    code, out, err = cli("submit", zip_file, "--codabench", "1234")
    assert code == 1
    error, hint = one_error(err)
    assert "Codabench refused the saved token" in error and "Invalid token." in error
    assert "it was forgotten" in error
    assert "run this command on a terminal" in hint and "api-token-auth" in hint
    assert credentials.codabench_saved_token(codabench.api.url) is None
    assert "stale-token-abcdef" not in out + err
    assert nothing_uploaded(codabench)


def test_a_refused_saved_token_on_a_terminal_asks_a_login_once(codabench, workspace, zip_file,
                                                               cli, terminal):
    credentials.codabench_save_token(codabench.api.url, "stale-token-abcdef", "alice")
    login_as(terminal, "alice@example.org", "correct horse")
    code, out, err = cli("submit", zip_file, "--codabench", "1234")
    assert code == 0, err
    assert "refused the saved token (Invalid token.); it was forgotten" in err
    assert logins(terminal) == 1 and err.count(f"Log in to {codabench.api.url} ") == 1
    assert credentials.codabench_saved_token(codabench.api.url) == codabench.state.token


def test_login_once_saves_an_owner_only_token(codabench, workspace, zip_file, cli,
                                              terminal, tmp_path):
    login_as(terminal, "alice", "correct horse")
    code, out, err = cli("submit", zip_file, "--codabench", "1234")
    assert code == 0, err
    saved = tmp_path / "config" / "subkit" / "codabench.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.parent.stat().st_mode) == 0o700
    text = saved.read_text()
    assert codabench.state.token in text and "correct horse" not in text
    assert "correct horse" not in out + err and codabench.state.token not in out + err
    code, out, err = cli("submit", zip_file, "--codabench", "1234")
    assert code == 0, err
    assert logins(terminal) == 1


def test_wrong_password_shows_the_server_text(codabench, workspace, zip_file, cli,
                                              terminal):
    login_as(terminal, "alice", "hunter2-wrong")
    code, out, err = cli("submit", zip_file, "--codabench", "1234")
    assert code == 1
    error, hint = one_error(err)
    assert "Unable to log in with provided credentials." in error
    assert "e-mail address" in hint
    assert "hunter2-wrong" not in out + err
    assert nothing_uploaded(codabench)


# -- Codabench: the service's refusals, each with its reason ---------------------------------------
@pytest.mark.parametrize("setup,reason,hint_part", [
    (lambda st: st.participants.update(alice="pending"),
     "User not approved to participate in this competition", "waits for the organisers"),
    (lambda st: st.participants.update(alice="denied"),
     "User not approved to participate in this competition", "denied your registration"),
    (lambda st: st.participants.pop("alice"),
     "User not approved to participate in this competition", "register for the competition"),
])
def test_registration_refusals(codabench, token, workspace, zip_file, cli, setup, reason,
                               hint_part):
    codabench.state.published = True
    setup(codabench.state)
    code, out, err = cli("submit", zip_file, "--codabench", "1234")
    assert code == 1
    error, hint = one_error(err)
    assert reason in error and "nothing was uploaded" in error and hint_part in hint
    assert nothing_uploaded(codabench)


def _fill(codabench, n: int, days_ago: int = 0) -> None:
    from datetime import datetime, timedelta, timezone

    st = codabench.state
    for _ in range(n):
        st.next_id += 1
        st.submissions[st.next_id] = {
            "id": st.next_id, "owner": "alice", "phase": 101, "parent": None,
            "status": "Finished", "created": datetime.now(timezone.utc) - timedelta(days=days_ago)}


def test_daily_limit_and_total_limit_have_their_own_hints(codabench, token, workspace, zip_file,
                                                          cli):
    _fill(codabench, 5)
    code, out, err = cli("submit", zip_file, "--codabench", "1234")
    assert code == 1
    error, hint = one_error(err)
    assert "Reached maximum allowed submissions for today for this phase" in error
    assert "5 a day" in hint and "midnight UTC" in hint
    codabench.state.submissions.clear()
    codabench.state.phases[0]["max_submissions_per_person"] = 3
    _fill(codabench, 3, days_ago=2)
    code, out, err = cli("submit", zip_file, "--codabench", "1234")
    assert code == 1
    error, hint = one_error(err)
    assert "Reached maximum allowed submissions for this phase" in error
    assert "3 submissions per person" in hint and "does not reset" in hint
    assert "tomorrow" not in hint and "midnight" not in hint
    assert nothing_uploaded(codabench)


def test_the_daily_limit_race_html_500_gets_its_reason(codabench, token, workspace, zip_file,
                                                       cli):
    codabench.state.race_limit = True
    code, out, err = cli("submit", zip_file, "--codabench", "1234")
    assert code == 1
    error, hint = one_error(err)
    assert ("Codabench refused the submission: Reached maximum allowed submissions for today "
            "for this phase (it answered HTTP 500 without a reason") in error
    assert "no submission was created" in error and "midnight UTC" in hint
    assert [r["kind"] for r in ledger_of(workspace).records()] == []


def test_another_html_500_on_the_submission_says_to_look_before_retrying(codabench, token,
                                                                         workspace, zip_file,
                                                                         cli):
    codabench.state.start_fails = True
    code, out, err = cli("submit", zip_file, "--codabench", "1234")
    assert code == 1
    error, hint = one_error(err)
    assert "creating the submission failed: HTTP 500 Internal Server Error: Server Error (500)" \
        in error
    assert "may or may not exist" in hint and "My Submissions" in hint
    assert len(codabench.state.submissions) == 1  # it was created: subkit did not post twice


def test_the_users_quota_refuses_a_zip_too_large_before_its_bytes(codabench, token, workspace,
                                                                  zip_file, cli):
    codabench.state.used_bytes = codabench.state.quota_bytes - 1000
    code, out, err = cli("submit", zip_file, "--codabench", "1234")
    assert code == 1
    error, hint = one_error(err)
    assert "HTTP 400 Bad Request: data_file: Insufficient space." in error
    assert "Resources page" in hint
    assert codabench.blobs.log == [] and not codabench.state.datasets
    assert ledger_of(workspace).records() == []


def test_unknown_competition(codabench, token, workspace, zip_file, cli):
    code, out, err = cli("submit", zip_file, "--codabench", "999")
    assert code == 1
    error, hint = one_error(err)
    assert "HTTP 404 Not Found: No Competition matches the given query." in error
    assert "no competition 999" in hint and "secret_key" in hint
    assert nothing_uploaded(codabench)


def test_a_long_zip_name_is_cut_to_64_characters(codabench, token, workspace, zip_file, cli):
    long_zip = zip_file.with_name("effnetv2m-adamw-tta-randaugment-cutmix-mixup-" + "x" * 40
                                  + ".zip")
    zip_file.rename(long_zip)
    code, out, err = cli("submit", long_zip, "--codabench", "1234", "--json")
    assert code == 0, err
    name = json.loads(out)["file_name"]
    assert len(name) == 64 and name.endswith(".zip") and long_zip.name.startswith(name[:-4])
    assert "the submission is named" in err
    slot = next(c for c in codabench.state.log if c["path"] == "/api/datasets/")
    assert json.loads(slot["body"])["file_name"] == name


def test_short_file_name_keeps_the_extension():
    assert cb.short_file_name("a.zip") == "a.zip"
    assert cb.short_file_name("a" * 70 + ".zip") == "a" * 60 + ".zip"
    assert cb.short_file_name("b" * 70) == "b" * 64


def test_dropped_connection_mid_upload_is_retried(codabench, token, workspace, zip_file,
                                                  cli):
    codabench.blobs.drop_first_upload = True
    code, out, err = cli("submit", zip_file, "--codabench", "1234", "--wait")
    assert code == 0, err
    assert codabench.blobs.attempts == 2
    assert "uploading the zip to storage: ConnectionError" in err and "retrying" in err
    assert "S3CR3T" not in err  # the signed URL's query is scrubbed from the message
    assert list(codabench.blobs.blobs.values()) == [zip_file.read_bytes()]
    assert ledger_of(workspace).records()[-1]["leaderboard_score"] == 0.76


def test_azure_storage_gets_its_headers(codabench, token, workspace, zip_file, cli):
    codabench.state.storage_kind = "azure"
    code, out, err = cli("submit", zip_file, "--codabench", "1234")
    assert code == 0, err
    put = codabench.blobs.log[-1]
    assert put["headers"]["x-ms-blob-type"] == "BlockBlob"
    assert put["headers"]["Content-Type"] == "application/zip"


def test_s3_refuses_an_upload_with_another_content_type(codabench, token):
    slot = cb.CodabenchClient(codabench.api.url, token, http_mod.Http()).create_dataset(
        "x.zip", 10, 1234)
    with pytest.raises(http_mod.HttpError) as exc:
        http_mod.Http(retries=0).request("PUT", slot["sassy_url"], what="upload", data=b"0" * 10,
                                         headers={"Content-Type": "application/octet-stream"})
    assert exc.value.status == 403
    assert "SignatureDoesNotMatch: The request signature we calculated" in exc.value.message
    assert "X-Amz-Signature" not in exc.value.message


def test_server_down_is_a_clear_error(workspace, zip_file, cli, monkeypatch, sleeps, checks):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    monkeypatch.setenv("CODABENCH_TOKEN", "t" * 40)
    code, out, err = cli("submit", zip_file, "--codabench", "1",
                              "--server", f"http://127.0.0.1:{port}")
    assert code == 1
    error, hint = one_error(err)
    assert "reading competition 1 failed: ConnectionError" in error
    assert len(sleeps) == 4 and checks.calls == []  # retried, then stopped before the check
    assert "t" * 40 not in err


def test_wait_timeout_leaves_the_submission_in_the_ledger(codabench, token, workspace,
                                                          zip_file, cli):
    codabench.state.auto_run = False  # stays Submitting
    code, out, err = cli("submit", zip_file, "--codabench", "1234", "--wait",
                              "--wait-timeout", "300")
    assert code == 1
    error, hint = one_error(err)
    assert "stopped waiting after 300 s" in error and "still Submitting" in error
    assert "subkit history score" in hint
    assert [r["kind"] for r in ledger_of(workspace).records()] == ["submit"]


# -- --server and other usage ------------------------------------------------------------------
@pytest.mark.parametrize("value,part", [
    ("www.codabench.org", "expects a URL like https://host[:port]"),
    ("https://www.codabench.org/api/", "names the API host only"),
])
def test_server_must_name_the_api_host(workspace, zip_file, cli, value, part):
    code, out, err = cli("submit", zip_file, "--codabench", "1", "--server", value)
    assert code == 2
    error, hint = one_error(err)
    assert part in error


def test_server_names_the_host_for_both_platforms(codabench, token, workspace, zip_file, cli,
                                                  monkeypatch):
    monkeypatch.setenv("CODABENCH_URL", "https://codabench.invalid")
    code, out, err = cli("submit", zip_file, "--codabench", "1234", "--server",
                              codabench.api.url + "/")
    assert code == 0, err
    assert codabench.state.log[0]["path"] == "/api/competitions/1234/"


def test_usage_errors(workspace, zip_file, cli, tmp_path):
    code, out, err = cli("submit", zip_file)
    assert code == 2 and "--codabench COMPETITION or --kaggle" in err
    code, out, err = cli("submit", zip_file, "--codabench", "1", "--kaggle", "x")
    assert code == 2
    code, out, err = cli("submit", zip_file, "--codabench", "not-a-number")
    assert code == 2 and "competition number or URL" in err
    notzip = tmp_path / "x.zip"
    notzip.write_text("hello")
    code, out, err = cli("submit", notzip, "--codabench", "1")
    assert code == 1 and "is not a zip file" in err
    code, out, err = cli("submit", "--codabench", "1")
    assert code == 2 and "give the zip to submit" in err


# -- Kaggle ------------------------------------------------------------------------------------
@pytest.fixture
def kaggle(workspace, monkeypatch, sleeps):
    api, storage = start_kaggle()
    (workspace / "subkit.toml").write_text(
        'profile = "an2dl-2024-blood-cells"\nplatform = "kaggle"\n[kaggle]\nrows = 2000\n')
    token_file = Path.home() / ".kaggle" / "access_token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text(api.state.access_token + "\n")
    yield types.SimpleNamespace(api=api, storage=storage, state=api.state,
                                blobs=storage.state, sleeps=sleeps, url=api.url,
                                token_file=token_file)
    api.stop()
    storage.stop()


@pytest.fixture
def csv_file(tmp_path) -> Path:
    p = tmp_path / "preds.csv"
    p.write_text("id,label\n" + "".join(f"{i},{i % 8}\n" for i in range(2000)))
    return p


def kaggle_rpcs(state) -> list[str]:
    return [c["path"].split("/v1/", 1)[1] for c in state.log]


def submit_kaggle(cli, kaggle, *args):
    return cli("submit", *args, "--server", kaggle.url)


def test_kaggle_csv_submit_and_wait_with_an_access_token(kaggle, workspace, csv_file, cli):
    code, out, err = submit_kaggle(cli, kaggle, csv_file, "--kaggle", "an2dl-mars-terrain",
                                   "-m", "UNet + TTA", "--wait", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["submission_id"] == 42000001 and result["status"] == "complete"
    assert result["leaderboard_score"] == pytest.approx(0.65432)
    svc = "competitions.CompetitionApiService/"
    assert kaggle_rpcs(kaggle.state) == [
        "security.OAuthService/IntrospectToken", svc + "GetCompetition",
        svc + "GetSubmissionLimits", svc + "StartSubmissionUpload", svc + "CreateSubmission",
        svc + "GetSubmission", svc + "GetSubmission", svc + "GetSubmission"]
    # the first GetSubmission answered 404 (not readable yet): counted as pending
    assert "pending (not visible yet)" in err
    bearer = f"Bearer {kaggle.state.access_token}"
    assert all(c["headers"]["Authorization"] == bearer for c in kaggle.state.log)
    start = json.loads(kaggle.state.log[3]["body"])
    assert start["competitionName"] == "an2dl-mars-terrain" and start["fileName"] == "preds.csv"
    assert start["contentLength"] == csv_file.stat().st_size
    create = json.loads(kaggle.state.log[4]["body"])
    assert create["submissionDescription"] == "UNet + TTA" and create["blobFileTokens"]
    put = kaggle.blobs.log[-1]
    assert put["method"] == "PUT" and "Authorization" not in put["headers"]
    assert int(put["headers"]["Content-Length"]) == csv_file.stat().st_size
    assert list(kaggle.blobs.blobs.values()) == [csv_file.read_bytes()]
    recs = ledger_of(workspace).records()
    assert [r["kind"] for r in recs] == ["submit", "leaderboard"]
    assert recs[0]["platform"] == "kaggle" and recs[0]["zip_sha256"] == sha256_file(csv_file)
    assert recs[1]["source"] == "kaggle" and recs[1]["phase"] == "public"
    assert kaggle.state.access_token not in out + err


def test_kaggle_token_from_the_environment_value_or_file(kaggle, workspace, csv_file, cli,
                                                         monkeypatch, tmp_path):
    kaggle.token_file.unlink()
    monkeypatch.setenv("KAGGLE_API_TOKEN", kaggle.state.access_token)
    code, out, err = submit_kaggle(cli, kaggle, csv_file, "--kaggle", "an2dl-mars-terrain",
                                   "-m", "x")
    assert code == 0, err
    elsewhere = tmp_path / "token.txt"
    elsewhere.write_text(kaggle.state.access_token)
    monkeypatch.setenv("KAGGLE_API_TOKEN", str(elsewhere))
    code, out, err = submit_kaggle(cli, kaggle, csv_file, "--kaggle", "an2dl-mars-terrain",
                                   "-m", "x")
    assert code == 0, err
    assert kaggle.state.log[-1]["headers"]["Authorization"] == \
        f"Bearer {kaggle.state.access_token}"


def test_a_refused_access_token_falls_back_to_kaggle_json(kaggle, workspace, csv_file, cli,
                                                          monkeypatch, tmp_path):
    kaggle.token_file.write_text("KGAT_expired000000000000")
    config = tmp_path / "kcfg"
    config.mkdir()
    (config / "kaggle.json").write_text(json.dumps({"username": kaggle.state.username,
                                                    "key": "not-the-key"}))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config))
    monkeypatch.setenv("KAGGLE_KEY", kaggle.state.key)  # overrides the file's key
    code, out, err = submit_kaggle(cli, kaggle, csv_file, "--kaggle", "an2dl-mars-terrain",
                                   "-m", "x")
    assert code == 0, err
    assert "refused the access token from ~/.kaggle/access_token" in err
    assert "with KEY from the environment" in err
    assert kaggle.state.log[-1]["headers"]["Authorization"].startswith("Basic ")
    assert "KGAT_expired" not in out + err and kaggle.state.key not in out + err


def test_an_expired_access_token_alone_is_an_error(kaggle, workspace, csv_file, cli):
    kaggle.token_file.write_text("KGAT_expired000000000000")
    code, out, err = submit_kaggle(cli, kaggle, csv_file, "--kaggle", "an2dl-mars-terrain",
                                   "-m", "x")
    assert code == 1
    error, hint = one_error(err)
    assert "Kaggle refused the access token from ~/.kaggle/access_token" in error
    assert "kaggle.com/settings" in hint
    assert kaggle_rpcs(kaggle.state) == ["security.OAuthService/IntrospectToken"]
    assert kaggle.blobs.log == [] and "KGAT_expired" not in out + err


def test_no_kaggle_credentials(kaggle, workspace, csv_file, cli):
    kaggle.token_file.unlink()
    code, out, err = submit_kaggle(cli, kaggle, csv_file, "--kaggle", "an2dl-mars-terrain",
                                   "-m", "x")
    assert code == 1
    error, hint = one_error(err)
    assert "no Kaggle credentials found" in error
    assert "access_token" in hint and "KAGGLE_API_TOKEN" in hint and "kaggle.json" in hint
    assert kaggle.state.log == [] and kaggle.blobs.log == []


@pytest.mark.parametrize("mode,status,text,hint", [
    ("rules400", 400, "You must accept this competition's rules",
     "/competitions/an2dl-mars-terrain/rules"),
    ("rules403", 403, "You must accept this competition's rules", "join the competition"),
    ("slug404", 404, "NotFound", "copy the slug from the competition's URL"),
    ("permission", 403, "Permission 'competitions.participate' was denied",
     "most often a typo in the slug"),
    ("badkey", 401, "Unauthenticated", "create a new one"),
])
def test_kaggle_refusals_get_hints_and_upload_nothing(kaggle, workspace, csv_file, cli,
                                                      monkeypatch, mode, status, text, hint):
    slug = "an2dl-mars-terrain"
    if mode.startswith("rules"):
        kaggle.state.rules_status = status
    elif mode == "slug404":
        slug = "an2dl-mars-terain"
    elif mode == "permission":
        kaggle.state.permission_denied = True
    elif mode == "badkey":
        kaggle.token_file.unlink()
        monkeypatch.setenv("KAGGLE_USERNAME", kaggle.state.username)
        monkeypatch.setenv("KAGGLE_KEY", "not-the-key-987654")
    code, out, err = submit_kaggle(cli, kaggle, csv_file, "--kaggle", slug, "-m", "x")
    assert code == 1
    error, hint_line = one_error(err)
    assert f"HTTP {status}" in error and text in error
    assert hint in hint_line
    assert "not-the-key-987654" not in err and kaggle.state.key not in err
    assert kaggle.blobs.log == [] and ledger_of(workspace).records() == []


@pytest.mark.parametrize("limits,why,hint", [
    ({"numToday": 5, "numTotal": 9}, "the day's submissions are used (5 today)", "midnight UTC"),
    ({"numToday": 1, "numTotal": 20, "limitedByTotal": True}, "total of submissions",
     "does not reset"),
])
def test_kaggle_limits_are_read_before_the_upload(kaggle, workspace, csv_file, cli, limits,
                                                  why, hint):
    kaggle.state.limits["an2dl-mars-terrain"] = limits
    code, out, err = submit_kaggle(cli, kaggle, csv_file, "--kaggle", "an2dl-mars-terrain",
                                   "-m", "x")
    assert code == 1
    error, hint_line = one_error(err)
    assert why in error and "nothing was uploaded" in error and hint in hint_line
    assert kaggle.blobs.log == []
    code, out, err = submit_kaggle(cli, kaggle, csv_file, "--kaggle", "an2dl-mars-terrain",
                                   "-m", "x", "--force")
    assert code == 0, err


def test_kaggle_not_joined_reads_as_such(kaggle, workspace, csv_file, cli):
    kaggle.state.entered.clear()  # GetSubmissionLimits answers {}: every field at zero
    code, out, err = submit_kaggle(cli, kaggle, csv_file, "--kaggle", "an2dl-mars-terrain",
                                   "-m", "x")
    assert code == 1
    error, hint = one_error(err)
    assert "you are on no team of this competition yet" in error and "rules" in hint


def test_a_competition_closed_to_submissions(kaggle, workspace, csv_file, cli):
    kaggle.state.competitions["an2dl-mars-terrain"]["submissionsDisabled"] = True
    code, out, err = submit_kaggle(cli, kaggle, csv_file, "--kaggle", "an2dl-mars-terrain",
                                   "-m", "x")
    assert code == 1
    error, hint = one_error(err)
    assert "takes no submissions now; nothing was uploaded" in error
    assert kaggle.blobs.log == []


def test_a_code_competition_refuses_a_csv_upload(kaggle, workspace, csv_file, cli):
    code, out, err = submit_kaggle(cli, kaggle, csv_file, "--kaggle", "some-code-comp",
                                   "-m", "x")
    assert code == 1
    error, hint = one_error(err)
    assert "'some-code-comp' is a code competition" in error
    assert "--kernel YOU/NOTEBOOK --version N" in hint
    assert "StartSubmissionUpload" not in " ".join(kaggle_rpcs(kaggle.state))
    assert kaggle.blobs.log == []


def test_a_notebook_version_is_submitted_to_a_code_competition(kaggle, workspace, cli):
    code, out, err = submit_kaggle(cli, kaggle, "submission.csv", "--kaggle",
                                   "https://www.kaggle.com/competitions/some-code-comp",
                                   "--kernel", "kuser/mars-notebook", "--version", "3",
                                   "-m", "v3", "--wait", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "complete" and result["file"] == "kuser/mars-notebook@v3"
    body = json.loads(next(c["body"] for c in kaggle.state.log
                           if c["path"].endswith("/CreateCodeSubmission")))
    assert body == {"competitionName": "some-code-comp", "kernelOwner": "kuser",
                    "kernelSlug": "mars-notebook", "kernelVersion": 3,
                    "fileName": "submission.csv", "submissionDescription": "v3"}
    assert kaggle.blobs.log == []
    recs = ledger_of(workspace).records()
    assert recs[0]["kernel"] == "kuser/mars-notebook" and recs[0]["kernel_version"] == 3
    assert ledger_of(workspace).table()[0]["zip_name"] == "mars-notebook@v3"


def test_an_unknown_notebook_version_shows_kaggles_answer(kaggle, workspace, cli):
    code, out, err = submit_kaggle(cli, kaggle, "--kaggle", "some-code-comp", "--kernel",
                                   "kuser/mars-notebook", "--version", "9", "-m", "v9")
    assert code == 1
    error, hint = one_error(err)
    assert "submitting notebook kuser/mars-notebook version 9 failed: HTTP 404" in error


@pytest.mark.parametrize("args,part", [
    (["--kernel", "kuser/nb"], "--kernel needs --version N"),
    (["--version", "2"], "--version is the version of a notebook"),
    (["--kernel", "just-a-name", "--version", "2"], "--kernel expects OWNER/NOTEBOOK"),
])
def test_kernel_usage(kaggle, workspace, cli, args, part):
    code, out, err = submit_kaggle(cli, kaggle, "--kaggle", "some-code-comp", "-m", "x",
                                   *args)
    assert code == 2
    error, hint = one_error(err)
    assert part in error and kaggle.state.log == []


def _csv(tmp_path, text: str) -> Path:
    p = tmp_path / "bad.csv"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text,problem", [
    ("sample,label\n" + "".join(f"{i},1\n" for i in range(2000)),
     "the header is not the competition's: missing id; unexpected sample"),
    ("label,id\n" + "".join(f"1,{i}\n" for i in range(2000)),
     "the columns are in another order than the competition's"),
    ("id,label\n" + "".join(f"{i},1\n" for i in range(1999)),
     "1999 rows, the competition expects 2000"),
    ("id,label\n0,1\n0,2\n", "line 3: the id '0' appears twice"),
    ("id,label\n0,1\n1,9\n", "line 3: '9' is not a class id (0..7)"),
    ("id,label\n0,1\n1\n", "line 3 has 1 values for 2 columns"),
    ("", "the file is empty"),
])
def test_a_csv_that_does_not_fit_the_profile_is_refused(kaggle, workspace, cli, tmp_path,
                                                        text, problem):
    code, out, err = submit_kaggle(cli, kaggle, _csv(tmp_path, text), "--kaggle",
                                   "an2dl-mars-terrain", "-m", "x")
    assert code == 1
    error, hint = one_error(err)
    assert problem in error and "nothing was uploaded" in error
    assert "--force" in hint
    assert kaggle.state.log == [] and kaggle.blobs.log == []


def test_csv_check_reads_quotes_a_bom_and_blank_lines_as_a_scorer_would(tmp_path):
    from subkit import profile
    from subkit.submission_csv import check_csv

    prof = profile.load("an2dl-2024-blood-cells", workspace=False)
    prof.data["kaggle"]["rows"] = 3
    plain = tmp_path / "plain.csv"
    plain.write_text("id,label\r\n0,1\r\n1,2\r\n\r\n2,7\r\n")
    assert check_csv(plain, prof) == (3, [])
    quoted = tmp_path / "quoted.csv"
    quoted.write_bytes(b'\xef\xbb\xbf"id","label"\n"0","1"\n"1","2"\n"2","7"\n')
    assert check_csv(quoted, prof) == (3, [])
    mixed = tmp_path / "mixed.csv"
    mixed.write_text('id,label\n0,1\n"1","2"\n"2,3",7\n')
    assert check_csv(mixed, prof) == (3, [])
    bad = tmp_path / "bad.csv"
    bad.write_text('id,label\n0,1\n"1","12"\n2,7\n')
    assert check_csv(bad, prof)[1] == ["line 3: '12' is not a class id (0..7)"]


def test_mars_profile_expects_a_column_per_pixel():
    from subkit import profile
    from subkit.submission_csv import csv_columns

    prof = profile.load("an2dl-2024-mars-terrain", workspace=False)
    cols = csv_columns(prof)
    assert cols[:3] == ["id", "0", "1"] and cols[-1] == "8191" and len(cols) == 8193
    assert prof.data["kaggle"]["rows"] == 10022


def test_kaggle_error_outcome_exits_1_with_its_description(kaggle, workspace, csv_file, cli):
    kaggle.state.outcome = "error"
    code, out, err = submit_kaggle(cli, kaggle, csv_file, "--kaggle", "an2dl-mars-terrain",
                                   "-m", "x", "--wait")
    assert code == 1
    error, hint = one_error(err)
    assert "error on kaggle: Submission CSV Header mismatch." in error
    assert ledger_of(workspace).records()[-1]["status"] == "error"


def test_kaggle_404_that_never_ends_is_bounded(kaggle, workspace, csv_file, cli):
    kaggle.state.not_found_polls = 10**6
    code, out, err = submit_kaggle(cli, kaggle, csv_file, "--kaggle", "an2dl-mars-terrain",
                                   "-m", "x", "--wait")
    assert code == 1
    error, hint = one_error(err)
    assert "still does not know submission 42000001 after 120 s" in error
    assert sum(kaggle.sleeps) < 300


def test_kaggle_needs_a_message_and_a_slug(kaggle, workspace, csv_file, cli):
    code, out, err = submit_kaggle(cli, kaggle, csv_file, "--kaggle", "an2dl-mars-terrain")
    assert code == 2 and "needs a message" in err
    code, out, err = submit_kaggle(cli, kaggle, csv_file, "--kaggle", "Mars Terrain", "-m", "x")
    assert code == 2 and "expects a competition slug" in err
    code, out, err = submit_kaggle(cli, kaggle, csv_file, "--kaggle", "an2dl-mars-terrain",
                                   "-m", "x", "--phase", "final")
    assert code == 2 and "--phase is for Codabench" in err


def test_kaggle_dropped_upload_is_retried(kaggle, workspace, csv_file, cli):
    kaggle.blobs.drop_first_upload = True
    code, out, err = submit_kaggle(cli, kaggle, csv_file, "--kaggle", "an2dl-mars-terrain",
                                   "-m", "x")
    assert code == 0, err
    assert kaggle.blobs.attempts == 2 and len(kaggle.state.submissions) == 1


# -- credentials -------------------------------------------------------------------------------
def test_kaggle_config_dir_follows_the_official_client(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    if sys.platform.startswith("linux"):
        assert credentials.kaggle_config_dir(env) == tmp_path / "xdg" / "kaggle"
    (tmp_path / ".kaggle").mkdir()
    assert credentials.kaggle_config_dir(env) == tmp_path / ".kaggle"
    assert credentials.kaggle_config_dir({"KAGGLE_CONFIG_DIR": "/x/y"}) == Path("/x/y")


def test_kaggle_api_key_incomplete_is_an_input_error(tmp_path, monkeypatch):
    from subkit.errors import InputError

    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(InputError, match="no KAGGLE_KEY"):
        credentials.kaggle_api_key({"KAGGLE_USERNAME": "u"})
    assert credentials.kaggle_api_key({}) is None


# -- the HTTP helpers --------------------------------------------------------------------------
def test_server_text_shapes():
    import requests

    def resp(body, ctype="application/json", code=400):
        r = requests.Response()
        r.status_code = code
        r._content = body.encode()
        r.headers["Content-Type"] = ctype
        return r

    st = http_mod.server_text
    assert st(resp('{"detail": "Invalid token."}')) == "Invalid token."
    assert st(resp('{"code": 403, "message": "nope"}')) == "nope"
    assert st(resp('{"non_field_errors": ["a", "b"]}')) == "a; b"
    assert st(resp('{"file_size": "This field is required."}')) == \
        "file_size: This field is required."
    assert st(resp("<h1>Server Error (500)</h1>", "text/html", 500)) == "Server Error (500)"
    assert st(resp("<html><title>502 Bad Gateway</title><body>x</body></html>",
                   "text/html")) == "502 Bad Gateway"
    assert st(resp("<Error><Code>AccessDenied</Code><Message>Request has expired</Message>"
                   "</Error>", "application/xml", 403)) == "AccessDenied: Request has expired"
    assert len(st(resp("x" * 1000, "text/plain"))) == 300


def test_scrub_hides_secrets_and_signed_queries():
    h = http_mod.Http()
    h.add_secret("supersecret")
    text = h.scrub("token supersecret at https://blob.example/a/b.zip?sv=1&sig=abc def")
    assert "supersecret" not in text and "sig=abc" not in text
    assert "https://blob.example/a/b.zip?…" in text


def test_api_host():
    assert http_mod.api_host("https://www.codabench.org/") == "https://www.codabench.org"
    assert http_mod.api_host("http://127.0.0.1:8000") == "http://127.0.0.1:8000"
    with pytest.raises(Exception, match="names the API host only"):
        http_mod.api_host("https://api.kaggle.com/v1")


def test_upload_progress_bar_only_when_asked(codabench, zip_file, recording_bars):
    url = codabench.storage.url + "/plain/x.zip"
    http_mod.Http(progress=True).upload("PUT", url, zip_file, what="upload")
    http_mod.Http(progress=False).upload("PUT", url, zip_file, what="upload")
    [bar] = recording_bars
    size = zip_file.stat().st_size
    assert (bar.label, bar.total, bar.unit, bar.closed) == ("upload", size, "B", True)
    assert sum(bar.advanced) == size and bar.restarts == 1
    assert codabench.blobs.blobs["/plain/x.zip"] == zip_file.read_bytes()


def test_retries_follow_retry_after_and_never_resend_an_ambiguous_post(sleeps):
    front = start_flaky()
    try:
        busy = (429, {"Retry-After": "1"}, b"<html><title>429 Too Many Requests</title></html>")
        front.state.answers = [busy, busy]
        resp = http_mod.Http().request("GET", front.url + "/x", what="reading")
        assert resp.json() == {"ok": True} and sleeps == [1.0, 1.0]
        # a 503 says the server did not process the POST: retried; a 502 may hide a
        # created submission: not retried
        front.state.answers = [(503, {}, b"<h1>Service Unavailable</h1>")]
        http_mod.Http().request("POST", front.url + "/y", what="posting", json={})
        front.state.answers = [(502, {}, b"<html><title>502 Bad Gateway</title></html>")]
        with pytest.raises(http_mod.HttpError) as exc:
            http_mod.Http().request("POST", front.url + "/z", what="creating the submission",
                                    json={})
        assert exc.value.message == "creating the submission failed: HTTP 502 Bad Gateway: " \
                                    "502 Bad Gateway"
        assert [c["path"] for c in front.state.log].count("/z") == 1
        front.state.answers = [busy] * 10
        with pytest.raises(http_mod.HttpError, match="HTTP 429 Too Many Requests"):
            http_mod.Http().request("GET", front.url + "/w", what="reading")
    finally:
        front.stop()


def test_no_tensorflow_in_submit():
    code = ("import sys, subkit.commands.submit, subkit.cli.ledger; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60,
                   env=dict(os.environ, PYTHONPATH=str(Path(submit_mod.__file__).parents[2])))
