"""The detailed report of a local run: ``report.html`` in the run folder.

One self-contained file: inline CSS, charts as inline SVG, images as ``data:`` URIs, no
script, and a Content-Security-Policy that forbids any outside request, so it opens
offline and doubles as Codabench's ``detailed_results.html``. Sections: the headline
scores (with the predicted leaderboard score and its band), the leaderboard prediction
(predicted against actual per zip of the ledger), the shift suite (hypothesis, bar chart,
table with each family's library, sample images), TTA comparison, the per-class table, the
confusion matrix as a heat map with counts, the most confident mistakes per class, the
timing against the time limit, and the exact versions and files of the submission.

Everything comes from the run folder (``run.json``, ``output/labels.npy``,
``output/proba.npy``, ``output/shift_samples.npz``, ``submission/``) plus the test images,
which ``subkit report`` reloads from the data path recorded in run.json when they are not
given.
"""

from __future__ import annotations

import functools
import hashlib
import math
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from subkit.grader import untrusted
from subkit.kinds.report import ReportArrays, _e, _f, _short

if TYPE_CHECKING:
    from subkit.kinds import Kind
    from subkit.profile import Profile

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
MAX_FILES = 200
MAX_HASH_BYTES = 64 * 1024**2  # files hashed for the report (bigger: size only)

CSS = """
:root{--ink:#1d2430;--muted:#6b7380;--line:#e4e7ec;--bg:#f6f7f9;--ok:#2e7d32;--bad:#c62828;
--accent:#3558d6;--s1:#9db4f0;--s2:#5b7fe0;--s3:#233f9c}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:var(--ink);
background:var(--bg)}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:34px 0 10px}
.sub{color:var(--muted);margin:0 0 18px}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:16px 20px;
margin:14px 0}
section h2{margin-top:0}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(165px,1fr));gap:12px;margin:16px 0}
.card{background:#fff;border:1px solid var(--line);border-radius:10px;padding:12px 16px}
.card .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:28px;font-weight:650;margin-top:2px}
.card .d{font-size:12px;color:var(--muted);overflow-wrap:anywhere}
.card.main{border-color:var(--accent);box-shadow:0 0 0 2px #3558d622}
.bad{color:var(--bad)}.good{color:var(--ok)}.muted{color:var(--muted)}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:4px 10px;text-align:right;border-bottom:1px solid var(--line)}
th{font-weight:600;color:#39414d;background:#fafbfc}td.l,th.l{text-align:left}
.bar{position:relative;height:10px;background:#eef0f4;border-radius:5px;min-width:90px}
.bar>span{position:absolute;left:0;top:0;bottom:0;border-radius:5px;background:var(--accent)}
.cm td{width:54px;height:34px;text-align:center;border:1px solid #fff;font-size:13px}
.cm th{font-size:12px;text-align:center}.cm th.l{text-align:left}
.thumbs{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;text-align:center;font-size:11px;color:#39414d;width:100px}
figure img{width:96px;height:96px;image-rendering:pixelated;border-radius:6px;
border:1px solid var(--line)}
figcaption{line-height:1.25;margin-top:2px}
.mrow{display:grid;grid-template-columns:170px 1fr;gap:10px;align-items:start;padding:8px 0;
border-bottom:1px solid var(--line)}
.gcards{display:grid;grid-template-columns:repeat(auto-fill,minmax(272px,1fr));gap:10px}
.gcard{border:1px solid var(--line);border-radius:8px;padding:8px 10px;font-size:13px}
.gthumbs{display:flex;gap:4px;margin-top:4px}.gthumbs figure{width:62px;font-size:10px}
.gthumbs img{width:60px;height:60px;border-radius:4px}
.fail{border-color:var(--bad);background:#fff6f6}
pre{background:#0f1420;color:#e6e9ef;padding:10px 12px;border-radius:8px;overflow:auto;
font-size:12px}
.timebar{display:flex;height:22px;border-radius:6px;overflow:hidden;background:#eef0f4;margin:8px 0}
.timebar span{display:block;height:100%}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;
vertical-align:-1px}
.note{font-size:12px;color:var(--muted)}
code{font-size:12px;background:#f0f2f5;padding:1px 4px;border-radius:4px}
"""


