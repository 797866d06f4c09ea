"""`subkit probe`, `probe import`, `probe diff` and the grader's clock (issue 21).

The probe's fingerprint is made three ways: by the template's own ``block()`` on a
fingerprint written here (the format, every bad input), by the probe's model.py run in a
fresh interpreter where TensorFlow and Keras cannot be imported (it must still pass), and
by score-local in the grader's versions (the end-to-end test, grader_env)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from subkit import clock, profile
from subkit.commands import probe as probemod
from subkit.ledger import Ledger, platform_time_record, score_local_record


def template_module(prof_name: str = "an2dl-2024-blood-cells"):
    """The probe's model.py for a profile, as a module (its stdlib part: block(), canonical)."""
    prof = profile.load(prof_name, workspace=False)
    ns: dict = {"__name__": "probe_under_test"}
    exec(compile(probemod.probe_text(prof), "model.py", "exec"), ns)
    return ns


def fingerprint(profile_name: str = "an2dl-2024-blood-cells", *, tf: str = "2.15.0",
                keras: str = "2.15.0", numpy_v: str = "1.26.4", python: str = "3.10.12",
                network: bool = True, extra: dict | None = None, cpu: str = "Xeon Gold",
                env_names: tuple = ("HOME", "PATH")) -> dict:
    dists = {"tensorflow": tf, "keras": keras, "numpy": numpy_v, "scikit-learn": "1.3.2",
             "scipy": "1.11.4", "absl-py": "2.1.0", **(extra or {})}
    return {
        "probe": {"format": 1, "profile": profile_name, "platform": "codabench",
                  "kind": "labels", "probe_id": "t"},
        "started_utc": "2026-12-01T10:00:00Z", "started_epoch": 1.0,
        "python": {"version": python, "executable": "/usr/bin/python3"},
        "platform": {"platform": "Linux-5.15-x86_64"}, "user": {"uid": 0, "gid": 0},
        "frameworks": {"numpy": numpy_v, "tensorflow": tf, "keras": keras, "cuda": "12.2",
                       "cudnn": "8", "gpus": ["/physical_device:GPU:0"]},
        "distributions": dists,
        "cpu": {"count": 8, "usable": 4, "model": cpu}, "memory": {"memtotal_mb": 32000},
        "gpus": {"nvidia_smi": ["Tesla T4, 15360 MiB, 535.104"]}, "cwd": "/app/program",
        "disk_free_mb": {"/app/output": 50000}, "env_names": list(env_names),
        "network": {"dns": "ok", "tcp": "ok" if network else "failed", "answers": network},
    }


