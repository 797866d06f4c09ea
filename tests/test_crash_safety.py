"""kill -9 of subkit at any moment: no zip without its ledger row, no ledger row without
its zip, no run left looking finished (or ok) when it was not, no temporary folder the next
command does not clean up, no process of the submission left running. Every crash here is
a real SIGKILL of a real `subkit` process, at a chosen point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import alive_with, make_zip, subkit_argv, subkit_env, subkit_process

GOOD = ("import numpy as np\nclass Model:\n    def predict(self, X):\n"
        "        return np.zeros(len(X), int)\n")

# Injected into a `subkit` process: SIGKILL itself at the point CRASH_AT names.
CRASHER = r'''
import os, signal, sys
import subkit.ledger as ledger, subkit.publish as publish
point = os.environ["CRASH_AT"]

def die(*_a, **_k):
    os.kill(os.getpid(), signal.SIGKILL)

def after(fn):
    def wrapped(*a, **k):
        out = fn(*a, **k)
        die()
        return out
    return wrapped

if point == "before-commit":
    publish.commit = die
elif point == "after-commit-file":
    publish.roll_forward = die
elif point == "after-ledger-row":
    ledger.Ledger.append = after(ledger.Ledger.append)
elif point == "after-zip-link":
    publish._link = after(publish._link)
elif point == "before-ledger-row":
    ledger.Ledger.append = die
from subkit.__main__ import main
sys.argv = ["subkit"] + sys.argv[1:]
main()
'''


def crash(point: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = subkit_env(CRASH_AT=point)
    r = subprocess.run([sys.executable, "-c", CRASHER, *args], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == -signal.SIGKILL, (point, r.returncode, r.stderr[-2000:])
    return r


def ledger_rows(ws: Path) -> list[dict]:
    p = ws / "submissions" / "ledger.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.exists() else []


def zips_and_rows_agree(ws: Path) -> tuple[list[str], list[str]]:
    subs = ws / "submissions"
    zips = sorted(p.name for p in subs.glob("*.zip"))
    rows = sorted(r["zip"] for r in ledger_rows(ws) if r["kind"] == "build")
    manifests = sorted(p.name for p in subs.glob("*.json"))
    assert [z[:-4] for z in zips] == [m[:-5] for m in manifests], (zips, manifests)
    assert not list(subs.glob(".subkit-build-*")), "a staging folder was left behind"
    return zips, rows


@pytest.fixture
def build_ws(workspace, keras_weights):
    import keras

    toml = workspace / "subkit.toml"  # no retargeting: the weights' Keras is the grader's
    toml.write_text(toml.read_text() + f'\n[grader]\nkeras = "{keras.__version__}"\n')
    return workspace


@pytest.mark.slow
@pytest.mark.parametrize("point,published", [
    ("before-commit", False),  # nothing published: the staging folder is removed
    ("after-commit-file", True),  # committed: the next command rolls it forward
    ("after-ledger-row", True),
    ("after-zip-link", True),
])
def test_a_build_killed_at_any_point_leaves_zip_and_ledger_in_agreement(build_ws, keras_weights,
                                                                          point, published):
    crash(point, "build", "--weights", str(keras_weights), "--no-smoke", "--tag", "t", cwd=build_ws)
    staged = list((build_ws / "submissions").glob(".subkit-build-*"))
    assert len(staged) == 1, "the killed build left no journal"
    r = subkit_process("history", "--json", cwd=build_ws)  # the next command, whatever it is
    assert r.returncode == 0, r.stderr
    zips, rows = zips_and_rows_agree(build_ws)
    assert zips == rows == ([zips[0]] if published else []), (zips, rows)
    if published:
        assert "finished the build of" in r.stderr
        assert [row["zip"] for row in json.loads(r.stdout)] == zips
    else:
        assert "removed the staging folder" in r.stderr and json.loads(r.stdout) == []
    r = subkit_process("history", "--json", cwd=build_ws)  # and once more: nothing left to do
    assert r.returncode == 0 and "note:" not in r.stderr
    assert zips_and_rows_agree(build_ws) == (zips, rows)


def test_a_run_killed_by_sigkill_is_marked_incomplete_and_leaves_nothing_running(
        workspace, tmp_path, test_npz):
    token = f"0.{int.from_bytes(os.urandom(5), 'big'):012d}"
    src = ("import numpy as np, os, time\nclass Model:\n    def __init__(self):\n"
           f"        if os.fork() == 0:\n            os.setsid()\n"
           f"            os.execv('/bin/sleep', ['sleep', '600', '{token}'])\n"
           "    def predict(self, X):\n        open('started', 'w').close()\n"
           "        time.sleep(600)\n")
    z = make_zip(tmp_path / "sleepy.zip", {"model.py": src})
    proc = subprocess.Popen(subkit_argv("score-local", z, "--data", test_npz), cwd=workspace,
                            env=subkit_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    runs = workspace / "submissions" / "runs"
    for _ in range(600):
        if list(runs.glob("*/submission/started")):
            break
        time.sleep(0.05)
    (run_dir,) = list(runs.iterdir())
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for _ in range(100):
        if not alive_with(token):
            break
        time.sleep(0.05)
    assert not alive_with(token), "the submission outlived a killed subkit"
    r = subkit_process("history", "--json", cwd=workspace)
    assert r.returncode == 0 and "never finished" in r.stderr
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "incomplete" and record["ok"] is False and record["score"] is None
    assert "subkit stopped before this run finished" in record["incomplete_reason"]
    assert not (run_dir / "input_data").exists() and not (run_dir / "scores.json").exists()
    assert not (run_dir / ".subkit-lock").exists()
    assert [r for r in ledger_rows(workspace) if r["kind"] == "score-local"] == []
    r = subkit_process("report", str(run_dir), cwd=workspace)
    assert r.returncode == 1 and "never finished (incomplete)" in r.stderr


def test_a_run_killed_before_its_ledger_row_gets_it_from_its_record(workspace, tmp_path, test_npz):
    z = make_zip(tmp_path / "zeros.zip", {"model.py": GOOD})
    crash("before-ledger-row", "score-local", str(z), "--data", str(test_npz), cwd=workspace)
    (run_dir,) = list((workspace / "submissions" / "runs").iterdir())
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "complete" and record["ok"] is True
    assert ledger_rows(workspace) == []
    r = subkit_process("history", "--json", cwd=workspace)
    assert r.returncode == 0 and "recorded the run" in r.stderr
    (row,) = ledger_rows(workspace)
    assert row["kind"] == "score-local" and row["run_dir"] == str(run_dir)
    assert row["clean_score"] == pytest.approx(record["score"])


def test_a_killed_smoke_test_leaves_a_folder_the_next_command_removes(workspace, tmp_path):
    import tempfile

    model = tmp_path / "model.py"
    model.write_text("import time\nWEIGHTS = ['w.weights.h5']\nclass Model:\n"
                     "    def __init__(self):\n        open('started', 'w').close()\n"
                     "        time.sleep(600)\n    def predict(self, X):\n        return X\n")
    z = make_zip(tmp_path / "slow.zip", {"model.py": model.read_text()})
    tmp = Path(tempfile.gettempdir())
    before = set(tmp.glob("subkit-smoke-*"))
    proc = subprocess.Popen(subkit_argv("check", z), cwd=workspace, env=subkit_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mine: list[Path] = []
    for _ in range(600):
        mine = [d for d in set(tmp.glob("subkit-smoke-*")) - before
                if (d / "submission" / "started").exists()]
        if mine:
            break
        time.sleep(0.05)
    assert mine, "the smoke test never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert mine[0].exists()
    r = subkit_process("history", cwd=workspace)
    assert r.returncode == 0
    assert not mine[0].exists(), "the killed smoke test's folder was not cleaned up"
