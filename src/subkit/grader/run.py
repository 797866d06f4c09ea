"""Running a submission zip the way the hidden evaluation runs it, and scoring it.

The run folder (``submissions/runs/<zip stem>-<yymmdd_hhmmss>/``) is laid out like the
grader's::

    submission/     the zip, unzipped safely; the child's working directory
    input_data/     X.npy: exactly what predict receives (removed after the run)
    output/         predictions.npy and ingestion.json, written by the child
    logs/           the child's stdout.txt and stderr.txt
    scores.json     Codabench's format: {"accuracy": ...}
    run.json        the run record: zip, data, environment, times, memory, outcome

The child is ``python grader/ingestion.py`` in its own process group, working directory the
unzipped submission, environment without credentials, no network where the machine
allows it, killed at the time limit. Scoring happens here, in subkit's own process.
"""

from __future__ import annotations

import json
import signal as _signal
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from subkit.errors import InputError, SubkitError
from subkit.grader import sandbox, scoring

INGESTION = Path(__file__).with_name("ingestion.py")


@dataclass
class Failure:
    stage: str
    message: str
    hint: str
    tail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ChildRun:
    """One execution of the submission: what came back and what went wrong."""

    ok: bool
    predictions: np.ndarray | None
    status: dict
    child: sandbox.ChildResult
    failure: Failure | None
    warnings: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    ok: bool
    run_dir: Path
    zip: Path
    data: Path
    n: int
    metric: str
    scores: dict
    per_class: list
    confusion_matrix: list
    timings: dict
    peak_rss_mb: float | None
    time_limit_s: float
    env: dict
    network_isolated: bool
    failure: Failure | None
    warnings: list[str]
    class_names: list[str]
    zip_sha256: str = ""
    shift: dict | None = None
    tta_compare: dict | None = None
    predicted_leaderboard: dict | None = None
    kind: str = "classification"  # the profile's kind (issue 16)
    phase: str | None = None

    @property
    def score(self) -> float | None:
        return self.scores.get(self.metric) if self.ok else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"], d["zip"], d["data"] = str(self.run_dir), str(self.zip), str(self.data)
        d["score"] = self.score
        d["failure"] = self.failure.to_dict() if self.failure else None
        return d


# -- the run folder ------------------------------------------------------------------------
def new_run_dir(runs_root: Path, stem: str) -> Path:
    try:
        runs_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {runs_root}: {exc.strerror}",
                         hint="run from a folder you can write to, or set [workspace] submissions") from None
    base = f"{stem}-{datetime.now().strftime('%y%m%d_%H%M%S')}"
    for i in range(1000):
        d = runs_root / (base if i == 0 else f"{base}-{i}")
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue
    raise SubkitError(f"cannot create a run folder in {runs_root}", hint="clean up old runs")


def prepare_input(X: np.ndarray, prof) -> tuple[np.ndarray, list[str]]:
    """X exactly as the profile says the grader passes it."""
    warns = []
    want = np.dtype(prof.input_dtype)
    if X.dtype != want:
        lo, hi = prof.input_range
        if want.kind in "ui":
            if X.dtype.kind == "f" and not np.all(X == np.round(X)):
                raise InputError(f"the test images are {X.dtype} with fractional values; the grader passes {want}",
                                 hint="store the test set as the competition gives it (e.g. uint8 0..255)")
            if X.size and (X.min() < lo or X.max() > hi):
                raise InputError(f"the test images' values {X.min()}..{X.max()} fall outside {lo:g}..{hi:g}",
                                 hint="store the test set as the competition gives it")
        warns.append(f"test images converted from {X.dtype} to {want}, as the grader passes them")
        X = X.astype(want)
    return np.ascontiguousarray(X), warns