def log_of(fp: dict, prefix: str = "", around: bool = True) -> str:
    text = template_module()["block"](fp)
    lines = [prefix + ln for ln in text.splitlines()]
    if around:
        lines = ["Starting ingestion", "loading model..."] + lines + ["predictions saved"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def index_ok(monkeypatch):
    """The package index as the environment module asks it, answered here: every pinned
    version exists (no network in the tests)."""
    def runner(cmd):
        return subprocess.CompletedProcess(cmd, 0, stdout="Available versions: 2.17.0, 2.15.0, "
                                           "3.4.1, 2.15.0, 1.26.4, 1.3.2, 1.11.4\n", stderr="")
    monkeypatch.setattr(probemod, "index_runner", runner)


# -- building ---------------------------------------------------------------------------------
FAKE_NO_TF = {"tensorflow.py": "raise ImportError('no tensorflow on this grader')\n",
              "keras.py": "raise ImportError('no keras on this grader')\n"}


def _run_probe(folder: Path, entry: str, class_name: str, init_args: list, X: np.ndarray,
               more: list, tmp: Path) -> tuple[subprocess.CompletedProcess, np.ndarray, float]:
    """The probe's model.py run like the grader runs it, in a fresh interpreter whose
    tensorflow and keras fail to import."""
    fake = tmp / "fake_libs"
    fake.mkdir(exist_ok=True)
    for name, text in FAKE_NO_TF.items():
        (fake / name).write_text(text)
    np.save(tmp / "X.npy", X, allow_pickle=False)
    for i, m in enumerate(more):
        np.save(tmp / f"m{i}.npy", m, allow_pickle=False)
    out = tmp / "output"
    out.mkdir(exist_ok=True)
    code = textwrap.dedent(f"""
        import os, sys, time, numpy as np
        sys.path.insert(0, {str(folder)!r}); os.chdir({str(folder)!r})
        mod = __import__({Path(entry).stem!r})
        args = [{str(folder)!r} if a == "{{submission}}" else a for a in {init_args!r}]
        m = getattr(mod, {class_name!r})(*args)
        X = np.load({str(tmp / 'X.npy')!r})
        more = [np.load({str(tmp)!r} + "/m%d.npy" % i, allow_pickle=False)
                for i in range({len(more)})]
        t = time.monotonic(); y = m.predict(X, *more); dt = time.monotonic() - t
        np.save({str(tmp / 'y.npy')!r}, np.asarray(y)); print("PREDICT_S", dt)
    """)
    res = subprocess.run([sys.executable, "-c", code, "--output", str(out)], capture_output=True,
                         text=True, timeout=120, env={"PATH": "/usr/bin:/bin",
                                                      "PYTHONPATH": str(fake)})
    assert res.returncode == 0, res.stderr[-2000:]
    predict_s = float(res.stdout.split("PREDICT_S")[-1].split()[0])
    return res, np.load(tmp / "y.npy"), predict_s


@pytest.mark.parametrize("name", ["an2dl-2024-blood-cells", "an2dl-2023-plants",
                                  "an2dl-2023-forecasting", "an2dl-2022-ts-classification"])
def test_the_probe_zip_passes_each_code_profile_without_tensorflow(cli, tmp_path, name):
    from subkit.data import synthetic
    from subkit.grader import scoring
    from subkit.workspace import init_workspace

    ws = tmp_path / "ws"
    init_workspace(ws, name)
    r = cli("probe", "--json", cwd=ws)
    assert r.code == 0, r.text
    info = json.loads(r.out)
    prof = profile.load(workspace=ws)
    zpath = Path(info["path"])
    assert zpath.parent == ws / "submissions" and zpath.name.startswith("probe-")
    with zipfile.ZipFile(zpath) as zf:
        names = sorted(zf.namelist())
        text = zf.read(prof.entry_file).decode()
        assert names == sorted([prof.entry_file, *prof.required_files])
        for fname, content in prof.required_files.items():  # CodaLab's metadata
            assert zf.read(fname).decode() == content
        (tmp_path / "sub").mkdir()
        zf.extractall(tmp_path / "sub")
    assert f"class {prof.class_name}:" in text
    import ast

    ast.parse(text, feature_version=(3, 7))  # Codabench's default image: codalab-legacy:py37
    # the imports at the top of the file: the standard library only (numpy inside predict)
    top = [ln for ln in text.splitlines() if ln.startswith(("import ", "from "))]
    assert all(ln.split()[1].split(".")[0] in sys.stdlib_module_names for ln in top), top
    rows = Ledger(ws / "submissions").records()
    assert [(r["kind"], r["tag"], r["zip_sha256"]) for r in rows] == [
        ("build", "probe", info["zip_sha256"])]

    d = synthetic.for_profile(prof, 12, seed=1)
    X = d[prof.images_key].astype(prof.input_dtype)
    more = [d[k] for k in prof.extra_inputs]
    res, y, predict_s = _run_probe(tmp_path / "sub", prof.entry_file, prof.class_name,
                                   prof.init_args, X, more, tmp_path)
    values, _ = scoring.validate(prof.task_spec(None), y, len(X))
    assert len(values) == 12
    assert predict_s < 1.0
    fp = probemod.read_fingerprint(tmp_path / "output")  # the file it wrote there
    assert fp.profile == name
    assert "no tensorflow on this grader" in fp.data["frameworks"]["tensorflow_error"]
    assert fp.data["frameworks"]["numpy"] == np.__version__
    assert fp.data["distributions"]["numpy"] == np.__version__
    assert "PYTHONPATH" in fp.data["env_names"] and str(tmp_path) not in json.dumps(
        fp.data["env_names"])  # names, never values
    assert fp.data["network"]["seconds"] < 2.5
    assert probemod.read_fingerprint(_write(tmp_path / "stdout.txt", res.stdout)).sha256 \
        == fp.sha256  # the same block on stdout


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_forecasting_probe_has_the_phase_horizon(cli, tmp_path):
    from subkit.workspace import init_workspace

    ws = tmp_path / "ws"
    init_workspace(ws, "an2dl-2023-forecasting")
    for phase, horizon in ((None, 9), ("final", 18)):
        args = ["probe", "--json"] + (["--phase", phase] if phase else [])
        info = json.loads(cli(*args, cwd=ws).out)
        with zipfile.ZipFile(info["path"]) as zf:
            text = zf.read("model.py").decode()
        ns: dict = {"__name__": "x"}
        exec(compile(text, "model.py", "exec"), ns)
        assert ns["PROBE"]["horizon"] == horizon
        time.sleep(1.01)  # the zip's name has the second in it


def test_kaggle_probe_is_a_script_and_a_notebook_with_the_reason(cli, tmp_path):
    from subkit.workspace import init_workspace

    ws = tmp_path / "ws"
    init_workspace(ws, "an2dl-2025-pirate-pain")
    with open(ws / "subkit.toml", "a") as fh:
        fh.write("\n[kaggle]\nrows = 5\n")
    r = cli("probe", cwd=ws)
    assert r.code == 0, r.text
    assert "runs no code of yours" in r.out
    py = next((ws / "submissions").glob("probe-*.py"))
    nb = json.loads(next((ws / "submissions").glob("probe-*.ipynb")).read_text())
    assert "".join(nb["cells"][0]["source"]) == py.read_text()
    assert not list((ws / "submissions").glob("*.zip"))
    run = tmp_path / "kaggle"
    run.mkdir()
    fake = tmp_path / "fake"
    fake.mkdir()
    for name, text in FAKE_NO_TF.items():
        (fake / name).write_text(text)
    res = subprocess.run([sys.executable, str(py)], cwd=run, capture_output=True, text=True,
                         timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(fake)})
    assert res.returncode == 0, res.stderr
    assert (run / "submission.csv").read_text().splitlines() == [
        "sample_index,label", "000,no_pain", "001,no_pain", "002,no_pain", "003,no_pain",
        "004,no_pain"]
    assert probemod.read_fingerprint(_write(tmp_path / "log.txt", res.stdout)).profile \
        == "an2dl-2025-pirate-pain"


