"""`subkit submit` against loopback fakes of Codabench, Kaggle and their storage.

No test leaves the machine: every URL is 127.0.0.1 with an ephemeral port.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import types
import zipfile
from pathlib import Path

import pytest

import subkit.remote.codabench as cb
import subkit.remote.http as http_mod
from fake_servers import start_codabench, start_kaggle
from subkit.ledger import Ledger, sha256_file


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def workspace(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "subkit.toml").write_text('profile = "an2dl-2024-blood-cells"\n')
    monkeypatch.setenv("SUBKIT_WORKSPACE", str(ws))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("CODABENCH_TOKEN", "CODABENCH_URL", "KAGGLE_USERNAME", "KAGGLE_KEY",
                "KAGGLE_CONFIG_DIR", "SUBKIT_KAGGLE_URL"):
        monkeypatch.delenv(var, raising=False)
    return ws


@pytest.fixture
def sleeps(monkeypatch):
    """Retry and poll sleeps are recorded, not slept."""
    calls: list[float] = []
    monkeypatch.setattr(http_mod, "SLEEP", calls.append)
    return calls


@pytest.fixture
def checks(monkeypatch):
    """A fake `subkit check`: tests set .status; calls are recorded."""
    fake = types.SimpleNamespace(status="PASSED", calls=[])

    def run_check(zip_path, profile, smoke=True, echo=None):
        fake.calls.append((Path(zip_path), smoke))
        return types.SimpleNamespace(status=fake.status,
                                     to_dict=lambda: {"status": fake.status})

    monkeypatch.setattr(cb, "run_check", run_check)
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
def kaggle(workspace, monkeypatch, sleeps):
    api, storage = start_kaggle()
    monkeypatch.setenv("SUBKIT_KAGGLE_URL", api.url + "/api/i")
    monkeypatch.setenv("KAGGLE_USERNAME", api.state.username)
    monkeypatch.setenv("KAGGLE_KEY", api.state.key)
    yield types.SimpleNamespace(api=api, storage=storage, state=api.state,
                                blobs=storage.state, sleeps=sleeps)
    api.stop()
    storage.stop()


@pytest.fixture
def zip_file(workspace) -> Path:
    sub = workspace / "submissions"
    sub.mkdir(exist_ok=True)
    p = sub / "submission_241120_101500.zip"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("model.py", "class Model:\n    def predict(self, X):\n        return X\n")
        zf.writestr("weights.keras", os.urandom(200_000))  # stored bytes: not compressible
    return p


def run_cli(args, capsys, monkeypatch):
    """Through the real entry point (error:/hint: lines, exit codes), with `submit`
    registered the way the lead will register it."""
    from subkit.__main__ import run
    from subkit.cli import main
    from subkit.cli_ledger import submit

    monkeypatch.setitem(main.commands, "submit", submit)
    code = run(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def ledger_of(workspace) -> Ledger:
    return Ledger(workspace / "submissions")


# -- Codabench: the happy path -----------------------------------------------------------------
def test_codabench_submit_uploads_and_records(codabench, workspace, zip_file, capsys,
                                              monkeypatch):
    monkeypatch.setenv("CODABENCH_TOKEN", codabench.state.token)
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1234", "--json"],
                             capsys, monkeypatch)
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "Submitting" and result["phase"] == "Development"
    assert result["phase_id"] == 101 and result["check"] == "PASSED"
    # the exact bytes reached storage, on the storage server, without the API token
    key = next(iter(codabench.state.datasets))
    blob = codabench.blobs.blobs[f"/codabench/dataset/{key}/{zip_file.name}"]
    assert blob == zip_file.read_bytes()
    put = codabench.blobs.log[-1]
    assert "Authorization" not in put["headers"]
    assert put["headers"]["x-ms-blob-type"] == "BlockBlob"
    assert put["headers"]["Content-Type"] == "application/zip"
    assert int(put["headers"]["Content-Length"]) == zip_file.stat().st_size
    assert codabench.state.datasets[key]["completed"] is True
    # the size was announced; the token and the storage signature never printed
    assert "uploading submission_241120_101500.zip (" in err and "KB" in err
    assert codabench.state.token not in out + err and "S3CR3T" not in out + err
    # the API calls, in order, with the real shapes
    calls = [(c["method"], c["path"]) for c in codabench.state.log]
    assert calls == [("GET", "/api/competitions/1234/"),
                     ("GET", "/api/can_make_submission/101/"),
                     ("POST", "/api/datasets/"),
                     ("PUT", f"/api/datasets/completed/{key}/"),
                     ("POST", "/api/submissions/")]
    assert all(c["headers"]["Authorization"] == f"Token {codabench.state.token}"
               for c in codabench.state.log)
    recs = ledger_of(workspace).records()
    assert [r["kind"] for r in recs] == ["submit"]
    assert recs[0]["zip_sha256"] == sha256_file(zip_file)
    assert recs[0]["submission_id"] == result["submission_id"]
    assert recs[0]["platform"] == "codabench" and recs[0]["competition"] == 1234
    assert codabench.checks.calls == [(zip_file, True)]


def test_codabench_wait_records_the_leaderboard_score(codabench, workspace, zip_file,
                                                      capsys, monkeypatch):
    monkeypatch.setenv("CODABENCH_TOKEN", codabench.state.token)
    code, out, err = run_cli(["submit", str(zip_file), "--codabench",
                              f"{codabench.api.url}/competitions/1234/", "--wait",
                              "--no-smoke"], capsys, monkeypatch)
    assert code == 0, err
    assert "leaderboard score: 0.7600 (accuracy 0.7600, duration 12.5000)" in out
    for status in ("Submitted", "Running", "Scoring", "Finished"):
        assert f": {status}" in err
    assert codabench.sleeps and max(codabench.sleeps) <= 60
    recs = ledger_of(workspace).records()
    assert [r["kind"] for r in recs] == ["submit", "leaderboard"]
    lb = recs[1]
    assert lb["source"] == "codabench" and lb["leaderboard_score"] == 0.76
    assert lb["status"] == "Finished" and lb["phase"] == "Development"
    assert lb["scores"] == {"accuracy": 0.76, "duration": 12.5}
    row = ledger_of(workspace).table()[0]
    assert row["leaderboard"] == {"Development": 0.76} and row["status"] == "Finished"
    assert codabench.checks.calls == [(zip_file, False)]


def test_codabench_failed_submission_is_recorded_and_exits_1(codabench, workspace, zip_file,
                                                            capsys, monkeypatch):
    monkeypatch.setenv("CODABENCH_TOKEN", codabench.state.token)
    codabench.state.final_status = "Failed"
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1234", "--wait"],
                             capsys, monkeypatch)
    assert code == 1
    assert "error: submission" in err and "failed on codabench" in err
    lb = ledger_of(workspace).records()[-1]
    assert lb["kind"] == "leaderboard" and lb["status"] == "Failed"
    assert lb["leaderboard_score"] is None


def test_codabench_phase_by_name_and_by_id(codabench, workspace, zip_file, capsys,
                                           monkeypatch):
    monkeypatch.setenv("CODABENCH_TOKEN", codabench.state.token)
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1234", "--phase",
                              "final", "--json"], capsys, monkeypatch)
    assert code == 0, err
    assert json.loads(out)["phase_id"] == 102
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1234", "--phase",
                              "101", "--json"], capsys, monkeypatch)
    assert code == 0 and json.loads(out)["phase"] == "Development"


def test_codabench_no_open_phase_lists_the_phases(codabench, workspace, zip_file, capsys,
                                                  monkeypatch):
    monkeypatch.setenv("CODABENCH_TOKEN", codabench.state.token)
    for p in codabench.state.phases:
        p["status"] = "Previous"
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1234"],
                             capsys, monkeypatch)
    assert code == 1
    assert "no phase of this competition is open" in err
    assert "101 'Development' (Previous)" in err and "--phase" in err


# -- Codabench: the check ----------------------------------------------------------------------
def test_failed_check_stops_the_upload(codabench, workspace, zip_file, capsys, monkeypatch):
    monkeypatch.setenv("CODABENCH_TOKEN", codabench.state.token)
    codabench.checks.status = "FAILED"
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1234"],
                             capsys, monkeypatch)
    assert code == 1
    assert "error: subkit check FAILED" in err and "nothing was uploaded" in err
    assert "--force" in err
    assert codabench.state.log == [] and codabench.blobs.log == []
    assert ledger_of(workspace).records() == []


def test_force_uploads_despite_a_failed_check(codabench, workspace, zip_file, capsys,
                                              monkeypatch):
    monkeypatch.setenv("CODABENCH_TOKEN", codabench.state.token)
    codabench.checks.status = "FAILED"
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1234", "--force",
                              "--json"], capsys, monkeypatch)
    assert code == 0, err
    assert "warning: subkit check FAILED" in err
    rec = ledger_of(workspace).records()[0]
    assert rec["check"] == "FAILED" and rec["forced"] is True


def test_the_check_hook_calls_subkit_build_check_zip_lazily(monkeypatch, tmp_path):
    seen = []
    fake_build = types.ModuleType("subkit.build")

    def check_zip(path, profile, smoke=True, echo=None):
        seen.append((path, profile, smoke))
        return types.SimpleNamespace(status="PASSED with warnings")

    fake_build.check_zip = check_zip
    monkeypatch.setitem(sys.modules, "subkit.build", fake_build)
    report = cb.run_check(tmp_path / "x.zip", "PROFILE", smoke=False)
    assert report.status == "PASSED with warnings"
    assert seen == [(tmp_path / "x.zip", "PROFILE", False)]


# -- Codabench: refusals and server errors -----------------------------------------------------
def test_non_participant_is_told_to_register(codabench, workspace, zip_file, capsys,
                                             monkeypatch):
    monkeypatch.setenv("CODABENCH_TOKEN", codabench.state.token)
    codabench.state.participant = False
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1234"],
                             capsys, monkeypatch)
    assert code == 1
    assert "User not approved to participate in this competition" in err
    assert "hint: register for the competition on" in err
    assert not any(c["path"] == "/api/datasets/" for c in codabench.state.log)


def test_403_on_submission_shows_the_servers_detail(codabench, workspace, zip_file, capsys,
                                                    monkeypatch):
    monkeypatch.setenv("CODABENCH_TOKEN", codabench.state.token)
    codabench.state.participant = False
    codabench.state.can_override = True  # the pre-check says yes, the server says no
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1234"],
                             capsys, monkeypatch)
    assert code == 1
    assert ("error: creating the submission failed: HTTP 403 Forbidden: You do not have "
            "access to this competition to make a submission") in err
    assert "hint: register for the competition" in err
    assert ledger_of(workspace).records() == []


def test_daily_limit_reason(codabench, workspace, zip_file, capsys, monkeypatch):
    monkeypatch.setenv("CODABENCH_TOKEN", codabench.state.token)
    codabench.state.limit_reached = True
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1234"],
                             capsys, monkeypatch)
    assert code == 1 and "Reached maximum allowed submissions for today" in err
    assert "tomorrow" in err


def test_quota_error_text_from_a_drf_field_error(codabench, workspace, zip_file, capsys,
                                                 monkeypatch):
    monkeypatch.setenv("CODABENCH_TOKEN", codabench.state.token)
    codabench.state.quota_full = True
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1234"],
                             capsys, monkeypatch)
    assert code == 1
    assert "HTTP 400 Bad Request: data_file: Insufficient space." in err
    assert "Resources" in err


def test_unknown_competition(codabench, workspace, zip_file, capsys, monkeypatch):
    monkeypatch.setenv("CODABENCH_TOKEN", codabench.state.token)
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "999"],
                             capsys, monkeypatch)
    assert code == 1 and "HTTP 404 Not Found: Not found." in err
    assert "no competition 999" in err


def test_rate_limit_429_is_retried_after_retry_after(codabench, workspace, zip_file, capsys,
                                                     monkeypatch):
    monkeypatch.setenv("CODABENCH_TOKEN", codabench.state.token)
    codabench.state.throttle["/api/datasets/"] = 2
    codabench.state.throttle["/api/submissions/"] = 1  # a POST: 429 says "not processed"
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1234", "--json"],
                             capsys, monkeypatch)
    assert code == 0, err
    assert codabench.sleeps == [1.0, 1.0, 1.0]  # Retry-After: 1, not the backoff
    assert err.count("HTTP 429") == 3
    assert len(codabench.state.submissions) == 1  # no duplicate submission


def test_rate_limit_beyond_the_retries_shows_the_throttle_text(codabench, workspace, zip_file,
                                                               capsys, monkeypatch):
    monkeypatch.setenv("CODABENCH_TOKEN", codabench.state.token)
    codabench.state.throttle["/api/can_make_submission/"] = 50
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1234"],
                             capsys, monkeypatch)
    assert code == 1
    assert "HTTP 429 Too Many Requests: Request was throttled." in err


def test_dropped_connection_mid_upload_is_retried(codabench, workspace, zip_file, capsys,
                                                  monkeypatch):
    monkeypatch.setenv("CODABENCH_TOKEN", codabench.state.token)
    codabench.blobs.drop_first_upload = True
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1234", "--wait"],
                             capsys, monkeypatch)
    assert code == 0, err
    assert codabench.blobs.attempts == 2
    assert "uploading the zip to storage: ConnectionError" in err and "retrying" in err
    assert "S3CR3T" not in err  # the signed URL's query is scrubbed from the message
    key = next(iter(codabench.state.datasets))
    assert codabench.blobs.blobs[f"/codabench/dataset/{key}/{zip_file.name}"] == \
        zip_file.read_bytes()
    assert ledger_of(workspace).records()[-1]["leaderboard_score"] == 0.76


def test_server_down_is_a_clear_error(workspace, zip_file, capsys, monkeypatch, sleeps,
                                      checks):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    monkeypatch.setenv("CODABENCH_TOKEN", "t" * 40)
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1",
                              "--server", f"http://127.0.0.1:{port}"], capsys, monkeypatch)
    assert code == 1
    assert "error: reading competition 1 failed: ConnectionError" in err
    assert len(sleeps) == 4  # retried, with backoff
    assert "t" * 40 not in err


# -- Codabench: credentials --------------------------------------------------------------------
def test_bad_env_token_is_refused_without_printing_it(codabench, workspace, zip_file, capsys,
                                                      monkeypatch):
    monkeypatch.setenv("CODABENCH_TOKEN", "wrong-token-123456")
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1234"],
                             capsys, monkeypatch)
    assert code == 1
    assert "Codabench refused CODABENCH_TOKEN: Invalid token." in err
    assert "wrong-token-123456" not in out + err


def test_no_token_and_no_terminal_says_set_codabench_token(codabench, workspace, zip_file,
                                                           capsys, monkeypatch):
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1234"],
                             capsys, monkeypatch)
    assert code == 1
    assert "no Codabench credentials" in err and "CODABENCH_TOKEN" in err


def test_login_once_saves_an_owner_only_token(codabench, workspace, zip_file, capsys,
                                              monkeypatch, tmp_path):
    prompts = []

    def prompt(server):
        prompts.append(server)
        return "alice", "correct horse"

    monkeypatch.setattr(cb, "is_interactive", lambda: True)
    monkeypatch.setattr(cb, "prompt_login", prompt)
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1234"],
                             capsys, monkeypatch)
    assert code == 0, err
    saved = tmp_path / "config" / "subkit" / "codabench.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.parent.stat().st_mode) == 0o700
    text = saved.read_text()
    assert codabench.state.token in text and "correct horse" not in text
    assert "correct horse" not in out + err and codabench.state.token not in out + err
    # the second run uses the saved token: no prompt
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1234"],
                             capsys, monkeypatch)
    assert code == 0, err
    assert len(prompts) == 1


def test_a_refused_saved_token_is_forgotten_and_login_asked_again(codabench, workspace,
                                                                  zip_file, capsys,
                                                                  monkeypatch):
    from subkit import credentials

    credentials.codabench_save_token(codabench.api.url, "stale-token-abcdef", "alice")
    monkeypatch.setattr(cb, "is_interactive", lambda: True)
    monkeypatch.setattr(cb, "prompt_login", lambda server: ("alice", "correct horse"))
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1234"],
                             capsys, monkeypatch)
    assert code == 0, err
    assert "saved Codabench token was refused" in err
    assert credentials.codabench_saved_token(codabench.api.url) == codabench.state.token


def test_wrong_password_shows_the_server_text(codabench, workspace, zip_file, capsys,
                                              monkeypatch):
    monkeypatch.setattr(cb, "is_interactive", lambda: True)
    monkeypatch.setattr(cb, "prompt_login", lambda server: ("alice", "hunter2-wrong"))
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1234"],
                             capsys, monkeypatch)
    assert code == 1
    assert "Unable to log in with provided credentials." in err
    assert "hunter2-wrong" not in out + err


# -- usage -------------------------------------------------------------------------------------
def test_usage_errors(workspace, zip_file, capsys, monkeypatch, tmp_path):
    code, out, err = run_cli(["submit", str(zip_file)], capsys, monkeypatch)
    assert code == 2 and "--codabench COMPETITION or --kaggle" in err
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1", "--kaggle", "x"],
                             capsys, monkeypatch)
    assert code == 2
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "not-a-number"],
                             capsys, monkeypatch)
    assert code == 2 and "competition number or URL" in err
    notzip = tmp_path / "x.zip"
    notzip.write_text("hello")
    code, out, err = run_cli(["submit", str(notzip), "--codabench", "1"], capsys, monkeypatch)
    assert code == 1 and "is not a zip file" in err


# -- Kaggle ------------------------------------------------------------------------------------
@pytest.fixture
def csv_file(tmp_path) -> Path:
    p = tmp_path / "preds.csv"
    p.write_text("id,label\n" + "".join(f"{i},{i % 5}\n" for i in range(2000)))
    return p


def test_kaggle_submit_and_wait(kaggle, workspace, csv_file, capsys, monkeypatch):
    code, out, err = run_cli(["submit", str(csv_file), "--kaggle", "an2dl-mars-terrain",
                              "-m", "UNet + TTA", "--wait", "--json"], capsys, monkeypatch)
    assert code == 0, err
    result = json.loads(out)
    assert result["submission_id"] == 42000001 and result["status"] == "complete"
    assert result["leaderboard_score"] == pytest.approx(0.65432)
    assert [c["path"].rsplit("/", 1)[1] for c in kaggle.state.log] == [
        "StartSubmissionUpload", "CreateSubmission", "GetSubmission", "GetSubmission"]
    # storage got the file, with a Content-Length and no Kaggle credentials
    put = kaggle.blobs.log[-1]
    assert put["method"] == "PUT" and "Authorization" not in put["headers"]
    assert int(put["headers"]["Content-Length"]) == csv_file.stat().st_size
    assert list(kaggle.blobs.blobs.values()) == [csv_file.read_bytes()]
    assert kaggle.state.submissions[42000001]["description"] == "UNet + TTA"
    recs = ledger_of(workspace).records()
    assert [r["kind"] for r in recs] == ["submit", "leaderboard"]
    assert recs[0]["platform"] == "kaggle" and recs[0]["zip_sha256"] == sha256_file(csv_file)
    assert recs[1]["source"] == "kaggle" and recs[1]["phase"] == "public"
    assert kaggle.state.key not in out + err


@pytest.mark.parametrize("mode,status,text,hint", [
    ("rules400", 400, "You must accept this competition's rules",
     "/competitions/an2dl-mars-terrain/rules"),
    ("rules403", 403, "You must accept this competition's rules", "join the competition"),
    ("slug404", 404, "NotFound", "copy the slug from the competition's URL"),
    ("permission", 403, "Permission 'competitions.participate' was denied",
     "most often a typo in the slug"),
    ("badkey", 401, "Unauthenticated", "create a new token"),
])
def test_kaggle_errors_get_hints(kaggle, workspace, csv_file, capsys, monkeypatch,
                                 mode, status, text, hint):
    slug = "an2dl-mars-terrain"
    if mode.startswith("rules"):
        kaggle.state.rules_status = status
    elif mode == "slug404":
        slug = "an2dl-mars-terain"
    elif mode == "permission":
        kaggle.state.permission_denied = True
    elif mode == "badkey":
        monkeypatch.setenv("KAGGLE_KEY", "not-the-key-987654")
    code, out, err = run_cli(["submit", str(csv_file), "--kaggle", slug, "-m", "x"],
                             capsys, monkeypatch)
    assert code == 1
    assert f"HTTP {status}" in err and text in err
    assert hint in err.split("hint:", 1)[1]
    assert "not-the-key-987654" not in err and kaggle.state.key not in err
    assert ledger_of(workspace).records() == []


def test_kaggle_credentials_from_kaggle_json(kaggle, workspace, csv_file, capsys, monkeypatch,
                                             tmp_path):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    code, out, err = run_cli(["submit", str(csv_file), "--kaggle", "an2dl-mars-terrain",
                              "-m", "x"], capsys, monkeypatch)
    assert code == 1 and "no Kaggle credentials" in err and "kaggle.json" in err
    kj = tmp_path / "home" / ".kaggle" / "kaggle.json"
    kj.parent.mkdir(parents=True)
    kj.write_text(json.dumps({"username": kaggle.state.username, "key": kaggle.state.key}))
    code, out, err = run_cli(["submit", str(csv_file), "--kaggle", "an2dl-mars-terrain",
                              "-m", "x"], capsys, monkeypatch)
    assert code == 0, err
    assert "submission 42000001" in out


def test_kaggle_needs_a_message(kaggle, workspace, csv_file, capsys, monkeypatch):
    code, out, err = run_cli(["submit", str(csv_file), "--kaggle", "an2dl-mars-terrain"],
                             capsys, monkeypatch)
    assert code == 2 and "needs a message" in err


def test_kaggle_dropped_upload_is_retried(kaggle, workspace, csv_file, capsys, monkeypatch):
    kaggle.blobs.drop_first_upload = True
    code, out, err = run_cli(["submit", str(csv_file), "--kaggle", "an2dl-mars-terrain",
                              "-m", "x"], capsys, monkeypatch)
    assert code == 0, err
    assert kaggle.blobs.attempts == 2 and len(kaggle.state.submissions) == 1


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
    assert st(resp("<html><title>502 Bad Gateway</title><body>x</body></html>",
                   "text/html")) == "502 Bad Gateway"
    assert len(st(resp("x" * 1000, "text/plain"))) == 300


def test_scrub_hides_secrets_and_signed_queries():
    h = http_mod.Http()
    h.add_secret("supersecret")
    text = h.scrub("token supersecret at https://blob.example/a/b.zip?sv=1&sig=abc def")
    assert "supersecret" not in text and "sig=abc" not in text
    assert "https://blob.example/a/b.zip?…" in text


def test_wait_timeout_leaves_the_submission_in_the_ledger(codabench, workspace, zip_file,
                                                          capsys, monkeypatch):
    monkeypatch.setenv("CODABENCH_TOKEN", codabench.state.token)
    codabench.state.status_steps = ["Submitted"] * 50
    code, out, err = run_cli(["submit", str(zip_file), "--codabench", "1234", "--wait",
                              "--wait-timeout", "0"], capsys, monkeypatch)
    assert code == 1
    assert "stopped waiting after 0 s" in err and "still Submitted" in err
    assert "subkit history score" in err
    assert [r["kind"] for r in ledger_of(workspace).records()] == ["submit"]


def test_upload_progress_bar_only_when_asked_for_a_terminal(codabench, zip_file, capsys):
    url = codabench.storage.url + "/plain/x.zip"
    http_mod.Http(progress=True).upload("PUT", url, zip_file, what="upload")
    assert "upload" in capsys.readouterr().err  # tqdm drew on stderr
    http_mod.Http(progress=False).upload("PUT", url, zip_file, what="upload")
    assert capsys.readouterr().err == ""
    assert codabench.blobs.blobs["/plain/x.zip"] == zip_file.read_bytes()