# -- loading a run folder ------------------------------------------------------------------
def load_run(run_dir: Path) -> dict:
    from subkit.grader.runfolder import read_record

    return read_record(run_dir)


def _load_npy(p: Path):
    try:
        return np.load(p, allow_pickle=False)
    except (OSError, ValueError):
        return None


def _files(sub_dir: Path) -> list[dict]:
    out: list[dict] = []
    if not sub_dir.is_dir():
        return out
    for p in sorted(sub_dir.rglob("*")):
        if not p.is_file() or len(out) >= MAX_FILES:
            continue
        size = p.stat().st_size
        digest = None
        if size <= MAX_HASH_BYTES:  # a big weights file: the zip's sha256 identifies it
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                for chunk in iter(functools.partial(fh.read, 1 << 20), b""):
                    h.update(chunk)
            digest = h.hexdigest()
        out.append({"path": untrusted.printable(p.relative_to(sub_dir).as_posix(), 300,
                                                one_line=True),  # the child names files too
                    "size": size, "sha256": digest})
    return out


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


# -- sections ------------------------------------------------------------------------------
def _headline(run: dict, noun: str) -> str:
    metric = run.get("metric", "accuracy")
    scores = run.get("scores") or {}
    shift = run.get("shift") or {}
    t = run.get("timings") or {}
    limit = run.get("time_limit_s") or 0
    used = t.get("child_s")
    cards = [f"<div class='card main'><div class='k'>clean {_e(metric)}</div>"
             f"<div class='v'>{_f(scores.get(metric))}</div>"
             f"<div class='d'>{run.get('n', 0):,} local test {_e(noun)}</div></div>"]
    pred = run.get("predicted_leaderboard")
    if pred:
        cards.append(_prediction_card(pred))
    if shift.get("shifted_score") is not None:
        drop = shift.get("drop") or 0.0
        cards.append(f"<div class='card main'><div class='k'>shifted score</div>"
                     f"<div class='v'>{_f(shift['shifted_score'])}</div>"
                     f"<div class='d'><span class='{'bad' if drop > 0.02 else 'muted'}'>"
                     f"{-drop:+.4f}</span> from clean; {shift.get('n_scored', 0)} shifted sets "
                     f"(suite {_e(_short(shift.get('suite')))})</div></div>")
    for k, label in (("balanced_accuracy", "balanced accuracy"), ("macro_f1", "macro F1")):
        if k != metric and k in scores:
            cards.append(f"<div class='card'><div class='k'>{label}</div>"
                         f"<div class='v'>{_f(scores[k])}</div></div>")
    if used is not None and limit:
        frac = used / limit
        cls = "bad" if frac > 0.8 else ("muted" if frac > 0.5 else "good")
        cards.append(f"<div class='card'><div class='k'>time</div><div class='v'>{used:.0f} s</div>"
                     f"<div class='d'><span class='{cls}'>{frac:.0%}</span> of the {limit:g} s "
                     "limit</div></div>")
    return "<div class='cards'>" + "".join(cards) + "</div>"


def _prediction_card(p: dict) -> str:
    if p.get("score") is None:
        return ("<div class='card'><div class='k'>predicted leaderboard</div>"
                f"<div class='v muted'>–</div><div class='d'>{_e(p.get('message', ''))}</div>"
                "</div>")
    actual = (f"; actual <b>{p['actual']:.4f}</b>" if p.get("actual") is not None else "")
    return ("<div class='card main'><div class='k'>predicted leaderboard</div>"
            f"<div class='v'>{p['score']:.4f}</div><div class='d'>{p['low']:.3f} to "
            f"{p['high']:.3f} (90% band); calibrated on {p['calibrated_on']} zips' "
            f"{_e(p.get('phase'))} scores, leave-one-out error {p['loo_error']:.3f}{actual}"
            "</div></div>")


