"""`subkit init --profile` lays out each kind's templates, and the
templates do what they say (the segmentation TTA maps every view back; the forecasting
template rolls a short network out to the phase's horizon)."""

from __future__ import annotations

import ast
import importlib.util
import itertools
import json
import re

import numpy as np
import pytest

from subkit import profile
from subkit.workspace import model_template, train_template

_COUNTER = itertools.count()


def load(name):
    return profile.load(name, workspace=False)


def data_line(text):
    return json.loads(re.search(r"^DATA = (\{.*?\})$", text, re.M | re.S).group(1))


def classes(text):
    return {n.name: n for n in ast.parse(text).body if isinstance(n, ast.ClassDef)}


def init_args(cls):
    init = next(f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
    return [a.arg for a in init.args.args], len(init.args.defaults)


@pytest.mark.parametrize("name,cls,args,defaults", [
    ("an2dl-2024-blood-cells", "Model", ["self", "path"], 1),
    ("an2dl-2023-plants", "model", ["self", "path"], 0),
    ("an2dl-2023-forecasting", "model", ["self", "path"], 0),
    ("an2dl-2022-ts-classification", "model", ["self", "path"], 0),
    ("an2dl-2024-mars-terrain", "Model", ["self", "path"], 1),
    ("an2dl-2025-pirate-pain", "Model", ["self", "path"], 1),
])
def test_the_model_template_speaks_the_profiles_interface(name, cls, args, defaults):
    text = model_template(load(name))
    found = classes(text)
    assert list(found) == [cls]
    assert init_args(found[cls]) == (args, defaults)  # model(path) on CodaLab, Model() else


def test_the_forecasting_template_has_categories_and_the_first_horizon():
    text = model_template(load("an2dl-2023-forecasting"))
    assert re.search(r"^HORIZON = 9$", text, re.M)
    assert 'CATEGORIES = ["A", "B", "C", "D", "E", "F"]' in text
    assert "def predict(self, X, categories):" in text
    assert data_line(train_template(load("an2dl-2023-forecasting"))) == {
        "images_key": "X", "labels_key": "y", "steps": 18, "categories": list("ABCDEF")}


def test_train_templates_carry_the_profiles_layout():
    assert data_line(train_template(load("an2dl-2023-plants"))) == {
        "images_key": "data", "labels_key": "labels", "class_names": ["healthy", "unhealthy"]}
    assert data_line(train_template(load("an2dl-2024-mars-terrain"))) == {
        "images_key": "images", "labels_key": "masks", "n_classes": 5, "ignore_classes": [0]}
    pp = data_line(train_template(load("an2dl-2025-pirate-pain")))
    assert pp["class_names"] == ["no_pain", "low_pain", "high_pain"] and pp["images_key"] == "X"


def test_init_lays_out_the_codalab_workspace(cli, tmp_path):
    r = cli("init", tmp_path / "w", "--profile", "an2dl-2023-plants")
    assert r.code == 0, r.err
    ws = tmp_path / "w"
    assert (ws / "metadata").read_text() == load("an2dl-2023-plants").required_files["metadata"]
    assert "class model:" in (ws / "model.py").read_text()
    assert 'profile = "an2dl-2023-plants"' in (ws / "subkit.toml").read_text()
    r = cli("init", tmp_path / "k", "--profile", "an2dl-2024-mars-terrain")
    assert r.code == 0 and not (tmp_path / "k" / "metadata").exists()
    assert "TTA_VIEWS" in (tmp_path / "k" / "model.py").read_text()
    assert ("def build_model(keras, input_shape, n_classes, width)"
            in (tmp_path / "k" / "train.py").read_text())


def _module(folder, text, name="model.py"):
    (folder / name).write_text(text)
    spec = importlib.util.spec_from_file_location(f"kind_tmpl_{next(_COUNTER)}", folder / name)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_segmentation_view_is_undone_by_its_inverse(tmp_path):
    mod = _module(tmp_path, model_template(load("an2dl-2024-mars-terrain")))
    x = np.random.default_rng(0).random((2, 6, 10, 3))
    for name, (view, back) in mod.VIEWS.items():
        assert np.array_equal(back(view(x)), x), name
        if name != "identity":
            assert not np.array_equal(view(x), x), name


def _per_pixel_model(path):
    """A 1x1-convolution segmenter: its classes at a pixel depend on that pixel only, so
    flipping the image flips its masks: the correctly merged TTA equals no TTA."""
    import keras

    inputs = keras.Input((16, 24, 1))
    layer = keras.layers.Conv2D(5, 1, activation="softmax")
    model = keras.Model(inputs, layer(inputs))
    # logits a_c * x + b_c: dark pixels class 0, bright ones class 4, others in between
    layer.set_weights([np.array([-40, -20, 0, 20, 40], np.float32).reshape(1, 1, 1, 5),
                       np.array([20, 13, 0, -13, -20], np.float32)])
    model.save(path)


@pytest.mark.slow
def test_segmentation_tta_maps_each_views_masks_back(tmp_path):
    _per_pixel_model(tmp_path / "weights.keras")
    text = model_template(load("an2dl-2024-mars-terrain"))
    text = re.sub(r"^TTA_VIEWS = .*$", 'TTA_VIEWS = ["identity", "flip_lr", "flip_ud", "rot180"]',
                  text, flags=re.M)
    X = np.zeros((3, 16, 24), np.float32)
    X[:, :, :7] = 230  # an image that is not symmetric: a wrong mapping shows
    X[:, 10:, 15:] = 120
    X += np.random.default_rng(1).random(X.shape).astype(np.float32) * 40
    tta = _module(tmp_path, text).Model()
    plain = _module(tmp_path, text.replace("TTA = True", "TTA = False"), "plain.py").Model()
    assert tta.views == ["identity", "flip_lr", "flip_ud", "rot180"] and plain.views == ["identity"]
    masks = tta.predict(X)
    assert masks.shape == (3, 16, 24) and masks.dtype == np.int64
    assert np.allclose(tta.predict_proba(X), plain.predict_proba(X), atol=1e-5)
    assert len(np.unique(masks)) > 1
    # the same merge WITHOUT flipping back gives other masks: the test can fail
    broken = _module(tmp_path, text.replace("total = total + back(p)", "total = total + p"),
                     "broken.py").Model()
    assert not np.array_equal(broken.predict(X), masks)


@pytest.mark.slow
def test_the_forecasting_template_rolls_out_to_the_horizon(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    x_in, c_in = keras.Input((20,)), keras.Input((6,))
    out = keras.layers.Dense(9)(keras.layers.Concatenate()([x_in, c_in]))
    net = keras.Model([x_in, c_in], out)
    net.save(tmp_path / "weights.keras")
    text = model_template(load("an2dl-2023-forecasting")).replace("HORIZON = 9", "HORIZON = 18")
    m = _module(tmp_path, text).model(str(tmp_path))
    X = np.random.default_rng(0).random((5, 20)).astype(np.float32)
    cats = np.array(list("ABCFE"))
    onehot = (cats[:, None] == np.array(list("ABCDEF"))[None]).astype(np.float32)
    y = m.predict(X, cats)
    first = net.predict([X, onehot], verbose=0)
    second = net.predict([np.concatenate([X, first], axis=1)[:, -20:], onehot], verbose=0)
    assert y.shape == (5, 18)
    assert np.allclose(y, np.concatenate([first, second], axis=1), atol=1e-5)