# -- running the child -----------------------------------------------------------------------
def run_submission(submission_dir: Path, X: np.ndarray, prof, *, run_dir: Path,
                   time_limit: float, python: str | None = None, isolate_network: bool = True,
                   progress: bool = False, extra_env: dict | None = None,
                   label: str = "running the submission",
                   extra_args: list[str] | None = None, bar_class=None,
                   inputs: dict[str, np.ndarray] | None = None) -> ChildRun:
    """``inputs``: predict's arrays after X, by the profile's names (``categories``)."""
    run_dir, submission_dir = Path(run_dir).resolve(), Path(submission_dir).resolve()
    input_dir, output_dir, log_dir = run_dir / "input_data", run_dir / "output", run_dir / "logs"
    for d in (input_dir, output_dir, log_dir):
        d.mkdir(parents=True, exist_ok=True)
    x_path = input_dir / "X.npy"
    np.save(x_path, X, allow_pickle=False)
    cmd = [python or sys.executable, str(INGESTION), "--submission", str(submission_dir),
           "--input", str(x_path), "--output", str(output_dir), "--entry", prof.entry_file,
           "--class-name", prof.class_name, "--method", prof.predict_method]
    for a in prof.init_args:
        cmd += ["--init-arg", str(a)]
    written = [x_path]
    for name in prof.extra_inputs:
        if name not in (inputs or {}):
            raise InputError(f"predict({', '.join(['X', *prof.extra_inputs])}) needs {name!r} "
                             "and none was given", hint=f"store {name} in the test set's .npz")
        written.append(input_dir / f"{name}.npy")
        np.save(written[-1], np.asarray(inputs[name]), allow_pickle=False)
        cmd += ["--predict-input", f"{name}={written[-1]}"]
    cmd += list(extra_args or [])  # ingestion.py's --proba / --extra-input (shift suite)
    status_path = output_dir / "ingestion.json"
    bar = (bar_class or _Progress)(label, time_limit, status_path, enabled=progress)
    try:
        child = sandbox.run_child(cmd, cwd=submission_dir, log_dir=log_dir, time_limit=time_limit,
                                  env=sandbox.clean_env(extra_env), isolate_network=isolate_network,
                                  on_tick=bar.tick)
    finally:
        bar.close()
        for path in written:
            path.unlink(missing_ok=True)
    status = _read_json(status_path)
    preds = None
    pred_path = output_dir / "predictions.npy"
    if status.get("ok") and pred_path.exists():
        try:
            preds = np.load(pred_path, allow_pickle=False)
        except Exception:
            preds = None
    failure = diagnose(child, status, prof, time_limit)
    if failure is not None:
        failure = _name_the_weights(failure, submission_dir)
    if failure is None and preds is None:
        out = status.get("output", {})
        failure = Failure("save", f"predict returned {out.get('python_type', 'something')} that is not an array "
                                  f"of labels ({out.get('error', 'object dtype')})",
                          "return a numpy int array of shape (n,)")
    return ChildRun(ok=failure is None, predictions=preds, status=status, child=child, failure=failure)


def _read_json(p: Path) -> dict:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


class _Progress:
    """A tqdm bar of seconds against the time limit, with the child's stage; tty only."""

    def __init__(self, label: str, limit: float, status_path: Path, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.status_path = status_path
        self.last = 0.0
        self.stage = ""
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=round(limit), desc=label, unit="s", leave=False,
                            bar_format="{desc}: {n:.0f}/{total:.0f} s of the time limit |{bar}|")

    def tick(self, elapsed: float) -> None:
        if not self.enabled or elapsed - self.last < 0.5:
            return
        stage = _read_json(self.status_path).get("stage", "")
        if stage and stage != self.stage:
            self.stage = stage
            self.bar.set_description(f"child: {stage}")
        self.bar.n = min(elapsed, self.bar.total)
        self.bar.refresh()
        self.last = elapsed

    def close(self) -> None:
        if self.enabled:
            self.bar.close()


_STAGE_WORDS = {"start": "starting", "load_input": "loading the input", "import": "importing model.py",
                "init": "Model()", "predict": "predict(X)", "save": "saving the predictions",
                "done": "finishing"}