def _prediction_chart(p: dict, zipname: str) -> str:
    """Predicted against actual per zip: each calibration zip predicted from the others
    (leave-one-out), and this zip with its band."""
    rows = [(pt.get("zip") or pt["zip_sha256"][:12], pt["predicted"], None, None, pt["actual"])
            for pt in p.get("points") or []]
    rows.append((f"{zipname} (this run)", p["score"], p["low"], p["high"], p.get("actual")))
    vals = [v for r in rows for v in r[1:] if v is not None]
    lo = max(0.0, math.floor((min(vals) - 0.02) * 20) / 20)
    hi = min(1.0, math.ceil((max(vals) + 0.02) * 20) / 20)
    label_w, chart_w, row_h, top = 230, 560, 24, 14
    h = top + row_h * len(rows) + 30
    X = lambda v: label_w + chart_w * (v - lo) / max(hi - lo, 1e-9)  # noqa: E731
    out = [f"<svg width='{label_w + chart_w + 30}' height='{h}' viewBox='0 0 "
           f"{label_w + chart_w + 30} {h}' role='img' aria-label='predicted and actual "
           "leaderboard scores' font-family='system-ui,sans-serif' font-size='12'>"]
    step = 0.05 if hi - lo <= 0.5 else 0.1
    for i in range(int(round((hi - lo) / step)) + 1):
        t = lo + i * step
        x = X(t)
        out.append(f"<line x1='{x:.1f}' y1='{top - 4}' x2='{x:.1f}' y2='{h - 22}' "
                   f"stroke='#eef0f4'/><text x='{x:.1f}' y='{h - 8}' text-anchor='middle' "
                   f"fill='#6b7380'>{t:.2f}</text>")
    for j, (name, pred, low, high, actual) in enumerate(rows):
        y = top + j * row_h + row_h / 2
        weight = " font-weight='600'" if j == len(rows) - 1 else ""
        out.append(f"<text x='{label_w - 10}' y='{y + 4}' text-anchor='end' fill='#1d2430'"
                   f"{weight}>{_e(_short(name, 34))}</text>")
        if low is not None:
            out.append(f"<rect x='{X(low):.1f}' y='{y - 7}' width='{X(high) - X(low):.1f}' "
                       f"height='14' rx='3' fill='#3558d633'><title>band {low:.4f} to "
                       f"{high:.4f}</title></rect>")
        if actual is not None:
            out.append(f"<line x1='{X(pred):.1f}' y1='{y}' x2='{X(actual):.1f}' y2='{y}' "
                       "stroke='#b9c0cc' stroke-width='2'/>")
            out.append(f"<path d='M{X(actual):.1f} {y - 6} l6 6 l-6 6 l-6 -6 z' "
                       f"fill='#2e7d32'><title>actual {actual:.4f}</title></path>")
        out.append(f"<circle cx='{X(pred):.1f}' cy='{y}' r='5' fill='#3558d6'><title>"
                   f"predicted {pred:.4f}</title></circle>")
    out.append("</svg>")
    legend = ("<div class='legend'><span><i style='background:#3558d6;border-radius:5px'></i>"
              "predicted (a calibration zip: from the others)</span><span><i style='background:"
              "#2e7d32'></i>actual leaderboard score</span><span><i style='background:"
              "#3558d633'></i>this run's 90% band</span></div>")
    return legend + "".join(out)


