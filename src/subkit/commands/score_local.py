"""`subkit score-local` and `subkit predict`: a zip run the way the hidden evaluation runs
it, scored (or its predictions written as the profile's CSV). With a bundle, the
competition's own programs run instead of subkit's grader."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from subkit import ui
from subkit.errors import InputError, SubkitError, UsageError
from subkit.grader import lifecycle, safezip, scoring
from subkit.grader.lifecycle import RunSpec
from subkit.grader.run import (
    Failure,
    RunResult,
    env_line,
    env_warnings,
    finish_run,
    prepare_input,
    python_for,
)
from subkit.ledger import score_local_record

if TYPE_CHECKING:
    from subkit.grader.codabench.runner import BundleRunResult
    from subkit.profile import Profile

PROFILE_SUITE = ""  # `--shift` without a name: the suite of the profile's hypothesis


@dataclass(frozen=True)
class ScoreLocalOptions:
    zip: Path | None = None  # None: the newest zip of the workspace
    data: Path | None = None  # None: subkit.toml's local_test
    time_limit: float | None = None  # None: the profile's
    isolate_network: bool | None = None  # None: the profile's [sandbox] network
    bundle: Path | None = None  # a Codabench bundle: its programs grade the zip
    phase: str | None = None  # the bundle's phase with a bundle, else the profile's
    task: int | None = None  # with a bundle: the task index
    shift: str | None = None  # a shift suite; PROFILE_SUITE: the profile's [shift] default
    seed: int = 0
    tta_compare: bool = False
    proba: bool = False
    env: str | None = None
    progress: bool = True


@dataclass(frozen=True)
class PredictOptions:
    data: Path
    out: Path
    zip: Path | None = None
    force: bool = False
    time_limit: float | None = None
    env: str | None = None
    phase: str | None = None
    progress: bool = True


def zip_or_newest(prof: Profile, zip_path: Path | None) -> Path:
    from subkit.workspace import newest_zip

    return Path(zip_path) if zip_path else newest_zip(prof)


def local_test(prof: Profile, data_path: Path | None) -> Path:
    if data_path:
        return Path(data_path)
    p = prof.workspace_path("local_test")
    if p is None:
        raise UsageError("no test data given and subkit.toml names no local test set",
                         hint="pass --data FILE, or run `subkit data split ... --set-default`")
    return p


def score_local(opts: ScoreLocalOptions, prof: Profile):
    """The run's result: a RunResult, or a BundleRunResult with a bundle."""
    if opts.bundle or opts.task is not None:
        return _with_bundle(opts, prof)
    if opts.phase is not None:  # the profile's phase; a bundle's needs --bundle
        try:
            prof.phase(opts.phase)
        except SubkitError as exc:
            raise UsageError(exc.message, hint=f"{exc.hint}; a Codabench bundle's phase needs "
                                               "--bundle BUNDLE") from None
    zip_path, shift = opts.zip, opts.shift
    if shift and zip_path is None and shift.lower().endswith(".zip"):
        zip_path, shift = Path(shift), PROFILE_SUITE  # `--shift my.zip`: the zip, not a suite
    if shift == PROFILE_SUITE:
        shift = prof.default_shift_suite
        ui.progress(f"--shift: suite {shift}" + (" (the profile's [shift] default)"
                                                  if shift != "default" else ""))
    return score_zip(zip_or_newest(prof, zip_path), local_test(prof, opts.data), prof,
                     time_limit=opts.time_limit,
                     isolate_network=prof.isolate_network(opts.isolate_network),
                     progress=opts.progress, shift=shift, seed=opts.seed,
                     tta_compare=opts.tta_compare, proba=opts.proba, env=opts.env,
                     phase=opts.phase)


def _with_bundle(opts: ScoreLocalOptions, prof: Profile):
    from subkit.grader.codabench.runner import score_with_bundle

    if opts.shift is not None or opts.tta_compare:
        raise UsageError("--shift and --tta-compare run subkit's own grader, not a bundle's",
                         hint="drop --bundle, or drop --shift/--tta-compare")
    if not opts.bundle:
        raise UsageError("--task chooses a task of a bundle", hint="pass --bundle BUNDLE too")
    if opts.data:
        raise UsageError("--data and --bundle together: the bundle brings its own test data",
                         hint="drop --data (or drop --bundle to score on your own data)")
    from subkit.recovery import recover

    zip_path = zip_or_newest(prof, opts.zip)
    return score_with_bundle(zip_path, Path(opts.bundle), prof, opts.phase, opts.task,
                             time_limit=opts.time_limit,
                             isolate_network=prof.isolate_network(opts.isolate_network),
                             progress=opts.progress, env=opts.env,
                             notes=recover(prof) if zip_path.is_file() else [],
                             ledger_row=_bundle_ledger_row)


