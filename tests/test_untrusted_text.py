"""What a submission (or a bundle's program) controls never reaches the user raw: one
sanitizer for every text it wrote (``untrusted.printable``), a status file parsed with a
depth and size bound, a Failure whose fields are sanitized whenever they are set, and a
verdict on every predictions file it can leave (any dtype, shape or file type), never an
internal error. The end-to-end attacks are in tests/test_hostile.py (tests/hostile/)."""

from __future__ import annotations

import io
import json
import os
import pickle
import time

import numpy as np
import pytest

from subkit.grader import untrusted
from subkit.grader.diagnose import BadOutput, Failure, occupied, read_predictions

CLEAR = "\x1b[2J\x1b[H"  # clear the screen, cursor home
FAKE = "\x1b[32maccuracy 1.0000   PASSED\x1b[0m"
HOSTILE = f"boom{CLEAR}\n{FAKE}\r\nhint: ignore this\u202e"


# -- the one sanitizer -----------------------------------------------------------------------------
def test_printable_shows_every_control_escaped_and_one_line_fields_stay_on_one_line():
    one = untrusted.printable(HOSTILE, one_line=True)
    assert "\x1b" not in one and "\n" not in one and "\r" not in one and "\u202e" not in one
    assert one == ("boom\\x1b[2J\\x1b[H\\n\\x1b[32maccuracy 1.0000   PASSED\\x1b[0m\\r\\n"
                   "hint: ignore this\\u202e")
    lines = untrusted.printable(HOSTILE)  # a tail: its lines stay, each escaped
    assert lines.split("\n") == ["boom\\x1b[2J\\x1b[H", "\\x1b[32maccuracy 1.0000   PASSED\\x1b[0m",
                                 "hint: ignore this\\u202e"]
    # C1 controls (a one-byte CSI), DEL, NUL, zero-width and separators, lone surrogates
    # (a file name that is not UTF-8): escaped; letters of any script stay
    odd = "a\x9b2J\x7f\x00\u200b\u2028\udcff\U000e0041 é 中 ✓\tz"
    assert untrusted.printable(odd, one_line=True) == \
        "a\\x9b2J\\x7f\\x00\\u200b\\u2028\\udcff\\U000e0041 é 中 ✓\\tz"
    assert untrusted.printable(odd).endswith("✓\tz")  # a tab keeps its place in a tail
    untrusted.printable(odd, one_line=True).encode("utf-8")  # no encoder trips on it


def test_printable_cuts_long_values_with_a_mark_and_is_idempotent():
    long = "x" * 100_000
    cut = untrusted.printable(long, 100, one_line=True)
    assert cut.startswith("x" * 100) and cut.endswith("[... cut, 100000 characters in all]")
    assert len(cut) < 150
    end = untrusted.printable("a" * 5000 + "LAST", 50, keep_end=True)  # a tail keeps its end
    assert end.startswith("[... cut, 5004 characters in all]") and end.endswith("aaLAST")
    for text in (cut, end, untrusted.printable(HOSTILE), untrusted.printable(HOSTILE, 10)):
        assert untrusted.printable(text, 100) == text or len(text) > 148
    assert untrusted.printable(untrusted.printable(HOSTILE, one_line=True), one_line=True) == \
        untrusted.printable(HOSTILE, one_line=True)
    # escaping a megabyte of escape bytes costs what escaping the limit costs
    t0 = time.perf_counter()
    untrusted.printable("\x1b" * 10_000_000, 2000, one_line=True)
    assert time.perf_counter() - t0 < 0.5


# -- status files: bounded ------------------------------------------------------------------------
@pytest.mark.parametrize("doc", [
    b"[" * 600_000,  # the audit's 600 KB: RecursionError before
    b'{"a":' * 100_000 + b"1" + b"}" * 100_000,  # deep and well-formed
    b"[" * 33 + b"]" * 33,  # one level too deep
])
def test_a_status_file_nested_too_deep_is_not_read(tmp_path, doc):
    p = tmp_path / "ingestion.json"
    p.write_bytes(doc)
    t0 = time.perf_counter()
    assert untrusted.read_untrusted_json(p) == {}
    assert time.perf_counter() - t0 < 1.0
    with pytest.raises(ValueError):
        untrusted.loads_json(doc)


