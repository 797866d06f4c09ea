"""A leaderboard prediction from the ledger: which shifted sets explain the leaderboard.

Once two or more zips have both a leaderboard score and a ``score-local --shift`` run on the
same test set (by content), suite and seed, the leaderboard score ``y`` of a zip is modelled
as a weighted mean of its scores ``s`` on the suite's shifted sets::

    y ≈ s · w,   w >= 0,   sum(w) = 1

``w`` minimises ``sum_i (y_i - s_i · w)^2 + PRIOR_POINTS * c * |w - u|^2`` where ``u`` is the
plain mean (every set weighs 1/K) and ``c`` the mean spread of a zip's set scores
(``sum_k (s_ik - mean_k s_ik)^2``), so the prior counts about as much as ``PRIOR_POINTS``
calibration zips: with two or three points the weights stay near the plain mean and move
only as far as the data pull them. It is solved on the simplex by accelerated projected
gradient (Duchi et al. 2008's projection); no solver library is needed.

The band is honest: every calibration zip is predicted by a fit on the others
(leave-one-out), and the band's half-width is the larger of the worst such residual and a
Student-t 90% prediction interval from their root mean square,
``t(0.95, n-1) * rmse * sqrt(1 + 1/n)``, clipped to the metric's range. With two points the
band is wide, as it should be.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

MIN_POINTS = 2
PRIOR_POINTS = 2.0
# Student t, 95th percentile (a two-sided 90% interval), by degrees of freedom
_T95 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860,
        9: 1.833, 10: 1.812, 12: 1.782, 15: 1.753, 20: 1.725, 30: 1.697}


def t95(df: int) -> float:
    if df >= 60:
        return 1.645 + 1.0 / (df * 2.4)
    return _T95[max(k for k in _T95 if k <= df)]


def test_set_id(images: np.ndarray, labels: np.ndarray) -> str:
    """The sha256 of a test set's content (images: shape, dtype, bytes; labels as int64):
    the same data under another file name or format is the same test set."""
    h = hashlib.sha256()
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    for a in (np.ascontiguousarray(images), y):
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))  # type: ignore[arg-type]
    return h.hexdigest()


# -- the fit --------------------------------------------------------------------------------
def project_simplex(v: np.ndarray) -> np.ndarray:
    """The Euclidean projection of ``v`` on {w >= 0, sum w = 1} (Duchi et al. 2008)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    k = np.arange(1, len(v) + 1)
    rho = np.nonzero(u - css / k > 0)[0][-1]
    return np.maximum(v - css[rho] / (rho + 1.0), 0.0)


def fit_weights(S: np.ndarray, y: np.ndarray, prior: float = PRIOR_POINTS) -> np.ndarray:
    """Weights on the simplex for the rows of ``S`` (zips x sets) to explain ``y``,
    regularised towards the plain mean (see the module's docstring)."""
    S, y = np.asarray(S, np.float64), np.asarray(y, np.float64)
    n, k = S.shape
    u = np.full(k, 1.0 / k)
    spread = float(np.mean(np.sum((S - S.mean(axis=1, keepdims=True)) ** 2, axis=1)))
    lam = prior * max(spread, 1e-12)
    lip = 2.0 * (np.linalg.norm(S, 2) ** 2 + lam)
    w = z = u.copy()
    t = 1.0
    for _ in range(20000):
        grad = 2.0 * S.T @ (S @ z - y) + 2.0 * lam * (z - u)
        w_next = project_simplex(z - grad / lip)
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        z = w_next + ((t - 1.0) / t_next) * (w_next - w)
        if np.max(np.abs(w_next - w)) < 1e-12:
            return w_next
        w, t = w_next, t_next
    return w


def calibrate(S: np.ndarray, y: np.ndarray, s_new: np.ndarray,
              bounds: tuple[float, float] = (0.0, 1.0)) -> dict:
    """Predict ``s_new``'s leaderboard score from calibration rows ``S`` and scores ``y``,
    with a leave-one-out band."""
    S, y, s_new = (np.asarray(a, np.float64) for a in (S, y, s_new))
    n = len(y)
    if n < MIN_POINTS:
        raise ValueError(f"calibration needs at least {MIN_POINTS} points, got {n}")
    w = fit_weights(S, y)
    loo = np.array([S[i] @ fit_weights(np.delete(S, i, 0), np.delete(y, i)) for i in range(n)])
    resid = y - loo
    rmse = float(np.sqrt(np.mean(resid ** 2)))
    half = max(float(np.max(np.abs(resid))), t95(n - 1) * rmse * math.sqrt(1.0 + 1.0 / n))
    score = float(s_new @ w)
    lo, hi = bounds
    return {"score": min(max(score, lo), hi), "low": max(score - half, lo),
            "high": min(score + half, hi), "loo_error": rmse,
            "loo_max_error": float(np.max(np.abs(resid))), "weights": w,
            "loo_predicted": loo, "plain_mean": float(np.mean(s_new))}


# -- from the ledger --------------------------------------------------------------------------
@dataclass
class Point:
    zip_sha256: str
    zip_name: str | None
    scores: dict  # set key -> score
    actual: float | None


def _group(rec: dict) -> tuple | None:
    if rec.get("kind") != "score-local" or not isinstance(rec.get("shift_scores"), dict):
        return None
    if not rec.get("data_sha256") or rec.get("shift_suite") is None:
        return None
    return (rec["data_sha256"], str(rec["shift_suite"]), int(rec.get("shift_seed") or 0))