def diagnose(child: sandbox.ChildResult, status: dict, prof, time_limit: float) -> Failure | None:
    """Turn what the child did into the message and hint a participant needs."""
    from subkit.modelcheck import init_call, predict_call

    stage = status.get("stage", "start")
    where = _STAGE_WORDS.get(stage, stage)
    tail = child.tail("stderr", 30)
    entry, cls = prof.entry_file, prof.class_name
    calls = (init_call(prof), predict_call(prof))
    if child.timed_out:
        return Failure(stage, f"the submission exceeded the time limit of {time_limit:g} s during {where} "
                              "(the grader kills it: 'Execution Time Limit exceeded')",
                       "predict in batches (the template does), use fewer TTA views or a smaller model; "
                       "an endless loop or input() hangs too", tail)
    if status.get("ok") and child.returncode == 0:
        return None
    etype, err = status.get("error_type"), status.get("error", "")
    tb = status.get("traceback", "") or tail
    tb_tail = "\n".join(tb.strip().splitlines()[-12:])
    if etype == "SystemExit":
        return Failure(stage, err or "the submission called sys.exit()",
                       "never exit from model.py: raise an exception or return normally", tb_tail)
    if etype:
        return _diagnose_exception(stage, etype, err, tb_tail, entry, cls, calls,
                                   prof.grader.get("keras"))
    if child.signal is not None:
        name = _signal.Signals(child.signal).name if child.signal in set(_signal.Signals) else str(child.signal)
        oom = child.signal == _signal.SIGKILL
        return Failure(stage, f"the submission's process was killed by {name} during {where}"
                              + (" (out of memory?)" if oom else ""),
                       "reduce memory: predict in batches, free what you do not need; a crash in a "
                       "native library (SIGSEGV) can come from mismatched TensorFlow/numpy versions"
                       if oom or child.signal == _signal.SIGSEGV else "see the log tail", tail)
    return Failure(stage, f"the submission's process ended with exit code {child.returncode} during {where} "
                          "without raising an error (os._exit or a hard exit in a library?)",
                   "never call os._exit/sys.exit in model.py; see the log tail for what ran last", tail)


def keras_cause(err: str) -> str:
    """The cause Keras nests after "Exception encountered:", behind pages of config."""
    if "Exception encountered:" in err:
        err = err.rsplit("Exception encountered:", 1)[1]
    lines = err.strip().splitlines() or [""]
    return lines[0][:400]


def _name_the_weights(f: Failure, submission_dir: Path) -> Failure:
    """The hint's YOUR_WEIGHTS.keras, as the one .keras file of the submission."""
    found = sorted(p.name for p in submission_dir.glob("*.keras"))
    if len(found) == 1:
        f.hint = f.hint.replace("YOUR_WEIGHTS.keras", found[0])
    return f


