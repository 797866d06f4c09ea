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

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from subkit import ui
from subkit.errors import InputError
from subkit.grader import sandbox, scoring, untrusted
from subkit.grader.diagnose import (
    BadOutput,
    Failure,
    _name_the_weights,
    diagnose,
    occupied,
    read_predictions,
    wanted,
)

if TYPE_CHECKING:
    from subkit.profile import Profile

INGESTION = Path(__file__).with_name("ingestion.py")


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


def prepare_input(X: np.ndarray, prof: Profile) -> tuple[np.ndarray, list[str]]:
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
def run_submission(submission_dir: Path, X: np.ndarray, prof: Profile, *, run_dir: Path,
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
    given = inputs or {}
    for name in prof.extra_inputs:
        if name not in given:
            raise InputError(f"predict({', '.join(['X', *prof.extra_inputs])}) needs {name!r} "
                             "and none was given", hint=f"store {name} in the test set's .npz")
        written.append(input_dir / f"{name}.npy")
        np.save(written[-1], np.asarray(given[name]), allow_pickle=False)
        cmd += ["--predict-input", f"{name}={box.path(written[-1])}"]
    extra_args = list(extra_args or [])  # --proba / --extra-input NAME=PATH (shift suite)
    for i, folder in enumerate(_extra_folders(extra_args, input_dir)):
        box.bind(folder, f"/app/extra_input/{i}")  # read-only, written by subkit as it goes
    cmd += box.args_inside(extra_args)
    status_path, pred_path = output_dir / "ingestion.json", output_dir / "predictions.npy"
    cap, want = _predictions_cap(X), wanted(prof)
    bar = (bar_class or TimeBar)(label, time_limit, status_path, enabled=progress)
    clean = _CleanWatch(status_path, pred_path, cap, want) if extra_args else None

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
    clean_s: float | None
    preds, bad, clean_s = None, None, child.elapsed_s
    if clean is not None and clean.done:  # the verdict of the moment it said the clean set was done
        preds, bad, clean_s = clean.preds, clean.bad, clean.clean_s
    elif status.get("ok"):
        try:
            preds = read_predictions(pred_path, cap, want)
        except BadOutput as exc:
            bad = exc
    _check_extras(status, output_dir, extra_args, cap, want)
    failure = diagnose(child, status, prof, time_limit)
    if failure is not None:
        failure = _name_the_weights(failure, submission_dir)
        from subkit.modelcheck import name_the_cause  # the era's causes (era-profiles)
        failure = name_the_cause(failure, submission_dir, prof, child.network_isolated)
    if failure is not None and failure.stage == "save" and bad is None:
        try:  # saving failed (or hung) on what the submission put where the file goes?
            read_predictions(pred_path, cap, want)
        except BadOutput as exc:
            if exc.found:
                failure = Failure("save", f"{exc.message} ({failure.message})", exc.hint,
                                  failure.tail)
    taken = next(filter(None, (occupied(output_dir / name, want)
                               for name in (f"{prof.output_kind}.npy", "shift_samples.npz"))),
                 None)
    if failure is None and taken is not None:
        failure = Failure("save", taken.message, taken.hint)
    if failure is None and preds is None:
        out = status.get("output", {})
        if bad is None or out.get("object_dtype") or out.get("convertible") is False:
            failure = Failure("save", f"predict returned {out.get('python_type', 'something')} "
                                      "that is not an array of labels "
                                      f"({out.get('error', 'object dtype')})", f"return the {want}")
        else:
            failure = Failure("save", bad.message, bad.hint)
    return ChildRun(ok=failure is None, predictions=preds, status=status, child=child,
                    failure=failure, clean_s=clean_s, asked_more=bool(extra_args))


def _check_extras(status: dict, output_dir: Path, extra_args: list[str], cap: int,
                  want: str) -> None:
    """The verdict on every other predictions file the child says it wrote: the shifted
    sets' (``predictions_NAME.npy``, for the names subkit asked for) and ``proba.npy``. One
    that is not a plain array is marked failed in the status, with what was found, and a
    bad ``proba.npy`` is removed (the report would read it)."""
    names = [v.partition("=")[0] for flag, v in zip(extra_args, extra_args[1:])
             if flag == "--extra-input"]
    extra = status.get("extra") or {}
    for name in names:
        info = extra.get(name)
        if isinstance(info, dict) and info.get("ok"):
            try:
                read_predictions(output_dir / f"predictions_{name}.npy", cap, want)
            except BadOutput as exc:
                info.update(ok=False, error_type="BadOutput", error=exc.message)
    proba = output_dir / "proba.npy"
    if isinstance(status.get("proba"), dict) and status["proba"].get("ok"):
        try:
            arr = read_predictions(proba, cap, "class probabilities")
            if arr.dtype.kind not in "biuf":
                raise BadOutput(f"probabilities are {arr.dtype} values, not numbers", "")
        except BadOutput as exc:
            status["proba"] = {"ok": False, "error_type": "BadOutput", "error": exc.message}
    if not (status.get("proba") or {}).get("ok") and proba.is_file() and not proba.is_symlink():
        proba.unlink()  # nothing the status does not vouch for is read later


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


class _CleanWatch:
    """Runs that predict more after the clean set (shift suite, --proba): the clean part is
    over when the child's status first says ok; subkit then takes the predictions as they
    are (and its verdict on them) and notes the time on its own clock. A child cannot finish
    the clean set late, say it was early, and swap better predictions in afterwards."""

    def __init__(self, status_path: Path, pred_path: Path, cap: int, want: str):
        self.status_path, self.pred_path, self.cap, self.want = status_path, pred_path, cap, want
        self.done, self.last = False, -1.0
        self.preds: np.ndarray | None = None
        self.bad: BadOutput | None = None
        self.clean_s: float | None = None

    def tick(self, elapsed: float) -> None:
        if self.done or elapsed - self.last < 0.2:
            return
        self.last = elapsed
        if untrusted.read_untrusted_json(self.status_path).get("ok") is True:
            self.done, self.clean_s = True, elapsed
            try:
                self.preds = read_predictions(self.pred_path, self.cap, self.want)
            except BadOutput as exc:
                self.bad = exc


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
            stage = untrusted.printable(untrusted.read_untrusted_json(self.status_path)
                                        .get("stage", ""), 40, one_line=True)
            if stage and stage != self.stage:
                self.stage = described = stage
        self.bar.set(elapsed, f"child: {described}" if described else None)
        self.last = elapsed

    def close(self) -> None:
        self.bar.close()


# -- score-local -------------------------------------------------------------------------------
def python_for(prof: Profile, env: str | None = None, *,
               progress: bool | None = None) -> tuple[str, dict]:
    """The python that runs the submission's child and its description (``--env``:
    auto, grader or current; see ``environment.select_env``)."""
    from subkit.grader.environment import select_env

    return select_env(prof, env, progress=progress)


def env_warnings(env_desc: dict) -> list[str]:
    """The loud warning of an environment that is not the one asked for (auto could not
    set up the grader's versions), as the first warning of a summary."""
    return [env_desc["warning"]] if env_desc.get("warning") else []


def finish_run(cr: ChildRun, ds, prof: Profile, zip_path, data_path, run_dir, limit, env_desc, wall,
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
            np.save(run_dir / "output" / f"{prof.kind_spec.output}.npy", ev.values)
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
        env_desc.get("name") or "", "the given interpreter")
    if env_desc.get("name") == "current" and env_desc.get("matches_grader"):
        where = "the current versions, which are the grader's"
    return f"ran in {where}: {versions_text(env_desc)}"
