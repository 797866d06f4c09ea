"""report.html of a `subkit tta tune` run: the front of shifted score against the number of
views (an inline SVG chart), clean score beside it, the chosen point, and the table.

Self-contained like ``report.html``'s (the same CSS and Content-Security-Policy: no
script, no outside request)."""

from __future__ import annotations

from pathlib import Path

from subkit.fsutil import atomic_open
from subkit.report.html import CSP, CSS, _e


def _f(x, nd: int = 4) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def chart(record: dict, width: int = 640, height: int = 300) -> str:
    """The front (report half): shifted and clean score per number of views, the noise band
    of the shifted score, the chosen point ringed, the template's default as a cross."""
    front = record.get("front") or []
    if not front:
        return ""
    refs = record.get("references") or {}
    values = [p["report"][k] for p in front for k in ("shifted", "clean")]
    values += [p["report"]["shifted"] + s * p.get("sd", 0.0) for p in front for s in (1, -1)]
    d = refs.get("template_default")
    if d:
        values += [d["report"]["shifted"], d["report"]["clean"]]
    lo, hi = min(values), max(values)
    pad = max((hi - lo) * 0.1, 0.01)
    lo, hi = lo - pad, hi + pad
    kmax = max(max(p["n_views"] for p in front), d["n_views"] if d else 1)
    L, R, T, B = 56, 16, 14, 36

    def x(k: float) -> float:
        return L + (k - 0.5) / kmax * (width - L - R)

    def y(v: float) -> float:
        return T + (hi - v) / (hi - lo) * (height - T - B)

    P = [f"<svg viewBox='0 0 {width} {height}' width='{width}' height='{height}' "
         "role='img' aria-label='score against number of views'>"]
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        P.append(f"<line x1='{L}' x2='{width - R}' y1='{y(v):.1f}' y2='{y(v):.1f}' "
                 f"stroke='#e4e7ec'/><text x='{L - 6}' y='{y(v) + 4:.1f}' font-size='11' "
                 f"text-anchor='end' fill='#6b7380'>{v:.3f}</text>")
    for k in range(1, kmax + 1):
        P.append(f"<text x='{x(k):.1f}' y='{height - B + 16}' font-size='11' "
                 f"text-anchor='middle' fill='#6b7380'>{k}</text>")
    P.append(f"<text x='{(L + width - R) / 2:.0f}' y='{height - 4}' font-size='12' "
             "text-anchor='middle' fill='#39414d'>views (forward passes per image)</text>")
    band = ([f"{x(p['n_views']):.1f},{y(p['report']['shifted'] + p.get('sd', 0)):.1f}"
             for p in front] +
            [f"{x(p['n_views']):.1f},{y(p['report']['shifted'] - p.get('sd', 0)):.1f}"
             for p in reversed(front)])
    P.append(f"<polygon points='{' '.join(band)}' fill='#3558d622' stroke='none'/>")
    for key, colour, dash in (("clean", "#9aa3ae", "4 3"), ("shifted", "#3558d6", "")):
        pts = " ".join(f"{x(p['n_views']):.1f},{y(p['report'][key]):.1f}" for p in front)
        P.append(f"<polyline points='{pts}' fill='none' stroke='{colour}' stroke-width='2' "
                 f"stroke-dasharray='{dash}'/>")
        for p in front:
            P.append(f"<circle cx='{x(p['n_views']):.1f}' cy='{y(p['report'][key]):.1f}' r='3.5'"
                     f" fill='{colour}'><title>{_e(key)} {p['report'][key]:.4f}: "
                     f"{_e('+'.join(p['views']))} ({_e(p['merge'])})</title></circle>")
    c = record.get("chosen")
    if c:
        P.append(f"<circle cx='{x(c['n_views']):.1f}' cy='{y(c['report']['shifted']):.1f}' "
                 "r='8' fill='none' stroke='#2e7d32' stroke-width='2.5'><title>chosen</title>"
                 "</circle>")
    if d:
        cx, cy = x(d["n_views"]), y(d["report"]["shifted"])
        P.append(f"<path d='M{cx - 5:.1f},{cy - 5:.1f}L{cx + 5:.1f},{cy + 5:.1f}M{cx - 5:.1f},"
                 f"{cy + 5:.1f}L{cx + 5:.1f},{cy - 5:.1f}' stroke='#c62828' stroke-width='2'>"
                 "<title>the template's default views</title></path>")
    P.append("</svg>")
    P.append("<p class='muted'>Blue: shifted score of the best subset for each number of views "
             "(chosen on the choose half, scored on the report half), its band one bootstrap "
             "standard deviation of the score (the table's noise is that of the difference "
             "to the best point, which decides the choice); grey dashed: clean score; green "
             "ring: the chosen point; red cross: the template's default five views (mean).</p>")
    return "".join(P)


def section(record: dict) -> str:
    """The tuning's section: the chosen point, the chart, the table of the front."""
    if not record.get("ok"):
        return ""
    c, m = record["chosen"], record.get("metric", "")
    P = ["<section><h2>Test-time augmentation: which views earn their cost</h2>",
         f"<p>Chosen: <b>{_e(' + '.join(c['views']))}</b> merged by <b>{_e(c['merge'])}</b>, "
         f"{c['n_views']} forward pass(es) per image; shifted {_e(m)} on the report half "
         f"{_f(c['report']['shifted'])}, clean {_f(c['report']['clean'])}. Suite "
         f"{_e(record.get('suite'))}, seed {record.get('seed')}, "
         f"{record.get('n_choose')} images to choose, {record.get('n_report')} to report.</p>",
         chart(record),
         "<table><tr><th>views</th><th class='l'>subset</th><th class='l'>merge</th>"
         "<th>shifted (choose)</th><th>shifted (report)</th><th>± noise</th>"
         "<th>clean (report)</th></tr>"]
    for i, p in enumerate(record["front"]):
        mark = " class='good'" if i == record.get("chosen_index") else ""
        P.append(f"<tr{mark}><td>{p['n_views']}</td><td class='l'>{_e('+'.join(p['views']))}"
                 f"</td><td class='l'>{_e(p['merge'])}</td><td>{_f(p['choose']['shifted'])}</td>"
                 f"<td>{_f(p['report']['shifted'])}</td><td>{_f(p.get('noise'))}</td>"
                 f"<td>{_f(p['report']['clean'])}</td></tr>")
    for name, r in (record.get("references") or {}).items():
        if r:
            P.append(f"<tr class='muted'><td>{r['n_views']}</td><td class='l'>{_e(name)}: "
                     f"{_e('+'.join(r['views']))}</td><td class='l'>{_e(r['merge'])}</td>"
                     f"<td>{_f(r['choose']['shifted'])}</td><td>{_f(r['report']['shifted'])}"
                     f"</td><td></td><td>{_f(r['report']['clean'])}</td></tr>")
    P.append("</table></section>")
    return "".join(P)


def write_report(run_dir: Path, record: dict) -> Path:
    body = section(record)
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
            f"<title>subkit tta tune: {_e(Path(str(record.get('zip'))).name)}</title>"
            f"<style>{CSS}</style></head><body><main><h1>TTA tuning of "
            f"{_e(Path(str(record.get('zip'))).name)}</h1>"
            f"<p class='sub'>{_e(record.get('run_dir'))}</p>{body}</main></body></html>")
    path = Path(run_dir) / "report.html"
    with atomic_open(path, "w") as fh:
        fh.write(page)
    return path
