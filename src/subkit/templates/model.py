"""Submission model: loads the trained Keras weights and predicts class labels.

Made by `subkit init` from subkit's template for image classification. The grader imports
this file and runs

    from model import Model         # CodaLab competitions: `class model`
    m = Model()                     # CodaLab: model(path), path = the submission's folder
    labels = m.predict(X)           # X: numpy array (n, H, W, 3), e.g. uint8 (n, 96, 96, 3)

and expects an int array of shape (n,). `subkit init --profile NAME` writes the class
name and constructor the profile's grader uses. This file needs numpy and tensorflow/keras
only: the grader has no subkit installed.

Test-time augmentation (TTA): each batch is predicted under several views (identity,
flips, 90-degree rotations: a blood cell has no orientation) and the class probabilities
of the views are merged. All the views of a batch go through ONE call of a compiled
function (one model call per view inside it, each on BATCH_SIZE images), which costs far
less than one `model.predict` per view.
"""

import os

import numpy as np

# ---------------------------------------------------------------------------------------
# Settings: plain values, change them here.
# ---------------------------------------------------------------------------------------
# Weights file(s) next to this file. Several files make an ensemble (probabilities are
# averaged over the models).
WEIGHTS = ["weights.keras"]

# Test-time augmentation on/off, the views, and how their probabilities are merged.
# Views: identity, flip_lr, flip_ud, rot90, rot180, rot270, transpose, transverse, zoom
# (the central 87.5% scaled back up), contrast (x1.25 about each image's mean).
# `subkit tta tune` measures which of them earn their forward pass; --apply sets these.
TTA = True
TTA_VIEWS = ["identity", "flip_lr", "flip_ud", "rot90", "rot270"]
# Merge: "mean" (of probabilities), "gmean" (geometric mean), "max", "tsharpen" (mean of
# square roots, as in ttach).
TTA_MERGE = "mean"

# Images per forward pass (with TTA, each view of a batch is one pass of BATCH_SIZE images).
BATCH_SIZE = 64

# What the network expects: "none" (raw 0..255 floats: the model does its own rescaling,
# as Keras' EfficientNet/ConvNeXt and subkit's train.py do), "unit" (divide by 255), or
# "symmetric" (scale to [-1, 1]).
PREPROCESS = "none"

# The network's outputs: "auto" (softmax is applied to rows that are not probabilities),
# "probabilities", or "logits".
OUTPUTS = "auto"

# Custom layers/losses your saved model needs, by name: {"MyLayer": MyLayer}.
CUSTOM_OBJECTS = {}

# subkit's --tta-compare sets SUBKIT_TTA=0 to measure what TTA buys; graders never set it.
if os.environ.get("SUBKIT_TTA") == "0":
    TTA = False

HERE = os.path.dirname(os.path.abspath(__file__))

_VIEWS = {
    # name: (forward transform of an NHWC batch)
    "identity": lambda x, tf: x,
    "flip_lr": lambda x, tf: tf.reverse(x, axis=[2]),
    "flip_ud": lambda x, tf: tf.reverse(x, axis=[1]),
    "rot90": lambda x, tf: tf.image.rot90(x, k=1),
    "rot180": lambda x, tf: tf.image.rot90(x, k=2),
    "rot270": lambda x, tf: tf.image.rot90(x, k=3),
    "transpose": lambda x, tf: tf.transpose(x, [0, 2, 1, 3]),
    "transverse": lambda x, tf: tf.image.rot90(tf.transpose(x, [0, 2, 1, 3]), k=2),
    "zoom": lambda x, tf: tf.image.resize(tf.image.central_crop(x, 0.875), tf.shape(x)[1:3]),
    "contrast": lambda x, tf: tf.image.adjust_contrast(x, 1.25),
}
_SHAPE_CHANGING = ("rot90", "rot270", "transpose", "transverse")