def _bundle_ledger_row(res: BundleRunResult) -> dict:
    return score_local_record(
        zip=res.zip.name, zip_sha256=res.zip_sha256, run_dir=str(res.run_dir), metric=res.metric,
        clean_score=res.score, runtime_s=res.elapsed_s, env="bundle", ok=res.ok,
        bundle=str(res.bundle), phase=res.phase.get("name"), task=res.task.get("index"),
        scores=res.scores, isolated=bool(res.isolation.get("isolated")))


def predict(opts: PredictOptions, prof: Profile) -> dict:
    """Predict unlabelled data and write the profile's CSV; returns what was written."""
    return predict_csv(zip_or_newest(prof, opts.zip), opts.data, opts.out, prof,
                       force=opts.force, time_limit=opts.time_limit, progress=opts.progress,
                       env=opts.env, phase=opts.phase)


# -- the run ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Ask:
    """What a score-local run does beyond the clean set (score_zip's keywords)."""

    shift: str | None
    seed: int
    tta_compare: bool
    proba: bool
    report: bool
    keep_input: bool
    phase: str | None
    other_kind: bool


def score_zip(zip_path: Path, data_path: Path, prof: Profile, *, time_limit: float | None = None,
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
    from subkit.recovery import recover

    zip_path = safezip.require_zip(zip_path)
    phase = prof.phase(phase)
    other_kind = not prof.kind_spec.image_tools  # shift_kinds' families, no TTA/proba
    if (tta_compare or proba) and other_kind:
        raise SubkitError(f"--tta-compare and --proba are for image classification; "
                          f"{prof.name} is {prof.kind}", hint="score it without them")
    if shift is not None:
        from subkit import shift as shiftmod
        from subkit import shift_kinds

        try:
            shift_kinds.parse(prof, shift) if other_kind else shiftmod.parse_suite(shift)
        except (shiftmod.SuiteError, shift_kinds.KindSuiteError) as exc:
            raise InputError(str(exc),
                             hint="e.g. --shift default, quick, "
                                  + (prof.kind_spec.shift_example if other_kind else
                                     "hidden-2024, microscopy, blur:3,noise")) from None
    notes = recover(prof)
    ds = data_io.load(data_path, prof, require_labels=True, phase=phase)
    X, warns = prepare_input(ds.images, prof)
    if shift is not None and not other_kind and X.ndim not in (3, 4):
        raise InputError(f"--shift needs a test set of images (n, h, w[, c]); this one is "
                         f"shaped {X.shape}", hint="drop --shift for this competition")
    python, env_desc = python_for(prof, env, progress=progress)
    warns = env_warnings(env_desc) + notes + warns
    spec = RunSpec(prof=prof, zip=zip_path, command="score-local", stem=zip_path.stem,
                   time_limit=prof.time_limit(time_limit), python=python, env=env_desc,
                   data=Path(data_path), isolate_network=isolate_network, progress=progress)
    ask = _Ask(shift=shift, seed=seed, tta_compare=tta_compare, proba=proba, report=report,
               keep_input=keep_input, phase=phase, other_kind=other_kind)
    with lifecycle.conduct(spec) as run:
        result = _run_and_score(run, ds, X, warns, ask)
        run.done(result, _ledger_row(result) if record else None)
    if run.warning:
        result.warnings.append(run.warning)
    if record:  # the grader's time, from the ledger's pairs (subkit.clock)
        from subkit import clock

        line = clock.run_line(prof, result)
        if line:
            result.warnings.append(line)
    return result


def _run_and_score(run: lifecycle.Run, ds, X, warns: list[str], ask: _Ask) -> RunResult:
    """The children of a score-local run (clean, shifted, without TTA), scored; the report
    written from the result before run.json is."""
    spec, run_dir = run.spec, run.path
    prof = spec.prof
    plan: Any = None  # the image suite's Plan or the other kinds' KindPlan
    t0 = time.monotonic()
    if ask.shift is not None and ask.other_kind:
        from subkit import shift_kinds

        plan = shift_kinds.make_plan(prof, X, ds.labels, ask.shift, ask.seed,
                                     run_dir / "input_data" / "shifts")
    elif ask.shift is not None:
        from subkit import shift as shiftmod

        # the images where the child reads them; labels and the rest outside every
        # folder bound into the sandbox
        plan = shiftmod.make_plan(X, ask.shift, ask.seed, run_dir / "input_data" / "shifts",
                                  work=run_dir / "shift_work",
                                  value_range=prof.input_range, n_classes=prof.n_classes)
    try:
        cr = run.child(X, plan=plan, labels=ds.labels, inputs=ds.extras,
                       proba=(ask.proba or ask.shift is not None) and not ask.other_kind)
        wall = time.monotonic() - t0
        result = finish_run(cr, ds, prof, spec.zip, spec.data, run_dir, spec.time_limit,
                            spec.env, wall, warns, phase=ask.phase)
        if plan is not None and not ask.other_kind:
            _collect_image_shift(result, plan, cr, ds, prof, run_dir)
        if ask.other_kind and plan is not None and result.ok:
            result.shift = shift_kinds.collect(plan, cr.status, run_dir / "output", prof,
                                               ask.phase, result.score)
        if ask.tta_compare and result.ok:
            from subkit import shift as shiftmod

            result.tta_compare = shiftmod.tta_compare(
                run.submission, ds.labels, prof, plan,
                with_tta={"clean": result.score, "shift": result.shift,
                          "predict_s": result.timings.get("predict_s")},
                run_child=lambda: run.child(X, plan=plan, labels=ds.labels,
                                            extra_env={"SUBKIT_TTA": "0"},
                                            label="the same without TTA", folder="no_tta"),
                output_dir=run_dir / "no_tta" / "output")
        if result.shift is not None:
            result.predicted_leaderboard = _predict_leaderboard(result, prof, X, ds.labels)
    finally:
        if plan is not None and not ask.keep_input:
            plan.cleanup()
    if ask.report:  # the kind's sections (subkit.kinds), the test inputs and truth
        try:
            from subkit.report.html import write_report

            # the record as run.json will hold it (JSON's types), written when the run ends
            record = json.loads(json.dumps(result.to_dict(), default=str))
            write_report(run_dir, prof, images=X, labels=ds.labels, record=record)
        except Exception as exc:  # the report must never cost the score
            result.warnings.append(f"report.html could not be written: {type(exc).__name__}: {exc}")
    return result


def _predict_leaderboard(result: RunResult, prof: Profile, X: np.ndarray, y: np.ndarray) -> dict:
    """The shift dict gets the test set's content sha256; the ledger's other zips with a
    leaderboard score and a run of the same suite, seed and test set predict this one's."""
    from subkit import calibration
    from subkit.ledger import Ledger

    shift = result.shift
    assert shift is not None  # called only for a run with a shift result
    shift["data_sha256"] = calibration.test_set_id(X, y)
    try:
        records = Ledger(prof.submissions_dir, on_warning=result.warnings.append).records()
    except OSError as exc:
        return {"score": None, "message": f"the ledger could not be read: {exc}"}
    return calibration.for_run(records, shift, shift["data_sha256"],
                               result.zip_sha256)


def _collect_image_shift(result: RunResult, plan, cr, ds, prof: Profile, run_dir: Path) -> None:
    """The shift suite's scores of an image classifier's run, and its sample images."""
    from subkit import shift as shiftmod

    if result.ok:
        result.shift = shiftmod.collect(plan, cr.status, run_dir / "output", ds.labels, prof,
                                     result.score)
        shiftmod.save_samples(plan, run_dir / "output" / "shift_samples.npz")
        if result.shift["failures"]:
            result.warnings.append(f"{len(result.shift['failures'])} of {len(plan)} shifted sets "
                                f"were not scored (first: {result.shift['failures'][0]['key']}: "
                                f"{result.shift['failures'][0]['error']})")
    if plan.error:
        result.warnings.append(f"generating the shifted sets failed: {plan.error}")


def _ledger_row(result: RunResult) -> dict:
    sh = result.shift or {}
    rec = score_local_record(
        zip=result.zip.name, zip_sha256=result.zip_sha256, run_dir=str(result.run_dir),
        metric=result.metric, clean_score=result.score, shifted_score=sh.get("shifted_score"),
        runtime_s=result.timings.get("child_s"), env=result.env.get("name"), ok=result.ok,
        data=str(result.data), n=result.n, isolated=bool(result.sandbox.get("isolated")))
    if sh.get("data_sha256"):  # what subkit.calibration reads back
        rec.update(data_sha256=sh["data_sha256"], shift_suite=sh.get("suite"),
                   shift_seed=sh.get("seed"), shift_scores=sh.get("scores"))
    return rec


# -- predict ------------------------------------------------------------------------------
def predict_csv(zip_path: Path, data_path: Path, out: Path, prof: Profile, *, force: bool = False,
                time_limit: float | None = None, progress: bool = False, env: str | None = None,
                isolate_network: bool = True, phase: str | None = None) -> dict:
    """Run the zip on unlabelled data and write the profile's Kaggle CSV exactly."""
    from subkit import kaggle_csv
    from subkit.data import io as data_io
    from subkit.recovery import recover

    out = Path(out)
    if out.exists() and not force:
        raise InputError(f"{out} exists; refusing to overwrite",
                         hint="pass --force or choose another --out")
    if not out.parent.is_dir() if str(out.parent) else False:
        raise InputError(f"folder {out.parent} does not exist", hint="create it first")
    zip_path = safezip.require_zip(zip_path)
    prof.kind_spec.refuse_csv(prof)
    phase = prof.phase(phase)
    notes = recover(prof)
    ds = data_io.load(data_path, prof, require_labels=False, phase=phase)
    ids = kaggle_csv.test_ids(Path(data_path), prof, len(ds))
    X, warns = prepare_input(ds.images, prof)
    python, env_desc = python_for(prof, env, progress=progress)
    warns = env_warnings(env_desc) + notes + warns
    spec = RunSpec(prof=prof, zip=Path(zip_path), command="predict",
                   stem=Path(zip_path).stem + "-predict", time_limit=prof.time_limit(time_limit),
                   python=python, env=env_desc, data=Path(data_path),
                   isolate_network=isolate_network, progress=progress)
    with lifecycle.conduct(spec) as run:
        cr = run.child(X, inputs=ds.extras)
        record = {"kind": "predict", "zip": str(zip_path), "data": str(data_path),
                  "out": str(out), "ok": cr.failure is None,
                  "failure": cr.failure.to_dict() if cr.failure else None,
                  "sandbox": cr.child.sandbox, "env": env_desc}
        if cr.failure:
            run.done(lifecycle.PlainRecord(record))
            raise _run_error(cr.failure, run.path, env_desc)
        try:
            values, w = scoring.validate(prof.task_spec(phase), cr.predictions, len(ds))
        except scoring.PredictionError as exc:
            run.done(lifecycle.PlainRecord({**record, "ok": False, "failure": {
                "stage": "scoring", "message": exc.message}}))
            raise SubkitError(exc.message, hint=exc.hint) from None
        rows = kaggle_csv.write(out, values, ids, prof)
        run.done(lifecycle.PlainRecord({**record, "rows": rows}))
    return {"out": str(out), "rows": rows, "columns": len(kaggle_csv.header(prof)),
            "layout": prof.csv.layout, "run_dir": str(run.path), "warnings": warns + w,
            "predict_s": cr.status.get("timings", {}).get("predict_s"), "env": env_desc,
            "sandbox": cr.child.sandbox}


def _run_error(f: Failure, run_dir: Path, env_desc: dict) -> SubkitError:
    """The run's failure as one error; the child's own words (its log tail) and the
    versions it ran in go to the reporter first."""
    from subkit.errors import RunFailed

    if f.tail:  # the child's own words first, then our one error line
        ui.progress("--- the submission's traceback/log tail ---")
        ui.progress("\n".join("    " + line for line in f.tail.splitlines()[-12:]))
    ui.progress(env_line(env_desc))
    for w in env_warnings(env_desc):
        ui.progress(f"warning: {w}")
    return RunFailed(f.message, hint=f"{f.hint} (logs: {run_dir / 'logs'})")
