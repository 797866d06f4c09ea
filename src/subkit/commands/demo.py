"""`subkit demo`: the whole flow on built-in synthetic data (``subkit.demo`` for the
reference competition, ``subkit.demo_kinds`` for every other kind)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from subkit import ui
from subkit.errors import InputError


@dataclass(frozen=True)
class DemoOptions:
    directory: Path | None = None  # None: ./subkit-demo, or ~/subkit-demo from a checkout
    n_images: int = 2000
    epochs: int | None = None  # None: train.py --quick's
    force: bool = False  # reuse a non-empty directory
    seed: int = 0
    profile_name: str | None = None  # None: the reference competition


def run(opts: DemoOptions, show_score: Callable[[Any, Any], None] | None = None) -> dict:
    """Check the folder and the size, then run the demo of the profile's kind;
    ``show_score(result, profile)`` renders the local run's summary."""
    from subkit import profile
    from subkit.commands.demo_reference import demo_directory, run_reference_demo

    directory, why = demo_directory(opts.directory)
    if directory.exists() and any(directory.iterdir()) and not opts.force:
        raise InputError(f"{directory} exists and is not empty",
                         hint="give another folder, or --force to reuse it")
    if opts.n_images < 200:
        raise InputError(f"--n {opts.n_images} is too small for a demo",
                         hint="use at least 200 images")
    ui.echo(f"the demo's workspace: {directory} ({why})", bold=True)
    if opts.profile_name and opts.profile_name != profile.DEFAULT_PROFILE:  # every other kind
        from subkit.commands.demo_kinds import run_kind_demo

        return run_kind_demo(directory, profile.load(opts.profile_name, workspace=False),
                             n=opts.n_images, epochs=opts.epochs, seed=opts.seed,
                             show_score=show_score)
    return run_reference_demo(directory, n_images=opts.n_images, epochs=opts.epochs,
                              seed=opts.seed, show_score=show_score)