# -- reading the block back -------------------------------------------------------------------
def test_a_block_is_read_through_log_prefixes_and_kaggle_json_logs(tmp_path):
    fp = fingerprint()
    prefixed = _write(tmp_path / "a.log", log_of(fp, prefix="2026-12-01 10:00:01 | "))
    got = probemod.read_fingerprint(prefixed)
    assert got.data == json.loads(json.dumps(fp)) and got.source == str(prefixed.resolve())
    kaggle = [{"stream_name": "stdout", "time": 1.0, "data": ln + "\n"}
              for ln in log_of(fp).splitlines()]
    assert probemod.read_fingerprint(_write(tmp_path / "k.log", json.dumps(kaggle))).sha256 \
        == got.sha256
    # two runs in one log: the last whole block
    two = log_of(fingerprint(tf="2.14.0")) + log_of(fp)
    assert probemod.read_fingerprint(_write(tmp_path / "two.log", two)).sha256 == got.sha256


def _cut_end(text: str) -> str:
    return "\n".join(ln for ln in text.splitlines() if "SUBKIT-PROBE-END" not in ln)


def _drop_a_line(text: str) -> str:
    return "\n".join(ln for ln in text.splitlines() if "SUBKIT-PROBE|0001|" not in ln)


def _tamper(text: str) -> str:
    return text.replace('"tensorflow":"2.15.0"', '"tensorflow":"2.17.0"', 1)


def _cut_line(text: str) -> str:
    lines = text.splitlines()
    i = next(i for i, ln in enumerate(lines) if "SUBKIT-PROBE|0002|" in ln)
    lines[i] = lines[i][:60]
    return "\n".join(lines)


BAD_LOGS = {
    "no block": (lambda t: "Starting ingestion\nTraceback: nothing here\n",
                 "no probe fingerprint"),
    "truncated": (lambda t: "\n".join(_cut_end(t).splitlines()[:-3]), "no end line"),
    "a line lost": (_drop_a_line, "line 1 is missing"),
    "a line cut": (_cut_line, "cut or damaged"),
    "tampered": (_tamper, "does not match its sha256"),
}


