"""Synthetic data per kind of competition, and local test sets loaded per kind."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn import linear_model as sk_linear

from subkit import profile
from subkit.data import io, synthetic
from subkit.errors import InputError

ALL = ["an2dl-2024-blood-cells", "an2dl-2023-plants", "an2dl-2023-forecasting",
       "an2dl-2022-ts-classification", "an2dl-2024-mars-terrain", "an2dl-2025-pirate-pain"]


def load(name):
    return profile.load(name, workspace=False)


def save(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("name", ALL)
def test_synthetic_sets_load_as_local_test_sets(tmp_path, name):
    prof = load(name)
    d = synthetic.for_profile(prof, 48, seed=2)
    again = synthetic.for_profile(prof, 48, seed=2)
    other = synthetic.for_profile(prof, 48, seed=3)
    for k in d:  # seeded: the same bytes for the same seed, others for another
        assert np.array_equal(d[k], again[k])
    assert not np.array_equal(d[prof.images_key], other[prof.images_key])
    ds = io.load(save(tmp_path / "t.npz", **d), prof)
    n = len(d[prof.images_key])
    assert len(ds) == n and ds.images.shape[1:] == prof.input_shape
    if prof.output_kind == "labels":
        assert ds.labels.shape == (n,) and ds.labels.dtype == np.int64
        assert set(np.unique(ds.labels)) <= set(range(prof.n_classes))
    elif prof.output_kind == "masks":
        assert ds.labels.shape == (n,) + prof.input_shape[:2]
        assert set(np.unique(ds.labels)) == set(range(5))  # all five classes appear
    else:
        assert ds.labels.shape == (n, 9) and list(ds.extras) == ["categories"]
        assert io.load(tmp_path / "t.npz", prof, phase="final").labels.shape == (n, 18)


def test_plant_labels_are_the_class_names_and_map_to_ids(tmp_path):
    prof = load("an2dl-2023-plants")
    d = synthetic.plants(60, seed=0, duplicates=6)
    assert set(d["labels"]) == {"healthy", "unhealthy"} and d["is_duplicate"].sum() == 6
    ds = io.load(save(tmp_path / "p.npz", data=d["data"], labels=d["labels"]), prof)
    assert np.array_equal(ds.labels, (d["labels"] == "unhealthy").astype(int))


def test_pickled_string_labels_load_without_running_code(tmp_path):
    """The real public_data.npz stores its labels as a pickled object array."""
    prof = load("an2dl-2023-plants")
    d = synthetic.plants(20, seed=1)
    labels = np.array(list(d["labels"]), dtype=object)
    path = tmp_path / "public_data.npz"
    np.savez(path, data=d["data"], labels=labels)
    ds = io.load(path, prof)
    assert np.array_equal(ds.labels, (d["labels"] == "unhealthy").astype(int))
    # the blood-cell profile does not expect pickles: refused with a hint
    np.savez(tmp_path / "b.npz", images=d["data"], labels=labels)
    with pytest.raises(InputError) as exc:
        io.load(tmp_path / "b.npz", load("an2dl-2024-blood-cells"), check_shape=False)
    assert "holds pickled Python objects" in exc.value.message and "allow_pickle" in exc.value.hint


class Boom:
    def __reduce__(self):
        return (open, ("/tmp/subkit-pwned-by-test", "w"))


def test_a_hostile_pickle_is_refused_not_run(tmp_path):
    prof = load("an2dl-2023-plants")
    d = synthetic.plants(4, seed=1)
    evil = np.empty(4, dtype=object)
    evil[:] = [Boom(), "healthy", "healthy", "unhealthy"]
    path = tmp_path / "evil.npz"
    np.savez(path, data=d["data"], labels=evil)
    import os

    if os.path.exists("/tmp/subkit-pwned-by-test"):
        os.unlink("/tmp/subkit-pwned-by-test")
    with pytest.raises(InputError) as exc:
        io.load(path, prof)
    assert "not strings" in exc.value.message
    assert not os.path.exists("/tmp/subkit-pwned-by-test")
    assert pickle.loads(pickle.dumps("x")) == "x"


@pytest.mark.parametrize("labels,needle", [
    (["healthy", "sick", "Healthy", "unhealthy"],
     "labels the profile does not know: 'Healthy', 'sick'"),
])
def test_string_labels_the_profile_does_not_know(tmp_path, labels, needle):
    prof = load("an2dl-2023-plants")
    d = synthetic.plants(4, seed=1)
    with pytest.raises(InputError) as exc:
        io.load(save(tmp_path / "p.npz", data=d["data"], labels=np.array(labels)), prof)
    assert needle in exc.value.message and "'healthy', 'unhealthy'" in exc.value.hint


def _forecast_set(n=12, steps=18):
    d = synthetic.forecasting(n // 2, seed=0, windows=2, horizon=steps)
    return {"X": d["X"], "y": d["y"], "categories": d["categories"]}


@pytest.mark.parametrize("change,needle", [
    (lambda d: d.pop("categories"), "has no 'categories' array"),
    (lambda d: d.__setitem__("categories", np.array(["Z"] * 12)),
     "'categories' holds values the profile does not know: 'Z'"),
    (lambda d: d.__setitem__("categories", d["categories"][:5]), "'categories' has shape (5,)"),
    (lambda d: d.__setitem__("X", d["X"][:, :150]),
     "have shape (150,), the profile expects (200,)"),
    (lambda d: d.__setitem__("y", d["y"][:, 0]), "'y' has shape (12,)"),
])
def test_bad_forecasting_sets(tmp_path, change, needle):
    d = _forecast_set()
    change(d)
    with pytest.raises(InputError) as exc:
        io.load(save(tmp_path / "f.npz", **d), load("an2dl-2023-forecasting"))
    assert needle in exc.value.message and exc.value.hint


def test_a_9_step_target_serves_the_first_phase_not_the_final(tmp_path):
    prof = load("an2dl-2023-forecasting")
    path = save(tmp_path / "f.npz", **_forecast_set(steps=9))
    assert io.load(path, prof).labels.shape == (12, 9)
    with pytest.raises(InputError) as exc:
        io.load(path, prof, phase="final")
    assert "holds 9 future steps; the horizon of the final phase is 18" in exc.value.message


@pytest.mark.parametrize("masks,needle", [
    (lambda m: m[:, :32], "masks have shape (6, 32, 128)"),
    (lambda m: np.where(m == 4, 7, m), "mask pixels hold classes outside 0..4"),
    (lambda m: m + 0.5, "masks are not whole class ids"),
])
def test_bad_segmentation_sets(tmp_path, masks, needle):
    d = synthetic.terrain(6, seed=0)
    with pytest.raises(InputError) as exc:
        io.load(save(tmp_path / "s.npz", images=d["images"], masks=masks(d["masks"])),
                load("an2dl-2024-mars-terrain"))
    assert needle in exc.value.message


def test_a_folder_is_only_for_image_classification(tmp_path):
    with pytest.raises(InputError) as exc:
        io.load(tmp_path, load("an2dl-2024-mars-terrain"))
    assert "a segmentation data set is an .npz" in exc.value.message
    assert "images=..., masks=..." in exc.value.hint


# -- learnable, not trivial ------------------------------------------------------------------
def test_forecasting_series_need_their_seasonality():
    train, test = synthetic.forecasting(150, seed=0), synthetic.forecasting(40, seed=1)
    last_value = float(((test["y"] - test["X"][:, -1:]) ** 2).mean())
    ridge = sk_linear.Ridge(1e-2).fit(train["X"], train["y"])
    learnt = float(((ridge.predict(test["X"]) - test["y"]) ** 2).mean())
    assert learnt < 0.2 * last_value and learnt > 1e-4
    assert set(train["categories"]) == set("ABCDEF")
    assert len(np.unique(train["series"])) == 150


def test_multivariate_classes_are_frequencies_and_patterns():
    train = synthetic.multivariate(800, seed=0)
    test = synthetic.multivariate(300, seed=1)

    def spectrum(X):
        Z = (X - X.mean(1, keepdims=True)) / X.std(1, keepdims=True).clip(1e-6)
        S = np.log1p(np.abs(np.fft.rfft(Z, axis=1)).reshape(len(X), -1))
        return (S - S.mean(0)) / S.std(0).clip(1e-6)

    fit = sk_linear.LogisticRegression(max_iter=3000).fit(spectrum(train["X"]), train["labels"])
    acc = float((fit.predict(spectrum(test["X"])) == test["labels"]).mean())
    raw = sk_linear.RidgeClassifier().fit(train["X"].reshape(800, -1), train["labels"])
    acc_raw = float((raw.predict(test["X"].reshape(300, -1)) == test["labels"]).mean())
    assert 0.4 < acc < 0.95 and acc_raw < 0.3  # the phase varies: position alone is not enough


def test_terrain_classes_need_texture_not_only_brightness():
    from numpy.lib.stride_tricks import sliding_window_view
    from sklearn import tree

    train, test = synthetic.terrain(40, seed=0), synthetic.terrain(20, seed=1)

    def features(images, texture):
        cols = [images[..., None]]
        if texture:
            w = sliding_window_view(np.pad(images, ((0, 0), (2, 2), (2, 2)), mode="reflect"),
                                    (5, 5), axis=(1, 2))
            cols += [w.std(axis=(-1, -2))[..., None], w.mean(axis=(-1, -2))[..., None]]
        return np.concatenate(cols, -1).reshape(-1, len(cols))

    acc = {}
    for tex in (False, True):
        t = tree.DecisionTreeClassifier(max_depth=8, random_state=0)
        t.fit(features(train["images"], tex), train["masks"].ravel())
        acc[tex] = float((t.predict(features(test["images"], tex)) == test["masks"].ravel()).mean())
    assert acc[False] < 0.6 and acc[True] > acc[False] + 0.1 and acc[True] < 0.95


def test_mars_aliens_share_one_mask():
    d = synthetic.terrain(30, seed=0, aliens=7)
    aliens = d["masks"][d["is_outlier"]]
    assert len(aliens) == 7 and (aliens == aliens[0]).all()
    imgs = d["images"][d["is_outlier"]]
    assert len({im.tobytes() for im in imgs}) == 7  # the pictures differ, the mask does not
