"""What the two series kinds share (forecasting, series classification; X (n, steps[,
features])): their shift families.

============ ===================================================== ====== ====== ======
family       what it does                                          sev 1  sev 2  sev 3
============ ===================================================== ====== ====== ======
noise        Gaussian noise, σ = s x the sample's std per feature   s .05  s .10  s .20
scaling      gain exp(±U(0, a)) and offset ±U(0, b) x std, drawn    a .10  a .25  a .50
             per sample and feature; a forecast's truth y gets the  b .05  b .10  b .25
             same gain and offset (the whole series moved)
missing      runs of time steps set to 0 (what a pipeline fills      .05    .15    .30
             gaps with), this share of the steps
============ ===================================================== ====== ====== ======
"""

from __future__ import annotations

from typing import Any

import numpy as np

SERIES: dict[str, Any] = {"noise": (.05, .10, .20),
                          "scaling": ((.10, .05), (.25, .10), (.50, .25)),
                          "missing": (.05, .15, .30)}
TITLES = {"noise": "Gaussian noise", "scaling": "gain and offset",
          "missing": "missing steps (0)"}


def shift_series(name: str, sev: int, X: np.ndarray, y: np.ndarray | None,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """X under family ``name`` at ``sev``; ``y`` (a forecast's future) moved by scaling."""
    x = X.astype(np.float64).reshape(len(X), X.shape[1], -1)  # (n, steps, features)
    std = x.std(axis=1, keepdims=True) + 1e-9
    if name == "noise":
        x = x + rng.standard_normal(x.shape) * SERIES["noise"][sev - 1] * std
    elif name == "scaling":
        a, b = SERIES["scaling"][sev - 1]
        unit = rng.uniform(-1, 1, (2,) + std.shape)  # the same draws at every severity
        gain, offset = np.exp(a * unit[0]), b * unit[1] * std
        x = x * gain + offset
        if y is not None:  # forecasting: the future moves with the series
            y = y * gain[:, 0, :1] + offset[:, 0, :1]
    else:  # missing: runs of steps set to 0
        steps = x.shape[1]
        run = max(1, steps // 20)
        starts = rng.random((len(x), steps)) < SERIES["missing"][sev - 1] / run
        gone = np.zeros((len(x), steps), bool)
        for k in range(run):
            gone[:, k:] |= starts[:, : steps - k]
        x = np.where(gone[..., None], 0.0, x)
    return x.reshape(X.shape).astype(X.dtype), y
