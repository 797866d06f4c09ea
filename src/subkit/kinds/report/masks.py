"""report.html's sections of a segmentation run: IoU per class and mask overlays (the
test image, the true mask and the predicted one over it, each class in its colour)."""

from __future__ import annotations

import numpy as np

from subkit.data.html import data_uri, to_uint8
from subkit.kinds.report import ReportArrays, _e

OVERLAYS = 6  # test images shown, worst pixel accuracy first
PALETTE = np.array([[0, 0, 0], [230, 159, 0], [86, 180, 233], [0, 158, 115], [240, 228, 66],
                    [0, 114, 178], [213, 94, 0], [204, 121, 167], [120, 120, 120]], np.uint8)


def per_class_iou(run: dict) -> str:
    rows = run.get("per_class") or []
    if not rows:
        return ""
    P = ["<section><h2>IoU per class</h2><p class='note'>IoU = TP / (TP + FP + FN) over every "
         "pixel of the test set; ignored classes take no part in the mean.</p><table><tr>"
         "<th>id</th><th class='l'>class</th><th>pixels (true)</th><th>IoU</th>"
         "<th class='l'></th></tr>"]
    for r in rows:
        iou = r.get("iou")
        shown = "ignored" if r.get("ignored") else ("–" if iou is None else f"{iou:.3f}")
        width = 0.0 if iou is None or r.get("ignored") else iou * 100
        colour = "#2e7d32" if (iou or 0) >= 0.7 else ("#e0a100" if (iou or 0) >= 0.4
                                                       else "#c62828")
        P.append(f"<tr><td>{r['class']}</td><td class='l'>{_e(r['name'])}</td>"
                 f"<td>{r['support']:,}</td><td>{shown}</td><td class='l'><div class='bar'>"
                 f"<span style='width:{width:.1f}%;background:{colour}'></span></div></td></tr>")
    P.append("</table></section>")
    return "".join(P)


def _overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    base = to_uint8(image)
    if base.ndim == 2:
        base = np.repeat(base[..., None], 3, axis=-1)
    colours = PALETTE[np.asarray(mask, np.int64) % len(PALETTE)]
    return (0.45 * base + 0.55 * colours).round().astype(np.uint8)


def overlays(run: dict, arrays: ReportArrays) -> str:
    head = "<section><h2>Masks: truth and prediction</h2>"
    X, truth, pred = arrays.inputs, arrays.truth, arrays.pred
    if X is None or truth is None or pred is None or np.shape(pred) != np.shape(truth):
        return head + ("<p class='muted'>The test images or the predicted masks are not "
                       "available (moved?): overlays omitted.</p></section>")
    names = run.get("class_names") or []
    acc = (np.asarray(pred) == np.asarray(truth)).reshape(len(truth), -1).mean(axis=1)
    legend = "".join(f"<span><i style='background:rgb({','.join(map(str, PALETTE[c % 9]))})'>"
                     f"</i>{_e(n)}</span>" for c, n in enumerate(names))
    P = [head, f"<p class='note'>The {min(OVERLAYS, len(truth))} test images with the lowest "
         f"pixel accuracy: the image, the true mask over it, the predicted mask over it.</p>"
         f"<div class='legend'>{legend}</div><div class='gcards'>"]
    for i in np.argsort(acc, kind="stable")[:OVERLAYS]:
        cells = [(X[i], "image"), (_overlay(X[i], truth[i]), "truth"),
                 (_overlay(X[i], pred[i]), "predicted")]
        figs = "".join(f"<figure><img alt='#{i} {cap}' src='{data_uri(img)}'>"
                       f"<figcaption>{cap}</figcaption></figure>" for img, cap in cells)
        P.append(f"<div class='gcard'><b>#{i}</b> pixel accuracy {acc[i]:.3f}"
                 f"<div class='gthumbs'>{figs}</div></div>")
    P.append("</div></section>")
    return "".join(P)