def _latest(records: Iterable[dict]) -> tuple[dict, dict]:
    """Per zip: its latest shift run per group, and its latest leaderboard score per phase
    (with the time it was recorded)."""
    runs: dict[tuple, dict] = {}
    boards: dict[str, dict] = {}
    for rec in records:
        sha = rec.get("zip_sha256")
        if not isinstance(sha, str):
            continue
        g = _group(rec)
        if g is not None:
            runs[(sha, g)] = rec
        elif rec.get("kind") == "leaderboard" and isinstance(
                rec.get("leaderboard_score"), (int, float)):
            phase = str(rec.get("phase") or "default")
            boards.setdefault(sha, {})[phase] = (float(rec["leaderboard_score"]),
                                                 str(rec.get("time") or ""))
    return runs, boards


def _points(runs: dict, boards: dict, group: tuple, exclude: str | None) -> tuple[list, str]:
    """The calibration points of ``group`` in the phase with most of them (ties: the phase
    scored last), without the zip ``exclude``."""
    by_phase: dict[str, list] = {}
    last: dict[str, str] = {}
    for (sha, g), rec in runs.items():
        if g != group or sha == exclude or sha not in boards:
            continue
        for phase, (score, when) in boards[sha].items():
            by_phase.setdefault(phase, []).append(
                Point(sha, rec.get("zip"), rec["shift_scores"], score))
            last[phase] = max(last.get(phase, ""), when)
    if not by_phase:
        return [], ""
    phase = max(by_phase, key=lambda p: (len(by_phase[p]), last[p]))
    return by_phase[phase], phase


def _needs(points: list, group: tuple, boards: dict, runs: dict, exclude: str | None) -> dict:
    data, suite, seed = group
    other_boards = [s for s in boards if s != exclude
                    and not any(sha == s and g == group for (sha, g) in runs)]
    names = ", ".join(p.zip_name or p.zip_sha256[:12] for p in points)
    msg = (f"needs the leaderboard scores of at least {MIN_POINTS} other zips that have a "
           f"`score-local --shift {suite} --seed {seed}` run on this test set; the ledger has "
           f"{len(points)}" + (f" ({names})" if names else "")
           + (" (this zip's own leaderboard score does not count: it is the one predicted)"
              if exclude is not None and exclude in boards else ""))
    if other_boards:
        msg += (f"; {len(other_boards)} zip(s) with a leaderboard score have no such run: "
                f"score them with `subkit score-local ZIP --data TEST --shift {suite} "
                f"--seed {seed}`")
    msg += "; record a score with `subkit history score ZIP --leaderboard SCORE`"
    return {"score": None, "low": None, "high": None, "calibrated_on": len(points),
            "needed": MIN_POINTS, "message": msg}


def predict(records: Iterable[dict], scores: dict, group: tuple, zip_sha256: str | None,
            bounds: tuple[float, float] = (0.0, 1.0)) -> dict:
    """``predicted_leaderboard`` of a zip whose per-set scores are ``scores`` in ``group``
    (data sha256, suite, seed), calibrated on the other zips of the ledger."""
    runs, boards = _latest(list(records))
    points, phase = _points(runs, boards, group, zip_sha256)
    keys = [k for k, v in scores.items() if v is not None
            and all(p.scores.get(k) is not None for p in points)]
    if len(points) < MIN_POINTS or not keys:
        out = _needs(points, group, boards, runs, zip_sha256)
        if points and not keys:
            out["message"] = ("the calibration zips share no scored shifted set with this run; "
                              + out["message"])
        return out
    S = np.array([[p.scores[k] for k in keys] for p in points])
    y = np.array([p.actual for p in points])
    c = calibrate(S, y, np.array([scores[k] for k in keys]), bounds)
    top = sorted(zip(keys, c["weights"]), key=lambda kv: -kv[1])
    own = (boards.get(zip_sha256) or {}).get(phase)
    return {
        "score": c["score"], "low": c["low"], "high": c["high"],
        "calibrated_on": len(points), "phase": phase, "loo_error": c["loo_error"],
        "loo_max_error": c["loo_max_error"], "plain_mean": c["plain_mean"],
        "n_sets": len(keys), "actual": own[0] if own else None,
        "weights": {k: round(float(w), 4) for k, w in top if w >= 0.01},
        "points": [{"zip": p.zip_name, "zip_sha256": p.zip_sha256, "actual": p.actual,
                    "predicted": float(c["loo_predicted"][i])} for i, p in enumerate(points)],
    }


def for_run(records: Iterable[dict], shift: dict, data_sha256: str,
            zip_sha256: str | None) -> dict:
    """``predict`` for a fresh run's shift dict."""
    group = (data_sha256, str(shift.get("suite")), int(shift.get("seed") or 0))
    return predict(records, shift.get("scores") or {}, group, zip_sha256)


def for_history(records: list[dict]) -> dict[str, dict]:
    """A prediction for every zip with a shift run whose group has enough other zips with
    leaderboard scores (each zip predicted without its own score), by zip sha256."""
    runs, _ = _latest(records)
    latest: dict[str, tuple] = {}
    for (sha, g), rec in runs.items():
        if sha not in latest or str(rec.get("time") or "") >= latest[sha][1]:
            latest[sha] = (g, str(rec.get("time") or ""), rec)
    out = {}
    for sha, (g, _, rec) in latest.items():
        p = predict(records, rec["shift_scores"], g, sha)
        if p["score"] is not None:
            out[sha] = p
    return out
