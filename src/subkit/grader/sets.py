"""Running a submission on more than the clean set: one sandboxed child predicts the clean
set (timed against the limit, as the grader times it), then each extra set in order (the
shift suite's shifted copies, which a generator may still be writing), and optionally
``predict_proba``. The sets come as a plan object (``subkit.shift.Plan`` or the other
kinds' ``KindPlan``): this module needs only what ``ExtraSets`` says of it."""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from subkit import ui

if TYPE_CHECKING:
    from subkit.profile import Profile

Array = np.ndarray


class ExtraSets(Protocol):
    """The shifted sets a child predicts after the clean one."""

    generated: bool

    def __len__(self) -> int: ...

    def child_args(self) -> list[str]: ...

    def generate(self, X: Array, labels: Array | None,
                 stop: threading.Event | None = None) -> None: ...


class SetProgress:
    """``--shift``'s progress: the sets predicted so far (the clean one, then each shifted
    one) with the child's stage and the time left, drawn by the reporter (``ui.bar``)."""

    def __init__(self, n_sets: int, label: str, limit: float, status_path: Path,
                 enabled: bool):
        self.enabled = enabled and ui.live()
        self.status_path = status_path
        self.last = 0.0
        self.bar = ui.bar(label, n_sets, unit="set") if self.enabled else ui.Bar()

    def tick(self, elapsed: float) -> None:
        if not self.enabled or elapsed - self.last < 0.5:
            return
        self.last = elapsed
        from subkit.grader import untrusted

        st = untrusted.sane_status(untrusted.read_untrusted_json(self.status_path))  # the child's
        stage = str(st.get("stage", "start"))
        done = int(bool(st.get("ok"))) + len(st.get("extra") or {})
        what = (f"shifted set {stage.split(':', 1)[1]}" if stage.startswith("extra:")
                else f"clean set: {stage}")
        self.bar.set(done, what)

    def close(self) -> None:
        self.bar.close()


def run_with_plan(submission_dir: Path, X: Array, labels: Array | None, prof: Profile,
                  plan: ExtraSets | None, *, run_dir: Path, time_limit: float,
                  python: str | None = None, isolate_network: bool = True,
                  progress: bool = False, extra_env: dict | None = None, proba: bool = False,
                  label: str = "running the submission", inputs: dict | None = None):
    """One child: ``Model()``, ``predict(X)`` (the grader's run, timed against the limit),
    then ``predict`` once on each shifted copy. Returns the ChildRun of the clean part.
    ``inputs``: predict's other inputs (``categories``), the same for every set.

    The child may run for ``time_limit`` per predicted set; the clean part alone must fit
    ``time_limit``, as on the grader.
    """
    from subkit.grader import run as grun

    args = plan.child_args() if plan else []
    if proba:
        args.append("--proba")
    n_sets = 1 + (len(plan) if plan else 0)
    stop = threading.Event()
    gen = None
    if plan is not None and not plan.generated:
        # write the shifted sets while the child imports, loads and predicts the clean set
        gen = threading.Thread(target=plan.generate, args=(X, labels, stop), daemon=True,
                               name="subkit-shift-generate")
        gen.start()
    bar = functools.partial(SetProgress, n_sets) if plan else None
    try:
        cr = grun.run_submission(submission_dir, X, prof, run_dir=run_dir,
                                 time_limit=time_limit * n_sets, python=python,
                                 isolate_network=isolate_network, progress=progress,
                                 extra_env=extra_env, label=label, extra_args=args,
                                 bar_class=bar, inputs=inputs)
    finally:
        stop.set()
        if gen is not None:
            gen.join()
    st = cr.status
    main_ok = bool(st.get("ok"))
    late_stage = str(st.get("stage", "")).startswith(("extra", "proba"))
    if cr.failure is not None and main_ok and late_stage:
        # the clean run finished (subkit took its predictions then); the child died or was
        # killed on the extra work
        if cr.predictions is not None:
            cr.warnings.append(f"the submission's process ended during the extra predictions "
                               f"({cr.failure.message}); the shifted sets it did not finish count "
                               "as missing")
            cr.failure, cr.ok = None, True
    elif cr.failure is not None and cr.child.timed_out:
        cr.failure = grun.diagnose(cr.child, st, prof, time_limit)
    clean_s = cr.clean_s  # subkit's clock, not the child's word
    if cr.failure is None and n_sets > 1 and clean_s is not None and clean_s > time_limit:
        cr.failure = grun.Failure(
            "predict", f"the submission exceeded the time limit of {time_limit:g} s on the clean "
                       f"test set ({clean_s:.0f} s; the grader kills it: 'Execution Time Limit "
                       "exceeded')",
            "predict in batches (the template does), use fewer TTA views or a smaller model")
        cr.ok = False
    return cr
