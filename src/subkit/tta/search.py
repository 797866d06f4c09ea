"""Every subset of views and every merge, scored from kept probabilities (no forward pass).

``probs``: ``(views, N, classes)``, the rows of the clean set and of every shifted set one
after another (``sets``: each set's name and row slice), ``labels``: ``(N,)``. The test
images are split once into a choose half and a report half (seeded, stratified by the
clean labels); every row of every set belongs to the half of its image.

- ``front``: for each number of views k, the (subset, merge) with the best shifted score on
  the choose half (the mean of the metric over the shifted sets, as ``score-local --shift``
  computes it), then scored on the report half, clean score beside it;
- ``choose``: the chosen point is the fewest views whose choose-half shifted score is within
  noise of the best front point's: noise is the standard deviation, over a bootstrap of the
  report half's images (the same resample for every set and every point: paired), of the
  difference between the best point's score and this point's. Nothing is chosen on the
  report half: it only reports (picking the best of the front there would flatter it).

The metrics are computed from confusion matrices of all the groups (set x half) at once;
``metric_from_cm`` equals ``grader.scoring.metrics`` (tests/test_tta_tune.py checks it).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

MERGES = ("mean", "gmean", "max", "tsharpen")
BOOTSTRAP = 400


class SplitError(ValueError):
    """The test set is too small to split into a choose half and a report half."""


def stratified_halves(labels: np.ndarray, seed: int, min_per_class: int = 2
                      ) -> np.ndarray:
    """``half[i]``: 0 (choose) or 1 (report) for each image; seeded, stratified by class.
    Raises SplitError when a class present has fewer than ``min_per_class`` in a half."""
    labels = np.asarray(labels).reshape(-1)
    rng = np.random.default_rng(seed)
    half = np.zeros(len(labels), np.int64)
    short = []
    flip = 0
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_choose = (len(idx) + flip) // 2
        if len(idx) % 2:
            flip ^= 1  # odd classes give their extra image to alternate halves
        half[idx[n_choose:]] = 1
        if min(n_choose, len(idx) - n_choose) < min_per_class:
            short.append((int(c), len(idx)))
    if short:
        raise SplitError(short)
    return half


def _merge(p: np.ndarray, merge: str) -> np.ndarray:
    """What the template's _forward_impl computes over axis 0 (its argmax: the labels)."""
    if merge == "mean":
        return p.mean(0)
    if merge == "gmean":
        return np.log(np.maximum(p, 1e-12)).mean(0)  # the log of the geometric mean
    if merge == "max":
        return p.max(0)
    if merge == "tsharpen":
        return np.sqrt(np.maximum(p, 0.0)).mean(0)
    raise ValueError(merge)