def _diagnose_exception(stage, etype, err, tb, entry, cls, calls, keras=None) -> Failure:
    """``calls``: how the grader calls the class and predict, e.g. ("model(path)",
    "predict(X, categories)")."""
    low = err.lower()
    init_call, predict_call = calls
    if stage == "import":
        if etype in ("SyntaxError", "IndentationError", "TabError"):
            return Failure(stage, f"{entry} has a syntax error: {err}",
                           f"run `python -m py_compile {entry}` and fix the line it names", tb)
        if etype in ("ModuleNotFoundError", "ImportError"):
            return Failure(stage, f"importing {entry} failed: {etype}: {err}",
                           "use only packages the grader has (numpy, tensorflow/keras); put helper "
                           "modules at the zip root next to model.py", tb)
        if etype == "FileNotFoundError" and entry in err:
            return Failure(stage, err, f"put {entry} at the root of the zip, not inside a folder", tb)
        if etype == "AttributeError" and cls in err:
            return Failure(stage, f"{entry} defines no class {cls!r}",
                           f"the grader runs `from {entry[:-3]} import {cls}`: define `class {cls}:`", tb)
        return Failure(stage, f"importing {entry} raised {etype}: {err}",
                       f"code at the top level of {entry} runs on import: move work into __init__", tb)
    if stage == "init":
        if etype == "TypeError" and ("positional argument" in low or "required" in low):
            if not init_call.endswith("()"):
                return Failure(stage, f"{init_call} failed: {err}",
                               f"the grader calls {init_call}: define __init__ to take exactly "
                               "that and load the weights from os.path.join(path, NAME)", tb)
            return Failure(stage, f"{init_call} needs arguments: {err}",
                           f"the grader calls {init_call} with no argument (CodaLab's model(path) "
                           "passed the folder; this grader does not): def __init__(self): and "
                           "load the weights from os.path.dirname(os.path.abspath(__file__))", tb)
        if etype in ("FileNotFoundError", "OSError", "IOError") or "no such file" in low or "not found" in low \
                or "file not found" in low or "unable to open" in low:
            return Failure(stage, f"{cls}() could not find its weights from the grader's working "
                                  f"directory: {etype}: {err}",
                           "load them with os.path.join(os.path.dirname(os.path.abspath(__file__)), "
                           "'weights.keras') and check the name matches the file in the zip", tb)
        if "unknown layer" in low or "could not locate" in low or "custom_objects" in low:
            return Failure(stage, f"the weights need a custom class that model.py does not provide: {err}",
                           "define the class in model.py (decorated with "
                           "@keras.saving.register_keras_serializable()) or pass custom_objects", tb)
        if "unrecognized keyword" in low or "keyword argument" in low or "deserializ" in low:
            cause = keras_cause(tb if "Exception encountered:" in tb else err)
            return Failure(stage, f"{cls}() could not load the weights: {etype}: {cause}",
                           "the weights were saved by a newer Keras than this one: rebuild the zip "
                           f"with `subkit build --weights YOUR_WEIGHTS.keras` (it rewrites them for "
                           f"keras {keras} and proves they load there)", tb)
        return Failure(stage, f"{cls}() raised {etype}: {err}", "see the traceback tail", tb)
    if stage == "predict":
        if etype == "TypeError" and ("positional argument" in low or "takes" in low):
            return Failure(stage, f"predict could not be called as {predict_call}: {err}",
                           f"define def {predict_call.replace('(', '(self, ', 1)}: the grader "
                           "passes exactly these inputs", tb)
        return Failure(stage, f"{predict_call} raised {etype}: {err}",
                       "X is a numpy array shaped and typed as the profile says (e.g. uint8 "
                       "(n, 96, 96, 3)); run `subkit check` to reproduce on a small batch", tb)
    if stage == "load_input":
        return Failure(stage, f"the child could not read the input: {etype}: {err}",
                       "this is subkit's side; rerun with --debug and report it", tb)
    return Failure(stage, f"{etype}: {err}", "see the traceback tail", tb)


