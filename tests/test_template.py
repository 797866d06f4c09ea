"""The template model.py: stacked-view TTA gives exactly the reference's labels."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys

import numpy as np
import pytest

from subkit.workspace import template_text

_COUNTER = __import__("itertools").count()

VIEWS = {
    "identity": lambda x: x,
    "flip_lr": lambda x: x[:, :, ::-1],
    "flip_ud": lambda x: x[:, ::-1],
    "rot90": lambda x: np.rot90(x, 1, axes=(1, 2)),
    "rot180": lambda x: np.rot90(x, 2, axes=(1, 2)),
    "rot270": lambda x: np.rot90(x, 3, axes=(1, 2)),
    "transpose": lambda x: np.transpose(x, (0, 2, 1, 3)),
    "zoom": lambda x: _tf().image.resize(_tf().image.central_crop(
        x.astype("float32"), 0.875), x.shape[1:3]).numpy(),
    "contrast": lambda x: _tf().image.adjust_contrast(x.astype("float32"), 1.25).numpy(),
}


def _tf():
    import tensorflow as tf

    return tf


def load_template(folder, weights, **settings):
    text = template_text("model.py")
    for key, value in settings.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value!r}", text, count=1, flags=re.M)
        assert n == 1, key
    (folder / "model.py").write_text(text)
    shutil.copy(weights, folder / "weights.keras")
    name = f"tmpl_{next(_COUNTER)}"
    spec = importlib.util.spec_from_file_location(name, folder / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def reference(model, X, views, merge):
    probs = np.stack([model.predict(VIEWS[v](X).astype("float32"), verbose=0) for v in views])
    if merge == "mean":
        p = probs.mean(0)
    elif merge == "gmean":
        p = np.exp(np.log(np.maximum(probs, 1e-12)).mean(0))
    elif merge == "max":
        p = probs.max(0)
    else:
        p = np.sqrt(probs).mean(0)
    return p


@pytest.fixture(scope="module")
def images():
    from subkit.data.synthetic import generate

    return generate(150, seed=11)["images"]


@pytest.mark.parametrize("merge", ["mean", "gmean", "max", "tsharpen"])
def test_stacked_tta_equals_one_predict_per_view(tmp_path, keras_weights, images, merge):
    import keras

    views = ["identity", "flip_lr", "flip_ud", "rot90", "rot270"]
    mod = load_template(tmp_path, keras_weights, TTA_MERGE=merge, BATCH_SIZE=64, TTA_VIEWS=views)
    m = mod.Model()
    ref_model = keras.models.load_model(keras_weights, compile=False)
    ref = reference(ref_model, images, views, merge)
    got = m.predict(images)  # 150 images: two full batches and a padded last one
    assert got.shape == (150,) and got.dtype == np.int64
    np.testing.assert_array_equal(got, ref.argmax(-1))
    np.testing.assert_allclose(m.predict_proba(images), ref, atol=1e-5)


def test_the_scale_and_photometric_views_equal_one_predict_per_view(tmp_path, keras_weights,
                                                                     images):
    import keras

    views = ["identity", "zoom", "contrast"]
    mod = load_template(tmp_path, keras_weights, TTA_MERGE="gmean", TTA_VIEWS=views)
    ref = reference(keras.models.load_model(keras_weights, compile=False), images, views,
                    "gmean")
    np.testing.assert_array_equal(mod.Model().predict(images), ref.argmax(-1))
    np.testing.assert_allclose(mod.Model().predict_proba(images), ref, atol=1e-5)


def test_no_tta_float_input_and_small_batches(tmp_path, keras_weights, images):
    import keras

    mod = load_template(tmp_path, keras_weights, TTA=False, BATCH_SIZE=7)
    m = mod.Model()
    assert m.views == ["identity"]
    ref = (keras.models.load_model(keras_weights, compile=False)
           .predict(images[:20].astype("float32"), verbose=0))
    np.testing.assert_array_equal(m.predict(images[:20].astype(np.float64)), ref.argmax(-1))
    assert m.predict(images[:0]).shape == (0,)
    assert m.predict(images[0]).shape == (1,)  # a single image


def test_logits_are_turned_into_probabilities(tmp_path, images):
    import keras

    keras.utils.set_random_seed(1)
    inp = keras.Input((96, 96, 3))
    x = keras.layers.GlobalAveragePooling2D()(
        keras.layers.Conv2D(3, 3)(keras.layers.Rescaling(1 / 255)(inp)))
    model = keras.Model(inp, keras.layers.Dense(8)(x) * 50.0)  # large logits
    path = tmp_path / "w.keras"
    model.save(path)
    mod = load_template(tmp_path, path, TTA_VIEWS=["identity", "flip_lr"])
    p = mod.Model().predict_proba(images[:10])
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)


def test_weights_are_found_whatever_the_working_directory(tmp_path, keras_weights, monkeypatch):
    mod = load_template(tmp_path, keras_weights)
    monkeypatch.chdir("/")
    assert len(mod.Model().models) == 1


def test_missing_weights_name_the_folder(tmp_path, keras_weights):
    mod = load_template(tmp_path, keras_weights, WEIGHTS=["nope.keras"])
    with pytest.raises(FileNotFoundError, match="nope.keras"):
        mod.Model()


def test_template_imports_only_numpy_and_tensorflow():
    import ast

    tree = ast.parse(template_text("model.py"))
    mods = {a.name.split(".")[0]
            for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module.split(".")[0]
             for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert mods <= {"os", "numpy", "tensorflow", "keras"} | set(sys.stdlib_module_names), mods
