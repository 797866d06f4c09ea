"""`subkit build` and `subkit check`: the competition zip, checked the way the grader will
use it (``subkit.build`` holds the checks and the packaging)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from subkit import ui


@dataclass(frozen=True)
class BuildOptions:
    weights: list[Path]
    model_py: Path | None = None  # None: ./model.py, else the template
    includes: list[Path] = field(default_factory=list)
    tag: str = "submission"
    out_dir: Path | None = None  # None: the workspace's submissions/
    keep_optimizer: bool = False
    smoke: bool = True
    env: str | None = None  # auto | grader | current; None: $SUBKIT_ENV or auto
    target_keras: str | None = None
    phase: str | None = None
    quiet: bool = False  # --json: no progress lines


@dataclass(frozen=True)
class CheckOptions:
    path: Path  # a zip, or a Kaggle CSV
    smoke: bool = True
    env: str | None = None
    data: Path | None = None  # with a CSV: the test set it predicts
    phase: str | None = None
    quiet: bool = False


def build(opts: BuildOptions, prof) -> dict:
    """Build the zip; returns its manifest."""
    from subkit.build import build_submission

    return build_submission(
        weights=list(opts.weights), model_py=opts.model_py, includes=list(opts.includes),
        tag=opts.tag, out_dir=opts.out_dir, profile=prof, keep_optimizer=opts.keep_optimizer,
        smoke=opts.smoke, echo=None if opts.quiet else ui.echo, env=opts.env,
        target_keras=opts.target_keras, phase=opts.phase)


def check(opts: CheckOptions, prof):
    """Check a zip (or a Kaggle CSV); returns the CheckReport (PASSED / FAILED)."""
    from subkit.build import check_csv, check_zip

    echo = None if opts.quiet else ui.echo
    if opts.path.name.lower().endswith(".csv"):
        return check_csv(opts.path, prof, data=opts.data, echo=echo)
    return check_zip(opts.path, prof, smoke=opts.smoke, env=opts.env, echo=echo, phase=opts.phase)