@pytest.mark.parametrize("case", sorted(BAD_LOGS))
def test_a_bad_log_is_refused_and_subkit_toml_is_unchanged(cli, workspace, index_ok, case):
    make, words = BAD_LOGS[case]
    log = _write(workspace / "bad.log", make(log_of(fingerprint())))
    assert '"tensorflow":"2.15.0"' in log_of(fingerprint())  # the tampering hits the block
    before = (workspace / "subkit.toml").read_bytes()
    r = cli("probe", "import", log)
    assert r.code == 1, r.text
    assert "error:" in r.err and "hint:" in r.err and words in r.err, r.err
    assert "Traceback" not in r.text
    assert (workspace / "subkit.toml").read_bytes() == before
    assert not (workspace / "submissions" / "probes").exists()


def test_a_fingerprint_of_another_profile_is_refused(cli, workspace, index_ok):
    log = _write(workspace / "plants.log", log_of(fingerprint("an2dl-2023-plants")))
    before = (workspace / "subkit.toml").read_bytes()
    r = cli("probe", "import", log)
    assert r.code == 1 and "of profile 'an2dl-2023-plants'" in r.err and "hint:" in r.err
    assert (workspace / "subkit.toml").read_bytes() == before


def test_pins_without_a_wheel_here_are_refused(cli, workspace, monkeypatch):
    def runner(cmd):  # the index as pip reports it: this tensorflow has no wheel here
        if "tensorflow" in cmd:
            return subprocess.CompletedProcess(cmd, 0, "Available versions: 2.16.1, 2.16.0\n", "")
        return subprocess.CompletedProcess(cmd, 0, "Available versions: 2.15.0, 1.26.4, "
                                                   "1.3.2, 1.11.4\n", "")
    monkeypatch.setattr(probemod, "index_runner", runner)
    log = _write(workspace / "grader.log", log_of(fingerprint(tf="2.15.1")))
    before = (workspace / "subkit.toml").read_bytes()
    r = cli("probe", "import", log)
    assert r.code == 1, r.text
    assert "cannot be installed here" in r.err and "tensorflow==2.15.1" in r.err
    assert "2.16.1" in r.err and "hint:" in r.err
    assert (workspace / "subkit.toml").read_bytes() == before
    assert not (workspace / "submissions" / "probes").exists()


def test_a_whole_block_that_is_not_a_probe_s_measurement_is_refused(cli, workspace, index_ok):
    fp = fingerprint()
    del fp["python"]  # a block written by hand, its sha256 right
    r = cli("probe", "import", _write(workspace / "odd.log", log_of(fp)))
    assert r.code == 1 and "lacks what the probe measures" in r.err and "hint:" in r.err


def test_import_outside_a_workspace_is_refused(cli, in_tmp):
    log = _write(in_tmp / "grader.log", log_of(fingerprint()))
    r = cli("probe", "import", log)
    assert r.code == 2 and "no workspace" in r.err and "hint:" in r.err
    assert not (in_tmp / "subkit.toml").exists()


def test_a_missing_file_is_refused(cli, workspace):
    r = cli("probe", "import", workspace / "nope.log")
    assert r.code == 1 and "does not exist" in r.err and "hint:" in r.err


