"""Codabench bundles. `score-local ZIP --bundle BUNDLE` runs a competition's own
programs the way the compute worker does; `bundle export` writes a bundle whose grader is
subkit's own code.

Submissions here are numpy-only model.py files (fast); one test trains nothing but builds
a real tiny Keras model for the export round trip. The bundles are under tests/bundles/
(see its README)."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from subkit import profile
from subkit.errors import InputError, SubkitError
from subkit.grader import sandbox
from subkit.grader.codabench import rules
from subkit.grader.codabench.bundle import Bundle
from subkit.grader.codabench.export import export_bundle
from subkit.grader.codabench.image import image_note
from subkit.grader.codabench.leaderboard import leaderboard_columns
from subkit.grader.codabench.runner import score_with_bundle

BUNDLES = Path(__file__).parent / "bundles"
GRADER = Path(rules.__file__).parents[1]
HAS_BWRAP = sandbox.bwrap_available()[0]
APP_ON_HOST = Path("/app").exists()  # the sandbox must never create /app on the host
needs_bwrap = pytest.mark.skipif(
    not HAS_BWRAP and not os.environ.get("CI"),
    reason="bubblewrap is absent or refused here: literal /app/... bundles need it "
           "(in CI it must be there: .ci/run installs it, and this test then runs)")

ROUND_MODEL = """
import numpy as np

class Model:
    def __init__(self):
        pass

    def predict(self, X):
        return np.rint(np.asarray(X)[:, 0]).astype(int)
"""
FAILING_MODEL = """
class Model:
    def __init__(self):
        pass

    def predict(self, X):
        raise ValueError("boom in predict")
"""
SIDE_COMMAND = "command: python3 $program/side.py $output\n"
SLOW_MODEL = """
import time

class Model:
    def predict(self, X):
        time.sleep(60)
"""
# a numpy-only model for the blood-cell profile: deterministic labels from pixel sums
PIXEL_MODEL = """
import numpy as np

