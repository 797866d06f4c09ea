"""Validating predictions and computing the metrics, outside the submission's process.

Standalone-friendly: numpy only (an exported Codabench scoring program copies this file).
Metrics follow scikit-learn's definitions (tests/test_kinds_profile.py checks them against
scikit-learn): accuracy; balanced accuracy = mean recall over the classes present in the
truth; macro F1 over the classes present in truth or predictions, a class with no
predicted and no true samples contributes nothing; MSE, MAE, RMSE over every value of
every forecast; per-class IoU = TP / (TP + FP + FN) over all pixels of the test set
(``jaccard_score``), pixels whose true class is ignored dropped first (as Keras'
``MeanIoU(ignore_class=...)`` does), the mean over the other classes that occur in the
truth or the predictions.

Each kind of output has its validator (``validate_predictions`` for labels,
``validate_forecasts``, ``validate_masks``), raising PredictionError with the message and
hint a participant needs; ``evaluate`` runs the right one and the right metrics for a
``subkit.profile.TaskSpec`` (any object with its attributes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # never at run time: this file also runs standalone (a scoring program)
    from subkit.profile import TaskSpec


@dataclass
class Evaluation:
    """Validated predictions (labels, forecasts or masks) and their scores."""

    values: np.ndarray
    scores: dict
    per_class: list
    confusion_matrix: list
    warnings: list


class PredictionError(Exception):
    """Predictions a grader would reject or mis-score; ``hint`` says how to fix."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.message, self.hint = message, hint


def _as_array(pred, want: str) -> np.ndarray:
    try:
        arr = np.asarray(pred)
    except Exception as exc:  # pragma: no cover - ragged lists
        raise PredictionError(f"predict returned something numpy cannot read as an array ({exc})",
                              f"return a numpy array {want}") from None
    if arr.dtype == object and arr.size and all(isinstance(v, (str, bytes)) for v in arr.ravel()):
        arr = arr.astype(str)
    if arr.dtype == object:
        raise PredictionError("predict returned a ragged or object array",
                              f"return one numpy array {want}")
    return arr


def _string_labels(arr: np.ndarray, class_names: list[str] | None) -> PredictionError:
    """The error for labels returned as strings: unknown names first, else names not ids."""
    values = sorted({v.decode() if isinstance(v, bytes) else str(v) for v in arr.ravel().tolist()})
    if not class_names:
        return PredictionError(f"predict returned strings (e.g. {values[:1]}), not class ids",
                               "return the integer class index, 0..n_classes-1")
    ids = ", ".join(f"{i} {c}" for i, c in enumerate(class_names))
    unknown = [v for v in values if v not in class_names]
    if unknown:
        return PredictionError(
            "predict returned labels the profile does not know: "
            f"{', '.join(map(repr, unknown[:5]))} "
            f"(its classes: {', '.join(class_names)})",
            f"return class indices in the profile's order ({ids}); names are case-sensitive")
    return PredictionError(f"predict returned strings, class names (e.g. {values[0]!r}), not class "
                           "indices",
                           f"return the index of each class ({ids}): np.argmax of the "
                           "probabilities, as the course's template does")