# -- import and diff ----------------------------------------------------------------------------
def test_import_writes_pins_extras_network_and_machine(cli, workspace, index_ok):
    toml = workspace / "subkit.toml"
    toml.write_text(toml.read_text() + "\n# my own note\n[evaluation]\ntime_limit_s = 300\n")
    log = _write(workspace / "grader.log", log_of(fingerprint()))
    r = cli("probe", "import", log)
    assert r.code == 0, r.text
    assert "tensorflow 2.15.0, keras 2.15.0" in r.out
    prof = profile.load(workspace=workspace)
    assert prof.grader == {"python": "3.10", "tensorflow": "2.15.0", "keras": "2.15.0",
                           "numpy": "1.26.4",
                           "extras": {"scikit-learn": "1.3.2", "scipy": "1.11.4"}}
    assert prof.time_limit_s == 300  # the rest of subkit.toml is kept, comments too
    assert "# my own note" in toml.read_text()
    p = prof.data["probe"]
    assert p["source"] == str(log.resolve()) and p["measured"] == "2026-12-01T10:00:00Z"
    assert p["network"] == "on" and len(p["sha256"]) == 64 and p["date"][:4] == "20" + "26"
    assert p["machine"]["cpus"] == 4 and p["machine"]["gpus"] == ["Tesla T4, 15360 MiB, 535.104"]
    assert p["machine"]["python"] == "3.10.12" and p["machine"]["memory_mb"] == 32000
    if "sandbox" in profile.SCHEMA:  # the network setting of the era-profiles branch
        assert prof.data["sandbox"]["network"] == "on"
    saved = json.loads((workspace / p["file"]).read_text())
    assert saved["fingerprint"]["distributions"]["absl-py"] == "2.1.0"
    from subkit.grader import environment

    assert environment.pins(prof)["tensorflow"] == "2.15.0"  # what `subkit env` builds
    # a second import replaces the tables, it does not add a second copy
    log2 = _write(workspace / "grader2.log", log_of(fingerprint(tf="2.15.0", keras="2.15.0",
                                                                network=False)))
    assert cli("probe", "import", log2).code == 0
    text = toml.read_text()
    assert text.splitlines().count("[grader]") == 1 and text.count("# measured by") == 1
    assert profile.load(workspace=workspace).data["probe"]["network"] == "off"


def test_diff_names_what_changed_since_the_last_import(cli, workspace, index_ok):
    r = cli("probe", "diff", _write(workspace / "a.log", log_of(fingerprint())))
    assert r.code == 1 and "nothing imported yet" in r.err and "hint:" in r.err
    assert cli("probe", "import", workspace / "a.log").code == 0
    before = (workspace / "subkit.toml").read_bytes()
    same = cli("probe", "diff", workspace / "a.log")
    assert same.code == 0 and "no change" in same.out
    later = fingerprint(tf="2.16.1", network=False, extra={"pandas": "2.2.0"},
                        cpu="EPYC 7B13", env_names=("HOME", "PATH", "CUDA_VISIBLE_DEVICES"))
    r = cli("probe", "diff", _write(workspace / "b.log", log_of(later)), "--json")
    assert r.code == 0, r.text
    changes = {c["what"]: (c["before"], c["after"]) for c in json.loads(r.out)["changes"]}
    assert changes == {"tensorflow": ("2.15.0", "2.16.1"), "network": ("answers", "silent"),
                       "CPU model": ("Xeon Gold", "EPYC 7B13"),
                       "distribution pandas": (None, "2.2.0"),
                       "environment variable CUDA_VISIBLE_DEVICES": (None, "set")}
    text = cli("probe", "diff", workspace / "b.log").out
    assert "tensorflow: 2.15.0 -> 2.16.1" in text and "distribution pandas: new (2.2.0)" in text
    assert (workspace / "subkit.toml").read_bytes() == before  # diff changes nothing


# -- the grader's clock -----------------------------------------------------------------------
def _ledger_with(tmp: Path, runs: list[tuple[str, float, float | None]], n: int = 100) -> Ledger:
    led = Ledger(tmp / "submissions", fsync=False)
    for sha, local, plat in runs:
        led.append(score_local_record(zip=f"{sha}.zip", zip_sha256=sha, run_dir="r",
                                      metric="accuracy", clean_score=0.9, runtime_s=local,
                                      env="grader", ok=True, n=n))
        if plat is not None:
            led.append(platform_time_record(zip=f"{sha}.zip", zip_sha256=sha, platform_s=plat,
                                            phase=None, source="manual"))
    return led