class Model:
    def __init__(self):
        pass

    def predict(self, X):
        X = np.asarray(X)
        return (X.reshape(len(X), -1).astype(np.int64).sum(axis=1) // 7) % 8
"""


pytestmark = pytest.mark.usefixtures("in_tmp")  # every test outside any workspace


@pytest.fixture
def prof():
    return profile.load("an2dl-2024-blood-cells", workspace=False)


def make_zip(path: Path, files: dict[str, str | bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, textwrap.dedent(text) if isinstance(text, str) else text)
    return path


def zip_folder(folder: Path, out: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, prefix + str(p.relative_to(folder)))
    return out


def assert_error(code, err, *needles):
    assert code != 0
    lines = err.strip().splitlines()
    assert any(ln.startswith("error: ") for ln in lines), err
    assert any(ln.startswith("hint: ") for ln in lines), err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, err


def read_meta(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


# -- the worker's rules ---------------------------------------------------------------------------
def test_placeholders_are_replaced_in_the_workers_order():
    r = rules.replace_placeholders
    # the worker's own legacy-conversion cases
    assert r("python $program/score.py $input $output", "program", True) == \
        "python /app/program/score.py /app/input /app/output"
    assert r("python $ingestion_program/ingestion.py $input $output $ingestion_program "
             "$submission_program", "ingestion", False) == \
        ("python /app/program/ingestion.py /app/input_data /app/output /app/program "
         "/app/ingested_program")
    assert r("x $hidden $shared $tmp", "program", True) == \
        "x /app/input/ref /app/shared /app/output"
    assert r("x $predictions", "program", True) == "x /app/input/res"
    assert r("x $predictions", "ingestion", False) == "x /app/output"
    # ingestion during scoring: $program names a folder the worker does not mount
    assert r("python $program/s.py", "program", True, True) == "python /app/ingestion_program/s.py"
    assert r("python $program/s.py", "program", False, True) == "python /app/program/s.py"
    # plain string replacement, $input first: the worker turns $input_data into this
    assert r("$input_data", "ingestion", False) == "/app/input_data_data"


def test_commands_split_like_a_shell_without_a_shell():
    argv = rules.split_command('python3 "/app/program/my score.py" a;b $HOME \'q w\' > out', "t")
    assert argv == ["python3", "/app/program/my score.py", "a;b", "$HOME", "q w", ">", "out"]
    with pytest.raises(InputError, match="cannot be split"):
        rules.split_command('python3 "unbalanced', "the scoring program's command")


def test_container_mounts_follow_the_worker(tmp_path):
    r = tmp_path
    sub = rules.container_mounts("program", False, False, r, True)
    assert sub == {"/app/program": r / "program", "/app/output": r / "output",
                   "/app/input_data": r / "input_data"}
    ing = rules.container_mounts("ingestion", False, False, r, True)
    assert ing["/app/program"] == r / "ingestion_program"
    assert ing["/app/ingested_program"] == r / "program"
    assert "/app/input" not in ing and "/app/shared" not in ing
    score = rules.container_mounts("program", True, False, r, False)
    assert score == {"/app/program": r / "program", "/app/output": r / "output",
                     "/app/shared": r / "shared", "/app/input": r / "input"}
    iods = rules.container_mounts("ingestion", True, True, r, True)
    assert iods["/app/ingested_program"] == r / "input" / "res"
    assert iods["/app/input_data"] == r / "input_data" and iods["/app/shared"] == r / "shared"


def test_app_paths_map_to_the_run_folder_without_a_sandbox(tmp_path):
    m = rules.container_mounts("program", True, False, tmp_path, True)
    assert rules.map_app_paths("/app/input/ref/y.txt", m) == f"{tmp_path}/input/ref/y.txt"
    assert rules.map_app_paths("/app/input_data/", m) == f"{tmp_path}/input_data/"
    assert rules.map_app_paths("--out=/app/output", m) == f"--out={tmp_path}/output"
    assert rules.map_app_paths("/app/inputs", m) == "/app/inputs"  # not a worker path
    # not mounted in this container: left alone, and fails as on the worker
    assert rules.map_app_paths("/app/ingestion_program/x.py", m) == "/app/ingestion_program/x.py"


def test_leaderboard_keeps_column_keys_and_computes_columns(tmp_path):
    b = Bundle(source=tmp_path, root=tmp_path, extracted=False, data={"leaderboards": [{
        "title": "R", "columns": [
            {"key": "a", "index": 0}, {"key": "b", "index": 1, "sorting": "asc", "precision": 3},
            {"key": "s", "index": 2, "computation": "sum", "computation_indexes": "0,1"},
            {"key": "mx", "index": 3, "computation": "max", "computation_indexes": [0, 1]},
            {"key": "c", "index": 4}]}]})
    cols, scores, warns = leaderboard_columns(b, {"a": 0.5, "b": "0.25", "extra": 1})
    assert scores == {"a": 0.5, "b": 0.25, "s": 0.75, "mx": 0.5, "c": None}
    assert [c["key"] for c in cols] == ["a", "b", "s", "mx", "c"]
    assert cols[1]["sorting"] == "asc" and cols[1]["precision"] == 3
    assert any("extra" in w for w in warns) and any("'c'" in w for w in warns)


def test_worker_metadata_is_written_once(tmp_path):
    status = {"exitCode": None, "elapsedTime": 1.5, "ingestionExitCode": 0,
              "ingestionElapsedTime": 1.5}
    rules.write_worker_metadata(tmp_path, status)
    assert read_meta(tmp_path / "metadata") == status
    with pytest.raises(rules.RunFailure) as exc:
        rules.write_worker_metadata(tmp_path, status)
    assert "already contains a metadata file" in exc.value.failure.message


# -- running bundles ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["none", "auto"])
def test_placeholder_bundle_runs_like_the_worker(tmp_path, prof, mode):
    z = make_zip(tmp_path / "good.zip", {"model.py": ROUND_MODEL})
    res = score_with_bundle(z, BUNDLES / "placeholder", prof, sandbox_mode=mode)
    assert res.ok, res.failure
    assert res.sandbox == ("bubblewrap" if mode == "auto" and HAS_BWRAP else "none")
    assert res.phase["name"] == "Development" and res.task["index"] == 0
    assert res.time_limit_s == 120
    assert res.scores == {"accuracy": 0.8, "recall_0": 1.0, "mean_score": pytest.approx(0.9)}
    assert res.raw_scores["not_a_column"] == 3  # read from scores.txt, not kept
    assert any("not_a_column" in w for w in res.warnings)
    assert res.detailed_results.name == "detailed_results.html" and res.detailed_results_enabled
    # the worker's eight log files
    assert sorted(res.logs) == sorted(rules.LOG_NAMES)
    assert all(Path(p).exists() for p in res.logs.values())
    logs = res.run_dir / "logs"
    assert "10 predictions" in (logs / "prediction_ingestion_stdout.txt").read_text()
    assert "scored 0.8" in (logs / "scoring_stdout.txt").read_text()
    # the worker's paths reached the programs: real folders, or /app/... in the sandbox
    line = (logs / "prediction_ingestion_stdout.txt").read_text().splitlines()[0]
    if res.sandbox == "bubblewrap":
        assert line == ("ingestion: input=/app/input_data output=/app/output "
                        "program=/app/program submission=/app/ingested_program")
    else:
        assert f"input={res.run_dir}/prediction/input_data" in line
    # a submission without metadata is copied into the prediction output
    pred_out = res.run_dir / "prediction" / "output"
    assert (pred_out / "model.py").exists() and (pred_out / "prediction.txt").exists()
    meta = read_meta(pred_out / "metadata")
    assert meta["exitCode"] is None and meta["ingestionExitCode"] == 0
    assert meta["elapsedTime"] == meta["ingestionElapsedTime"] > 0
    assert "prediction metadata:" in (logs / "scoring_stdout.txt").read_text()  # input/res/metadata
    smeta = read_meta(res.run_dir / "scoring" / "output" / "metadata")
    assert smeta["exitCode"] == 0 and smeta["ingestionExitCode"] is None
    run = json.loads((res.run_dir / "run.json").read_text())
    assert run["ok"] and run["scores"]["accuracy"] == 0.8
    ing = [c for c in run["containers"] if c["kind"] == "ingestion"][0]
    assert ing["worker_command"] == ("python /app/program/ingestion.py /app/input_data /app/output "
                                     "/app/program /app/ingested_program")
    assert Path("/app").exists() == APP_ON_HOST  # the sandbox never creates /app on the host


def test_phases_and_tasks_are_chosen_by_name_or_index(tmp_path, prof):
    z = make_zip(tmp_path / "good.zip", {"model.py": ROUND_MODEL})
    for kw in ({"phase": "final"}, {"task": 1}, {"phase": "1"}):
        res = score_with_bundle(z, BUNDLES / "placeholder", prof, **kw)
        assert res.ok and res.phase["name"] == "Final" and res.task["index"] == 1, kw
        assert res.scores["accuracy"] == pytest.approx(0.6)


def test_a_zipped_bundle_runs_the_same(tmp_path, prof):
    z = make_zip(tmp_path / "good.zip", {"model.py": ROUND_MODEL})
    bz = zip_folder(BUNDLES / "placeholder", tmp_path / "bundle.zip")
    res = score_with_bundle(z, bz, prof)
    assert res.ok and res.scores["accuracy"] == 0.8
    assert not (res.run_dir / "bundle").exists()  # the extracted bundle is cleaned up


def test_bundle_parts_given_as_zips(tmp_path, prof):
    """Codabench's own competition dumps store every program and data set as a zip."""
    src = BUNDLES / "placeholder"
    b = tmp_path / "dump"
    b.mkdir()
    comp = yaml.safe_load((src / "competition.yaml").read_text())
    for t in comp["tasks"]:
        for part in ("input_data", "reference_data", "scoring_program", "ingestion_program"):
            name = t[part].replace("/", "_") + ".zip"
            if not (b / name).exists():
                zip_folder(src / t[part], b / name)
            t[part] = name
    (b / "competition.yaml").write_text(yaml.safe_dump(comp))
    z = make_zip(tmp_path / "good.zip", {"model.py": ROUND_MODEL})
    res = score_with_bundle(z, zip_folder(b, tmp_path / "dump.zip"), prof)
    assert res.ok, res.failure
    assert res.scores["accuracy"] == 0.8
    assert not (res.run_dir / "parts").exists()


def test_results_only_task_scores_the_submission_itself(tmp_path, prof):
    """No ingestion program (wheat_seeds' results bundle): the zip is copied to the output."""
    b = shutil.copytree(BUNDLES / "placeholder", tmp_path / "b")
    comp = yaml.safe_load((b / "competition.yaml").read_text())
    for t in comp["tasks"]:
        del t["ingestion_program"]
    (b / "competition.yaml").write_text(yaml.safe_dump(comp))
    z = make_zip(tmp_path / "results.zip", {"prediction.txt": "0\n1\n2\n0\n1\n2\n0\n1\n2\n0\n"})
    res = score_with_bundle(z, b, prof)
    assert res.ok, res.failure
    assert res.scores["accuracy"] == 0.8 and res.containers[0]["run"] == "scoring"
    meta = read_meta(res.run_dir / "prediction" / "output" / "metadata")
    assert meta == {"exitCode": None, "elapsedTime": None, "ingestionExitCode": None,
                    "ingestionElapsedTime": None}


def test_a_submission_command_that_cannot_be_split_is_refused_up_front(tmp_path, prof):
    z = make_zip(tmp_path / "q.zip", {"model.py": ROUND_MODEL,
                                      "metadata.yaml": "command: python3 'unbalanced\n"})
    with pytest.raises(InputError, match="submission's command"):
        score_with_bundle(z, BUNDLES / "placeholder", prof)
    assert not list((tmp_path / "submissions" / "runs").iterdir())


@needs_bwrap
def test_literal_path_bundle_runs_in_the_sandbox(tmp_path, prof):
    z = make_zip(tmp_path / "good.zip", {"model.py": ROUND_MODEL})
    res = score_with_bundle(z, BUNDLES / "literal", prof)
    assert res.sandbox == "bubblewrap", res.sandbox_note
    assert res.ok, res.failure
    assert res.scores["accuracy"] == 0.75
    assert 0 <= res.scores["duration"] < 30
    assert res.raw_scores["cwd_is_program"] is True  # working directory /app/program
    assert res.time_limit_s == rules.DEFAULT_TIME_LIMIT  # the phase gives none
    out = res.run_dir / "prediction" / "output"
    assert (out / "metadata.json").exists() and (out / "metadata").exists()
    log = res.run_dir / "logs" / "prediction_ingestion_stdout.txt"
    assert "cwd /app/program" in log.read_text()


def test_literal_path_bundle_is_refused_without_the_sandbox(tmp_path, prof):
    z = make_zip(tmp_path / "good.zip", {"model.py": ROUND_MODEL})
    with pytest.raises(SubkitError) as exc:
        score_with_bundle(z, BUNDLES / "literal", prof, sandbox_mode="none")
    msg = exc.value.message
    assert "literal /app/... paths" in msg and "ingestion.py:" in msg
    assert "placeholder-style bundles" in msg and "bubblewrap" in exc.value.hint
    assert not list((tmp_path / "submissions" / "runs").glob("*"))  # nothing half-written


def test_a_machine_that_refuses_the_sandbox_runs_placeholder_bundles_only(tmp_path, prof,
                                                                          monkeypatch, cli):
    why = "this machine refuses the sandbox (bwrap: setting up uid map: Permission denied)"
    monkeypatch.setattr(sandbox, "_BWRAP_STATE", (False, why))
    z = make_zip(tmp_path / "good.zip", {"model.py": ROUND_MODEL})
    code, out, err = cli("score-local", z, "--bundle", BUNDLES / "placeholder",
                          "--profile", "an2dl-2024-blood-cells")
    assert code == 0 and "0.8000" in out
    assert f"NOT ISOLATED ({why})" in out and "placeholder-style bundles only" in out
    assert "install bubblewrap" in out
    code, out, err = cli("score-local", z, "--bundle", BUNDLES / "literal",
                          "--profile", "an2dl-2024-blood-cells")
    assert_error(code, err, "literal /app/... paths", "Permission denied",
                 "only placeholder-style bundles", "install bubblewrap")
    with pytest.raises(SubkitError, match="not available"):
        score_with_bundle(z, BUNDLES / "placeholder", prof, sandbox_mode="bwrap")


@pytest.mark.parametrize("mode", ["none", "auto"])
def test_ingestion_during_scoring(tmp_path, prof, mode):
    z = make_zip(tmp_path / "good.zip", {"model.py": ROUND_MODEL})
    res = score_with_bundle(z, BUNDLES / "iods", prof, sandbox_mode=mode)
    assert res.ok, res.failure
    assert res.task["ingestion_only_during_scoring"] and res.scores == {"accuracy": 0.75}
    runs = [(c["run"], c["kind"]) for c in res.containers]
    assert runs == [("scoring", "program"), ("scoring", "ingestion")]  # no prediction program
    logs = res.run_dir / "logs"
    assert "ingestion wrote 4 predictions" in (logs / "scoring_ingestion_stdout.txt").read_text()
    assert (logs / "prediction_ingestion_stdout.txt").read_text() == ""
    # the prediction run copied the submission: it is /app/ingested_program of the ingestion
    assert (res.run_dir / "scoring" / "input" / "res" / "model.py").exists()
    meta = read_meta(res.run_dir / "scoring" / "output" / "metadata")
    assert meta["exitCode"] == 0 and meta["ingestionExitCode"] == 0


def test_program_placeholder_in_ingestion_during_scoring_fails_as_on_codabench(tmp_path, prof):
    b = shutil.copytree(BUNDLES / "iods", tmp_path / "b")
    (b / "scoring_program" / "metadata.yaml").write_text(
        "command: python3 $program/score.py $hidden $shared $output\n")
    z = make_zip(tmp_path / "good.zip", {"model.py": ROUND_MODEL})
    res = score_with_bundle(z, b, prof, time_limit=20)
    assert not res.ok
    assert any("/app/ingestion_program" in w for w in res.warnings)


def test_failing_submission_fails_at_scoring_with_the_ingestion_log(tmp_path, prof, cli):
    z = make_zip(tmp_path / "bad.zip", {"model.py": FAILING_MODEL})
    res = score_with_bundle(z, BUNDLES / "placeholder", prof)
    assert not res.ok
    # the scoring program crashed on the missing predictions: the worker's exit-code gate
    # fires before it looks for scores (compute_worker.py, Run.start)
    assert res.failure.message.startswith("Child task failed or non-zero return code (the "
                                          "scoring program exited with 1")
    assert "ingestion program exited with 1" in res.failure.hint
    assert "boom in predict" in res.failure.tail
    assert read_meta(res.run_dir / "prediction" / "output" / "metadata")["ingestionExitCode"] == 1
    # the CLI: FAILED, one error line and a hint, exit 1, no traceback of ours
    code, out, err = cli("score-local", z, "--bundle", BUNDLES / "placeholder",
                          "--profile", "an2dl-2024-blood-cells")
    assert code == 1 and "FAILED" in out and "boom in predict" in out
    assert_error(code, err, "Child task failed or non-zero return code",
                 "prediction_ingestion_stderr")


def test_submission_command_runs_concurrently_with_ingestion(tmp_path, prof):
    side = """
        import os, sys, time
        t0 = time.time()
        time.sleep(1.5)
        with open(os.path.join(sys.argv[1], "side_window.txt"), "w") as fh:
            fh.write("%r %r" % (t0, time.time()))
    """
    z = make_zip(tmp_path / "cmd.zip", {"model.py": ROUND_MODEL, "side.py": side,
                                        "metadata.yaml": SIDE_COMMAND})
    res = score_with_bundle(z, BUNDLES / "placeholder", prof)
    assert res.ok, res.failure
    out = res.run_dir / "prediction" / "output"
    s0, s1 = map(float, (out / "side_window.txt").read_text().split())
    i0, i1 = map(float, (out / "ingestion_window.txt").read_text().split())
    assert s0 < i1 and i0 < s1, "the two programs did not overlap"
    assert not (out / "model.py").exists()  # a submission with metadata is not copied
    meta = read_meta(out / "metadata")
    assert meta["exitCode"] == 0 and meta["elapsedTime"] >= 1.5
    assert [c["kind"] for c in res.containers][:2] == ["program", "ingestion"]


def test_a_program_that_writes_metadata_fails_the_submission(tmp_path, prof):
    side = """
        import os, sys
        open(os.path.join(sys.argv[1], "metadata"), "w").write("mine")
    """
    z = make_zip(tmp_path / "meta.zip", {"model.py": ROUND_MODEL, "side.py": side,
                                         "metadata.yaml": SIDE_COMMAND})
    res = score_with_bundle(z, BUNDLES / "placeholder", prof)
    assert not res.ok
    assert res.failure.message == rules.METADATA_EXISTS
    assert not any(c["run"] == "scoring" for c in res.containers)  # scoring never started


def test_time_limit_kills_the_run(tmp_path, prof):
    z = make_zip(tmp_path / "slow.zip", {"model.py": SLOW_MODEL})
    res = score_with_bundle(z, BUNDLES / "placeholder", prof, time_limit=3)
    assert not res.ok and res.failure.stage == "prediction"
    assert res.failure.message.startswith("Execution Time Limit exceeded. Limit was 3 seconds")
    assert res.elapsed_s < 30


def test_cli_summary_and_json(tmp_path, cli):
    z = make_zip(tmp_path / "good.zip", {"model.py": ROUND_MODEL})
    code, out, err = cli("score-local", z, "--bundle", BUNDLES / "placeholder",
                          "--profile", "an2dl-2024-blood-cells")
    assert code == 0, err
    assert "PASSED" in out and "Accuracy" in out and "0.8000" in out and "(avg)" in out
    assert "detailed_results.html" in out and "logs:" in out
    code, out, err = cli("score-local", z, "--bundle", BUNDLES / "placeholder",
                          "--phase", "Final", "--json", "--profile", "an2dl-2024-blood-cells")
    d = json.loads(out)
    assert code == 0 and d["ok"] and d["phase"]["name"] == "Final" and d["score"] == 0.6
    assert d["metric"] == "accuracy" and d["detailed_results"].endswith("detailed_results.html")
    from subkit.ledger import Ledger

    rows = [r for r in Ledger(tmp_path / "submissions").records() if r.get("bundle")]
    assert [r["phase"] for r in rows] == ["Development", "Final"]
    assert rows[-1]["kind"] == "score-local" and rows[-1]["clean_score"] == 0.6


# -- bad input ------------------------------------------------------------------------------------
def _nested_zip(tmp_path):
    return zip_folder(BUNDLES / "placeholder", tmp_path / "nested.zip", prefix="my_bundle/")


@pytest.mark.parametrize("bundle, extra, needles", [
    (BUNDLES / "broken" / "no_yaml", [], ["no competition.yaml at its root"]),
    (_nested_zip, [], ["no competition.yaml", "my_bundle/"]),
    (BUNDLES / "broken" / "v1", [], ["v1 (CodaLab) bundle", "version: 2"]),
    (BUNDLES / "broken" / "no_scoring", [], ["has no scoring program"]),
    (BUNDLES / "broken" / "no_command", [], ["no command:"]),
    (BUNDLES / "placeholder", ["--phase", "Nope"], ["no phase 'Nope'", "'Development'", "'Final'"]),
    (BUNDLES / "placeholder", ["--task", "7"], ["no task 7", "0 'Development Task'",
                                                "1 'Final Task'"]),
    (BUNDLES / "placeholder", ["--phase", "Development", "--task", "1"],
     ["phase 'Development' has no task 1", "0 'Development Task'"]),
    ("does/not/exist", [], ["bundle not found"]),
], ids=["no-yaml", "nested-zip", "v1", "no-scoring", "no-command", "phase", "task",
        "task-of-phase", "missing"])
def test_bad_bundles_say_what_is_wrong(tmp_path, cli, bundle, extra, needles):
    if callable(bundle):
        bundle = bundle(tmp_path)
    z = make_zip(tmp_path / "good.zip", {"model.py": ROUND_MODEL})
    code, out, err = cli("score-local", z, "--bundle", bundle, *extra,
                          "--profile", "an2dl-2024-blood-cells")
    assert_error(code, err, *needles)
    runs = tmp_path / "submissions" / "runs"
    assert not runs.exists() or not list(runs.iterdir())  # no half-made run folder


def test_bundle_options_misuse(tmp_path, cli):
    z = make_zip(tmp_path / "good.zip", {"model.py": ROUND_MODEL})
    code, _, err = cli("score-local", z, "--phase", "x",
                        "--profile", "an2dl-2024-blood-cells")
    assert_error(code, err, "--bundle")
    code, _, err = cli("score-local", z, "--bundle", BUNDLES / "placeholder",
                        "--data", "x.npz", "--profile", "an2dl-2024-blood-cells")
    assert_error(code, err, "brings its own test data")


# -- export ---------------------------------------------------------------------------------------
def _reference(tmp_path, n=32, seed=3) -> Path:
    rng = np.random.default_rng(seed)
    path = tmp_path / "local_test.npz"
    np.savez(path, images=rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8),
             labels=rng.integers(0, 8, (n, 1)))
    return path


