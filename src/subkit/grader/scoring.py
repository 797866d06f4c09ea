"""Validating predictions and computing the metrics, outside the submission's process.

Standalone-friendly: numpy only (an exported Codabench scoring program copies this file).
Metrics follow scikit-learn's definitions (accuracy; balanced accuracy = mean recall over
the classes present in the truth; macro F1 over the classes present in truth or
predictions, a class with no predicted and no true samples contributes nothing).
"""

from __future__ import annotations

import json
import os

import numpy as np


class PredictionError(Exception):
    """Predictions a grader would reject or mis-score; ``hint`` says how to fix."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.message, self.hint = message, hint


def validate_predictions(pred, n: int, n_classes: int) -> tuple[np.ndarray, list[str]]:
    """Return (labels (n,) int64, warnings) or raise PredictionError naming the mistake."""
    warnings: list[str] = []
    try:
        arr = np.asarray(pred)
    except Exception as exc:  # pragma: no cover - ragged lists
        raise PredictionError(f"predict returned something numpy cannot read as an array ({exc})",
                              "return a numpy int array of shape (n,)") from None
    if arr.dtype == object:
        raise PredictionError("predict returned a ragged or object array",
                              "return np.asarray(labels, dtype=int) of shape (n,)")
    if arr.dtype.kind in "US":
        raise PredictionError(f"predict returned strings (e.g. {arr.ravel()[:1].tolist()}), not class ids",
                              "return the integer class index, 0..n_classes-1")
    if arr.ndim == 0:
        raise PredictionError("predict returned a single value, not one label per image",
                              "return an array of shape (n,), one label per input image")
    if arr.ndim == 2 and arr.shape[0] == n and arr.shape[1] == 1:
        raise PredictionError(f"predict returned shape {tuple(arr.shape)}, a column, not ({n},)",
                              "flatten it: return labels.reshape(-1)")
    if arr.ndim == 2 and arr.shape[0] == n and arr.shape[1] == n_classes:
        finite = np.isfinite(arr).all()
        if finite and np.isin(arr, (0, 1)).all() and (arr.sum(axis=1) == 1).all():
            kind = "one-hot vectors"
        elif finite and (arr >= 0).all() and (arr <= 1).all() and np.allclose(arr.sum(axis=1), 1, atol=1e-3):
            kind = "class probabilities"
        else:
            kind = "class scores (logits)"
        raise PredictionError(f"predict returned {kind} of shape {tuple(arr.shape)}, not labels of shape ({n},)",
                              "return np.argmax(output, axis=-1): one integer label per image")
    if arr.ndim != 1:
        raise PredictionError(f"predict returned shape {tuple(arr.shape)}, expected ({n},)",
                              "return one integer label per image, shape (n,)")
    if arr.shape[0] != n:
        raise PredictionError(f"predict returned {arr.shape[0]} labels for {n} images",
                              "predict every image of X, in order, in one array (check batching "
                              "and a dropped last batch)")
    if arr.dtype.kind == "b":
        raise PredictionError("predict returned booleans, not class ids",
                              "return integer labels 0..n_classes-1")
    if arr.dtype.kind in "fc":
        if not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise PredictionError(f"predict returned {bad} NaN/inf values",
                                  "check the model's input scaling and the weights; return integer labels")
        if not (arr == np.round(arr)).all():
            raise PredictionError("predict returned fractional numbers (probabilities of one class?), not labels",
                                  "return np.argmax(probabilities, axis=-1) as an int array")
        warnings.append(f"predict returned floats ({arr.dtype}) holding whole numbers; "
                        "return an int array to be safe")
    labels = arr.astype(np.int64)
    bad = (labels < 0) | (labels >= n_classes)
    if bad.any():
        vals = sorted(set(labels[bad].tolist()))[:5]
        raise PredictionError(f"{int(bad.sum())} labels are outside 0..{n_classes - 1} (e.g. {vals})",
                              "labels are class indices 0..n_classes-1 in the profile's order")
    return labels, warnings


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict:
    k = len(class_names)
    cm = confusion_matrix(y_true, y_pred, k)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present_true = support > 0
    present_any = present_true | (predicted > 0)
    n = len(y_true)
    out = {
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "balanced_accuracy": float(recall[present_true].mean()) if present_true.any() else 0.0,
        "macro_f1": float(f1[present_any].mean()) if present_any.any() else 0.0,
        "n": int(n),
        "per_class": [
            {"class": i, "name": class_names[i], "precision": float(precision[i]),
             "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i in range(k)
        ],
        "confusion_matrix": cm.tolist(),
    }
    return out


def write_scores_json(path: str | os.PathLike, scores: dict) -> None:
    """``scores.json`` as Codabench reads it: a flat object of leaderboard keys to numbers."""
    flat = {k: float(v) for k, v in scores.items() if isinstance(v, (int, float)) and k != "n"}
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(flat, fh, indent=2)
    os.replace(tmp, path)