def _prediction_section(run: dict) -> str:
    p = run.get("predicted_leaderboard")
    if not p:
        return ""
    head = "<section><h2>Predicted leaderboard score</h2>"
    if p.get("score") is None:
        return head + f"<p class='muted'>{_e(p.get('message', ''))}</p></section>"
    zipname = Path(str(run.get("zip", "this zip"))).name
    weights = ", ".join(f"<code>{_e(k)}</code> {w:.2f}" for k, w in
                        list((p.get("weights") or {}).items())[:8])
    return (head + f"<p>The ledger's {p['calibrated_on']} other zips with a "
            f"<b>{_e(p.get('phase'))}</b> leaderboard score and a run of this suite, seed and "
            f"test set say which of the {p.get('n_sets', 0)} shifted sets explain the "
            f"leaderboard (non-negative weights summing to 1, pulled towards the plain mean "
            f"{_f(p.get('plain_mean'))}). Predicted <b>{p['score']:.4f}</b>, 90% band "
            f"{p['low']:.4f} to {p['high']:.4f}; each calibration zip predicted from the others "
            f"misses its actual score by {p['loo_error']:.4f} (root mean square) and "
            f"{p['loo_max_error']:.4f} at worst.</p>"
            + _prediction_chart(p, zipname)
            + (f"<p class='note'>Heaviest sets: {weights}.</p>" if weights else "")
            + "<p class='note'>The band is as wide as the leave-one-out errors allow; with "
              "few zips it is wide on purpose. Record leaderboard scores with <code>subkit "
              "history score ZIP --leaderboard SCORE</code> (or <code>subkit submit "
              "--wait</code>) to narrow it.</p></section>")


def _failure(run: dict) -> str:
    f = run.get("failure") or {}
    tail = f.get("tail") or ""
    return (f"<section class='fail'><h2 class='bad'>FAILED at stage {_e(f.get('stage'))}: "
            f"the grader would fail the same way</h2><p><b>error:</b> {_e(f.get('message'))}</p>"
            f"<p><b>hint:</b> {_e(f.get('hint'))}</p>"
            + (f"<pre>{_e(tail)}</pre>" if tail else "") + "</section>")


def _n_severities(rows: list[dict]) -> int:
    return max([len(r.get("params") or r["severity"]) for r in rows] + [1])


def _shades(n: int) -> list[str]:
    """``n`` blues from light (severity 1) to dark (the strongest)."""
    light, dark = (0x9d, 0xb4, 0xf0), (0x23, 0x3f, 0x9c)
    mix = [i / max(n - 1, 1) for i in range(n)]
    return ["#" + "".join(f"{round(a + (b - a) * m):02x}" for a, b in zip(light, dark))
            for m in mix]