def test_export_writes_a_v2_bundle_of_subkits_grader(tmp_path, cli, prof):
    ref = _reference(tmp_path)
    code, out, err = cli("bundle", "export", "--profile", "an2dl-2024-blood-cells",
                          "--reference", ref, "--out", tmp_path / "b.zip")
    assert code == 0, err
    assert "wrote" in out and "accuracy" in out
    with zipfile.ZipFile(tmp_path / "b.zip") as zf:
        names = set(zf.namelist())
        comp = yaml.safe_load(zf.read("competition.yaml"))
        assert zf.read("ingestion_program/ingestion.py") == (GRADER / "ingestion.py").read_bytes()
        assert zf.read("scoring_program/scoring.py") == (GRADER / "scoring.py").read_bytes()
        from subkit.workspace import template_text
        assert zf.read("starting_kit/model.py").decode() == template_text("model.py")
        X = np.load(zf.open("input_data/X.npy"))
        y = np.load(zf.open("reference_data/y.npy"))
    assert {"logo.png", "pages/terms.md", "ingestion_program/metadata.yaml",
            "scoring_program/metadata.yaml", "scoring_program/score.py"} <= names
    assert X.shape == (32, 96, 96, 3) and X.dtype == np.uint8 and y.shape == (32,)
    assert comp["version"] == 2 and comp["enable_detailed_results"] is True
    assert [p["name"] for p in comp["phases"]] == ["Development", "Final"]
    assert all(p["execution_time_limit"] == prof.time_limit_s for p in comp["phases"])
    assert comp["phases"][0]["end"] == comp["phases"][1]["start"]  # sequential, as Codabench wants
    cols = comp["leaderboards"][0]["columns"]
    assert cols[0]["key"] == prof.metric and cols[0]["sorting"] == "desc"
    # refuses to overwrite; bad reference data says so
    code, _, err = cli("bundle", "export", "--profile", "an2dl-2024-blood-cells",
                        "--reference", ref, "--out", tmp_path / "b.zip")
    assert_error(code, err, "refusing to overwrite")
    np.savez(tmp_path / "unlabelled.npz", images=X)
    code, _, err = cli("bundle", "export", "--profile", "an2dl-2024-blood-cells",
                        "--reference", tmp_path / "unlabelled.npz", "--out", tmp_path / "c.zip")
    assert_error(code, err, "labels")
    assert not (tmp_path / "c.zip").exists()


