"""Submission model for semantic segmentation: loads Keras weights, predicts masks.

Made by `subkit init` from subkit's template for segmentation competitions (AN2DL 2024-25
Homework 2, Mars terrain, on Kaggle: nothing runs this file there; `subkit predict`
writes the CSV from it). It works the way a grader would call it:

    from model import Model
    m = Model()
    masks = m.predict(X)            # X: (n, H, W) grayscale or (n, H, W, C); masks (n, H, W)

and returns one class id per pixel (int, shape (n, H, W)), never probabilities.

Test-time augmentation (TTA): each batch is predicted under several views; each view's
per-pixel class probabilities are mapped BACK to the original image (flip, predict, flip
back) before the views are averaged, so that pixel (i, j) of every view speaks about
pixel (i, j) of the image. numpy and tensorflow/keras only.
"""

import os

import numpy as np

# Weights file(s) next to this file; several make an ensemble (probabilities averaged).
WEIGHTS = ["weights.keras"]

# Test-time augmentation on/off and its views: identity, flip_lr, flip_ud, rot180.
TTA = True
TTA_VIEWS = ["identity", "flip_lr"]

# Images per forward pass.
BATCH_SIZE = 64

# What the network expects: "none" (raw 0..255 values) or "unit" (divided by 255).
PREPROCESS = "unit"

# Custom layers your saved model needs, by name: {"MyLayer": MyLayer}.
CUSTOM_OBJECTS = {}

# subkit's --tta-compare sets SUBKIT_TTA=0 to measure what TTA buys; graders never set it.
if os.environ.get("SUBKIT_TTA") == "0":
    TTA = False

HERE = os.path.dirname(os.path.abspath(__file__))

# view name: (the view of an (n, H, W, C) batch, its inverse on (n, H, W, classes) maps)
VIEWS = {
    "identity": (lambda x: x, lambda p: p),
    "flip_lr": (lambda x: x[:, :, ::-1], lambda p: p[:, :, ::-1]),
    "flip_ud": (lambda x: x[:, ::-1], lambda p: p[:, ::-1]),
    "rot180": (lambda x: x[:, ::-1, ::-1], lambda p: p[:, ::-1, ::-1]),
}


class Model:
    def __init__(self, path=None):
        import keras

        folder = path or HERE
        self.models = []
        for name in WEIGHTS:
            file = os.path.join(folder, name)
            if not os.path.exists(file):
                raise FileNotFoundError(
                    f"weights file {name!r} not found in the submission ({folder}); "
                    f"files there: {sorted(os.listdir(folder))}")
            self.models.append(keras.models.load_model(
                file, compile=False, custom_objects=CUSTOM_OBJECTS or None))
        unknown = [v for v in TTA_VIEWS if v not in VIEWS]
        if unknown:
            raise ValueError(f"unknown TTA views {unknown}; known: {sorted(VIEWS)}")
        self.views = list(TTA_VIEWS) if TTA else ["identity"]

    def _prepare(self, x):
        x = np.asarray(x, np.float32)
        if x.ndim == 3:  # grayscale without a channel axis
            x = x[..., None]
        return x / 255.0 if PREPROCESS == "unit" else x

    def predict_proba(self, X):
        """Per-pixel class probabilities, merged over views and models: (n, H, W, classes)."""
        out = []
        for start in range(0, len(X), BATCH_SIZE):
            x = self._prepare(X[start:start + BATCH_SIZE])
            total = 0.0
            for m in self.models:
                for name in self.views:
                    view, back = VIEWS[name]
                    p = np.asarray(m.predict_on_batch(np.ascontiguousarray(view(x))))
                    total = total + back(p)
            out.append(total / (len(self.models) * len(self.views)))
        return np.concatenate(out)

    def predict(self, X):
        """One class id per pixel, an int array of shape (n, H, W)."""
        if len(X) == 0:
            return np.zeros((0,) + tuple(np.shape(X)[1:3]), np.int64)
        return np.argmax(self.predict_proba(X), axis=-1).astype(np.int64)
