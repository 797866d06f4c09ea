"""The kind objects (subkit.kinds): what each kind says and writes instead of the image
classifier's words (report.html's sections, the summary's lines, refusals)."""

from __future__ import annotations

import numpy as np
import pytest

from subkit import profile
from subkit.errors import SubkitError
from subkit.kinds.report import ReportArrays
from subkit.report.html import render


def _prof(name):
    return profile.load(name, workspace=False)


def _run(**extra):
    return {"zip": "z.zip", "ok": True, "metric": "mse", "n": 12, "time_limit_s": 60,
            "timings": {"child_s": 3.0}, "env": {}, **extra}


def test_each_profile_hands_out_its_kind():
    got = {n: _prof(n).kind_spec.name for n in
           ("an2dl-2023-forecasting", "an2dl-2024-mars-terrain", "an2dl-2025-pirate-pain",
            "an2dl-2024-blood-cells")}
    assert got == {"an2dl-2023-forecasting": "forecasting",
                   "an2dl-2024-mars-terrain": "segmentation",
                   "an2dl-2025-pirate-pain": "series-classification",
                   "an2dl-2024-blood-cells": "classification"}
    # the smoke test's and the headline's word for a sample
    assert _prof("an2dl-2025-pirate-pain").kind_spec.noun == "series"
    assert _prof("an2dl-2024-mars-terrain").kind_spec.noun == "images"


def test_forecasting_report_has_the_error_per_step_and_no_image_words():
    prof = _prof("an2dl-2023-forecasting")
    rng = np.random.default_rng(0)
    X, y = rng.random((12, 200)), rng.random((12, 9))
    page = render(_run(scores={"mse": 0.1, "mse_per_step": [0.05 * (k + 1) for k in range(9)]},
                       phase="development"),
                  kind=prof.kind_spec, arrays=ReportArrays(X, y, y + 0.1))
    assert "Error per forecast step" in page and "0.4500" in page
    assert "12 local test series" in page and "Forecasts of the worst series" in page
    assert "images" not in page and "Most confident mistakes" not in page


def test_segmentation_report_has_iou_per_class_and_mask_overlays():
    prof = _prof("an2dl-2024-mars-terrain")
    h, w = prof.input_shape[:2]
    rng = np.random.default_rng(1)
    X = rng.random((5, h, w)).astype("float32")
    truth = rng.integers(0, prof.n_classes, (5, h, w))
    pred = truth.copy()
    pred[0] = 0  # the worst image comes first
    per_class = [{"class": c, "name": n, "ignored": c == 0, "iou": 0.5, "support": 10}
                 for c, n in enumerate(prof.class_names)]
    page = render(_run(metric="mean_iou", scores={"mean_iou": 0.5}, per_class=per_class,
                       class_names=prof.class_names,
                       confusion_matrix=np.eye(prof.n_classes, dtype=int).tolist()),
                  kind=prof.kind_spec, arrays=ReportArrays(X, truth, pred))
    assert "IoU per class" in page and "ignored" in page
    assert "Masks: truth and prediction" in page and page.count("data:image/png") == 3 * 5
    assert page.index("<b>#0</b>") < page.index("<b>#1</b>")
    assert "Confusion matrix of pixels" in page and "Most confident mistakes" not in page


def test_forecasting_summary_prints_the_mse_per_step():
    kind = _prof("an2dl-2023-forecasting").kind_spec

    class R:
        scores = {"mse_per_step": [0.1, 0.25]}

    assert kind.summary_lines(R()) == ["  MSE per forecast step: 0.1000 0.2500", ""]
    assert kind.headline_suffix("final") == ", final phase"


@pytest.mark.parametrize("name", ["an2dl-2023-forecasting", "an2dl-2024-mars-terrain",
                                  "an2dl-2025-pirate-pain"])
def test_bundle_export_refusal_names_the_kind(name, tmp_path):
    from subkit.grader.codabench.export import export_bundle

    prof = _prof(name)
    with pytest.raises(SubkitError) as exc:
        export_bundle(prof, tmp_path / "ref.npz", tmp_path / "b.zip")
    assert prof.kind_spec.title in exc.value.message and prof.name in exc.value.message
    assert "segmentation scoring" not in exc.value.hint


def test_a_new_kind_is_one_module_and_one_profile(tmp_path, monkeypatch):
    """A module with a KIND in subkit/kinds/ (here put on the package's path) and a profile
    with its task: the profile validates, hands out the new kind, and its words are used."""
    import copy

    import subkit.kinds as kinds

    (tmp_path / "toy_regression.py").write_text(
        "from subkit.kinds.base import Kind\n\n\n"
        "class ToyRegression(Kind):\n"
        "    name = task = 'toy-regression'\n"
        "    title = 'toy regression'\n"
        "    noun = 'rows'\n"
        "    output = 'values'\n"
        "    metrics = ('mse',)\n"
        "    needs_classes = False\n\n\n"
        "KIND = ToyRegression()\n")
    monkeypatch.setattr(kinds, "__path__", [*kinds.__path__, str(tmp_path)])
    kinds.all_kinds.cache_clear()
    try:
        data = copy.deepcopy(profile.load_builtin("an2dl-2023-forecasting"))
        data.update(name="toy", task="toy-regression")
        data["input"].pop("kind", None)
        data["output"] = {"kind": "values"}
        data["evaluation"]["secondary_metrics"] = []
        with pytest.raises(SubkitError, match="does not fit a toy-regression task"):
            bad = copy.deepcopy(data)
            bad["output"] = {"kind": "forecasts"}
            profile.validate(bad, "toy.toml")
        profile.validate(data, "toy.toml")
        prof = profile.Profile(data=data, source="toy.toml")
        assert prof.kind == "toy-regression" and prof.kind_spec.noun == "rows"
        with pytest.raises(SubkitError, match="toy regression"):
            prof.kind_spec.refuse_export(prof)
    finally:
        kinds.all_kinds.cache_clear()
