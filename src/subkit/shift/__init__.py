"""The distribution-shift suite: the local test images under seeded, reproducible shifts.

The hidden test set of the reference competition was shifted from the training data, as
its participants reported: teams with 0.92-0.98 local validation accuracy scored 0.20-0.76 on the
leaderboard. ``score-local --shift SUITE`` makes shifted copies of the local test set and
has the submission's child predict each once after the clean set.

- ``families``: each family is one kind of shift at 3 (or, for MedMNIST-C, 5) severities,
  built on Keras 3's preprocessing layers and Pillow where they have the op (``ops``);
  suites name their hypothesis: ``default``, ``quick``, ``hidden-2024``, ``microscopy``,
  or a list like ``blur:3,noise``.
- ``generate``: the sets are made in a separate process of subkit's own interpreter
  (newest Keras and Pillow, whatever the child runs), seeded, byte-identical for a seed on
  the same library versions.
- ``plan``: the plan of sets, the generator running while the child predicts, the scores
  per set (``collect``), the TTA comparison.

The shifted score is the mean of the metric over every (family, severity) of the suite;
``subkit.calibration`` turns the per-set scores into a leaderboard prediction once the
ledger has leaderboard scores of other zips (docs/shift-and-report.md).
"""

from subkit.grader.sets import SetProgress, run_with_plan
from subkit.shift.families import (
    FAMILIES,
    SUITES,
    Family,
    Suite,
    SuiteError,
    describe,
    hypothesis,
    key,
    n_severities,
    parse_suite,
)
from subkit.shift.plan import (
    SAMPLES,
    Plan,
    collect,
    make_plan,
    prepare,
    save_samples,
    tta_available,
    tta_compare,
)

__all__ = ["FAMILIES", "SUITES", "Family", "Suite", "SuiteError", "describe", "hypothesis",
           "key", "n_severities", "parse_suite", "SAMPLES", "Plan", "SetProgress", "collect",
           "make_plan", "prepare", "run_with_plan", "save_samples", "tta_available",
           "tta_compare", "apply"]


def apply(*args, **kwargs):
    """``subkit.shift.generate.apply`` (imported on use: it needs Keras for most families)."""
    from subkit.shift.generate import apply as _apply

    return _apply(*args, **kwargs)
