"""Running a submission zip the way the hidden evaluation runs it, and scoring it.

The run folder (``submissions/runs/<zip stem>-<yymmdd_hhmmss>/``) is laid out like the
grader's::

    submission/     the zip, unzipped safely; the child's working directory
    input_data/     X.npy: exactly what predict receives (removed after the run)
    output/         predictions.npy and ingestion.json, written by the child
    logs/           the child's stdout.txt and stderr.txt
    scores.json     Codabench's format: {"accuracy": ...}
    run.json        the run record: zip, data, environment, times, memory, outcome

The child is ``python grader/ingestion.py`` in the sandbox (``sandbox.Sandbox``): it sees the
unzipped submission as ``/app/ingested_program`` (its working directory, writable: a copy),
``/app/input_data`` read-only (the images only, never the labels), ``/app/output`` and
``/app/program/ingestion.py``, and nothing else of the machine but the system and the
interpreter, read-only. Everything it wrote is read after the sandbox is gone, through
``untrusted.read_untrusted`` (no link followed, sizes capped); scoring, ``scores.json``,
``run.json``, the report and the ledger row are subkit's, in the run folder the child never
saw (``runfolder.RunFolder``).
"""

from __future__ import annotations

import io
import signal as _signal
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from subkit import ui
from subkit.errors import InputError
from subkit.grader import sandbox, scoring, untrusted

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
    clean_s: float | None = None  # when subkit saw the clean predictions (shift/proba runs)
    asked_more: bool = False  # the child was to predict more after the clean run


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
    kind: str = "classification"  # Profile.kind: classification, series-classification, ...
    phase: str | None = None
    sandbox: dict = field(default_factory=dict)

    @property
    def score(self) -> float | None:
        return self.scores.get(self.metric) if self.ok else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"], d["zip"], d["data"] = str(self.run_dir), str(self.zip), str(self.data)
        d["score"] = self.score
        d["failure"] = self.failure.to_dict() if self.failure else None
        return d