def _shift_chart(shift: dict) -> str:
    rows = [r for r in shift.get("shifts", []) if any(s is not None for s in r["scores"])]
    if not rows:
        return ""
    rows = sorted(rows, key=lambda r: (r["mean"] if r["mean"] is not None else 2))
    clean = shift.get("clean_score")
    shifted = shift.get("shifted_score")
    n_sev = _n_severities(rows)
    colours = _shades(n_sev)
    label_w, chart_w, right = 190, 640, 70
    bar_h, gap = (9, 12) if n_sev <= 3 else (6, 10)
    row_h = n_sev * bar_h + gap
    top = 26
    h = top + row_h * len(rows) + 26
    w = label_w + chart_w + right
    X = lambda v: label_w + chart_w * max(0.0, min(1.0, v))  # noqa: E731
    out = [f"<svg width='{w}' height='{h}' "
           f"viewBox='0 0 {w} {h}' role='img' aria-label='shift suite scores' "
           "font-family='system-ui,sans-serif' font-size='12'>"]
    for i in range(11):
        x = X(i / 10)
        out.append(f"<line x1='{x:.1f}' y1='{top - 6}' x2='{x:.1f}' y2='{h - 20}' "
                   f"stroke='#eef0f4'/><text x='{x:.1f}' y='{h - 6}' text-anchor='middle' "
                   f"fill='#6b7380'>{i / 10:.1f}</text>")
    for j, r in enumerate(rows):
        y0 = top + j * row_h
        out.append(f"<text x='{label_w - 10}' y='{y0 + n_sev * bar_h / 2 + 4}' text-anchor='end' "
                   f"fill='#1d2430'>{_e(r.get('title') or r['name'])}</text>")
        for sev, sc in zip(r["severity"], r["scores"], strict=True):
            y = y0 + (sev - 1) * bar_h
            if sc is None:
                out.append(f"<text x='{label_w + 4}' y='{y + bar_h - 1}' fill='#c62828' "
                           f"font-size='10'>severity {sev}: failed</text>")
                continue
            out.append(f"<rect x='{label_w}' y='{y}' width='{X(sc) - label_w:.1f}' "
                       f"height='{bar_h - 1}' rx='2' fill='{colours[sev - 1]}'><title>"
                       f"{_e(r['name'])} severity {sev}: {sc:.4f}</title></rect>")
        if r["mean"] is not None:
            out.append(f"<text x='{label_w + chart_w + 8}' y='{y0 + n_sev * bar_h / 2 + 4}' "
                       f"fill='#1d2430'>{r['mean']:.3f}</text>")
    for v, colour, name in ((clean, "#2e7d32", "clean"), (shifted, "#c62828", "shifted")):
        if v is None:
            continue
        x = X(v)
        other = shifted if name == "clean" else clean
        # labels on either side of their line, so that close values do not overlap
        right = other is None or v >= other
        anchor, tx = ("start", x + 4) if right else ("end", x - 4)
        out.append(f"<line x1='{x:.1f}' y1='{top - 8}' x2='{x:.1f}' y2='{h - 20}' "
                   f"stroke='{colour}' stroke-width='2' stroke-dasharray='5 3'/>"
                   f"<text x='{tx:.1f}' y='{top - 12}' text-anchor='{anchor}' fill='{colour}' "
                   f"font-weight='600'>{name} {v:.3f}</text>")
    out.append("</svg>")
    legend = ("<div class='legend'>"
              + "".join(f"<span><i style='background:{c}'></i>severity {i}</span>"
                        for i, c in enumerate(colours, 1))
              + "<span><i style='background:#2e7d32'></i>clean</span>"
              "<span><i style='background:#c62828'></i>shifted score (mean)</span></div>")
    return legend + "".join(out)