def test_status_files_within_the_bounds_are_read(tmp_path):
    ok = {"ok": True, "stage": "done", "note": "[[[[{{{{ brackets in a string do not count",
          "extra": {f"blur-{i}": {"ok": True, "output": {"shape": [4]}} for i in range(300)}}
    p = tmp_path / "ingestion.json"
    p.write_text(json.dumps(ok))
    assert untrusted.read_untrusted_json(p) == ok
    assert untrusted.loads_json(b"[" * 32 + b"]" * 32) is not None
    p.write_bytes(b"x" * (untrusted.MiB + 1))  # past the size bound: not even parsed
    assert untrusted.read_untrusted_json(p) == {}
    p.write_bytes(b'{"ok": true, "stage": "\xff\xfe"}')  # not UTF-8
    assert untrusted.read_untrusted_json(p) == {}


def test_the_status_texts_are_sanitized_where_they_enter(tmp_path):
    raw = {"ok": True, "stage": HOSTILE, "error_type": HOSTILE, "error": HOSTILE,
           "traceback": HOSTILE, "python": HOSTILE, "executable": HOSTILE,
           "timings": {HOSTILE: 1.0, "huge": 10 ** 400, "inf": 1e308 * 10, "s": "fast"},
           "peak_rss_mb": 10 ** 400,
           "versions": {HOSTILE: HOSTILE, "list": [HOSTILE, 10 ** 400, True, 3]},
           "proba": {"ok": True, "error": HOSTILE},
           "extra": {HOSTILE: {"ok": False, "error": HOSTILE, "output": {"dtype": HOSTILE}}}}
    st = untrusted.sane_status(raw)
    text = json.dumps(st, ensure_ascii=False)
    assert "\x1b" not in text and "\u202e" not in text
    for key in ("stage", "error_type", "python", "executable"):
        assert "\n" not in st[key], key
    assert len(st["stage"]) <= 40 + 48
    assert st["error"].count("\n") == 2 and st["traceback"].count("\n") == 2  # lines kept
    assert st["timings"] == {untrusted.printable(HOSTILE, 40, one_line=True): 1.0}
    assert "peak_rss_mb" not in st  # an int of 400 digits is no number of megabytes
    assert st["versions"]["list"] == [untrusted.printable(HOSTILE, 100, one_line=True), 3]
    [key] = st["extra"]
    assert "\n" not in key and "\n" not in st["extra"][key]["error"]


# -- Failure: sanitized whenever a field is set ---------------------------------------------------
def test_a_failure_s_fields_are_sanitized_at_construction_and_when_set_later():
    f = Failure(HOSTILE, HOSTILE, HOSTILE, HOSTILE + "\n" + "line\n" * 5000)
    for field in (f.stage, f.message, f.hint):
        assert "\x1b" not in field and "\n" not in field and "\r" not in field
    assert "\x1b" not in f.tail and f.tail.endswith("line\n")  # the tail keeps its end
    f.hint = "use " + HOSTILE  # runner.py and _name_the_weights set fields later
    f.tail = FAKE + "\nok"
    assert "\n" not in f.hint and f.tail == "\\x1b[32maccuracy 1.0000   PASSED\\x1b[0m\nok"
    assert f.to_dict()["hint"] == f.hint
    assert Failure("init", "x" * 10_000, "h").message.endswith("characters in all]")


def test_the_weights_name_in_a_hint_is_shown_escaped(tmp_path):
    from subkit.grader.diagnose import _name_the_weights

    (tmp_path / f"{CLEAR}\n{FAKE}.keras").write_bytes(b"")
    f = _name_the_weights(Failure("init", "m", "rebuild with --weights YOUR_WEIGHTS.keras"),
                          tmp_path)
    assert f.hint == ("rebuild with --weights \\x1b[2J\\x1b[H\\n\\x1b[32maccuracy 1.0000   "
                      "PASSED\\x1b[0m.keras")


def test_the_time_bar_shows_the_child_s_stage_escaped(tmp_path, recording_bars):
    from subkit.grader.run import TimeBar
    from subkit.grader.sets import SetProgress

    status = tmp_path / "ingestion.json"
    status.write_text(json.dumps({"stage": HOSTILE, "ok": False}))
    bar = TimeBar("score-local", 60.0, status)
    bar.tick(1.0)
    sets = SetProgress(3, "sets", 60.0, status, enabled=True)
    sets.tick(1.0)
    shown = untrusted.printable(HOSTILE, 40, one_line=True)
    assert shown.startswith("boom\\x1b[2J\\x1b[H\\n\\x1b[32m") and "\n" not in shown
    assert [d.sets for d in recording_bars] == [[(1.0, f"child: {shown}")],
                                                [(0, f"clean set: {shown}")]]


# -- every predictions file gets a verdict --------------------------------------------------------
def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=arr.dtype == object)
    return buf.getvalue()


def _npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, a=np.zeros(3))
    return buf.getvalue()


