"""Submission model for time-series classification: loads Keras weights, predicts labels.

Made by `subkit init` from subkit's template for series competitions (e.g. AN2DL 2022-23
Homework 2 on CodaLab, X (n, 36, 6); Pirate Pain on Kaggle). The grader runs

    from model import Model         # CodaLab competitions: `class model`
    m = Model()                     # CodaLab: model(path), path = the submission's folder
    labels = m.predict(X)           # X: float array (n, steps, features)

and expects an int array of shape (n,). On Kaggle nothing runs this file: subkit does
(`subkit predict` writes the CSV). numpy and tensorflow/keras only: the grader has no
subkit installed. The network does its own scaling (train.py starts it with a
BatchNormalization layer), so X goes in as the competition gives it.
"""

import os

import numpy as np

# Weights file(s) next to this file; several make an ensemble (probabilities averaged).
WEIGHTS = ["weights.keras"]

# Series per forward pass.
BATCH_SIZE = 256

# Custom layers your saved model needs, by name: {"MyLayer": MyLayer}.
CUSTOM_OBJECTS = {}

HERE = os.path.dirname(os.path.abspath(__file__))


class Model:
    def __init__(self, path=None):
        # Codabench calls Model(): the weights sit next to this file. CodaLab calls
        # model(path) with the submission's folder.
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

    def predict_proba(self, X):
        """Class probabilities averaged over the models, shape (n, n_classes)."""
        X = np.asarray(X, np.float32)
        return np.mean([m.predict(X, batch_size=BATCH_SIZE, verbose=0) for m in self.models],
                       axis=0)

    def predict(self, X):
        """Class labels, an int array of shape (n,)."""
        if len(X) == 0:
            return np.zeros((0,), np.int64)
        return np.argmax(self.predict_proba(X), axis=-1).astype(np.int64)