class Model:
    def __init__(self, path=None):
        # Codabench calls Model(): the weights sit next to this file. CodaLab calls
        # model(path) with the submission's folder.
        import keras
        import tensorflow as tf

        self.tf = tf
        self.models = []
        folder = path or HERE
        for name in WEIGHTS:
            path = os.path.join(folder, name)
            if not os.path.exists(path):
                raise FileNotFoundError(
                    f"weights file {name!r} not found in the submission ({folder}); "
                    f"files there: {sorted(os.listdir(folder))}")
            self.models.append(keras.models.load_model(
                path, compile=False, custom_objects=CUSTOM_OBJECTS or None))
        unknown = [v for v in TTA_VIEWS if v not in _VIEWS]
        if unknown:
            raise ValueError(f"unknown TTA views {unknown}; known: {sorted(_VIEWS)}")
        if TTA_MERGE not in ("mean", "gmean", "max", "tsharpen"):
            raise ValueError(f"unknown TTA_MERGE {TTA_MERGE!r}")
        self.views = list(TTA_VIEWS) if TTA else ["identity"]
        square = True
        for m in self.models:
            shape = getattr(m, "input_shape", None)
            if isinstance(shape, tuple) and len(shape) == 4 and shape[1] != shape[2]:
                square = False
        if not square:  # rotations by 90 degrees change a non-square image's shape
            self.views = [v for v in self.views if v not in _SHAPE_CHANGING] or ["identity"]
        self._forward = tf.function(self._forward_impl, reduce_retracing=True)

    # -- the compiled forward pass: all views of a batch in one call ---------------------
    # The model runs once per view on BATCH_SIZE images (tf.map_fn: traced once, the views
    # in turn), not once on the views concatenated: on a 2-core CPU one call on
    # BATCH_SIZE * len(views) images was about 1.5x slower per image (benchmarks/bench_tta.py).
    def _forward_impl(self, x):
        tf = self.tf
        views = tf.stack([_VIEWS[v](x, tf) for v in self.views], axis=0)  # (views, batch, ...)
        merged_models = []
        for m in self.models:
            if len(self.views) == 1:
                y = self._to_probabilities(tf.cast(m(views[0], training=False), tf.float32))[None]
            else:
                y = tf.map_fn(
                    lambda v, m=m: self._to_probabilities(
                        tf.cast(m(v, training=False), tf.float32)),
                    views, fn_output_signature=tf.float32, parallel_iterations=1)
            # y: (views, batch, classes)
            if TTA_MERGE == "mean":
                p = tf.reduce_mean(y, axis=0)
            elif TTA_MERGE == "gmean":
                p = tf.exp(tf.reduce_mean(tf.math.log(tf.maximum(y, 1e-12)), axis=0))
            elif TTA_MERGE == "max":
                p = tf.reduce_max(y, axis=0)
            else:  # tsharpen
                p = tf.reduce_mean(tf.sqrt(tf.maximum(y, 0.0)), axis=0)
            merged_models.append(p)
        return tf.add_n(merged_models) / float(len(merged_models))

    def _to_probabilities(self, y):
        tf = self.tf
        if y.shape.rank == 2 and y.shape[-1] == 1:  # a single sigmoid unit: two classes
            y = tf.concat([1.0 - y, y], axis=-1)
        if OUTPUTS == "probabilities":
            return y
        if OUTPUTS == "logits":
            return tf.nn.softmax(y, axis=-1)
        is_prob = tf.logical_and(
            tf.reduce_all(tf.logical_and(y >= 0.0, y <= 1.0), axis=-1),
            tf.abs(tf.reduce_sum(y, axis=-1) - 1.0) < 1e-3)
        return tf.where(is_prob[:, None], y, tf.nn.softmax(y, axis=-1))

    def _prepare(self, x):
        x = np.asarray(x)
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        if PREPROCESS == "unit":
            x = x / 255.0
        elif PREPROCESS == "symmetric":
            x = x / 127.5 - 1.0
        return x

    def predict_proba(self, X):
        """Merged class probabilities, shape (n, n_classes)."""
        X = np.asarray(X)
        if X.ndim == 3:  # a single image
            X = X[None]
        n = X.shape[0]
        if n == 0:
            return np.zeros((0, 0), np.float32)
        out = []
        for start in range(0, n, BATCH_SIZE):
            batch = self._prepare(X[start:start + BATCH_SIZE])
            m = batch.shape[0]
            if m < BATCH_SIZE and n > BATCH_SIZE:
                # pad the last batch to the full size: one traced shape, no retracing
                pad = np.zeros((BATCH_SIZE - m,) + batch.shape[1:], batch.dtype)
                batch = np.concatenate([batch, pad])
            out.append(self._forward(self.tf.constant(batch)).numpy()[:m])
        return np.concatenate(out)

    def predict(self, X):
        """Class labels, an int array of shape (n,)."""
        n = len(X)
        if n == 0:
            return np.zeros((0,), np.int64)
        return np.argmax(self.predict_proba(X), axis=-1).astype(np.int64)