def prepare_input(X: np.ndarray, prof) -> tuple[np.ndarray, list[str]]:
    """X exactly as the profile says the grader passes it."""
    warns = []
    want = np.dtype(prof.input_dtype)
    if X.dtype != want:
        lo, hi = prof.input_range
        if want.kind in "ui":
            if X.dtype.kind == "f" and not np.all(X == np.round(X)):
                raise InputError(f"the test images are {X.dtype} with fractional values; "
                                 f"the grader passes {want}",
                                 hint="store the test set as the competition gives it "
                                      "(e.g. uint8 0..255)")
            if X.size and (X.min() < lo or X.max() > hi):
                raise InputError(f"the test images' values {X.min()}..{X.max()} "
                                 f"fall outside {lo:g}..{hi:g}",
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
    python = python or sys.executable
    box = sandbox.Sandbox(sandbox.Limits.of(prof), python=python, network=not isolate_network)
    box.bind(INGESTION, "/app/program/ingestion.py")
    box.bind(submission_dir, "/app/ingested_program", writable=True)
    box.bind(input_dir, "/app/input_data")
    box.bind(output_dir, "/app/output", writable=True)
    cmd = [python, box.path(INGESTION), "--submission", box.path(submission_dir),
           "--input", box.path(x_path), "--output", box.path(output_dir),
           "--entry", prof.entry_file, "--class-name", prof.class_name,
           "--method", prof.predict_method]
    for a in prof.init_args:
        cmd += ["--init-arg", str(a)]
    written = [x_path]
    for name in prof.extra_inputs:
        if name not in (inputs or {}):
            raise InputError(f"predict({', '.join(['X', *prof.extra_inputs])}) needs {name!r} "
                             "and none was given", hint=f"store {name} in the test set's .npz")
        written.append(input_dir / f"{name}.npy")
        np.save(written[-1], np.asarray(inputs[name]), allow_pickle=False)
        cmd += ["--predict-input", f"{name}={box.path(written[-1])}"]
    extra_args = list(extra_args or [])  # --proba / --extra-input NAME=PATH (shift suite)
    for i, folder in enumerate(_extra_folders(extra_args, input_dir)):
        box.bind(folder, f"/app/extra_input/{i}")  # read-only, written by subkit as it goes
    cmd += box.args_inside(extra_args)
    status_path, pred_path = output_dir / "ingestion.json", output_dir / "predictions.npy"
    cap = _predictions_cap(X)
    bar = (bar_class or TimeBar)(label, time_limit, status_path, enabled=progress)
    clean = _CleanWatch(status_path, pred_path, cap) if extra_args else None

    def tick(elapsed: float) -> None:
        bar.tick(elapsed)
        if clean is not None:
            clean.tick(elapsed)

    try:
        child = box.run(cmd, cwd=submission_dir, log_dir=log_dir, time_limit=time_limit,
                        env=extra_env, on_tick=tick)
    finally:
        bar.close()
        box.close()
        for path in written:
            path.unlink(missing_ok=True)
    # the sandbox is gone: read what it left, trusting nothing of it
    status = untrusted.sane_status(untrusted.read_untrusted_json(status_path))
    if clean is not None and clean.done:
        data, clean_s = clean.data, clean.clean_s
    else:
        data = untrusted.read_untrusted(pred_path, cap) if status.get("ok") else None
        clean_s = child.elapsed_s
    preds = _load_npy(data)
    failure = diagnose(child, status, prof, time_limit)
    if failure is not None:
        failure = _name_the_weights(failure, submission_dir)
    if failure is None and preds is None:
        out = status.get("output", {})
        failure = Failure("save", f"predict returned {out.get('python_type', 'something')} "
                                  "that is not an array of labels "
                                  f"({out.get('error', 'object dtype')})",
                          "return a numpy int array of shape (n,)")
    return ChildRun(ok=failure is None, predictions=preds, status=status, child=child,
                    failure=failure, clean_s=clean_s, asked_more=bool(extra_args))


def _extra_folders(extra_args: list[str], input_dir: Path) -> list[Path]:
    """The folders of --extra-input files that are not in the run's own input folder (a
    second run of the same suite, without TTA, reads the first run's shifted sets)."""
    paths = [Path(v.partition("=")[2]).resolve() for flag, v in zip(extra_args, extra_args[1:])
             if flag == "--extra-input"]
    return sorted({p.parent for p in paths if input_dir.resolve() not in p.parents})


def _predictions_cap(X: np.ndarray) -> int:
    """The most bytes a predictions file may have: labels, probabilities, masks or forecasts
    of the input's size (as int64 or float64), with room."""
    return 16 * 1024**2 + 8 * int(X.size)


def _load_npy(data: bytes | None) -> np.ndarray | None:
    if data is None:
        return None
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception:  # whatever the child wrote there, it is not an array
        return None


class _CleanWatch:
    """Runs that predict more after the clean set (shift suite, --proba): the clean part is
    over when the child's status first says ok; subkit then takes the predictions as they
    are and notes the time on its own clock. A child cannot finish the clean set late, say
    it was early, and swap better predictions in afterwards."""

    def __init__(self, status_path: Path, pred_path: Path, cap: int):
        self.status_path, self.pred_path, self.cap = status_path, pred_path, cap
        self.done, self.last = False, -1.0
        self.data: bytes | None = None
        self.clean_s: float | None = None

    def tick(self, elapsed: float) -> None:
        if self.done or elapsed - self.last < 0.2:
            return
        self.last = elapsed
        if untrusted.read_untrusted_json(self.status_path).get("ok") is True:
            self.done, self.clean_s = True, elapsed
            self.data = untrusted.read_untrusted(self.pred_path, self.cap)


class TimeBar:
    """A run's live progress: seconds against the time limit, with the child's stage when
    its status file is given; drawn by the reporter (``ui.bar``) where it draws one."""

    def __init__(self, label: str, limit: float, status_path: Path | None = None,
                 enabled: bool = True):
        self.enabled = enabled and ui.live()
        self.status_path = status_path
        self.last = 0.0
        self.stage = ""
        self.bar = ui.bar(label, limit, unit="s") if self.enabled else ui.Bar()

    def tick(self, elapsed: float) -> None:
        if not self.enabled or elapsed - self.last < 0.5:
            return
        described = None
        if self.status_path is not None:
            stage = str(untrusted.read_untrusted_json(self.status_path).get("stage", ""))[:40]
            if stage and stage != self.stage:
                self.stage = described = stage
        self.bar.set(elapsed, f"child: {described}" if described else None)
        self.last = elapsed

    def close(self) -> None:
        self.bar.close()


_STAGE_WORDS = {"start": "starting", "load_input": "loading the input",
                "import": "importing model.py", "init": "Model()", "predict": "predict(X)",
                "save": "saving the predictions", "done": "finishing"}


def diagnose(child: sandbox.ChildResult, status: dict, prof, time_limit: float) -> Failure | None:
    """Turn what the child did into the message and hint a participant needs."""
    from subkit.modelcheck import init_call, predict_call

    stage = status.get("stage", "start")
    where = _STAGE_WORDS.get(stage, stage)
    tail = child.tail("stderr", 30)
    entry, cls = prof.entry_file, prof.class_name
    calls = (init_call(prof), predict_call(prof))
    lim = child.sandbox.get("limits") or sandbox.Limits.of(prof).to_dict()
    if child.timed_out:
        paused = (f"; subkit itself was stopped for {child.paused_s:g} s of it, and the grader's "
                  "clock does not stop" if child.paused_s else "")
        return Failure(stage, f"the submission exceeded the time limit of {time_limit:g} s "
                              f"during {where} (the grader kills it: "
                              f"'Execution Time Limit exceeded'{paused})",
                       "predict in batches (the template does), use fewer TTA views or a "
                       "smaller model; an endless loop or input() hangs too", tail)
    if child.limit == "memory":  # the run's memory cgroup (sandbox.py, grader/cgroup.py)
        return Failure(stage, f"the submission used more than the memory limit of "
                              f"{lim['memory_mb']} MB (all its processes together, shared memory "
                              f"included) during {where}; the kernel killed it",
                       "predict in batches and free what you do not need; the limit is the "
                       "profile's [limits] memory_mb", tail)
    if child.limit == "disk":
        return Failure(stage, f"the submission wrote more than {lim['disk_mb']} MB into its "
                              f"folders during {where}; the sandbox stopped it",
                       "write nothing big next to model.py or into the output; the limit is the "
                       "profile's [limits] disk_mb", tail)
    if child.limit == "files":
        return Failure(stage, f"the submission created more than {untrusted.MAX_FILES} files "
                              f"during {where}; the sandbox stopped it",
                       "do not write files in a loop", tail)
    if status.get("ok") and child.returncode == 0:
        return None
    etype, err = status.get("error_type"), status.get("error", "")
    tb = status.get("traceback", "") or tail
    tb_tail = "\n".join(tb.strip().splitlines()[-12:])
    if etype == "SystemExit":
        return Failure(stage, err or "the submission called sys.exit()",
                       "never exit from model.py: raise an exception or return normally", tb_tail)
    if etype:
        return _limit_exception(stage, etype, err, tb_tail, lim) or \
            _diagnose_exception(stage, etype, err, tb_tail, entry, cls, calls,
                                prof.grader.get("keras"))
    if child.signal is not None:
        return _diagnose_signal(child.signal, stage, where, lim, tail)
    return Failure(stage, f"the submission's process ended with exit code {child.returncode} "
                          f"during {where} without raising an error (os._exit or a hard exit "
                          "in a library?)",
                   "never call os._exit/sys.exit in model.py; see the log tail for what ran "
                   "last", tail)


def _diagnose_signal(sig: int, stage: str, where: str, lim: dict, tail: str) -> Failure:
    name = _signal.Signals(sig).name if sig in set(_signal.Signals) else str(sig)
    if sig == _signal.SIGXFSZ:
        return Failure(stage, f"the submission's process wrote a file larger than "
                              f"{lim['file_size_mb']} MB during {where} (killed by SIGXFSZ)",
                       "write nothing that big; the limit is the profile's [limits] "
                       "file_size_mb", tail)
    oom = sig in (_signal.SIGKILL, _signal.SIGABRT)
    return Failure(stage, f"the submission's process was killed by {name} during {where}"
                          + (f" (out of memory? the sandbox allows {lim['memory_mb']} MB per "
                             "process)" if oom else ""),
                   "reduce memory: predict in batches, free what you do not need; a crash in a "
                   "native library (SIGSEGV) can come from mismatched TensorFlow/numpy versions"
                   if oom or sig == _signal.SIGSEGV else "see the log tail", tail)


def _limit_exception(stage, etype, err, tb, lim: dict) -> Failure | None:
    """An exception that is the sandbox's limit speaking, in the limit's words."""
    low = err.lower()
    if "MemoryError" in etype or "allocate" in low:
        return Failure(stage, f"the submission ran out of memory: {etype}: {err} "
                              f"(the sandbox allows {lim['memory_mb']} MB per process)",
                       "predict in batches and free what you do not need; the limit is the "
                       "profile's [limits] memory_mb", tb)
    if "file too large" in low:
        return Failure(stage, f"the submission wrote a file larger than {lim['file_size_mb']} MB: "
                              f"{etype}: {err}",
                       "write nothing that big; the limit is the profile's [limits] "
                       "file_size_mb", tb)
    if etype == "BlockingIOError" or "resource temporarily unavailable" in low:
        return Failure(stage, f"the submission could not start another process or thread: {etype}: "
                              f"{err} (the sandbox allows {lim['processes']})",
                       "do not fork in a loop; the limit is the profile's [limits] processes", tb)
    if "no space left" in low:
        return Failure(stage, f"the submission filled its space: {etype}: {err} (/tmp holds "
                              f"{lim['tmp_mb']} MB)", "write less to /tmp; the limit is the "
                                                      "profile's [limits] tmp_mb", tb)
    return None


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
            return Failure(stage, err,
                           f"put {entry} at the root of the zip, not inside a folder", tb)
        if etype == "AttributeError" and cls in err:
            return Failure(stage, f"{entry} defines no class {cls!r}",
                           f"the grader runs `from {entry[:-3]} import {cls}`: "
                           f"define `class {cls}:`", tb)
        return Failure(stage, f"importing {entry} raised {etype}: {err}",
                       f"code at the top level of {entry} runs on import: "
                       "move work into __init__", tb)
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
        if etype in ("FileNotFoundError", "OSError", "IOError") or "no such file" in low \
                or "not found" in low or "file not found" in low or "unable to open" in low:
            return Failure(stage, f"{cls}() could not find its weights from the grader's working "
                                  f"directory: {etype}: {err}",
                           "load them with "
                           "os.path.join(os.path.dirname(os.path.abspath(__file__)), "
                           "'weights.keras') and check the name matches the file in the zip", tb)
        if "unknown layer" in low or "could not locate" in low or "custom_objects" in low:
            return Failure(stage, "the weights need a custom class that model.py does not "
                                  f"provide: {err}",
                           "define the class in model.py (decorated with "
                           "@keras.saving.register_keras_serializable()) or pass "
                           "custom_objects", tb)
        if "unrecognized keyword" in low or "keyword argument" in low or "deserializ" in low:
            cause = keras_cause(tb if "Exception encountered:" in tb else err)
            return Failure(stage, f"{cls}() could not load the weights: {etype}: {cause}",
                           "the weights were saved by a newer Keras than this one: rebuild the zip "
                           "with `subkit build --weights YOUR_WEIGHTS.keras` (it rewrites them "
                           f"for keras {keras} and proves they load there)", tb)
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


def finish_run(cr: ChildRun, ds, prof, zip_path, data_path, run_dir, limit, env_desc, wall,
               warns, phase: str | None = None) -> RunResult:
    """Score what the child returned and describe the run (the lifecycle writes it to
    run.json when the run ends)."""
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
    timings = dict(cr.status.get("timings", {}))  # the child's own words, for the summary
    timings["wall_s"] = wall
    timings["child_s"] = cr.clean_s if cr.clean_s is not None else cr.child.elapsed_s
    if cr.asked_more:  # the grader times the clean run only
        timings["child_total_s"] = cr.child.elapsed_s
    env_desc = dict(env_desc)
    if cr.status.get("versions"):
        env_desc["versions"] = cr.status["versions"]
    res = RunResult(ok=failure is None, run_dir=run_dir, zip=zip_path, data=Path(data_path),
                    n=len(ds), metric=prof.metric, scores=scores, per_class=per_class,
                    confusion_matrix=cm, timings=timings, peak_rss_mb=cr.child.peak_rss_mb,
                    time_limit_s=limit, env=env_desc, network_isolated=cr.child.network_isolated,
                    failure=failure, warnings=warns, class_names=prof.class_names,
                    zip_sha256=sha256_file(zip_path), kind=prof.kind, phase=phase,
                    sandbox={**cr.child.sandbox, "written_mb": cr.child.written_mb,
                             "paused_s": cr.child.paused_s})
    if max(cr.child.stdout_bytes, cr.child.stderr_bytes) > untrusted.LOG_CAP_BYTES:
        res.warnings.append("the submission printed "
                            f"{max(cr.child.stdout_bytes, cr.child.stderr_bytes) / 1e6:.0f} MB; "
                            "the logs keep the first 16 MiB and the last 64 KiB")
    return res


def env_line(env_desc: dict) -> str:
    """The summary line that names the versions that ran the submission."""
    from subkit.grader.environment import versions_text

    where = {"grader": "the grader's versions", "current": "the current versions"}.get(
        env_desc.get("name"), "the given interpreter")
    if env_desc.get("name") == "current" and env_desc.get("matches_grader"):
        where = "the current versions, which are the grader's"
    return f"ran in {where}: {versions_text(env_desc)}"
