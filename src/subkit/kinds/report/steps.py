"""report.html's sections of a forecasting run: the error per forecast step (a bar chart
of MSE by step, the horizon's later steps usually worse) and a few series with their true
and predicted futures."""

from __future__ import annotations

import numpy as np

from subkit.kinds.report import ReportArrays, _e

EXAMPLES = 4  # series drawn, worst MSE first


def per_step(run: dict) -> str:
    steps = (run.get("scores") or {}).get("mse_per_step") or []
    if not steps:
        return ""
    top = max(steps) or 1.0
    w, h, pad = 640, 180, 30
    bw = (w - 2 * pad) / len(steps)
    bars = "".join(
        f"<rect x='{pad + k * bw + 1:.1f}' y='{h - pad - (h - 2 * pad) * v / top:.1f}' "
        f"width='{max(bw - 2, 1):.1f}' height='{(h - 2 * pad) * v / top:.1f}' fill='#3558d6'>"
        f"<title>step {k + 1}: MSE {v:.5f}</title></rect>"
        f"<text x='{pad + (k + .5) * bw:.1f}' y='{h - pad + 14}' font-size='10' "
        f"text-anchor='middle'>{k + 1}</text>" for k, v in enumerate(steps))
    P = ["<section><h2>Error per forecast step</h2><p class='note'>MSE of each step of the "
         f"horizon over the test set (phase {_e(run.get('phase') or '-')}); the later "
         "steps are usually harder.</p>",
         f"<svg width='{w}' height='{h}' role='img' aria-label='MSE per step'>"
         f"<text x='{pad}' y='14' font-size='11'>max {top:.5f}</text>{bars}</svg>",
         "<table><tr><th>step</th>" + "".join(f"<th>{k + 1}</th>" for k in range(len(steps)))
         + "</tr><tr><th>MSE</th>" + "".join(f"<td>{v:.4f}</td>" for v in steps)
         + "</tr></table></section>"]
    return "".join(P)


def _path(values: np.ndarray, x0: float, dx: float, lo: float, span: float, h: int) -> str:
    pts = " ".join(f"{x0 + k * dx:.1f},{h - 10 - (h - 20) * (v - lo) / span:.1f}"
                   for k, v in enumerate(values))
    return pts


def examples(run: dict, arrays: ReportArrays) -> str:
    X, truth, pred = arrays.inputs, arrays.truth, arrays.pred
    if X is None or truth is None or pred is None or np.shape(pred) != np.shape(truth):
        return ""
    Xf = np.asarray(X, np.float64).reshape(len(X), X.shape[1], -1)[..., 0]
    y, p = np.asarray(truth, np.float64), np.asarray(pred, np.float64)
    err = ((y - p) ** 2).mean(axis=1)
    P = ["<section><h2>Forecasts of the worst series</h2><p class='note'>The last input "
         "steps (grey), the true future (green) and the forecast (blue).</p>"
         "<div class='gcards'>"]
    for i in np.argsort(-err, kind="stable")[:EXAMPLES]:
        past = Xf[i, -3 * y.shape[1]:]
        allv = np.concatenate([past, y[i], p[i]])
        lo, span = float(allv.min()), float(np.ptp(allv)) or 1.0
        w, h = 260, 90
        dx = (w - 10) / (len(past) + y.shape[1])
        x1 = 5 + len(past) * dx
        lines = "".join(f"<polyline fill='none' stroke='{c}' "
                        f"points='{_path(v, x, dx, lo, span, h)}'/>"
                        for v, x, c in ((past, 5, "#9aa3b0"), (y[i], x1, "#2e7d32"),
                                        (p[i], x1, "#3558d6")))
        P.append(f"<div class='gcard'><b>#{i}</b> MSE {err[i]:.4f}<br>"
                 f"<svg width='{w}' height='{h}'>{lines}</svg></div>")
    P.append("</div></section>")
    return "".join(P)