def _shift_section(run: dict) -> str:
    shift = run.get("shift")
    if not shift:
        return ("<section><h2>Distribution shift</h2><p class='muted'>Not measured in this run. "
                "The hidden test set of the reference competition was shifted from the training "
                "data; run <code>subkit score-local --shift</code> for a harder, more realistic "
                "estimate than the clean score.</p></section>")
    metric = shift.get("metric", "accuracy")
    gen = shift.get("generator") or {}
    made = ", ".join(f"{k} {v}" for k, v in gen.items() if k != "backend")
    P = [f"<section><h2>Distribution shift: suite <code>{_e(shift.get('suite'))}</code>, seed "
         f"{_e(shift.get('seed'))}</h2>",
         f"<p class='note'>Hypothesis: {_e(shift.get('hypothesis', ''))}."
         + (f" Made by subkit with {_e(made)}." if made else "") + "</p>",
         f"<p>{_e(metric)} on the clean test set and on {shift.get('n_shifted_sets', 0)} "
         f"shifted copies of it (each predicted once, like the grader). <b>Shifted score "
         f"{_f(shift.get('shifted_score'))}</b> = the mean over every shift and severity; "
         f"drop from clean "
         f"{_f(shift.get('drop'))}. Worst: {_e(', '.join(shift.get('worst') or []) or '–')}.</p>",
         _shift_chart(shift)]
    tta = run.get("tta_compare") or {}
    no_tta = {r["name"]: r.get("no_tta") for r in tta.get("shifts") or []}
    sevs = range(1, _n_severities(shift.get("shifts", [])) + 1)
    P.append("<table style='margin-top:12px'><tr><th class='l'>shift</th>"
             + "".join(f"<th>severity {s}</th>" for s in sevs) + "<th>mean</th><th>drop</th>"
             + ("<th>mean without TTA</th>" if no_tta else "")
             + f"<th class='l'>parameters ({' / '.join(map(str, sevs))})</th>"
             "<th class='l'>made with</th></tr>")
    for r in shift.get("shifts", []):
        by = dict(zip(r["severity"], r["scores"], strict=True))
        params = " / ".join(r.get("shown") or [", ".join(f"{k} {v}" for k, v in p.items())
                                                for p in r.get("params", [])])
        drop = r.get("drop")
        P.append(f"<tr><td class='l'>{_e(r.get('title') or r['name'])} <span class='muted'>"
                 f"({_e(r['name'])})</span></td>"
                 + "".join(f"<td>{_f(by.get(s))}</td>" for s in sevs)
                 + f"<td><b>{_f(r.get('mean'))}</b></td>"
                 f"<td class='{'bad' if (drop or 0) > 0.05 else ''}'>{_f(drop)}</td>"
                 + (f"<td>{_f(no_tta.get(r['name']))}</td>" if no_tta else "")
                 + f"<td class='l note'>{_e(params)}</td>"
                 f"<td class='l note'>{_e(r.get('source', ''))}</td></tr>")
    P.append("</table>")
    for fl in shift.get("failures") or []:
        P.append(f"<p class='bad'>{_e(fl['key'])}: {_e(fl['error'])}</p>")
    if shift.get("skipped"):
        P.append(f"<p class='note'>skipped (need RGB images): "
                 f"{_e(', '.join(shift['skipped']))}</p>")
    t = shift.get("timings") or {}
    P.append(f"<p class='note'>generating the shifted sets: {t.get('generate_s', 0):.1f} s "
             f"(while the model ran); predicting them: {t.get('predict_s', 0):.1f} s.</p>")
    P.append("<p class='note'>What this is: the same images under the suite's shifts, at "
             "growing strengths, seeded and reproducible, made with Keras' and Pillow's own "
             "operations. What it is not: the hidden test set. The real shift is unknown; a model "
             "can be tuned to this suite and still drop on the leaderboard. The plain mean is "
             "for comparing submissions; the predicted leaderboard above is calibrated on your "
             "own leaderboard scores.</p></section>")
    return "".join(P)


def _tta_section(run: dict) -> str:
    t = run.get("tta_compare")
    if not t:
        return ""
    if not t.get("available") or not t.get("ok", True):
        return (f"<section><h2>Test-time augmentation</h2><p class='muted'>"
                f"{_e(t.get('reason'))}</p></section>")
    ps = t.get("predict_s") or {}
    P = ["<section><h2>Test-time augmentation: what it buys</h2><table><tr><th class='l'></th>"
         "<th>with TTA</th><th>without</th><th>gain</th></tr>"]

    def row(name, d):
        if not d or d.get("tta") is None or d.get("no_tta") is None:
            return ""
        g = d["tta"] - d["no_tta"]
        return (f"<tr><td class='l'>{_e(name)}</td><td>{_f(d['tta'])}</td>"
                f"<td>{_f(d['no_tta'])}</td>"
                f"<td class='{'good' if g > 0 else 'bad' if g < 0 else ''}'>{g:+.4f}</td></tr>")

    P.append(row("clean " + t.get("metric", ""), t.get("clean")))
    P.append(row("shifted score", t.get("shifted")))
    if ps.get("tta") is not None and ps.get("no_tta") is not None:
        P.append(f"<tr><td class='l'>predict time, clean set</td><td>{ps['tta']:.1f} s</td>"
                 f"<td>{ps['no_tta']:.1f} s</td>"
                 f"<td>×{ps['tta'] / max(ps['no_tta'], 1e-9):.1f}</td></tr>")
    P.append("</table>")
    if t.get("shifts"):
        P.append("<p class='note'>Per shift: the column <i>mean without TTA</i> of the shift "
                 "table above.</p>")
    P.append("</section>")
    return "".join(P)