@pytest.mark.parametrize("mode", ["none", "auto"])
def test_exported_bundle_scores_like_plain_score_local_numpy_model(tmp_path, prof, mode):
    from subkit.commands.score_local import score_zip as score_local

    ref = _reference(tmp_path, n=40, seed=5)
    b = tmp_path / "b.zip"
    export_bundle(prof, ref, b)
    z = make_zip(tmp_path / "px.zip", {"model.py": PIXEL_MODEL})
    plain = score_local(z, ref, prof, record=False)
    res = score_with_bundle(z, b, prof, sandbox_mode=mode)
    assert plain.ok and res.ok, (plain.failure, res.failure)
    for k in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert res.scores[k] == plain.scores[k], k
    html = res.detailed_results.read_text()
    assert "Confusion matrix" in html and "Basophil" in html
    # a failing submission fails both ways, with the submission's own error in the log
    bad = make_zip(tmp_path / "bad.zip", {"model.py": FAILING_MODEL})
    assert not score_local(bad, ref, prof, record=False).ok
    res = score_with_bundle(bad, b, prof, sandbox_mode=mode)
    assert not res.ok and "boom in predict" in res.failure.tail
    assert "the submission failed during predict: ValueError" in res.failure.tail


@pytest.mark.slow
def test_exported_bundle_scores_like_plain_score_local_keras(tmp_path, cli, prof):
    """The round trip with a real (tiny, untrained) Keras model and the template model.py."""
    import keras

    from subkit.workspace import template_text

    ref = _reference(tmp_path, n=32, seed=7)
    inp = keras.Input((96, 96, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(x)
    out = keras.layers.Dense(8, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inp, out).save(tmp_path / "weights.keras")
    z = make_zip(tmp_path / "k.zip", {"model.py": template_text("model.py"),
                                      "weights.keras": (tmp_path / "weights.keras").read_bytes()})
    code, _, err = cli("bundle", "export", "--reference", ref, "--out", tmp_path / "b.zip",
                        "--profile", "an2dl-2024-blood-cells")
    assert code == 0, err
    code, out, err = cli("score-local", z, "--data", ref, "--json",
                          "--profile", "an2dl-2024-blood-cells")
    plain = json.loads(out)
    code2, out2, err2 = cli("score-local", z, "--bundle", tmp_path / "b.zip", "--json",
                             "--profile", "an2dl-2024-blood-cells")
    bundled = json.loads(out2)
    assert code == 0 and code2 == 0, (err, err2)
    for k in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert bundled["scores"][k] == plain["scores"][k], k
    assert bundled["score"] == plain["score"]


# -- as Codabench's compute worker does it: exit codes, averages, limits, versions, image ---
def _with_scoring(tmp_path, body: str) -> Path:
    """The placeholder bundle with its scoring program replaced by ``body``."""
    b = shutil.copytree(BUNDLES / "placeholder", tmp_path / "b")
    (b / "scoring_program" / "score.py").write_text(textwrap.dedent(body))
    return b


WRITE_SCORES = """
    import json, os, sys
    out = sys.argv[2]
    with open(os.path.join(out, "scores.json"), "w") as fh:
        json.dump({"accuracy": 0.75, "recall_0": 0.5}, fh)
"""


def test_scores_then_exit_1_fails_as_the_current_worker_does(tmp_path, prof, cli):
    # compute_worker.py, Run.start (v1.24): a non-zero exit of the scoring program fails the
    # submission, "Child task failed or non-zero return code", whatever scores it wrote
    b = _with_scoring(tmp_path, WRITE_SCORES + "sys.exit(1)\n")
    z = make_zip(tmp_path / "good.zip", {"model.py": ROUND_MODEL})
    res = score_with_bundle(z, b, prof)
    assert not res.ok and res.failure.stage == "scoring"
    assert res.failure.message.startswith("Child task failed or non-zero return code (the "
                                          "scoring program exited with 1")
    assert "scoring_stderr.txt" in res.failure.hint and "TTA" not in res.failure.hint
    assert res.columns == []  # nothing reaches the leaderboard
    code, out, err = cli("score-local", z, "--bundle", b,
                          "--profile", "an2dl-2024-blood-cells")
    assert code == 1 and "FAILED" in out
    assert_error(code, err, "Child task failed or non-zero return code")
    # the same program exiting 0 passes, with the same scores
    ok = _with_scoring(tmp_path / "ok", WRITE_SCORES)
    res = score_with_bundle(z, ok, prof)
    assert res.ok and res.scores["accuracy"] == 0.75


def test_a_non_zero_ingestion_exit_in_the_prediction_run_is_a_warning(tmp_path, prof):
    # the worker checks only the scoring program's exit code (6e19ba27, "For scoring
    # program only"): predictions written, then exit 3, still scored
    b = shutil.copytree(BUNDLES / "placeholder", tmp_path / "b")
    ing = b / "ingestion_program" / "ingestion.py"
    ing.write_text(ing.read_text() + "\nimport sys\nsys.exit(3)\n")
    z = make_zip(tmp_path / "good.zip", {"model.py": ROUND_MODEL})
    res = score_with_bundle(z, b, prof)
    assert res.ok, res.failure
    assert res.scores["accuracy"] == 0.8
    assert any(w.startswith("the ingestion program exited with 3 in the prediction run")
               for w in res.warnings), res.warnings


def test_an_average_column_is_computed_from_the_scores_that_exist(tmp_path):
    # Submission.calculate_scores: `if scores.exists(): score = column.compute(scores)`
    b = Bundle(source=tmp_path, root=tmp_path, extracted=False, data={"leaderboards": [{
        "title": "R", "columns": [
            {"key": "a", "index": 0}, {"key": "b", "index": 1}, {"key": "c", "index": 2},
            {"key": "mean", "index": 3, "computation": "avg", "computation_indexes": "0,1,2"},
            {"key": "none", "index": 4, "computation": "avg", "computation_indexes": [2]}]}]})
    cols, scores, warns = leaderboard_columns(b, {"a": 0.5, "b": 0.7})
    assert scores["mean"] == pytest.approx(0.6)  # not "-": the mean of a and b
    assert scores["none"] is None
    assert any("'mean' (avg) is computed from 2 of its 3 columns" in w for w in warns)
    assert any("'none' (avg): none of its columns got a score" in w for w in warns)


def test_a_slow_scoring_program_gets_its_own_hint(tmp_path, prof):
    b = _with_scoring(tmp_path, "import time\ntime.sleep(60)\n")
    z = make_zip(tmp_path / "good.zip", {"model.py": ROUND_MODEL})
    res = score_with_bundle(z, b, prof, time_limit=4)
    assert not res.ok and res.failure.stage == "scoring"
    assert "the scoring program of the scoring run still running" in res.failure.message
    assert "scoring program itself is slow" in res.failure.hint
    assert "TTA" not in res.failure.hint and "predict" not in res.failure.hint
    slow = make_zip(tmp_path / "slow.zip", {"model.py": SLOW_MODEL})  # the submission's side
    res = score_with_bundle(slow, BUNDLES / "placeholder", prof, time_limit=3)
    assert "TTA" in res.failure.hint


def test_a_scoring_program_missing_a_module_says_which_and_how(tmp_path, prof):
    b = _with_scoring(tmp_path, "import sklearn_not_installed_here\n")
    z = make_zip(tmp_path / "good.zip", {"model.py": ROUND_MODEL})
    res = score_with_bundle(z, b, prof)
    assert not res.ok
    assert "imports 'sklearn_not_installed_here'" in res.failure.hint
    assert "--env current" in res.failure.hint and "codalab/codalab-legacy:py37" in res.failure.hint


def test_the_summary_names_the_interpreter_versions_and_image(tmp_path, prof, cli):
    z = make_zip(tmp_path / "good.zip", {"model.py": ROUND_MODEL})
    code, out, err = cli("score-local", z, "--bundle", BUNDLES / "placeholder",
                          "--profile", "an2dl-2024-blood-cells", "--env", "current")
    assert code == 0, err
    import keras

    line = next(ln for ln in out.splitlines() if "the programs ran in" in ln)
    assert "the current versions" in line and f"keras {keras.__version__}" in line
    assert "docker image codalab/codalab-legacy:py37" in line
    assert "codalab/codalab-legacy:py37 has no TensorFlow" in out
    code, out, err = cli("score-local", z, "--bundle", BUNDLES / "placeholder",
                          "--profile", "an2dl-2024-blood-cells", "--env", "current", "--json")
    d = json.loads(out)
    assert d["env"]["name"] == "current" and d["env"]["keras"] == keras.__version__
    assert d["docker_image"] == "codalab/codalab-legacy:py37"


def test_export_names_an_image_that_can_run_the_grader_versions(tmp_path, cli, prof):
    ref = _reference(tmp_path)
    code, out, err = cli("bundle", "export", "--profile", "an2dl-2024-blood-cells",
                          "--reference", ref, "--out", tmp_path / "b.zip", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["docker_image"] == "tensorflow/tensorflow:2.17.0"
    assert any("its Python, Keras and numpy are whatever that image ships" in w
               for w in info["warnings"])
    with zipfile.ZipFile(tmp_path / "b.zip") as zf:
        comp = yaml.safe_load(zf.read("competition.yaml"))
        docker = zf.read("docker/Dockerfile").decode()
    assert comp["docker_image"] == "tensorflow/tensorflow:2.17.0"
    assert "FROM python:3.10-slim" in docker
    assert "tensorflow==2.17.0 keras==3.4.1 numpy==1.26.4" in docker
    code, out, err = cli("bundle", "export", "--profile", "an2dl-2024-blood-cells",
                          "--reference", ref, "--out", tmp_path / "c.zip",
                          "--docker-image", "codalab/codalab-legacy:py37")
    assert code == 0, err
    assert "codalab/codalab-legacy:py37 has no TensorFlow" in out
    assert image_note("tensorflow/tensorflow:2.16.1-gpu", prof).startswith(
        "docker image tensorflow/tensorflow:2.16.1-gpu has tensorflow 2.16.1, not the grader's")
    assert "cannot see inside docker image myorg/grader:1" in image_note("myorg/grader:1", prof)