# -- score-local -------------------------------------------------------------------------------
def score_local(zip_path: Path, data_path: Path, prof, *, time_limit: float | None = None,
                isolate_network: bool = True, progress: bool = False, env: str | None = None,
                record: bool = True, keep_input: bool = False, shift: str | None = None,
                seed: int = 0, tta_compare: bool = False, proba: bool = False,
                report: bool = True, phase: str | None = None) -> RunResult:
    """Run the zip like the grader and score it.

    ``phase``: the profile's phase whose output is expected (a forecast's horizon).

    ``shift``: a shift suite (subkit.shift) whose sets the same child predicts after the
    clean set, once each; ``tta_compare``: a second child with SUBKIT_TTA=0; ``proba``: also
    save predict_proba(X) (the report's most confident mistakes; implied by ``shift``);
    ``report``: write report.html in the run folder.
    """
    from subkit.data import io as data_io

    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise InputError(f"zip not found: {zip_path}", hint="give the path of a built zip (subkit build)")
    phase = prof.phase(phase)
    other_kind = prof.kind != "classification"  # shift_kinds' families, no TTA/proba/report
    if (tta_compare or proba) and other_kind:
        raise SubkitError(f"--tta-compare and --proba are for image classification; "
                          f"{prof.name} is {prof.kind}", hint="score it without them")
    if shift is not None:
        from subkit import shift as shiftmod
        from subkit import shift_kinds

        try:
            shift_kinds.parse(prof, shift) if other_kind else shiftmod.parse_suite(shift)
        except (shiftmod.SuiteError, shift_kinds.KindSuiteError) as exc:
            raise InputError(str(exc), hint="e.g. --shift default, quick, hidden-2024, "
                                            "microscopy, blur:3,noise (series: noise:3,scaling)") from None
    ds = data_io.load(data_path, prof, require_labels=True, phase=phase)
    X, warns = prepare_input(ds.images, prof)
    if shift is not None and not other_kind and X.ndim not in (3, 4):
        raise InputError(f"--shift needs a test set of images (n, h, w[, c]); this one is "
                         f"shaped {X.shape}", hint="drop --shift for this competition")
    python, env_desc = python_for(prof, env, progress=progress)
    warns = env_warnings(env_desc) + warns
    limit = float(time_limit if time_limit else prof.time_limit_s)
    run_dir = new_run_dir(prof.submissions_dir / "runs", zip_path.stem)
    sub_dir = run_dir / "submission"
    sandbox.safe_extract(zip_path, sub_dir)
    plan = None
    t0 = time.monotonic()
    if shift is not None and other_kind:
        plan = shift_kinds.make_plan(prof, X, ds.labels, shift, seed, run_dir / "input_data" / "shifts")
        cr = shiftmod.run_with_plan(sub_dir, X, ds.labels, prof, plan, run_dir=run_dir,
                                    time_limit=limit,
                                    python=python, isolate_network=isolate_network, progress=progress,
                                    label=f"clean + {len(plan)} shifted sets", inputs=ds.extras)
    elif shift is None and not proba:
        cr = run_submission(sub_dir, X, prof, run_dir=run_dir, time_limit=limit, python=python,
                            isolate_network=isolate_network, progress=progress, inputs=ds.extras)
    else:
        from subkit import shift as shiftmod

        if shift is not None:
            plan = shiftmod.make_plan(X, shift, seed, run_dir / "input_data" / "shifts",
                                      value_range=prof.input_range, n_classes=prof.n_classes)
        label = f"clean + {len(plan)} shifted sets" if plan else "running the submission"
        cr = shiftmod.run_with_plan(sub_dir, X, ds.labels, prof, plan, run_dir=run_dir,
                                    time_limit=limit, python=python,
                                    isolate_network=isolate_network, progress=progress,
                                    proba=True, label=label)
    wall = time.monotonic() - t0
    try:
        result = _finish(cr, ds, prof, zip_path, data_path, run_dir, limit, env_desc, wall, warns,
                         plan=None if other_kind else plan, phase=phase)
        if other_kind and plan is not None and result.ok:
            result.shift = shift_kinds.collect(plan, cr.status, run_dir / "output", prof, phase,
                                               result.score)
            write_json(run_dir / "run.json", result.to_dict())
        if tta_compare and result.ok:
            from subkit import shift as shiftmod

            result.tta_compare = shiftmod.tta_compare(
                sub_dir, X, ds.labels, prof, plan,
                with_tta={"clean": result.score, "shift": result.shift,
                          "predict_s": result.timings.get("predict_s")},
                run_dir=run_dir / "no_tta", time_limit=limit, python=python,
                isolate_network=isolate_network, progress=progress)
        if result.shift is not None:
            result.predicted_leaderboard = _predict_leaderboard(result, prof, X, ds.labels)
        write_json(run_dir / "run.json", result.to_dict())
    finally:
        if plan is not None and not keep_input:
            plan.cleanup()
    if report and prof.kind == "classification":  # the HTML report shows images and labels
        try:
            from subkit.report.html import write_report

            write_report(run_dir, prof, images=X, labels=ds.labels)
        except Exception as exc:  # the report must never cost the score
            result.warnings.append(f"report.html could not be written: {type(exc).__name__}: {exc}")
    if record:
        _record(result, prof)
    return result


def _predict_leaderboard(result: RunResult, prof, X: np.ndarray, y: np.ndarray) -> dict:
    """The shift dict gets the test set's content sha256; the ledger's other zips with a
    leaderboard score and a run of the same suite, seed and test set predict this one's."""
    from subkit import calibration
    from subkit.ledger import Ledger

    result.shift["data_sha256"] = calibration.test_set_id(X, y)
    try:
        records = Ledger(prof.submissions_dir, on_warning=result.warnings.append).records()
    except OSError as exc:
        return {"score": None, "message": f"the ledger could not be read: {exc}"}
    return calibration.for_run(records, result.shift, result.shift["data_sha256"],
                               result.zip_sha256)