def _timing(run: dict) -> str:
    t = run.get("timings") or {}
    limit = run.get("time_limit_s") or 0
    used = t.get("child_s")
    if used is None or not limit:
        return ""
    parts = [("import model.py", t.get("import_s", 0) or 0, "#9db4f0"),
             ("Model()", t.get("init_s", 0) or 0, "#5b7fe0"),
             ("predict(X)", t.get("predict_s", 0) or 0, "#233f9c")]
    other = max(0.0, used - sum(p[1] for p in parts))
    parts.append(("start-up, loading, saving", other, "#b9c0cc"))
    scale = max(limit, used)
    spans = "".join(f"<span title='{_e(n)}: {v:.1f} s' style='width:{100 * v / scale:.2f}%;"
                    f"background:{c}'></span>" for n, v, c in parts if v > 0)
    frac = used / limit
    verdict = ("<b class='bad'>over the limit: the grader would kill it</b>" if frac > 1 else
               "<b class='bad'>close to the limit</b>: the grader's machine may be slower"
               if frac > 0.6
               else "<b class='good'>well within the limit</b>")
    P = ["<section><h2>Time against the limit</h2>",
         f"<p>{used:.1f} s of the {limit:g} s limit ({frac:.0%}): {verdict}.</p>",
         f"<div class='timebar'>{spans}</div>",
         "<div class='legend'>"
         + "".join(f"<span><i style='background:{c}'></i>{_e(n)} {v:.1f} s</span>"
                   for n, v, c in parts) + "</div>"]
    extra = []
    if t.get("proba_s"):
        extra.append(f"predict_proba for this report {t['proba_s']:.1f} s")
    if t.get("extra_total_s"):
        extra.append(f"the shifted sets {t['extra_total_s']:.1f} s")
    if extra:
        P.append(f"<p class='note'>Not counted (the grader does not run them): "
                 f"{_e('; '.join(extra))}.</p>")
    if run.get("peak_rss_mb"):
        P.append(f"<p class='note'>Peak memory of the submission's process: "
                 f"{run['peak_rss_mb']:.0f} MB.</p>")
    P.append("</section>")
    return "".join(P)


def _environment(run: dict, files: list[dict], noun: str) -> str:
    env = run.get("env") or {}
    vers = env.get("versions") or {}
    P = ["<section><h2>Submission and environment</h2><table>"]
    rows = [("zip", Path(str(run.get("zip", ""))).name), ("zip sha256", run.get("zip_sha256", "")),
            ("test data", f"{run.get('data', '')} ({run.get('n', 0):,} {noun})"),
            ("environment", env.get("name", "")),
            ("python", env.get("python_version") or env.get("python", ""))]
    rows += [(k, v) for k, v in vers.items()]
    rows.append(("network", "cut (as a grader with network disabled)" if run.get("network_isolated")
                 else "NOT isolated"))
    for k, v in rows:
        P.append(f"<tr><th class='l'>{_e(k)}</th><td class='l'><code>{_e(v)}</code></td></tr>")
    P.append("</table>")
    if files:
        P.append("<h2>Files of the submission</h2><table><tr><th class='l'>file</th><th>size</th>"
                 "<th class='l'>sha256</th></tr>")
        for f in files:
            P.append(f"<tr><td class='l'><code>{_e(f['path'])}</code></td>"
                     f"<td>{_size(f['size'])}</td>"
                     + (f"<td class='l note'><code>{f['sha256']}</code></td></tr>"
                        if f["sha256"] else "<td class='l note'>not hashed (see the zip's "
                        "sha256)</td></tr>"))
        P.append("</table>")
    for w in run.get("warnings") or []:
        P.append(f"<p class='bad'>warning: {_e(w)}</p>")
    P.append(f"<p class='note'>Run folder: <code>{_e(run.get('run_dir', ''))}</code></p></section>")
    return "".join(P)