def test_the_clock_predicts_from_the_pairs_and_warns_above_80_percent(tmp_path):
    led = _ledger_with(tmp_path, [("a" * 64, 100.0, 180.0), ("b" * 64, 50.0, 100.0),
                                  ("c" * 64, 200.0, 440.0), ("d" * 64, 70.0, None)])
    ps = clock.pairs(led.records())
    assert sorted(round(p.ratio, 2) for p in ps) == [1.8, 2.0, 2.2]
    est = clock.estimate(ps, 205.0, 1200.0, "cap", n=100)
    assert est is not None and est.seconds == pytest.approx(410.0)
    assert est.low == pytest.approx(329.5, abs=0.5) and est.high == pytest.approx(510.2, abs=0.5)
    assert est.line == ("the grader's clock: about 410 s of the 1200 s cap (34%), from 3 "
                        "submissions (grader / local 2.0x; 80% range 329-510 s)")
    assert not est.warn
    hot = clock.estimate(ps, 500.0, 1200.0, "cap", n=100)
    assert hot is not None and hot.warn and "above 80% of the cap" in hot.line
    other = clock.estimate(ps, 205.0, 1200.0, n=5000)
    assert other is not None and "another size" in other.line
    assert clock.estimate([], 10.0, 600.0) is None
    loo = clock.leave_one_out(ps)
    assert [round(pred, 1) for _, pred in loo] == [209.8, 99.5, 379.5]  # geometric medians
    wide = [clock.Pair(f"{i}" * 64, 100.0, plat, 100) for i, plat in enumerate((150, 200, 260))]
    edge = clock.estimate(wide, 350.0, 1200.0, "cap", n=100)
    assert edge is not None and not edge.warn and "range reaches past the cap" in edge.line


def test_the_cap_is_the_lower_of_the_limit_and_the_platform_cap(workspace):
    toml = workspace / "subkit.toml"
    assert clock.cap(profile.load(workspace=workspace)) == (600.0, "limit")
    toml.write_text(toml.read_text() + "\n[evaluation]\ntime_limit_s = 3600\ntime_cap_s = 1200\n")
    assert clock.cap(profile.load(workspace=workspace)) == (1200.0, "cap")


def test_score_local_line_comes_from_the_workspace_ledger(workspace):
    from types import SimpleNamespace

    prof = profile.load(workspace=workspace)
    _ledger_with(workspace, [("a" * 64, 10.0, 30.0)], n=48)
    result = SimpleNamespace(ok=True, timings={"child_s": 100.0}, n=48)
    assert clock.run_line(prof, result) == ("the grader's clock: about 300 s of the 600 s limit "
                                            "(50%), from 1 submission (grader / local 3.0x; 80% "
                                            "range 229-394 s)")
    assert clock.run_line(prof, SimpleNamespace(ok=False, timings={}, n=48)) is None


def test_history_time_records_the_platform_time(cli, workspace):
    z = workspace / "submissions" / "m.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("model.py", "x = 1\n")
    from subkit.ledger import sha256_file

    sha = sha256_file(z)
    led = Ledger(workspace / "submissions")
    led.append(score_local_record(zip="m.zip", zip_sha256=sha, run_dir="r", metric="accuracy",
                                  clean_score=0.5, runtime_s=20.0, env="grader", ok=True, n=48))
    r = cli("history", "time", z, "--platform-s", "50")
    assert r.code == 0, r.text
    assert "2.50x its local time" in r.out
    rec = [x for x in led.records() if x["kind"] == "platform-time"]
    assert [(x["zip_sha256"], x["platform_s"], x["source"]) for x in rec] == [(sha, 50.0,
                                                                              "manual")]
    bad = cli("history", "time", z, "--platform-s", "-3")
    assert bad.code == 2 and "positive" in bad.err and "hint:" in bad.err
    assert len([x for x in led.records() if x["kind"] == "platform-time"]) == 1


# -- end to end: the probe run by score-local in the grader's versions --------------------------
@pytest.mark.slow
@pytest.mark.grader_env
def test_the_probe_run_by_score_local_imports_back_to_the_grader_versions(
        cli, workspace, test_npz, grader_python, index_ok):
    r = cli("probe", "--json")
    zpath = json.loads(r.out)["path"]
    run = cli("score-local", zpath, "--data", test_npz, "--env", "grader", "--json")
    assert run.code == 0, run.text
    result = json.loads(run.out)
    assert result["ok"] and result["timings"]["predict_s"] < 1.0
    ran = result["env"]["versions"]
    r = cli("probe", "import", result["run_dir"])
    assert r.code == 0, r.text
    prof = profile.load(workspace=workspace)
    assert prof.grader["tensorflow"] == ran["tensorflow"] == "2.17.0"
    assert prof.grader["keras"] == ran["keras"] == "3.4.1"
    assert prof.grader["numpy"] == ran["numpy"] == "1.26.4"
    assert prof.grader["python"] == "3.10"
    p = prof.data["probe"]
    assert p["network"] == "off"  # subkit's sandbox cuts it, and the probe saw that
    assert p["machine"]["uid"] == 1000 and p["machine"]["python"].startswith("3.10.")
    saved = json.loads((workspace / p["file"]).read_text())["fingerprint"]
    assert saved["cwd"] == "/app/ingested_program" or saved["cwd"].endswith("submission")
    assert saved["frameworks"]["tensorflow"] == "2.17.0"


