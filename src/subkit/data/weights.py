"""Class weights in the forms people paste into Keras.

``class_weight``: the "balanced" weights of scikit-learn, ``n / (n_classes * count_c)``,
for ``model.fit(..., class_weight=...)``: a class with the average count weighs 1.

``alpha``: the same weights normalised to sum to 1, for
``keras.losses.CategoricalFocalCrossentropy(alpha=[...])`` (which multiplies each class's
term by its alpha; Keras' scalar default is 0.25).

A class with no image gets weight 0 (it never occurs, so its weight is never used) and is
named in ``missing``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DECIMALS = 6


def class_counts(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(np.asarray(labels, np.int64), minlength=n_classes)[:n_classes]


def balanced(counts: np.ndarray) -> np.ndarray:
    """n / (k * count_c) for present classes, 0 for absent ones (k: number of classes)."""
    counts = np.asarray(counts, np.float64)
    k = len(counts)
    n = counts.sum()
    with np.errstate(divide="ignore"):
        w = np.where(counts > 0, n / (k * np.maximum(counts, 1)), 0.0)
    return w


def class_weights(labels: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Everything `subkit data weights` reports, JSON-ready and deterministic."""
    k = len(class_names)
    counts = class_counts(labels, k)
    w = balanced(counts)
    alpha = w / w.sum() if w.sum() > 0 else w
    present = counts[counts > 0]
    return {
        "n_images": int(counts.sum()),
        "scheme": "balanced: n / (n_classes * count)",
        "classes": [
            {"id": i, "name": class_names[i], "count": int(counts[i]),
             "weight": round(float(w[i]), DECIMALS), "alpha": round(float(alpha[i]), DECIMALS)}
            for i in range(k)
        ],
        "class_weight": {i: round(float(w[i]), DECIMALS) for i in range(k)},
        "alpha": [round(float(a), DECIMALS) for a in alpha],
        "imbalance_ratio": round(float(present.max() / present.min()), 4) if len(present) else None,
        "missing": [class_names[i] for i in range(k) if counts[i] == 0],
    }


def to_python(report: dict[str, Any], decimals: int = 4) -> str:
    """Paste-ready Python: ``class_weight = {...}`` and ``alpha = [...]``, classes commented."""
    lines = [f"# balanced class weights, n / (n_classes * count), from {report['n_images']} images",
             "class_weight = {"]
    for c in report["classes"]:
        lines.append(f"    {c['id']}: {c['weight']:.{decimals}f},  # {c['name']} ({c['count']})")
    lines.append("}")
    lines.append("# the same weights summing to 1: "
                 "keras.losses.CategoricalFocalCrossentropy(alpha=alpha)")
    lines.append("alpha = [" + ", ".join(f"{a:.{decimals}f}" for a in report["alpha"]) + "]")
    for name in report["missing"]:
        lines.append(f"# note: class {name!r} has no image; its weight is 0")
    return "\n".join(lines)
