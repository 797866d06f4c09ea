"""The ledger: records, the history table, concurrent writers, crashes mid-write."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

from subkit.ledger import LEDGER_NAME, Ledger, LedgerWarning, build_table, sha256_file

SHA_A = "a" * 64
SHA_B = "b" * 64


def _build(ledger: Ledger, sha: str, name: str, tag: str = "v1", **extra) -> dict:
    return ledger.append({
        "kind": "build", "zip": f"submissions/{name}", "zip_sha256": sha, "tag": tag,
        "weights": [{"name": "weights.keras", "sha256": sha[::-1][:64].replace("a", "c"),
                     "keras_version": "3.4.1"}],
        "profile": "an2dl-2024-blood-cells", "size": 1234, **extra})


# -- records ---------------------------------------------------------------------------------
def test_append_adds_time_id_version_and_keeps_unknown_fields(tmp_path):
    ledger = Ledger(tmp_path / "submissions")
    rec = ledger.append({"kind": "build", "zip_sha256": SHA_A, "zip": Path("x.zip"),
                         "my_field": {"lr": 1e-3}, "score": float("nan")})
    assert rec["time"].endswith("+00:00") and "T" in rec["time"]
    assert len(rec["id"]) == 32 and rec["subkit_version"]
    assert rec["my_field"] == {"lr": 1e-3} and rec["zip"] == "x.zip"
    assert rec["score"] is None  # JSON has no NaN
    again = Ledger(tmp_path / "submissions").records()
    assert again == [rec]
    raw = (tmp_path / "submissions" / LEDGER_NAME).read_text()
    assert raw.count("\n") == 1 and raw.endswith("\n")
    ids = {ledger.append({"kind": "note", "zip_sha256": SHA_A, "text": "t"})["id"]
           for _ in range(50)}
    assert len(ids) == 50


def test_append_refuses_a_record_without_kind(tmp_path):
    with pytest.raises(ValueError):
        Ledger(tmp_path).append({"zip_sha256": SHA_A})


def test_numpy_values_are_stored_as_numbers(tmp_path):
    import numpy as np

    rec = Ledger(tmp_path).append({"kind": "score-local", "zip_sha256": SHA_A,
                                   "clean_score": np.float32(0.5), "counts": np.arange(3)})
    assert rec["clean_score"] == 0.5 and rec["counts"] == [0, 1, 2]


def test_sha256_file(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_missing_ledger_reads_empty(tmp_path):
    assert Ledger(tmp_path / "nope").records() == []
    assert Ledger(tmp_path / "nope").table() == []


# -- the table -------------------------------------------------------------------------------
def test_table_one_row_per_zip_with_latest_values(tmp_path):
    ledger = Ledger(tmp_path)
    _build(ledger, SHA_A, "a.zip", tag="effnet")
    _build(ledger, SHA_B, "b.zip", tag="v2m")
    ledger.append({"kind": "score-local", "zip": "submissions/a.zip", "zip_sha256": SHA_A,
                   "metric": "accuracy", "clean_score": 0.91, "shifted_score": 0.55,
                   "runtime_s": 40.0, "ok": True, "run_dir": "runs/1", "env": {}})
    # a later run without the shifted score does not erase the earlier one
    ledger.append({"kind": "score-local", "zip_sha256": SHA_A, "metric": "accuracy",
                   "clean_score": 0.93, "shifted_score": None, "runtime_s": 38.0, "ok": True})
    ledger.append({"kind": "submit", "zip_sha256": SHA_A, "platform": "codabench",
                   "competition": 1234, "phase": "Development", "submission_id": 77,
                   "status": "Submitted"})
    ledger.append({"kind": "leaderboard", "zip_sha256": SHA_A, "leaderboard_score": 0.76,
                   "phase": "development", "source": "manual"})
    ledger.append({"kind": "leaderboard", "zip_sha256": SHA_A, "leaderboard_score": 0.74,
                   "phase": "final", "source": "codabench", "status": "Finished"})
    ledger.append({"kind": "note", "zip_sha256": SHA_A, "text": "V2M + AdamW + TTA"})
    ledger.append({"kind": "note", "zip_sha256": SHA_B, "text": "baseline",
                   "reviewer": "bob"})
    ledger.append({"kind": "note", "text": "no zip: not in the table"})
    rows = ledger.table()
    assert [r["zip_name"] for r in rows] == ["a.zip", "b.zip"]
    a, b = rows
    assert a["tag"] == "effnet" and a["note"] == "V2M + AdamW + TTA"
    assert a["clean_score"] == 0.93 and a["shifted_score"] == 0.55 and a["runtime_s"] == 38.0
    assert a["leaderboard"] == {"development": 0.76, "final": 0.74}
    assert a["leaderboard_score"] == 0.74 and a["status"] == "Finished"
    assert a["submission_id"] == 77 and a["platform"] == "codabench"
    assert a["keras_version"] == "3.4.1" and a["weights_sha256"]
    assert a["built"] and a["records"] == 7
    assert b["note"] == "baseline" and b["reviewer"] == "bob"  # unknown field kept


def test_build_table_ignores_records_without_zip():
    assert build_table([{"kind": "note", "text": "x"}]) == []


# -- torn lines and crashes -------------------------------------------------------------------
def test_torn_last_line_is_skipped_with_a_warning_and_later_appends_survive(tmp_path):
    ledger = Ledger(tmp_path)
    first = ledger.append({"kind": "note", "zip_sha256": SHA_A, "text": "one"})
    with open(tmp_path / LEDGER_NAME, "ab") as fh:  # a writer died half-way
        fh.write(b'{"kind": "build", "zip_sha256": "' + SHA_B.encode()[:20])
    with pytest.warns(LedgerWarning, match="line 2"):
        assert Ledger(tmp_path).records() == [first]
    later = [ledger.append({"kind": "note", "zip_sha256": SHA_A, "text": str(i)})
             for i in range(3)]
    seen: list[str] = []
    recs = Ledger(tmp_path, on_warning=seen.append).records()
    assert recs == [first, *later]
    assert len(seen) == 1 and "line 2" in seen[0]


def test_garbage_lines_do_not_stop_the_reader(tmp_path):
    (tmp_path / LEDGER_NAME).write_bytes(b'[1, 2]\n\xff\xfe\n{"kind": "note", "zip_sha256": "'
                                         + SHA_A.encode() + b'", "text": "ok"}\n')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recs = Ledger(tmp_path).records()
    assert [r["text"] for r in recs] == ["ok"]
    assert len([w for w in caught if issubclass(w.category, LedgerWarning)]) == 2


_CRASHING_WRITER = textwrap.dedent("""
    import os, sys
    import subkit.ledger as L
    real = os.write
    def half_then_die(fd, data):
        real(fd, bytes(data)[: len(data) // 2])
        os._exit(9)          # the process dies mid-record, holding the lock
    L.os.write = half_then_die
    L.Ledger(sys.argv[1]).append({"kind": "build", "zip_sha256": "c" * 64, "tag": "lost"})
""")


def test_a_writer_killed_mid_record_loses_only_its_own_record(tmp_path):
    ledger = Ledger(tmp_path)
    before = [ledger.append({"kind": "note", "zip_sha256": SHA_A, "text": f"b{i}"})
              for i in range(5)]
    proc = subprocess.run([sys.executable, "-c", _CRASHING_WRITER, str(tmp_path)],
                          capture_output=True, timeout=60)
    assert proc.returncode == 9, proc.stderr.decode()
    raw = (tmp_path / LEDGER_NAME).read_bytes()
    assert not raw.endswith(b"\n")  # really torn
    after = [ledger.append({"kind": "note", "zip_sha256": SHA_A, "text": f"a{i}"})
             for i in range(5)]  # the lock died with the writer: no deadlock
    seen: list[str] = []
    assert Ledger(tmp_path, on_warning=seen.append).records() == before + after
    assert len(seen) == 1


def test_a_lock_holder_killed_by_sigkill_releases_the_lock(tmp_path):
    code = textwrap.dedent("""
        import fcntl, os, sys, time
        fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(60)
    """)
    tmp_path.mkdir(exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / LEDGER_NAME)],
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"locked"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        start = time.monotonic()
        Ledger(tmp_path).append({"kind": "note", "zip_sha256": SHA_A, "text": "x"})
        assert time.monotonic() - start < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- concurrency -----------------------------------------------------------------------------
N_PROCS = 6
N_EACH = 250


def _hammer(folder: str, worker: int, n: int, start_at: float) -> None:
    while time.time() < start_at:  # start together
        time.sleep(0.001)
    ledger = Ledger(Path(folder))
    for i in range(n):
        ledger.append({"kind": "score-local", "zip_sha256": f"{worker:064x}",
                       "worker": worker, "i": i, "payload": "x" * (50 + (i * 37) % 3000)})


def test_concurrent_writers_lose_nothing(tmp_path):
    ctx = multiprocessing.get_context("spawn")  # no fork of a possibly threaded parent
    start_at = time.time() + 1.5
    procs = [ctx.Process(target=_hammer, args=(str(tmp_path), w, N_EACH, start_at))
             for w in range(N_PROCS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not a single torn or interleaved line
        recs = Ledger(tmp_path).records()
    assert len(recs) == N_PROCS * N_EACH
    assert len({r["id"] for r in recs}) == len(recs)
    assert {(r["worker"], r["i"]) for r in recs} == {
        (w, i) for w in range(N_PROCS) for i in range(N_EACH)}
    # each worker's records are in its own order
    for w in range(N_PROCS):
        assert [r["i"] for r in recs if r["worker"] == w] == list(range(N_EACH))
    assert len(Ledger(tmp_path).table()) == N_PROCS


# -- the history command -----------------------------------------------------------------------
def _filled(workspace) -> Ledger:
    ledger = Ledger(workspace / "submissions")
    _build(ledger, SHA_A, "sub_a.zip", tag="effnet")
    _build(ledger, SHA_B, "sub_b.zip", tag="v2m")
    ledger.append({"kind": "score-local", "zip_sha256": SHA_A, "clean_score": 0.95,
                   "shifted_score": 0.40, "runtime_s": 30.0, "ok": True})
    ledger.append({"kind": "score-local", "zip_sha256": SHA_B, "clean_score": 0.93,
                   "shifted_score": 0.80, "runtime_s": 90.0, "ok": True})
    ledger.append({"kind": "leaderboard", "zip_sha256": SHA_B, "leaderboard_score": 0.87,
                   "phase": "development", "source": "manual"})
    return ledger


def test_history_table_json_csv(workspace, cli):
    _filled(workspace)
    res = cli("history")
    assert res.code == 0, res.text
    lines = res.out.splitlines()
    assert lines[0].split()[:4] == ["zip", "tag", "note", "weights"]
    assert "sub_a.zip" in lines[2] and "0.9500" in lines[2] and "0.4000" in lines[2]
    assert "development 0.8700" in lines[3]
    res = cli("history", "--json")
    rows = json.loads(res.out)
    assert [r["zip_name"] for r in rows] == ["sub_a.zip", "sub_b.zip"]
    res = cli("history", "--csv")
    header, a, b = res.out.strip().splitlines()
    assert "leaderboard_development" in header.split(",")
    assert b.split(",")[header.split(",").index("leaderboard_development")] == "0.87"


def test_history_sort_and_bad_column(workspace, cli):
    _filled(workspace)
    rows = json.loads(cli("history", "--json", "--sort", "shifted").out)
    assert [r["zip_name"] for r in rows] == ["sub_b.zip", "sub_a.zip"]  # best first
    rows = json.loads(cli("history", "--json", "--sort", "shifted", "--reverse").out)
    assert [r["zip_name"] for r in rows] == ["sub_a.zip", "sub_b.zip"]
    rows = json.loads(cli("history", "--json", "--sort", "runtime").out)
    assert [r["zip_name"] for r in rows] == ["sub_a.zip", "sub_b.zip"]
    rows = json.loads(cli("history", "--json", "--sort", "leaderboard").out)
    assert [r["zip_name"] for r in rows] == ["sub_b.zip", "sub_a.zip"]  # no score: last
    res = cli("history", "--sort", "accuracy")
    assert res.code != 0
    error, hint = res.err.splitlines()
    assert error.startswith("error: ") and "unknown column 'accuracy'" in error
    assert hint.startswith("hint: ") and "clean, shifted" in hint and "leaderboard:PHASE" in hint


def test_history_note_and_score_by_path_name_and_prefix(workspace, cli, tmp_path):
    ledger = _filled(workspace)
    zp = tmp_path / "real.zip"
    zp.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    res = cli("history", "note", str(zp), "--text", "V2M + AdamW + TTA")
    assert res.code == 0, res.text
    res = cli("history", "score", "sub_b.zip", "--leaderboard", "0.76", "--phase", "final")
    assert res.code == 0, res.text
    res = cli("history", "score", SHA_A[:8], "--leaderboard", "0.5")  # default phase
    assert res.code == 0, res.text
    rows = {r["zip_sha256"]: r for r in ledger.table()}
    assert rows[sha256_file(zp)]["note"] == "V2M + AdamW + TTA"
    assert rows[SHA_B]["leaderboard"] == {"development": 0.87, "final": 0.76}
    assert rows[SHA_A]["leaderboard"] == {"development": 0.5}
    lb = [r for r in ledger.records() if r["kind"] == "leaderboard"][-1]
    assert lb["source"] == "manual"
    res = cli("history", "note", "nothing-like-this.zip", "--text", "x")
    assert res.code == 1 and res.err.startswith("error: ") and "no zip" in res.err


def test_history_score_refuses_a_score_or_phase_the_profile_cannot_have(workspace, cli):
    """1.7 is no accuracy (76 is a percent), 'finale' no phase of development/final: refused
    before anything is recorded, so the calibration never sees them."""
    ledger = _filled(workspace)
    before = len(ledger.records())
    for args, words in [(("--leaderboard", "1.7"), "outside the range of accuracy (0 to 1)"),
                        (("--leaderboard", "76"), "(0 to 1)"),
                        (("--leaderboard", "-0.1"), "(0 to 1)"),
                        (("--leaderboard", "0.7", "--phase", "finale"), "has no phase 'finale'")]:
        res = cli("history", "score", "sub_b.zip", *args)
        assert res.code == 2, res.text
        error, hint = res.err.strip().splitlines()[-2:]
        assert error.startswith("error: ") and words in error, res.err
        assert hint.startswith("hint: ")
    assert len(ledger.records()) == before
    res = cli("history", "score", "sub_b.zip", "--leaderboard", "1", "--phase", "1")
    assert res.code == 0, res.text  # a phase by its index, a perfect score
    assert ledger.records()[-1]["phase"] == "final"


def test_history_through_the_entry_point(workspace, cli):
    _filled(workspace)
    res = cli("history", "--sort", "nope")
    assert res.code == 2
    assert "error: --sort: unknown column 'nope'" in res.err and "hint: valid columns" in res.err
    res = cli("history", "--json")
    assert res.code == 0 and len(json.loads(res.out)) == 2


def test_history_empty_and_torn_ledger_warns(workspace, cli):
    res = cli("history")
    assert res.code == 0 and "no history yet" in res.text
    (workspace / "submissions" / LEDGER_NAME).write_text('{"kind": "bu')
    res = cli("history")
    assert res.code == 0
    assert "warning:" in res.err and "not a complete record" in res.err


def test_no_tensorflow_import():
    code = ("import sys, subkit.ledger, subkit.cli.ledger, subkit.credentials, "
            "subkit.remote.codabench, subkit.remote.kaggle, subkit.remote.http; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_failed_run_is_marked_and_the_shifted_score_names_its_suite():
    """A failed run after a good one: the row keeps the good run's scores and runtime, says
    the last run failed; a shifted score carries the suite that gave it."""
    from subkit.cli.ledger import CELLS

    sha = "cd" * 32
    good = {"kind": "score-local", "zip_sha256": sha, "ok": True, "clean_score": 0.91,
            "shifted_score": 0.62, "shift_suite": "hidden-2024", "runtime_s": 41.0,
            "metric": "accuracy", "time": "2026-12-01T10:00:00+00:00"}
    failed = {"kind": "score-local", "zip_sha256": sha, "ok": False, "clean_score": None,
              "runtime_s": 600.0, "time": "2026-12-02T10:00:00+00:00"}
    row = build_table([good, failed])[0]
    assert row["clean_score"] == 0.91 and row["runtime_s"] == 41.0 and row["local_ok"] is False
    assert row["failed_run"] == failed["time"]
    assert CELLS["runtime"](row) == "failed"
    assert CELLS["shifted"](row) == "0.6200 (hidden-2024)"
    clean_again = {**good, "shifted_score": None, "shift_suite": None, "runtime_s": 39.0,
                   "time": "2026-12-03T10:00:00+00:00"}
    row = build_table([good, failed, clean_again])[0]
    assert row["local_ok"] is True and CELLS["runtime"](row) == "39.0s"
    assert row["shifted_score"] == 0.62  # the last shifted run's, still named
