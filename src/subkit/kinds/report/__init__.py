"""report.html's parts of the kinds of competition (subkit.kinds): what every section shares
(escaping, number formats, the arrays a report shows) here, one module per kind's sections;
subkit.report.html the page (the sections every kind has)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class ReportArrays:
    """What report.html shows besides run.json: the test inputs and truth, the predictions
    (output/<kind.output>.npy), class probabilities, the shifted samples."""

    inputs: np.ndarray | None = None
    truth: np.ndarray | None = None
    pred: np.ndarray | None = None
    proba: np.ndarray | None = None
    samples: dict | None = None


def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _short(s, n: int = 24) -> str:
    s = str(s)
    return s if len(s) <= n else s[: n - 1] + "…"


def _f(x, nd=4) -> str:
    return "–" if x is None else f"{x:.{nd}f}"
