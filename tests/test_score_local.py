"""score-local on a corpus of broken submissions: each fails the grader's way, with the
message it must produce. The models are numpy-only so that each run takes well under a
second; the Keras path is covered by test_build.py and test_template.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_zip

GOOD = """
import numpy as np
class Model:
    def __init__(self):
        self.k = 0
    def predict(self, X):
        return np.zeros(len(X), dtype=np.int64)
"""


def _model(predict_body: str = "return np.zeros(len(X), dtype=np.int64)", init_body: str = "pass",
           top: str = "") -> str:
    return (f"import numpy as np, os, sys, time\n{top}\nclass Model:\n    def __init__(self):\n"
            f"        {init_body}\n    def predict(self, X):\n        {predict_body}\n")


_OUT = "out = sys.argv[sys.argv.index('--output') + 1]"  # the output folder, sandbox or not
# name -> (model.py source, extra files, substring of the failure message, stage)
CORPUS = {
    "syntax_error": ("import numpy as np\nclass Model:\n    def predict(self, X)\n"
                     "        return X\n", {}, "syntax error", "import"),
    "import_error": (_model(top="import definitely_not_installed_pkg"), {},
                     "definitely_not_installed_pkg", "import"),
    "no_class": ("import numpy as np\nclass model:\n    pass\n", {}, "defines no class 'Model'",
                 "import"),
    "init_needs_args": ("import numpy as np\nclass Model:\n"
                        "    def __init__(self, path):\n        pass\n"
                        "    def predict(self, X):\n        return np.zeros(len(X), int)\n", {},
                        "Model() needs arguments", "init"),
    "init_raises": (_model(init_body="raise RuntimeError('boom in init')"), {}, "boom in init",
                    "init"),
    "weights_not_found": (_model(init_body="open('my_best_weights.npy', 'rb')"), {},
                          "could not find its weights", "init"),
    "predict_raises": (_model("raise ValueError('bad shapes in predict')"), {},
                       "bad shapes in predict", "predict"),
    "predict_wrong_signature": ("import numpy as np\nclass Model:\n    def predict(self, X, y):\n"
                                "        return X\n", {}, "predict(X)", "predict"),
    "sys_exit": (_model("sys.exit(3)"), {}, "sys.exit(3)", "predict"),
    "os_exit": (_model("os._exit(7)"), {}, "exit code 7", "predict"),
    # a real crash: the child is the init of its pid namespace, as a container's command is,
    # and like it ignores a signal it sends itself without a handler
    "signal": (_model("import ctypes; ctypes.string_at(0)"), {}, "SIGSEGV", "predict"),
    "one_hot": (_model("return np.eye(8)[np.zeros(len(X), int)]"), {}, "one-hot vectors",
                "scoring"),
    "probabilities": (_model("return np.full((len(X), 8), 1/8)"), {}, "class probabilities",
                      "scoring"),
    "logits": (_model("return np.random.default_rng(0).normal(size=(len(X), 8))"), {}, "logits",
               "scoring"),
    "column": (_model("return np.zeros((len(X), 1), int)"), {}, "a column", "scoring"),
    "too_few": (_model("return np.zeros(len(X) - 1, int)"), {}, "labels for", "scoring"),
    "nan": (_model("return np.full(len(X), np.nan)"), {}, "NaN", "scoring"),
    "out_of_range": (_model("return np.full(len(X), 9)"), {}, "outside 0..7", "scoring"),
    "strings": (_model("return np.array(['Basophil'] * len(X))"), {}, "strings", "scoring"),
    "fractional": (_model("return np.full(len(X), 0.5)"), {}, "fractional", "scoring"),
    "not_an_array": (_model("return {'a': 1}"), {}, "not an array", "save"),
    # predictions numpy saves but no scorer reads (issue 20): one error naming them, never
    # "internal error"
    "structured": (_model("return np.zeros(len(X), dtype=[('a', 'i4'), ('b', 'f8')])"), {},
                   "predictions are a structured array with fields a, b", "save"),
    "void": (_model("return np.zeros(len(X), 'V8')"), {},
             "predictions are raw bytes (numpy void dtype V8)", "save"),
    "complex": (_model("return np.zeros(len(X), complex)"), {},
                "predictions are complex numbers (complex128)", "save"),
    "datetime": (_model("return np.zeros(len(X), 'M8[ns]')"), {},
                 "predictions are dates and times (datetime64[ns])", "save"),
    "bytes_not_utf8": (_model("return np.array([b'\\xff\\xfe'] * len(X))"), {},
                       "predictions are byte strings that are not UTF-8 text", "save"),
    "str_raises": (_model("raise type('Odd', (Exception,), {'__str__': lambda s: 1 / 0})()"),
                   {}, "raised Odd at model.py:7: <Odd whose str() failed>", "predict"),
    "ragged": (_model("return [np.zeros(2), np.zeros(3)]"), {}, "not an array", "save"),
    "predictions_folder": (_model(f"{_OUT}; os.mkdir(out + '/predictions.npy'); return X"),
                           {}, "the submission wrote a folder where predictions.npy goes", "save"),
    "labels_folder": (_model(f"{_OUT}; os.mkdir(out + '/labels.npy'); "
                             "return np.zeros(len(X), int)"), {},
                      "the submission wrote a folder where labels.npy goes", "save"),
}


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_corpus_fails_like_the_grader(case, cli, workspace, tmp_path, test_npz):
    src, extra, expected, stage = CORPUS[case]
    z = make_zip(tmp_path / f"{case}.zip", {"model.py": src, **extra})
    r = cli("score-local", z, "--data", test_npz, "--json")
    assert r.code == 1, r.text
    res = json.loads(r.out)
    assert res["ok"] is False
    assert expected in res["failure"]["message"], res["failure"]
    assert res["failure"]["hint"]
    assert res["failure"]["stage"] == stage
    run_dir = workspace / "submissions" / "runs"
    (d,) = list(run_dir.iterdir())
    assert (d / "logs" / "stderr.txt").exists() and (d / "run.json").exists()
    assert not (d / "input_data" / "X.npy").exists()  # the input copy is removed


def test_timeout_kills_the_child(cli, workspace, tmp_path, test_npz):
    z = make_zip(tmp_path / "hang.zip", {"model.py": _model("time.sleep(600)")})
    r = cli("score-local", z, "--data", test_npz, "--time-limit", "3", "--json")
    res = json.loads(r.out)
    assert r.code == 1 and not res["ok"]
    assert "time limit of 3 s" in res["failure"]["message"]
    assert res["timings"]["child_s"] < 10


def test_terminal_summary_of_a_failure(cli, workspace, tmp_path, test_npz):
    z = make_zip(tmp_path / "bad.zip", {"model.py": _model("raise ValueError('kaput')")})
    r = cli("score-local", z, "--data", test_npz)
    assert r.code == 1
    assert "FAILED" in r.out and "ValueError: kaput" in r.out
    assert r.err.count("error:") == 1 and "hint:" in r.err


def test_good_submission_scores_exactly(cli, workspace, tmp_path, test_npz):
    z = make_zip(tmp_path / "zeros.zip", {"model.py": GOOD})
    r = cli("score-local", z, "--data", test_npz, "--json")
    assert r.code == 0, r.text
    res = json.loads(r.out)
    labels = np.load(test_npz)["labels"].ravel()
    assert res["score"] == pytest.approx(np.mean(labels == 0))
    assert res["scores"]["balanced_accuracy"] == pytest.approx(1 / 8)
    assert res["confusion_matrix"][0][0] == int((labels == 0).sum())
    assert res["per_class"][0]["recall"] == 1.0
    scores = json.loads((workspace / "submissions" / "runs").glob("*/scores.json").__next__()
                        .read_text())
    assert scores["accuracy"] == pytest.approx(res["score"])
    assert res["peak_rss_mb"] > 5
    ledger = (workspace / "submissions" / "ledger.jsonl").read_text().splitlines()
    rec = json.loads(ledger[-1])
    assert rec["kind"] == "score-local" and rec["clean_score"] == pytest.approx(res["score"])


def test_terminal_summary_of_a_success(cli, workspace, tmp_path, test_npz):
    z = make_zip(tmp_path / "zeros.zip", {"model.py": GOOD})
    r = cli("score-local", z, "--data", test_npz)
    assert r.code == 0
    first = r.out.splitlines()[0]
    assert first.startswith("accuracy 0.")
    assert "confusion matrix" in r.out and "Basophil" in r.out and "of the 600 s limit" in r.out


def test_child_gets_no_credentials_and_runs_in_the_submission(cli, workspace, tmp_path, test_npz,
                                                              monkeypatch):
    monkeypatch.setenv("KAGGLE_KEY", "sekrit")
    monkeypatch.setenv("MY_API_TOKEN", "sekrit")
    src = _model(init_body="assert os.path.exists('model.py'), os.getcwd()\n"
                           "        leaked = [k for k, v in os.environ.items() if v == 'sekrit']\n"
                           "        assert not leaked, leaked")
    z = make_zip(tmp_path / "env.zip", {"model.py": src})
    r = cli("score-local", z, "--data", test_npz, "--json")
    assert r.code == 0, r.out


def test_megabytes_of_output_are_capped(cli, workspace, tmp_path, test_npz):
    src = _model("sys.stdout.write('x' * (20 * 1024 * 1024)); sys.stdout.flush(); "
                 "print('THE END')\n"
                 "        return np.zeros(len(X), int)")
    z = make_zip(tmp_path / "loud.zip", {"model.py": src})
    r = cli("score-local", z, "--data", test_npz, "--json")
    assert r.code == 0, r.out[-2000:]
    res = json.loads(r.out)
    log = next((workspace / "submissions" / "runs").glob("*/logs/stdout.txt"))
    assert 16 * 1024 * 1024 < log.stat().st_size < 17 * 1024 * 1024
    assert log.read_bytes().rstrip().endswith(b"THE END")
    assert any("printed" in w for w in res["warnings"])


@pytest.mark.parametrize("member", ["../evil.py", "/abs/evil.py"])
def test_hostile_zips_are_refused(cli, workspace, tmp_path, test_npz, member):
    import zipfile

    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("model.py", GOOD)
        zf.writestr(member, "x = 1")
    r = cli("score-local", z, "--data", test_npz)
    assert r.code == 1
    assert "error:" in r.err and ("outside" in r.err or "absolute" in r.err)
    assert not (tmp_path / "evil.py").exists()


def test_symlink_member_is_refused(tmp_path):
    import stat
    import zipfile

    from subkit.errors import CheckFailed
    from subkit.grader.safezip import safe_extract

    z = tmp_path / "link.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo("model.py")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(CheckFailed, match="symbolic link"):
        safe_extract(z, tmp_path / "out")


def test_bad_inputs_of_score_local(cli, workspace, tmp_path, test_npz):
    z = make_zip(tmp_path / "ok.zip", {"model.py": GOOD})
    r = cli("score-local", tmp_path / "missing.zip", "--data", test_npz)
    assert r.code == 1 and "zip not found" in r.err and "hint:" in r.err
    r = cli("score-local", z, "--data", tmp_path / "nope.npz")
    assert r.code == 1 and "data not found" in r.err
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    r = cli("score-local", z, "--data", bad)
    assert r.code == 1 and "not an .npz" in r.err
    np.savez(tmp_path / "shape.npz", images=np.zeros((3, 32, 32, 3), np.uint8), labels=np.zeros(3))
    r = cli("score-local", z, "--data", tmp_path / "shape.npz")
    assert r.code == 1 and "(32, 32, 3)" in r.err
    r = cli("score-local", z)  # no local_test in subkit.toml
    assert r.code == 2 and "no test data" in r.err
    assert (not (workspace / "submissions" / "runs").exists()
            or not any((workspace / "submissions" / "runs").iterdir()))


def test_newest_zip_and_workspace_test_set_are_defaults(cli, workspace, tmp_path, test_npz):
    import shutil

    shutil.copy(test_npz, workspace / "local_test.npz")
    toml = workspace / "subkit.toml"
    toml.write_text(toml.read_text().replace('# local_test = "data/local_test.npz"',
                                             'local_test = "local_test.npz"'))
    make_zip(workspace / "submissions" / "a.zip", {"model.py": GOOD})
    r = cli("score-local", "--json")
    assert r.code == 0, r.text
    assert json.loads(r.out)["zip"].endswith("a.zip")


def test_predict_writes_a_csv_and_refuses_to_overwrite(cli, workspace, tmp_path, test_npz):
    z = make_zip(tmp_path / "zeros.zip", {"model.py": GOOD})
    out = tmp_path / "pred.csv"
    r = cli("predict", z, "--data", test_npz, "--out", out)
    assert r.code == 0, r.text
    lines = out.read_text().splitlines()
    assert lines[0] == "id,label" and lines[1] == "0,0" and len(lines) == 49
    r = cli("predict", z, "--data", test_npz, "--out", out)
    assert r.code == 1 and "refusing to overwrite" in r.err
    z2 = make_zip(tmp_path / "bad.zip", {"model.py": _model("raise ValueError('nope')")})
    r = cli("predict", z2, "--data", test_npz, "--out", tmp_path / "p2.csv")
    assert r.code == 1 and "nope" in r.err and not (tmp_path / "p2.csv").exists()
