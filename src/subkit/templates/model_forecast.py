"""Submission model for time-series forecasting: loads Keras weights, predicts HORIZON steps.

Made by `subkit init` from subkit's template for forecasting competitions (AN2DL 2023-24
Homework 2 on CodaLab). The grader runs

    from model import model         # Codabench competitions: `class Model`
    m = model(path)                 # path = the submission's folder (Codabench: Model())
    out = m.predict(X, categories)  # X: float array (n, 200), categories: (n,) letters A-F

and expects floats of shape (n, HORIZON): 9 steps in the development phase, 18 in the
final phase. predict is not told the phase: set HORIZON below for the phase you submit to
and check it with `subkit build --phase final`. A network that predicts fewer steps than
HORIZON is run again on its own forecast (autoregressively) until HORIZON steps exist.

A network with two inputs gets the categories as one-hot vectors (CATEGORIES' order);
one with a single input gets X only. numpy and tensorflow/keras only: the grader has no
subkit installed.
"""

import os

import numpy as np

# Weights file(s) next to this file; several make an ensemble (forecasts averaged).
WEIGHTS = ["weights.keras"]

# Steps to return: 9 in the development phase, 18 in the final phase.
HORIZON = 9

# The categories, in the order of the network's one-hot input.
CATEGORIES = ["A", "B", "C", "D", "E", "F"]

# Series per forward pass.
BATCH_SIZE = 512

# Custom layers your saved model needs, by name: {"MyLayer": MyLayer}.
CUSTOM_OBJECTS = {}

HERE = os.path.dirname(os.path.abspath(__file__))


class Model:
    def __init__(self, path=None):
        # CodaLab calls model(path) with the submission's folder. Codabench calls Model():
        # the weights sit next to this file.
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

    def predict(self, X, categories):
        """HORIZON future values per series, a float array of shape (n, HORIZON)."""
        X = np.asarray(X, np.float32)
        if len(X) == 0:
            return np.zeros((0, HORIZON), np.float32)
        cats = np.asarray(categories).astype(str).reshape(-1)
        onehot = (cats[:, None] == np.asarray(CATEGORIES)[None, :]).astype(np.float32)
        return np.mean([self._forecast(m, X, onehot) for m in self.models], axis=0)

    def _forecast(self, m, X, onehot):
        """The network's steps, its forecast fed back in while it has fewer than HORIZON."""
        history, parts, have = X, [], 0
        while have < HORIZON:
            inputs = [history, onehot] if len(m.inputs) == 2 else history
            y = np.asarray(m.predict(inputs, batch_size=BATCH_SIZE, verbose=0), np.float32)
            y = y.reshape(len(X), -1)
            parts.append(y)
            have += y.shape[1]
            history = np.concatenate([history, y], axis=1)[:, -X.shape[1]:]
        return np.concatenate(parts, axis=1)[:, :HORIZON]
