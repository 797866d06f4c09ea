"""report.html's sections of the classification kinds (and segmentation's confusion of
pixels): the per-class table, the confusion matrix as a heat map, the most confident
mistakes per class."""

from __future__ import annotations

import numpy as np

from subkit.data.html import data_uri
from subkit.kinds.report import _e

MISTAKES_PER_CLASS = 4


def per_class(run: dict) -> str:
    rows = run.get("per_class") or []
    if not rows:
        return ""
    P = ["<section><h2>Per class</h2><table><tr><th>id</th><th class='l'>class</th><th>support</th>"
         "<th>precision</th><th>recall</th><th class='l'></th><th>F1</th></tr>"]
    for r in rows:
        rec = r["recall"]
        colour = "#2e7d32" if rec >= 0.9 else ("#e0a100" if rec >= 0.7 else "#c62828")
        P.append(f"<tr><td>{r['class']}</td><td class='l'>{_e(r['name'])}</td>"
                 f"<td>{r['support']}</td><td>{r['precision']:.3f}</td><td>{rec:.3f}</td>"
                 f"<td class='l'><div class='bar'>"
                 f"<span style='width:{rec * 100:.1f}%;background:{colour}'></span></div></td>"
                 f"<td>{r['f1']:.3f}</td></tr>")
    P.append("</table></section>")
    return "".join(P)


def confusion(run: dict, unit: str = "") -> str:
    cm = run.get("confusion_matrix") or []
    if not cm:
        return ""
    names = run.get("class_names") or [str(i) for i in range(len(cm))]
    P = [f"<section><h2>Confusion matrix{_e(unit)}</h2><p class='note'>Rows: true class; "
         "columns: predicted class (by id). Colour: share of the row (green on the diagonal, "
         "red off it).</p>"
         "<table class='cm'><tr><th></th>"]
    P += [f"<th title='{_e(n)}'>{j}</th>" for j, n in enumerate(names)]
    P.append("<th>n</th></tr>")
    for i, row in enumerate(cm):
        tot = sum(row) or 1
        cells = []
        for j, v in enumerate(row):
            a = v / tot
            rgb = "46,125,50" if i == j else "198,40,40"
            alpha = (0.08 + 0.85 * a) if v else 0.0
            fg = "#fff" if alpha > 0.55 else "#1d2430"
            cells.append(f"<td style='background:rgba({rgb},{alpha:.3f});color:{fg}' "
                         f"title='true {_e(names[i])}, predicted {_e(names[j])}: {v} ({a:.0%})'>"
                         f"{v if v else ''}</td>")
        P.append(f"<tr><th class='l'>{i} {_e(names[i])}</th>{''.join(cells)}"
                 f"<td class='muted'>{sum(row)}</td></tr>")
    P.append("</table></section>")
    return "".join(P)


def mistakes(run: dict, images, y_true, y_pred, proba) -> str:
    head = "<section><h2>Most confident mistakes per class</h2>"
    if y_pred is None or y_true is None:
        return head + "<p class='muted'>Predictions not available.</p></section>"
    if images is None:
        return head + ("<p class='muted'>The test images are not available (moved?): "
                       "thumbnails omitted.</p></section>")
    names = run.get("class_names") or []
    conf = None
    if (proba is not None and proba.ndim == 2 and proba.shape[0] == len(y_pred)
            and proba.shape[1] > int(y_pred.max(initial=0))):
        conf = proba[np.arange(len(y_pred)), y_pred]
    note = ("ranked by the model's probability of the wrong class" if conf is not None else
            "the model's confidence was not measured (run with --proba or --shift to rank by it)")
    P = [head, f"<p class='note'>Up to {MISTAKES_PER_CLASS} per true class, {note}.</p>"]
    wrong = y_true != y_pred
    for c in range(len(names)):
        idx = np.flatnonzero(wrong & (y_true == c))
        if conf is not None and idx.size:
            idx = idx[np.argsort(-conf[idx], kind="stable")]
        n_wrong = idx.size
        idx = idx[:MISTAKES_PER_CLASS]
        figs = []
        for i in idx:
            p = int(y_pred[i])
            cap = f"#{i} → {names[p] if p < len(names) else p}"
            if conf is not None:
                cap += f" ({conf[i]:.2f})"
            figs.append(f"<figure><img alt='#{i}' src='{data_uri(images[i])}'>"
                        f"<figcaption>{_e(cap)}</figcaption></figure>")
        body = "".join(figs) if figs else "<span class='good'>no mistakes</span>"
        P.append(f"<div class='mrow'><div><b>{_e(names[c])}</b><br><span class='muted'>"
                 f"{n_wrong} wrong of {int((y_true == c).sum())}</span></div>"
                 f"<div class='thumbs'>{body}</div></div>")
    P.append("</section>")
    return "".join(P)
