"""A run's one lifecycle (subkit.grader.lifecycle): the folder opened with the zip unzipped,
ended complete, incomplete or removed, and run.json written once when the run ends."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from subkit import profile
from subkit.errors import InputError
from subkit.fsutil import abandoned
from subkit.grader import lifecycle
from subkit.grader.lifecycle import RunSpec

from conftest import make_zip

ZEROS = """
import numpy as np
class Model:
    def predict(self, X):
        return np.zeros(len(X), dtype=np.int64)
"""


@dataclass
class _Result:
    value: int

    def to_dict(self) -> dict:
        return {"ok": True, "value": self.value}


@pytest.fixture
def spec(workspace, tmp_path) -> RunSpec:
    prof = profile.load()
    z = make_zip(tmp_path / "zeros.zip", {"model.py": ZEROS})
    return RunSpec(prof=prof, zip=z, command="score-local", stem="zeros", time_limit=60,
                   python=sys.executable, env={"name": "current"})


def _runs(spec: RunSpec) -> list[Path]:
    root = spec.prof.submissions_dir / "runs"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def test_a_run_with_a_result_is_complete_and_its_row_in_the_ledger(spec):
    with lifecycle.conduct(spec) as run:
        assert (run.submission / "model.py").is_file()  # unzipped when the folder opened
        assert json.loads((run.path / "run.json").read_text())["status"] == "running"
        assert abandoned(run.path) is False  # subkit holds the lock while it works
        run.done(_Result(7), {"kind": "score-local", "run_dir": str(run.path), "ok": True})
    rec = json.loads((run.path / "run.json").read_text())
    assert rec["status"] == "complete" and rec["value"] == 7 and rec["ledger_row"]["ok"]
    rows = (spec.prof.submissions_dir / "ledger.jsonl").read_text().splitlines()
    assert json.loads(rows[-1])["run_dir"] == str(run.path)
    assert run.warning is None


def test_an_error_before_anything_ran_leaves_no_folder(spec):
    with pytest.raises(InputError, match="bad bundle"):
        with lifecycle.conduct(spec):
            raise InputError("bad bundle", hint="fix it")
    assert _runs(spec) == []


def test_an_interruption_after_a_child_ran_leaves_the_run_incomplete(spec):
    with pytest.raises(KeyboardInterrupt):
        with lifecycle.conduct(spec) as run:
            cr = run.child(np.zeros((3, 96, 96, 3), np.uint8))
            assert cr.failure is None and cr.predictions.tolist() == [0, 0, 0]
            raise KeyboardInterrupt
    rec = json.loads((run.path / "run.json").read_text())
    assert rec["status"] == "incomplete" and rec["ok"] is False
    assert "KeyboardInterrupt" in rec["incomplete_reason"]
    assert not (run.path / "input_data").exists()  # the input copy is gone


def test_a_result_then_an_error_finishes_the_folder_first(spec):
    """`subkit predict` reports a failed run as an error: the record is written before."""
    with pytest.raises(InputError):
        with lifecycle.conduct(spec) as run:
            run.began()
            run.done(lifecycle.PlainRecord({"ok": False, "failure": {"stage": "predict"}}))
            raise InputError("the run failed", hint="see the logs")
    rec = json.loads((run.path / "run.json").read_text())
    assert rec["status"] == "complete" and rec["failure"] == {"stage": "predict"}


def test_a_block_that_ends_without_a_result_is_never_a_success(spec):
    with lifecycle.conduct(spec) as run:
        run.began()
    rec = json.loads((run.path / "run.json").read_text())
    assert rec["status"] == "incomplete" and "without a result" in rec["incomplete_reason"]


def test_a_refused_zip_leaves_no_folder(spec, tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    from dataclasses import replace

    with pytest.raises(Exception):
        with lifecycle.conduct(replace(spec, zip=bad)):
            pass
    assert _runs(spec) == []


@pytest.mark.slow
def test_score_local_writes_run_json_once_when_the_run_ends(spec, test_npz, monkeypatch):
    """The "running" marker, then the complete record: no write in between (the report is
    written from the record in memory)."""
    from subkit import fsutil
    from subkit.commands.score_local import score_zip

    writes: list[str] = []
    real = fsutil.write_text_atomic

    def counting(path, text, *a, **k):
        if Path(path).name == "run.json":
            writes.append(json.loads(text).get("status", "?"))
        return real(path, text, *a, **k)

    monkeypatch.setattr(fsutil, "write_text_atomic", counting)
    res = score_zip(spec.zip, test_npz, spec.prof, env="current", proba=True)
    assert res.ok and (res.run_dir / "report.html").is_file()
    assert writes == ["running", "complete"]


def test_run_json_carries_its_schema_and_one_reader_refuses_a_newer_one(spec, tmp_path):
    from subkit.grader.runfolder import RUN_SCHEMA, read_record

    with lifecycle.conduct(spec) as run:
        assert read_record(run.path)["schema"] == RUN_SCHEMA  # the "running" marker too
        run.done(_Result(1))
    assert read_record(run.path)["schema"] == RUN_SCHEMA == 2
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text(json.dumps({"schema": 99, "status": "complete"}))
    with pytest.raises(InputError, match="newer subkit"):
        read_record(tmp_path / "r")
    (tmp_path / "r" / "run.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="not a run record"):
        read_record(tmp_path / "r")
    (tmp_path / "r" / "run.json").write_text(json.dumps({"status": "complete"}))
    assert read_record(tmp_path / "r")["status"] == "complete"  # schema 1: still read
