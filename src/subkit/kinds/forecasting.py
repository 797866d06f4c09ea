"""Forecasting (the 2023 homework): a series (and its category) in, the next ``horizon``
values out, the horizon set by the phase; ranked by MSE. A code competition: the zip is
the submission (no CSV). Split by series: a series' windows overlap."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from subkit.errors import SubkitError
from subkit.kinds import series
from subkit.kinds.base import DemoData, Kind, ReportArrays

if TYPE_CHECKING:
    from pathlib import Path

    from subkit.profile import Profile



def _steps(prof: Profile) -> int:
    """The longest forecast horizon over the profile's phases (its only one without phases)."""
    phases: list[str | None] = [*prof.phases] or [None]
    return max(prof.horizon(p) or 0 for p in phases)


class Forecasting(Kind):
    name = "forecasting"
    title = "forecasting"
    task = "forecasting"
    input_kind = "series"
    metrics = ("mse", "mae", "rmse")
    needs_classes = False
    noun = "series"
    target_noun = "target rows"
    output = "forecasts"
    templates = ("model_forecast.py", "train_forecast.py")
    csv = False
    shift_families = series.SERIES
    shift_titles = series.TITLES
    shift_example = "noise:3,scaling"

    def targets(self, raw: np.ndarray, path: Path, prof: Profile, phase: str | None,
                n: int) -> np.ndarray:
        from subkit.data import io

        return io.forecast_targets(raw, path, prof, phase, n)

    def split(self, path: Path, prof: Profile, **kwargs: Any) -> dict:
        from subkit.data import kinds

        return kinds.split_file(path, prof, **kwargs)

    def split_rows(self, ds: Any, arrays: dict, test_size: float, seed: int, near: int,
                   min_similarity: float) -> tuple[np.ndarray, np.ndarray, dict]:
        from subkit.data import kinds

        return kinds.split_by_series(ds, arrays, test_size, seed)

    def split_lines(self, report: dict) -> list[str]:
        out = [f"split by series: {report['test_series']} of {report['n_series']} series on "
               "the test side, each whole (no window of a test series in training)"]
        out += [f"  category {c['category']}: {c['series']} series, {c['test_series']} test"
                for c in report["categories"]]
        return out

    def output_words(self, values: np.ndarray, prof: Profile, phase: str | None) -> str:
        return (f"forecasts of shape {tuple(values.shape)} (horizon {prof.horizon(phase)}"
                + (f" in the {prof.phase(phase)} phase)" if prof.phases else ")"))

    def refuse_csv(self, prof: Profile) -> None:
        raise SubkitError(f"{prof.name} is a code competition: it takes the zip, not a CSV",
                          hint="score it with `subkit score-local`, submit the zip")

    def apply_shift(self, name: str, sev: int, X: np.ndarray, truth: np.ndarray | None,
                    rng: np.random.Generator, prof: Profile, seed: int,
                    image_shift: Any) -> tuple[np.ndarray, np.ndarray | None]:
        return series.shift_series(name, sev, X, truth, rng)

    def headline_suffix(self, phase: str | None) -> str:
        return f", {phase} phase" if phase else ""

    def summary_lines(self, result: Any) -> list[str]:
        steps = result.scores.get("mse_per_step") or []
        return ["  MSE per forecast step: " + " ".join(f"{v:.4f}" for v in steps), ""]

    def report_sections(self, run: dict, arrays: ReportArrays) -> list[str]:
        from subkit.kinds.report import steps

        return [steps.per_step(run), steps.examples(run, arrays)]

    def synthetic(self, prof: Profile, n: int, *, seed: int = 0,
                  **kwargs: Any) -> dict[str, np.ndarray]:
        from subkit.data import synthetic

        steps = _steps(prof)
        d = synthetic.forecasting(max(1, n // kwargs.pop("windows", 4)), seed=seed,
                                  history=prof.input_shape[0], horizon=steps, **kwargs)
        return {prof.images_key: d["X"], prof.labels_key: d["y"], "categories": d["categories"],
                "series": d["series"]}

    def template_data(self, prof: Profile) -> dict[str, Any]:
        return {"steps": _steps(prof),
                "categories": prof.extra_input_values("categories") or []}

    def edit_model_template(self, text: str, prof: Profile) -> str:
        text = re.sub(r"^HORIZON = \d+", f"HORIZON = {prof.horizon()}", text, count=1,
                      flags=re.M)
        values = prof.extra_input_values("categories")
        if values:
            text = re.sub(r"^CATEGORIES = .*$", "CATEGORIES = " + json.dumps(values), text,
                          count=1, flags=re.M)
        return text

    def demo_data(self, prof: Profile, n: int, seed: int) -> DemoData:
        from subkit.data import synthetic

        d = synthetic.for_profile(prof, n, seed=seed)
        ids = np.unique(d["series"])
        test_ids = np.random.default_rng(seed).choice(
            ids, max(1, int(round(len(ids) * 0.2))), replace=False)
        note = (f"{len(d['series'])} windows of {len(ids)} series; split by series: "
                f"{len(test_ids)} series held out (their windows overlap)")
        return DemoData(d, d, np.isin(d["series"], test_ids), note)


KIND = Forecasting()