# -- the page ------------------------------------------------------------------------------
def render(run: dict, *, kind: Kind | None = None, arrays: ReportArrays | None = None,
           files: list[dict] | None = None) -> str:
    """The report page of a run dict (run.json's content): the sections every kind has,
    and the kind's own (``Kind.report_sections``: per class, per step, mask overlays)."""
    arrays = arrays if arrays is not None else ReportArrays()
    noun = kind.noun if kind is not None else "samples"
    zipname = Path(str(run.get("zip", "submission"))).name
    ok = run.get("ok")
    when = datetime.now().strftime("%Y-%m-%d %H:%M")
    P = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
         f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
         "<meta name='viewport' content='width=device-width,initial-scale=1'>",
         f"<title>subkit report: {_e(zipname)}</title><style>{CSS}</style></head><body><main>",
         f"<h1>{'' if ok else '<span class=bad>FAILED</span> '}{_e(zipname)}</h1>",
         f"<p class='sub'>Local evaluation the way the hidden grader runs it · "
         f"{_e(kind.title if kind is not None else '')} · "
         f"{_e(run.get('metric', ''))} · report written {when} by subkit</p>"]
    if ok:
        P.append(_headline(run, noun))
    else:
        P.append(_failure(run))
    if ok:
        P.append(_prediction_section(run))
        P.append(_shift_section(run))
        P.append(_tta_section(run))
        if kind is not None:
            P.extend(kind.report_sections(run, arrays))
    P.append(_timing(run))
    P.append(_environment(run, files or [], noun))
    P.append("</main></body></html>")
    return "\n".join(p for p in P if p)


def write_report(run_dir: Path, prof: Profile | None = None, *,
                 images: np.ndarray | None = None, labels: np.ndarray | None = None,
                 name: str = "report.html", record: dict | None = None) -> Path:
    """Write ``report.html`` of a run folder atomically and return its path.

    ``images``/``labels``: the test set's inputs and truth (else reloaded from run.json's
    data path with ``prof``, when it is still there); ``record``: the run's record while
    it runs (run.json is written when the run ends), else read from run.json. The
    predictions are the kind's output file (``output/labels.npy``, ``masks.npy``,
    ``forecasts.npy``).
    """
    run_dir = Path(run_dir)
    run = record if record is not None else load_run(run_dir)
    kind = prof.kind_spec if prof is not None else None
    out_dir = run_dir / "output"
    pred = _load_npy(out_dir / f"{kind.output}.npy") if kind is not None else None
    proba = _load_npy(out_dir / "proba.npy")
    samples = None
    if (out_dir / "shift_samples.npz").is_file():
        try:
            with np.load(out_dir / "shift_samples.npz", allow_pickle=False) as z:
                samples = {k: z[k] for k in z.files}
        except (OSError, ValueError):
            samples = None
    if ((images is None or labels is None) and run.get("ok") and prof is not None
            and run.get("data")):
        try:
            from subkit.data import io as data_io

            ds = data_io.load(run["data"], prof, require_labels=True, phase=run.get("phase"))
            if len(ds) == run.get("n"):
                images = ds.images if images is None else images
                labels = ds.labels if labels is None else labels
        except Exception:  # moved or changed data: the report goes on without thumbnails
            pass
    truth = None if labels is None else np.asarray(labels)
    if truth is not None and kind is not None and kind.one_label:
        truth = truth.reshape(-1)
    text = render(run, kind=kind, arrays=ReportArrays(images, truth, pred, proba, samples),
                  files=_files(run_dir / "submission"))
    from subkit.fsutil import write_text_atomic

    return write_text_atomic(run_dir / name, text)