WANT = "labels as a numpy int array of shape (n,)"
FILES = {
    "structured": (_npy(np.zeros(4, dtype=[("a", "i4"), ("b", "f8")])),
                   "predictions are a structured array with fields a, b"),
    "structured, hostile field names": (_npy(np.zeros(4, dtype=[(CLEAR + "\nx", "i4")])),
                                        "with fields \\x1b[2J\\x1b[H\\nx"),
    "void": (_npy(np.zeros(4, "V8")), "predictions are raw bytes (numpy void dtype V8)"),
    "complex": (_npy(np.zeros(4, complex)), "predictions are complex numbers (complex128)"),
    "datetime": (_npy(np.zeros(4, "M8[ns]")), "predictions are dates and times"),
    "timedelta": (_npy(np.zeros(4, "m8[s]")), "predictions are time spans"),
    "bytes, not UTF-8": (_npy(np.array([b"\xff\xfe", b"ok"])),
                         "predictions are byte strings that are not UTF-8 text (e.g. b'\\xff"),
    "object": (_npy(np.array([1, "a", None], dtype=object)), "holds Python objects"),
    "pickle": (pickle.dumps([1, 2]), "is a pickle of Python objects, not a .npy file"),
    "npz": (_npz(), "is an .npz archive (np.savez), not one array"),
    "truncated": (_npy(np.zeros(1000))[:300], "is not a readable .npy file"),
    "junk": (b"\x1b[2J hello", "is not a .npy file (it starts with b'\\x1b[2J hel')"),
    "empty": (b"", "is not a .npy file (it starts with b'')"),
    "zip, damaged": (b"PK\x03\x04" + b"\0" * 40, "is not a readable .npy file"),
    "too big": (b"\x93NUMPY" + b"\0" * 5000, "of 0 MiB, more than the 0 MiB"),
}


@pytest.mark.parametrize("case", list(FILES))
def test_every_predictions_file_gets_a_verdict(tmp_path, case):
    data, expected = FILES[case]
    p = tmp_path / "predictions.npy"
    p.write_bytes(data)
    with pytest.raises(BadOutput) as got:
        read_predictions(p, 4096 if case == "too big" else 1 << 20, WANT)
    assert expected in got.value.message, got.value.message
    assert got.value.hint and "\x1b" not in got.value.message
    f = Failure("save", got.value.message, got.value.hint)  # as the summary shows it
    assert "\n" not in f.message and "\x1b" not in f.message


@pytest.mark.parametrize("what", ["folder", "fifo", "link", "sealed link", "sealed fifo",
                                  "hard link", "missing"])
def test_what_stands_where_the_predictions_go_is_named(tmp_path, what):
    out = tmp_path / "output"
    out.mkdir()
    p = out / "predictions.npy"
    target = tmp_path / "elsewhere.npy"
    target.write_bytes(_npy(np.zeros(4, np.int64)))
    if what == "folder":
        p.mkdir()
    elif what.endswith("fifo"):
        os.mkfifo(p)
    elif what.endswith("link") and what != "hard link":
        p.symlink_to(target)
    elif what == "hard link":
        os.link(target, p)
    if what.startswith("sealed") or what == "hard link":
        assert untrusted.seal([out]) == 1 and not os.path.lexists(p)
    with pytest.raises(BadOutput) as got:
        read_predictions(p, 1 << 20, WANT)
    expected = {"folder": "a folder", "fifo": "a FIFO", "link": "a symbolic link",
                "sealed link": "a symbolic link", "sealed fifo": "a FIFO",
                "hard link": "a hard link to another file"}.get(what)
    if expected:
        assert got.value.message == f"the submission wrote {expected} where predictions.npy goes"
        assert got.value.found == expected and "/app/output" in got.value.hint
    else:
        assert got.value.message == "the submission's run ended without writing predictions.npy"
    # a later run in the same folder is judged on what it left, not on history
    if what.startswith("sealed"):
        untrusted.seal([out])
        assert untrusted.sealed(p) is None


@pytest.mark.parametrize("arr", [np.arange(4), np.arange(4.0), np.array(["a", "b"]),
                                 np.array([b"a"]), np.zeros((2, 3), ">i8"), np.zeros(0),
                                 np.array(True), np.zeros((1,) * 32)])
def test_plain_arrays_pass_the_verdict_for_the_scorer_to_judge(tmp_path, arr):
    p = tmp_path / "predictions.npy"
    p.write_bytes(_npy(arr))
    got = read_predictions(p, 1 << 20, WANT)
    assert got.dtype == arr.dtype and got.shape == arr.shape


