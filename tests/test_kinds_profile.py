"""Every kind of competition as profile data, and its metrics.

The metrics of subkit.grader.scoring are checked against scikit-learn (the `test` extra)
on random data with the edge cases that differ between implementations: classes absent
from the truth or the predictions, ignored classes, empty classes.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from subkit import profile
from subkit.errors import ProfileError
from subkit.grader import scoring

BUILTINS = {
    "an2dl-2024-blood-cells": ("codabench", "classification", "accuracy"),
    "an2dl-2023-plants": ("codalab", "classification", "accuracy"),
    "an2dl-2023-forecasting": ("codalab", "forecasting", "mse"),
    "an2dl-2022-ts-classification": ("codalab", "series-classification", "accuracy"),
    "an2dl-2024-mars-terrain": ("kaggle", "segmentation", "mean_iou"),
    "an2dl-2025-pirate-pain": ("kaggle", "series-classification", "macro_f1"),
}


def load(name):
    return profile.load(name, workspace=False)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_profiles_load_with_their_kind(name):
    p = load(name)
    assert (p.platform, p.kind, p.metric) == BUILTINS[name]
    assert name in profile.builtin_names()


def test_codalab_profiles_say_the_codalab_interface():
    for name in ("an2dl-2023-plants", "an2dl-2023-forecasting", "an2dl-2022-ts-classification"):
        p = load(name)
        assert p.class_name == "model" and p.init_args == [profile.SUBMISSION_PLACEHOLDER]
        assert p.required_files["metadata"].startswith(
            "description: Provides prediction model to be executed by the ingestion program")
        assert p.returns_tensor or p.output_kind == "forecasts"
    blood = load("an2dl-2024-blood-cells")
    assert blood.required_files == {} and blood.init_args == [] and not blood.returns_tensor


def test_forecasting_phases_change_the_horizon():
    p = load("an2dl-2023-forecasting")
    assert p.extra_inputs == ["categories"]
    assert p.extra_input_values("categories") == list("ABCDEF")
    assert p.phases == ["development", "final"]
    assert ((p.horizon(), p.horizon("development"), p.horizon("final"), p.horizon("1"))
            == (9, 9, 18, 18))
    assert p.task_spec("final").horizon == 18 and p.task_spec().phase == "development"
    assert not p.higher_is_better and p.secondary_metrics == ["mae"]
    with pytest.raises(ProfileError) as exc:
        p.phase("test")
    assert "no phase 'test'" in exc.value.message and "development, final" in exc.value.hint


def test_plants_labels_are_strings_and_need_pickle():
    p = load("an2dl-2023-plants")
    assert p.class_names == ["healthy", "unhealthy"] and p.allow_pickle
    assert p.images_key == "data"


def test_csv_layouts():
    mars, pirate, blood = (load(n) for n in ("an2dl-2024-mars-terrain", "an2dl-2025-pirate-pain",
                                             "an2dl-2024-blood-cells"))
    assert (mars.csv.layout, mars.csv.id_column) == ("pixels", "id")
    assert (pirate.csv.layout, pirate.csv.id_column, pirate.csv.label_column,
            pirate.csv.label_values) == ("labels", "sample_index", "label", "names")
    assert (blood.csv.layout, blood.csv.label_values) == ("labels", "indices")
    assert mars.ignore_classes == [0] and mars.task_spec().mask_shape == (64, 128)
    assert (pirate.input_shape == (160, 38)
            and pirate.class_names == ["no_pain", "low_pain", "high_pain"])


@pytest.mark.parametrize("text,needle", [
    ('[output]\nhorizn = 9\n', "unknown key 'horizn' in [output]"),
    ('[evaluation]\nmetric = "mse"\n', "metric 'mse' does not rank a classification task"),
    ('[output]\nkind = "masks"\n', "[output] kind 'masks' does not fit a classification task"),
    ('[evaluation]\nsecondary_metrics = ["mae"]\n',
     "secondary_metrics: 'mae' is not a classification"),
    ('[output.phase.nope]\nhorizon = 18\n', "[output.phase.nope] names no phase"),
    ('[output.phase.final]\nkind = "labels"\n', "may only change horizon"),
    ('[submission]\npredict_extra_inputs = ["1x"]\n', "is not a name"),
    ('[submission.required_files]\n"a/b" = "x"\n', "required_files: 'a/b'"),
    ('[input]\nkind = "video"\n', "[input] kind 'video' is not known"),
    ('[input]\nextra_values = { colour = ["r"] }\n',
     "extra_values: 'colour' is not a predict input"),
    ('[kaggle]\nlayout = "rle"\n', "[kaggle] layout 'rle' is not known"),
    ('[kaggle]\nlabel_values = "words"\n', "label_values 'words' is not known"),
    ('platform = "codalab2"\n', "platform 'codalab2' is not known"),
])
def test_bad_kind_settings_are_refused(tmp_path, text, needle):
    (tmp_path / "subkit.toml").write_text('profile = "an2dl-2024-blood-cells"\n' + text)
    with pytest.raises(ProfileError) as exc:
        profile.load(workspace=tmp_path)
    assert needle in exc.value.message and exc.value.hint


@pytest.mark.parametrize("base,text,needle", [
    ("an2dl-2024-mars-terrain", "[evaluation]\nignore_classes = [5]\n",
     "ignore_classes: 5 is not a class id"),
    ("an2dl-2023-forecasting", "[output]\nhorizon = 0\n", "[output] horizon is missing"),
    ("an2dl-2023-forecasting", "[evaluation]\nmetric = \"accuracy\"\n",
     "does not rank a forecasting"),
])
def test_bad_settings_per_kind(tmp_path, base, text, needle):
    (tmp_path / "subkit.toml").write_text(f'profile = "{base}"\n' + text)
    with pytest.raises(ProfileError) as exc:
        profile.load(workspace=tmp_path)
    assert needle in exc.value.message


def test_overriding_a_phase_horizon_in_the_workspace(tmp_path):
    (tmp_path / "subkit.toml").write_text('profile = "an2dl-2023-forecasting"\n'
                                          "[output.phase.final]\nhorizon = 27\n")
    p = profile.load(workspace=tmp_path)
    assert (p.horizon(), p.horizon("final")) == (9, 27)


# -- the metrics against scikit-learn ---------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_classification_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    k = 5
    y = rng.integers(0, k - 1, 200)           # class 4 never true
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, k, 200))
    p[p == 2] = 3                             # class 2 never predicted
    m = scoring.metrics(y, p, [str(i) for i in range(k)])
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, p))
    assert m["macro_f1"] == pytest.approx(sk.f1_score(y, p, average="macro", zero_division=0))
    assert m["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y, p))


@pytest.mark.parametrize("seed", range(4))
def test_regression_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y, p = rng.random((30, 18)), rng.random((30, 18))
    m = scoring.regression_metrics(y, p)
    assert m["mse"] == pytest.approx(sk.mean_squared_error(y, p))
    assert m["mae"] == pytest.approx(sk.mean_absolute_error(y, p))
    assert m["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(y, p)))
    assert m["mse_per_step"] == pytest.approx(((y - p) ** 2).mean(axis=0).tolist())


@pytest.mark.parametrize("seed", range(6))
def test_mean_iou_matches_sklearn_jaccard(seed):
    rng = np.random.default_rng(seed)
    names = ["bg", "soil", "bedrock", "sand", "rock"]
    y = rng.integers(0, 4, (6, 8, 16))        # class 4 never true
    p = np.where(rng.random(y.shape) < 0.7, y, rng.integers(0, 5, y.shape))
    if seed % 2:
        p[p == 4] = 3                         # ... and then never predicted either
    m = scoring.segmentation_metrics(y, p, names, ignore=[0])
    keep = y.reshape(-1) != 0
    t, q = y.reshape(-1)[keep], p.reshape(-1)[keep]
    present = [c for c in (1, 2, 3, 4) if (t == c).any() or (q == c).any()]
    ref = sk.jaccard_score(t, q, labels=present, average=None)
    assert m["mean_iou"] == pytest.approx(ref.mean())
    assert [r["iou"] for r in m["per_class"] if r["class"] in present] == pytest.approx(list(ref))
    assert m["per_class"][0]["ignored"] and m["per_class"][0]["iou"] is None
    assert m["pixel_accuracy"] == pytest.approx(sk.accuracy_score(t, q))
    assert np.array_equal(np.array(m["confusion_matrix"]),
                          sk.confusion_matrix(t, q, labels=range(5)))
    if seed % 2:
        assert m["per_class"][4]["iou"] is None and len(present) == 3


def test_mean_iou_without_ignored_classes_counts_the_background():
    y = np.array([[0, 0, 1, 1]])
    p = np.array([[0, 1, 1, 1]])
    m = scoring.segmentation_metrics(y, p, ["bg", "fg"])
    assert m["mean_iou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert scoring.segmentation_metrics(y, p, ["bg", "fg"], ignore=[0])["mean_iou"] == 1.0