def validate_predictions(pred, n: int, n_classes: int,
                         class_names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Return (labels (n,) int64, warnings) or raise PredictionError naming the mistake."""
    warnings: list[str] = []
    arr = _as_array(pred, "of int labels, shape (n,)")
    if arr.dtype.kind in "US":
        raise _string_labels(arr, class_names)
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
        elif finite and (arr >= 0).all() and (arr <= 1).all() \
                and np.allclose(arr.sum(axis=1), 1, atol=1e-3):
            kind = "class probabilities"
        else:
            kind = "class scores (logits)"
        raise PredictionError(f"predict returned {kind} of shape {tuple(arr.shape)}, "
                              f"not labels of shape ({n},)",
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
            n_bad = int((~np.isfinite(arr)).sum())
            raise PredictionError(f"predict returned {n_bad} NaN/inf values",
                                  "check the model's input scaling and the weights; "
                                  "return integer labels")
        if not (arr == np.round(arr)).all():
            raise PredictionError("predict returned fractional numbers "
                                  "(probabilities of one class?), not labels",
                                  "return np.argmax(probabilities, axis=-1) as an int array")
        warnings.append(f"predict returned floats ({arr.dtype}) holding whole numbers; "
                        "return an int array to be safe")
    labels = arr.astype(np.int64)
    bad = (labels < 0) | (labels >= n_classes)
    if bad.any():
        vals = sorted(set(labels[bad].tolist()))[:5]
        raise PredictionError(f"{int(bad.sum())} labels are outside 0..{n_classes - 1} "
                              f"(e.g. {vals})",
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


def _finite(arr: np.ndarray, what: str) -> None:
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise PredictionError(f"predict returned {bad} NaN/inf values in its {what}",
                              "check the model's input scaling and the weights")


def validate_forecasts(pred, n: int, horizon: int, phase: str | None = None
                       ) -> tuple[np.ndarray, list[str]]:
    """Return (forecasts (n, horizon) float64, warnings) or raise PredictionError."""
    arr = _as_array(pred, f"of shape (n, {horizon})")
    in_phase = f" in the {phase} phase" if phase else ""
    if arr.dtype.kind not in "iuf":
        raise PredictionError(f"predict returned {arr.dtype} values, not numbers",
                              f"return a float array of shape (n, {horizon})")
    if arr.ndim == 3 and arr.shape[:2] == (n, horizon) and arr.shape[2] == 1:
        raise PredictionError(f"predict returned shape {tuple(arr.shape)}, not ({n}, {horizon})",
                              "drop the last axis: return out[..., 0] (a grader computing "
                              "(y - pred) ** 2 would broadcast it to (n, h, h))")
    if arr.ndim != 2 or arr.shape[0] != n:
        raise PredictionError(f"predict returned shape {tuple(arr.shape)} for {n} series, "
                              f"expected ({n}, {horizon}){in_phase}",
                              f"return one row of {horizon} future values per input series, "
                              "in order")
    if arr.shape[1] != horizon:
        got = arr.shape[1]
        fix = (f"return out[:, :{horizon}]" if got > horizon else
               f"predict {horizon} steps (feed the forecast back in, or train a head of "
               f"{horizon} outputs); predict is not told the phase: build a zip for each")
        raise PredictionError(f"predict returned {got} steps per series; the profile wants "
                              f"{horizon}{in_phase} (shape ({n}, {horizon}))",
                              fix + "; check each phase with --phase NAME")
    _finite(arr, "forecasts")
    return arr.astype(np.float64), []


def validate_masks(pred, n: int, shape: tuple, n_classes: int) -> tuple[np.ndarray, list[str]]:
    """Return (masks (n, H, W) int64, warnings) or raise PredictionError."""
    h, w = (int(v) for v in shape[:2])
    want = f"({n}, {h}, {w})"
    arr = _as_array(pred, f"of class ids, shape {want}")
    warnings: list[str] = []
    if arr.dtype.kind in "US":
        raise PredictionError("predict returned strings, not class ids per pixel",
                              f"return integer masks of shape {want}")
    if arr.ndim == 4 and arr.shape[:3] == (n, h, w) and arr.shape[3] == n_classes:
        kind = ("per-pixel class probabilities" if arr.dtype.kind == "f" and arr.min() >= 0
                and np.allclose(arr.sum(axis=-1), 1, atol=1e-3) else "per-pixel class scores")
        raise PredictionError(f"predict returned {kind} of shape {tuple(arr.shape)}, not masks "
                              f"of shape {want}",
                              "return np.argmax(output, axis=-1): one class id per pixel")
    if arr.ndim == 4 and arr.shape[:3] == (n, h, w) and arr.shape[3] == 1:
        raise PredictionError(f"predict returned shape {tuple(arr.shape)}, not {want}",
                              "drop the channel axis: return masks[..., 0]")
    if arr.ndim == 2 and arr.shape == (n, h * w):
        raise PredictionError(f"predict returned flattened masks {tuple(arr.shape)}, not {want}",
                              f"return masks.reshape(-1, {h}, {w}); the CSV's flattening is "
                              "done when the CSV is written")
    if arr.ndim != 3 or arr.shape[0] != n:
        raise PredictionError(f"predict returned shape {tuple(arr.shape)} for {n} images, "
                              f"expected masks {want}",
                              "return one mask per input image, in order, in one array")
    if arr.shape[1:] != (h, w):
        raise PredictionError(f"predict returned masks of {arr.shape[1]}x{arr.shape[2]} pixels; "
                              f"the images are {h}x{w}",
                              "resize the network's output back to the input size before argmax")
    if arr.dtype.kind == "b":
        raise PredictionError("predict returned boolean masks, not class ids",
                              f"return class ids 0..{n_classes - 1} per pixel")
    if arr.dtype.kind == "f":
        _finite(arr, "masks")
        if not (arr == np.round(arr)).all():
            raise PredictionError("predict returned fractional values per pixel (the probability "
                                  "of one class?), not class ids",
                                  "return np.argmax(probabilities, axis=-1) as an int array")
        warnings.append(f"predict returned masks as {arr.dtype} holding whole numbers; "
                        "return an int array to be safe")
    masks = arr.astype(np.int64)
    bad = (masks < 0) | (masks >= n_classes)
    if bad.any():
        vals = sorted(set(masks[bad].tolist()))[:5]
        raise PredictionError(f"{int(bad.sum())} pixels hold classes outside 0..{n_classes - 1} "
                              f"(e.g. {vals})",
                              "mask values are class indices in the profile's order")
    return masks, warnings


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """MSE, MAE, RMSE over every value, and the MSE of each forecast step."""
    err = np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64)
    mse = float(np.mean(err ** 2)) if err.size else 0.0
    return {"mse": mse, "mae": float(np.mean(np.abs(err))) if err.size else 0.0,
            "rmse": float(np.sqrt(mse)), "n": int(len(err)),
            "mse_per_step": np.mean(err ** 2, axis=0).tolist() if err.size else []}


def segmentation_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str],
                         ignore: Sequence[int] = ()) -> dict:
    """Mean IoU over the classes not ignored, pixel accuracy, per-class IoU, the pixel
    confusion matrix (pixels whose true class is ignored are left out of all of them)."""
    k = len(class_names)
    t, p = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    support = np.bincount(t, minlength=k)  # true pixels per class, ignored ones included
    if ignore:
        keep = ~np.isin(t, list(ignore))
        t, p = t[keep], p[keep]
    cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(float)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    counted = [c for c in range(k) if c not in ignore]
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    present = [c for c in counted if union[c] > 0]
    return {
        "mean_iou": float(np.mean(iou[present])) if present else 0.0,
        "pixel_accuracy": float(tp.sum() / cm.sum()) if cm.sum() else 0.0,
        "n": int(len(y_true)),
        "per_class": [{"class": c, "name": class_names[c], "ignored": c in ignore,
                       "iou": None if np.isnan(iou[c]) or c in ignore else float(iou[c]),
                       "support": int(support[c])} for c in range(k)],
        "confusion_matrix": cm.tolist(),
    }


def validate(spec: TaskSpec, pred, n: int) -> tuple[np.ndarray, list[str]]:
    """The validator of the task's output kind: (values, warnings) or PredictionError."""
    if spec.kind == "forecasts":
        # a forecasting profile without [output] horizon is refused when it is loaded
        assert spec.horizon is not None
        return validate_forecasts(pred, n, int(spec.horizon), spec.phase)
    if spec.kind == "masks":
        return validate_masks(pred, n, spec.mask_shape, len(spec.class_names))
    return validate_predictions(pred, n, len(spec.class_names), spec.class_names)


def evaluate(spec: TaskSpec, pred, truth: np.ndarray) -> Evaluation:
    """Validate ``pred`` for the task and score it against ``truth`` (PredictionError)."""
    values, warns = validate(spec, pred, len(truth))
    if spec.kind == "forecasts":
        return Evaluation(values, regression_metrics(truth, values), [], [], warns)
    if spec.kind == "masks":
        m = segmentation_metrics(truth, values, spec.class_names, spec.ignore_classes)
    else:
        m = metrics(truth, values, spec.class_names)
    per_class, cm = m.pop("per_class"), m.pop("confusion_matrix")
    return Evaluation(values, m, per_class, cm, warns)


def write_scores_json(path: str | os.PathLike, scores: dict) -> None:
    """``scores.json`` as Codabench reads it: a flat object of leaderboard keys to numbers."""
    flat = {k: float(v) for k, v in scores.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "n"}
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(flat, fh, indent=2)
    os.replace(tmp, path)