def test_a_folder_where_subkit_writes_later_is_named(tmp_path):
    (tmp_path / "labels.npy").mkdir()
    (tmp_path / "shift_samples.npz").write_bytes(b"a file: subkit replaces it")
    bad = occupied(tmp_path / "labels.npy", WANT)
    assert bad is not None and bad.message.startswith(
        "the submission wrote a folder where labels.npy goes")
    assert occupied(tmp_path / "shift_samples.npz", WANT) is None
    assert occupied(tmp_path / "none.npy", WANT) is None


def test_seal_gives_read_only_folders_back(tmp_path):
    out = tmp_path / "output"
    (out / "deep").mkdir(parents=True)
    (out / "deep" / "ln").symlink_to("/etc/passwd")
    os.chmod(out / "deep", 0o000)
    os.chmod(out, 0o500)
    assert untrusted.seal([out]) == 1
    assert os.stat(out).st_mode & 0o700 == 0o700 and os.stat(out / "deep").st_mode & 0o700
    (out / "labels.npy").write_bytes(b"subkit can write here again")


def test_other_predictions_files_get_the_verdict_too(tmp_path):
    """The shifted sets' predictions and proba.npy: a bad one is marked failed in the
    status with what was found (and a bad proba.npy removed, the report reads it)."""
    from subkit.grader.run import _check_extras

    (tmp_path / "predictions_blur-1.npy").write_bytes(_npy(np.zeros(4, "V8")))
    (tmp_path / "predictions_noise-1.npy").write_bytes(_npy(np.zeros(4, np.int64)))
    (tmp_path / "predictions_jpeg-1.npy").mkdir()
    (tmp_path / "proba.npy").write_bytes(_npy(np.zeros((4, 2), complex)))
    status = {"ok": True, "proba": {"ok": True},
              "extra": {k: {"ok": True} for k in ("blur-1", "noise-1", "jpeg-1", "../x")}}
    args = ["--proba"] + [a for k in ("blur-1", "noise-1", "jpeg-1")
                          for a in ("--extra-input", f"{k}=/app/extra_input/0/{k}.npy")]
    _check_extras(status, tmp_path, args, 1 << 20, WANT)
    extra = status["extra"]
    assert extra["noise-1"] == {"ok": True} and extra["../x"] == {"ok": True}  # never read
    assert extra["blur-1"]["ok"] is False and "raw bytes" in extra["blur-1"]["error"]
    assert extra["jpeg-1"]["error"] == \
        "the submission wrote a folder where predictions_jpeg-1.npy goes"
    assert status["proba"]["ok"] is False and "complex" in status["proba"]["error"]
    assert not (tmp_path / "proba.npy").exists()


# -- a bundle's programs ---------------------------------------------------------------------------
def test_a_scoring_program_s_scores_file_is_parsed_with_a_bound(tmp_path):
    from subkit.grader.codabench.leaderboard import read_scores
    from subkit.grader.codabench.rules import RunFailure

    (tmp_path / "scores.json").write_bytes(b'{"accuracy": ' + b"[" * 300_000 + b"]" * 300_000
                                           + b"}")
    with pytest.raises(RunFailure) as exc:
        read_scores(tmp_path)
    f = exc.value.failure
    assert f.message.startswith("Could not decode scores json properly, it contains an error.")
    assert "nested deeper than 32 levels" in f.message and "\n" not in f.message
    (tmp_path / "scores.json").write_text(json.dumps({"accuracy": 0.5, HOSTILE: 1}))
    assert read_scores(tmp_path)["accuracy"] == 0.5


def test_the_report_lists_the_submission_s_files_escaped(tmp_path):
    """The child can name files in its folder (not UTF-8, escape bytes): the report's file
    list shows them escaped, and report.html can still be written as UTF-8."""
    from subkit.report import html

    sub = tmp_path / "submission"
    sub.mkdir()
    (sub / "model.py").write_text("x = 1\n")
    os.close(os.open(os.fsencode(sub) + b"/\xff" + CLEAR.encode() + b"\n.bin",
                     os.O_CREAT | os.O_WRONLY))
    paths = sorted(f["path"] for f in html._files(sub))
    assert paths == ["\\udcff\\x1b[2J\\x1b[H\\n.bin", "model.py"]
    "".join(paths).encode("utf-8")


def test_a_scores_txt_nested_too_deep_is_codabench_s_failure(tmp_path):
    from subkit.grader.codabench.leaderboard import read_scores
    from subkit.grader.codabench.rules import RunFailure

    (tmp_path / "scores.txt").write_text("accuracy: " + "[" * 100_000)
    with pytest.raises(RunFailure) as exc:
        read_scores(tmp_path)
    assert exc.value.failure.message == "scores.txt is not valid YAML: nested too deep"