def metric_from_cm(cm: np.ndarray, metric: str) -> np.ndarray:
    """The metric of each confusion matrix of ``cm`` (..., k, k) (rows: true)."""
    cm = cm.astype(np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support, predicted = cm.sum(-1), cm.sum(-2)
    n = support.sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "accuracy":
            return np.where(n > 0, tp.sum(-1) / np.where(n > 0, n, 1), 0.0)
        recall = np.where(support > 0, tp / np.where(support > 0, support, 1), 0.0)
        if metric == "balanced_accuracy":
            present = support > 0
            k = present.sum(-1)
            return np.where(k > 0, (recall * present).sum(-1) / np.maximum(k, 1), 0.0)
        if metric == "macro_f1":
            precision = np.where(predicted > 0, tp / np.where(predicted > 0, predicted, 1), 0.0)
            s = precision + recall
            f1 = np.where(s > 0, 2 * precision * recall / np.where(s > 0, s, 1), 0.0)
            present = (support > 0) | (predicted > 0)
            k = present.sum(-1)
            return np.where(k > 0, (f1 * present).sum(-1) / np.maximum(k, 1), 0.0)
    raise ValueError(f"tta tune scores accuracy, balanced_accuracy or macro_f1, not {metric!r}")


@dataclass
class Scorer:
    """The rows' labels, sets and halves, and the scores of a labelling of every row."""

    labels: np.ndarray  # (N,)
    group: np.ndarray  # (N,): set index * 2 + half
    n_sets: int  # the clean set is set 0
    n_classes: int
    metric: str
    image: np.ndarray  # (N,): the test image of each row (for the bootstrap)
    half: np.ndarray  # (n_images,)

    def scores(self, pred: np.ndarray) -> np.ndarray:
        """(n_sets, 2): the metric of each set on each half."""
        k = self.n_classes
        code = (self.group * k + self.labels) * k + pred
        cm = np.bincount(code, minlength=self.n_sets * 2 * k * k).reshape(self.n_sets, 2, k, k)
        return metric_from_cm(cm, self.metric)

    def bootstrap(self, preds: list[np.ndarray], seed: int, b: int = BOOTSTRAP) -> np.ndarray:
        """(b, len(preds)): the shifted score (mean over the shifted sets) of each labelling
        on ``b`` resamples of the report half's images, the same resamples for each."""
        rng = np.random.default_rng(seed + 1)
        report = np.flatnonzero(self.half == 1)
        weights = np.zeros((b, len(self.half)), np.float64)
        for i in range(b):
            weights[i] = np.bincount(rng.choice(report, len(report)), minlength=len(self.half))
        rows = np.flatnonzero(self.half[self.image] == 1)
        rows = rows[self.group[rows] // 2 > 0]  # the shifted sets only
        s_idx = self.group[rows] // 2 - 1
        n_shift, k = self.n_sets - 1, self.n_classes
        out = np.zeros((b, len(preds)))
        w = weights[:, self.image[rows]]  # (b, rows)
        for j, pred in enumerate(preds):
            code = (s_idx * k + self.labels[rows]) * k + pred[rows]
            cm = np.zeros((b, n_shift * k * k))
            for i in range(b):
                cm[i] = np.bincount(code, weights=w[i], minlength=n_shift * k * k)
            m = metric_from_cm(cm.reshape(b, n_shift, k, k), self.metric)
            out[:, j] = m.mean(-1)
        return out


def subsets(n_views: int) -> list[tuple[int, ...]]:
    return [c for k in range(1, n_views + 1) for c in itertools.combinations(range(n_views), k)]


def search(probs: np.ndarray, scorer: Scorer) -> list[dict]:
    """Every (subset, merge): its clean and shifted score on each half (choose, report)."""
    out = []
    for sub in subsets(probs.shape[0]):
        p = probs[list(sub)]
        for merge in MERGES if len(sub) > 1 else ("mean",):  # one view: one labelling
            pred = _merge(p, merge).argmax(-1)
            s = scorer.scores(pred)  # (sets, 2)
            shifted = s[1:].mean(0) if scorer.n_sets > 1 else s[0]
            out.append({"views": sub, "merge": merge,
                        "clean": (float(s[0, 0]), float(s[0, 1])),
                        "shifted": (float(shifted[0]), float(shifted[1]))})
    return out


def labels_of(probs: np.ndarray, views: tuple[int, ...], merge: str) -> np.ndarray:
    return _merge(probs[list(views)], merge).argmax(-1)


def front(points: list[dict], higher_is_better: bool = True) -> list[dict]:
    """The best point (on the choose half) for each number of views; ties go to the better
    clean score, then to the earlier point (the template's order of views, ``mean``)."""
    sign = 1.0 if higher_is_better else -1.0
    best: dict[int, dict] = {}
    for p in points:
        k = len(p["views"])
        key = (sign * p["shifted"][0], sign * p["clean"][0])
        if k not in best or key > best[k]["_key"]:
            best[k] = {**p, "_key": key}
    out = []
    for k in sorted(best):
        d = dict(best[k])
        d.pop("_key")
        out.append(d)
    return out


def choose(front_points: list[dict], boot: np.ndarray, higher_is_better: bool = True
           ) -> tuple[int, int, list[float]]:
    """(index of the chosen point, index of the best, noise of each point), all decided on
    the choose half: the best is the front point with the best choose-half shifted score,
    and the chosen one the fewest views whose choose-half score is within noise of it. The
    noise of a point is the standard deviation, over the bootstrap of the report half
    (``boot``: the same resamples for every point), of the paired difference between the
    best point's score and its own. The report half only reports."""
    sign = 1.0 if higher_is_better else -1.0
    chosen_on = [sign * p["shifted"][0] for p in front_points]
    best = int(np.argmax(chosen_on))
    noise = [float(np.std(sign * (boot[:, best] - boot[:, j]))) for j in range(len(chosen_on))]
    for j in range(len(chosen_on)):  # the front is ordered by number of views
        if chosen_on[j] >= chosen_on[best] - noise[j] - 1e-12:
            return j, best, noise
    return best, best, noise