def python_for(prof, env: str | None = None, *, echo=None,
               progress: bool | None = None) -> tuple[str, dict]:
    """The python that runs the submission's child and its description (``--env``:
    auto, grader or current; see ``environment.select_env``)."""
    from subkit.grader.environment import select_env

    return select_env(prof, env, echo=echo, progress=progress)


def env_warnings(env_desc: dict) -> list[str]:
    """The loud warning of an environment that is not the one asked for (auto could not
    set up the grader's versions), as the first warning of a summary."""
    return [env_desc["warning"]] if env_desc.get("warning") else []


def _finish(cr: ChildRun, ds, prof, zip_path, data_path, run_dir, limit, env_desc, wall, warns,
            plan=None, phase: str | None = None) -> RunResult:
    from subkit.ledger import sha256_file

    scores: dict = {}
    per_class: list = []
    cm: list = []
    failure = cr.failure
    warns = warns + cr.warnings
    if failure is None:
        try:
            ev = scoring.evaluate(prof.task_spec(phase), cr.predictions, ds.labels)
            warns += ev.warnings
            scores, per_class, cm = ev.scores, ev.per_class, ev.confusion_matrix
            scoring.write_scores_json(run_dir / "scores.json", scores)
            np.save(run_dir / "output" / f"{prof.output_kind}.npy", ev.values)
        except scoring.PredictionError as exc:
            failure = Failure("scoring", exc.message, exc.hint)
    timings = dict(cr.status.get("timings", {}))
    timings["wall_s"] = wall
    timings["child_s"] = cr.child.elapsed_s
    extra_s = timings.get("extra_total_s", 0.0) + timings.get("proba_s", 0.0)
    if extra_s:  # the child also predicted shifted sets: the grader times the clean run only
        timings["child_total_s"] = cr.child.elapsed_s
        timings["child_s"] = max(0.0, cr.child.elapsed_s - extra_s)
    env_desc = dict(env_desc)
    if cr.status.get("versions"):
        env_desc["versions"] = cr.status["versions"]
    res = RunResult(ok=failure is None, run_dir=run_dir, zip=zip_path, data=Path(data_path), n=len(ds),
                    metric=prof.metric, scores=scores, per_class=per_class, confusion_matrix=cm,
                    timings=timings, peak_rss_mb=cr.child.peak_rss_mb, time_limit_s=limit,
                    env=env_desc, network_isolated=cr.child.network_isolated, failure=failure,
                    warnings=warns, class_names=prof.class_names, zip_sha256=sha256_file(zip_path),
                    kind=prof.kind, phase=phase)
    if plan is not None:
        from subkit import shift as shiftmod

        if res.ok:
            res.shift = shiftmod.collect(plan, cr.status, run_dir / "output", ds.labels, prof,
                                         res.score)
            shiftmod.save_samples(plan, run_dir / "output" / "shift_samples.npz")
            if res.shift["failures"]:
                res.warnings.append(f"{len(res.shift['failures'])} of {len(plan)} shifted sets "
                                    f"were not scored (first: {res.shift['failures'][0]['key']}: "
                                    f"{res.shift['failures'][0]['error']})")
        if plan.error:
            res.warnings.append(f"generating the shifted sets failed: {plan.error}")
    if cr.child.stdout_bytes > sandbox.LOG_CAP_BYTES or cr.child.stderr_bytes > sandbox.LOG_CAP_BYTES:
        res.warnings.append(f"the submission printed {max(cr.child.stdout_bytes, cr.child.stderr_bytes) / 1e6:.0f} MB; "
                            "the logs keep the first 16 MiB and the last 64 KiB")
    write_json(run_dir / "run.json", res.to_dict())
    return res


def write_json(path: Path, obj) -> None:
    from subkit.fsutil import write_json_atomic

    write_json_atomic(path, obj)


