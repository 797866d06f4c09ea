"""`subkit score-local` and `subkit predict`: a zip run the way the hidden evaluation runs
it, scored (or its predictions written as the profile's CSV). With a bundle, the
competition's own programs run instead of subkit's grader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from subkit.errors import SubkitError, UsageError


@dataclass(frozen=True)
class ScoreLocalOptions:
    zip: Path | None = None  # None: the newest zip of the workspace
    data: Path | None = None  # None: subkit.toml's local_test
    time_limit: float | None = None  # None: the profile's
    isolate_network: bool = True
    bundle: Path | None = None  # a Codabench bundle: its programs grade the zip
    phase: str | None = None  # the bundle's phase with a bundle, else the profile's
    task: int | None = None  # with a bundle: the task index
    shift: str | None = None  # a shift suite
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


def zip_or_newest(prof, zip_path: Path | None) -> Path:
    from subkit.workspace import newest_zip

    return Path(zip_path) if zip_path else newest_zip(prof)


def local_test(prof, data_path: Path | None) -> Path:
    if data_path:
        return Path(data_path)
    p = prof.workspace_path("local_test")
    if p is None:
        raise UsageError("no test data given and subkit.toml names no local test set",
                         hint="pass --data FILE, or run `subkit data split ... --set-default`")
    return p


def score_local(opts: ScoreLocalOptions, prof):
    """The run's result: a RunResult, or a BundleRunResult with a bundle."""
    if opts.bundle or opts.task is not None:
        return _with_bundle(opts, prof)
    from subkit.grader.run import score_local as run_score

    if opts.phase is not None:  # the profile's phase; a bundle's needs --bundle
        try:
            prof.phase(opts.phase)
        except SubkitError as exc:
            raise UsageError(exc.message, hint=f"{exc.hint}; a Codabench bundle's phase needs "
                                               "--bundle BUNDLE") from None
    zip_path, shift = opts.zip, opts.shift
    if shift and zip_path is None and shift.lower().endswith(".zip"):
        zip_path, shift = Path(shift), "default"  # `--shift my.zip`: the zip, not a suite
    return run_score(zip_or_newest(prof, zip_path), local_test(prof, opts.data), prof,
                     time_limit=opts.time_limit, isolate_network=opts.isolate_network,
                     progress=opts.progress, shift=shift, seed=opts.seed,
                     tta_compare=opts.tta_compare, proba=opts.proba, env=opts.env,
                     phase=opts.phase)


def _with_bundle(opts: ScoreLocalOptions, prof):
    from subkit.grader.codabench import score_with_bundle

    if opts.shift or opts.tta_compare:
        raise UsageError("--shift and --tta-compare run subkit's own grader, not a bundle's",
                         hint="drop --bundle, or drop --shift/--tta-compare")
    if not opts.bundle:
        raise UsageError("--task chooses a task of a bundle", hint="pass --bundle BUNDLE too")
    if opts.data:
        raise UsageError("--data and --bundle together: the bundle brings its own test data",
                         hint="drop --data (or drop --bundle to score on your own data)")
    return score_with_bundle(zip_or_newest(prof, opts.zip), Path(opts.bundle), prof, opts.phase,
                             opts.task, time_limit=opts.time_limit,
                             isolate_network=opts.isolate_network, progress=opts.progress,
                             env=opts.env)


def predict(opts: PredictOptions, prof) -> dict:
    """Predict unlabelled data and write the profile's CSV; returns what was written."""
    from subkit.grader.run import predict_csv

    return predict_csv(zip_or_newest(prof, opts.zip), opts.data, opts.out, prof,
                       force=opts.force, time_limit=opts.time_limit, progress=opts.progress,
                       env=opts.env, phase=opts.phase)
