"""report.html's shift gallery: one test image per shift, clean and shifted."""

from __future__ import annotations

import numpy as np

from subkit.data.html import data_uri
from subkit.kinds.report import _e


def gallery(run: dict, samples: dict | None, clean_images: np.ndarray | None) -> str:
    """One test image per shift: clean and at severities 1, 2, 3 (the images rotate)."""
    shift = run.get("shift")
    if not shift or not samples:
        return ""
    k = min(v.shape[0] for v in samples.values())
    P = ["<section><h2>What the shifts look like</h2><div class='gcards'>"]
    for j, r in enumerate(shift.get("shifts", [])):
        i = j % k if k else 0
        cells = []
        if clean_images is not None and i < len(clean_images):
            cells.append(f"<figure><img alt='clean' src='{data_uri(clean_images[i])}'>"
                         "<figcaption>clean</figcaption></figure>")
        n = len(r.get("params") or r["severity"])
        for sev in sorted({1, (n + 1) // 2, n}):
            a = samples.get(f"{r['name']}-{sev}")
            if a is not None and i < len(a):
                cells.append(f"<figure><img alt='{_e(r['name'])} {sev}' src='{data_uri(a[i])}'>"
                             f"<figcaption>severity {sev}</figcaption></figure>")
        P.append(f"<div class='gcard'><b>{_e(r.get('title') or r['name'])}</b>"
                 f"<div class='gthumbs'>{''.join(cells)}</div></div>")
    P.append("</div></section>")
    return "".join(P)