def _record(result: RunResult, prof) -> None:
    from subkit.ledger import Ledger

    sh = result.shift or {}
    rec = {"kind": "score-local", "zip": result.zip.name, "zip_sha256": result.zip_sha256,
           "run_dir": str(result.run_dir), "metric": result.metric, "clean_score": result.score,
           "shifted_score": sh.get("shifted_score"),
           "runtime_s": result.timings.get("child_s"), "env": result.env.get("name"),
           "ok": result.ok, "data": str(result.data), "n": result.n}
    if sh.get("data_sha256"):  # what subkit.calibration reads back
        rec.update(data_sha256=sh["data_sha256"], shift_suite=sh.get("suite"),
                   shift_seed=sh.get("seed"), shift_scores=sh.get("scores"))
    try:
        Ledger(prof.submissions_dir).append(rec)
    except SubkitError:
        result.warnings.append("could not append to the ledger")


# -- predict -----------------------------------------------------------------------------------
def predict_csv(zip_path: Path, data_path: Path, out: Path, prof, *, force: bool = False,
                time_limit: float | None = None, progress: bool = False, env: str | None = None,
                isolate_network: bool = True, phase: str | None = None) -> dict:
    """Run the zip on unlabelled data and write the profile's Kaggle CSV exactly."""
    from subkit import kaggle_csv
    from subkit.data import io as data_io

    out = Path(out)
    if out.exists() and not force:
        raise InputError(f"{out} exists; refusing to overwrite", hint="pass --force or choose another --out")
    if not out.parent.is_dir() if str(out.parent) else False:
        raise InputError(f"folder {out.parent} does not exist", hint="create it first")
    if not Path(zip_path).is_file():
        raise InputError(f"zip not found: {zip_path}", hint="give the path of a built zip (subkit build)")
    if prof.output_kind == "forecasts":
        raise SubkitError(f"{prof.name} is a code competition: it takes the zip, not a CSV",
                          hint="score it with `subkit score-local`, submit the zip")
    phase = prof.phase(phase)
    ds = data_io.load(data_path, prof, require_labels=False, phase=phase)
    ids = kaggle_csv.test_ids(Path(data_path), prof, len(ds))
    X, warns = prepare_input(ds.images, prof)
    python, env_desc = python_for(prof, env, progress=progress)
    warns = env_warnings(env_desc) + warns
    limit = float(time_limit if time_limit else prof.time_limit_s)
    run_dir = new_run_dir(prof.submissions_dir / "runs", Path(zip_path).stem + "-predict")
    sub_dir = run_dir / "submission"
    sandbox.safe_extract(Path(zip_path), sub_dir)
    cr = run_submission(sub_dir, X, prof, run_dir=run_dir, time_limit=limit, python=python,
                        isolate_network=isolate_network, progress=progress, inputs=ds.extras)
    if cr.failure:
        raise _run_error(cr.failure, run_dir, env_desc)
    try:
        values, w = scoring.validate(prof.task_spec(phase), cr.predictions, len(ds))
    except scoring.PredictionError as exc:
        raise SubkitError(exc.message, hint=exc.hint) from None
    rows = kaggle_csv.write(out, values, ids, prof)
    return {"out": str(out), "rows": rows, "columns": len(kaggle_csv.header(prof)),
            "layout": prof.csv.layout, "run_dir": str(run_dir), "warnings": warns + w,
            "predict_s": cr.status.get("timings", {}).get("predict_s"), "env": env_desc}


def env_line(env_desc: dict) -> str:
    """The summary line that names the versions that ran the submission."""
    from subkit.grader.environment import versions_text

    where = {"grader": "the grader's versions", "current": "the current versions"}.get(
        env_desc.get("name"), "the given interpreter")
    if env_desc.get("name") == "current" and env_desc.get("matches_grader"):
        where = "the current versions, which are the grader's"
    return f"ran in {where}: {versions_text(env_desc)}"


def _run_error(f: Failure, run_dir: Path, env_desc: dict) -> SubkitError:
    import click

    from subkit.errors import RunFailed

    if f.tail:  # the child's own words first, then our one error line
        click.echo("--- the submission's traceback/log tail ---", err=True)
        click.echo("\n".join("    " + line for line in f.tail.splitlines()[-12:]), err=True)
    click.echo(env_line(env_desc), err=True)
    for w in env_warnings(env_desc):
        click.secho(f"warning: {w}", fg="yellow", err=True)
    return RunFailed(f.message, hint=f"{f.hint} (logs: {run_dir / 'logs'})")