@pytest.mark.slow
def test_the_probe_run_by_a_codabench_bundle_imports_back(cli, workspace):
    """The literal bundle (tests/bundles/literal: /app/... paths, like codabench/wheat_seeds)
    runs the probe as Codabench's worker would: the block is in the ingestion's stdout log
    and the probe's file in /app/output; both import back to the versions that ran it."""
    from importlib.metadata import version

    bundle = Path(__file__).parent / "bundles" / "literal"
    zpath = json.loads(cli("probe", "--json").out)["path"]
    run = cli("score-local", zpath, "--bundle", bundle, "--json")
    assert run.code == 0, run.text
    run_dir = Path(json.loads(run.out)["run_dir"])
    log = run_dir / "logs" / "prediction_ingestion_stdout.txt"
    from_log = probemod.read_fingerprint(log)
    from_folder = probemod.read_fingerprint(run_dir)
    assert from_log.sha256 == from_folder.sha256
    assert from_log.data["cwd"] == "/app/program"  # the worker's working directory
    assert "/app/output" in from_log.data["outputs"]
    r = cli("probe", "import", log, "--no-index-check")  # this machine's own versions
    assert r.code == 0, r.text
    g = profile.load(workspace=workspace).grader
    assert (g["tensorflow"], g["keras"], g["numpy"]) == (
        version("tensorflow"), version("keras"), version("numpy"))
    assert g["python"] == "%d.%d" % sys.version_info[:2]


NUMPY_MODEL = """
import numpy as np


class Model:
    def predict(self, X):
        return np.zeros(len(X), dtype=np.int64)
"""


def test_score_local_shows_the_graders_clock_once_the_ledger_has_a_pair(cli, workspace,
                                                                         test_npz):
    from tests.conftest import make_zip

    z = make_zip(workspace / "submissions" / "numpy-only.zip", {"model.py": NUMPY_MODEL})
    first = cli("score-local", z, "--data", test_npz, "--json")
    assert first.code == 0, first.text
    assert not any("grader's clock" in w for w in json.loads(first.out)["warnings"])
    assert cli("history", "time", z, "--platform-s", "300").code == 0
    second = cli("score-local", z, "--data", test_npz)
    assert second.code == 0, second.text
    line = next(ln for ln in second.out.splitlines() if "grader's clock" in ln)
    assert "of the 600 s limit" in line and "from 1 submission" in line
    local = [r for r in Ledger(workspace / "submissions").records() if r["kind"] == "score-local"]
    ratio = 300 / local[-1]["runtime_s"]  # the pair: the zip's latest local run
    assert f"grader / local {ratio:.1f}x" in line


def _old_python() -> str | None:
    """A Python 3.7 that runs (pyenv's versions folder, else PATH; a pyenv shim of a version
    that is not selected does not run)."""
    import glob
    import shutil

    for cand in sorted(glob.glob(str(Path.home() / ".pyenv" / "versions" / "3.7.*" / "bin"
                                     / "python3.7"))) + [shutil.which("python3.7") or ""]:
        try:
            if cand and subprocess.run([cand, "-c", "pass"], capture_output=True,
                                       timeout=30).returncode == 0:
                return cand
        except OSError:
            continue
    return None


def test_the_probe_measures_a_python_37_without_numpy(tmp_path):
    """Codabench's default image is codalab/codalab-legacy:py37: the fingerprint is whole
    there too (importlib.metadata's fallback), even without numpy."""
    py = _old_python()
    if py is None:
        pytest.skip("no Python 3.7 on this machine")
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "model.py").write_text(probemod.probe_text(profile.load(workspace=False)))
    res = subprocess.run([py, "-c", "import model; model.Model()"], cwd=folder,
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(folder)})
    assert res.returncode == 0, res.stderr
    fp = probemod.read_fingerprint(_write(tmp_path / "log.txt", res.stdout))
    assert fp.data["python"]["version"].startswith("3.7.")
    assert isinstance(fp.data["distributions"], dict) and "error" not in fp.data["distributions"]
