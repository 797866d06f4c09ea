"""The HTML view of `subkit data inspect`: one self-contained file.

Inline CSS, no script, thumbnails as ``data:image/png`` URIs encoded here with zlib and
struct (no imaging library needed).
"""

from __future__ import annotations

import base64
import html
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

MAX_GROUPS = 100  # groups shown per section
MAX_MEMBERS = 12  # thumbnails per near-duplicate group
MAX_OUTLIERS = 60  # distinct outlier thumbnails


# -- PNG ----------------------------------------------------------------------------------------
def to_uint8(img: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 for display, from any numeric image."""
    a = np.asarray(img)
    if a.ndim == 3:
        a = a[..., 0] if a.shape[-1] in (1, 2) else a[..., :3]
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    f = a.astype(np.float64)
    if f.size and np.nanmin(f) >= 0 and np.nanmax(f) <= 1.0:
        f = f * 255.0
    return np.clip(np.nan_to_num(f), 0, 255).round().astype(np.uint8)


def png_bytes(img: np.ndarray) -> bytes:
    a = to_uint8(img)
    h, w = a.shape[:2]
    colour = 2 if a.ndim == 3 else 0
    rows = a.reshape(h, -1)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()  # filter 0

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def data_uri(img: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode("ascii")


# -- page -----------------------------------------------------------------------------------------
CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse}td,th{padding:2px 10px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}
.group{margin:.8em 0;padding:.5em;border:1px solid #e3e3e3;border-radius:6px}
.conflict{border-color:#d33;background:#fff5f5}.badge{color:#fff;background:#d33;
padding:0 6px;border-radius:4px;font-size:.85em}
.thumbs{display:flex;flex-wrap:wrap;gap:6px}figure{margin:0;text-align:center;font-size:.8em}
img{width:96px;height:96px;image-rendering:pixelated;border:1px solid #ccc}
.warn{color:#a60}.muted{color:#777}
"""


def _e(s: Any) -> str:
    return html.escape(str(s))


def _thumb(images: np.ndarray, i: int, caption: str) -> str:
    return (f'<figure><img alt="#{i}" src="{data_uri(images[i])}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _label(labels, names, i) -> str:
    return names[int(labels[i])] if labels is not None else ""


def render(report: dict[str, Any], images: np.ndarray, labels: np.ndarray | None,
           class_names: list[str]) -> str:
    P: list[str] = ["<!doctype html><html><head><meta charset='utf-8'>",
                    f"<title>subkit data inspect: {_e(Path(report['file']).name)}</title>",
                    f"<style>{CSS}</style></head><body>"]
    im = report["images"]
    P.append(f"<h1>{_e(report['file'])}</h1>")
    P.append(f"<p>{report['n_images']:,} images of {_e(tuple(im['shape'][1:]))} {_e(im['dtype'])}, "
             f"values {_e(im['min'])}..{_e(im['max'])}; profile {_e(report['profile'])}</p>")
    for w in report["warnings"]:
        P.append(f"<p class='warn'>warning: {_e(w)}</p>")
    if report.get("classes"):
        cw = {c["id"]: c for c in report["class_weights"]["classes"]}
        P.append("<h2>Classes</h2><table><tr><th>id</th><th class='l'>class</th><th>count</th>"
                 "<th>share</th><th>balanced weight</th><th>focal alpha</th></tr>")
        for c in report["classes"]:
            P.append(f"<tr><td>{c['id']}</td><td class='l'>{_e(c['name'])}</td>"
                     f"<td>{c['count']:,}</td><td>{c['share'] * 100:.1f}%</td>"
                     f"<td>{cw[c['id']]['weight']:.4f}</td>"
                     f"<td>{cw[c['id']]['alpha']:.4f}</td></tr>")
        P.append("</table>")
        if report["imbalance_ratio"] is not None:
            P.append(f"<p>Imbalance ratio (largest / smallest class): "
                     f"{report['imbalance_ratio']:.2f}</p>")

    ex = report["exact_duplicates"]
    P.append(f"<h2>Exact duplicates: {ex['n_groups']:,} groups, {ex['n_images']:,} images, "
             f"{ex['n_conflicting_groups']:,} with conflicting labels</h2>")
    if not ex["n_groups"]:
        P.append("<p class='muted'>none</p>")
    for e in ex["groups"][:MAX_GROUPS]:
        members = e["members"]
        conflict = e.get("conflicting")
        P.append(f"<div class='group{' conflict' if conflict else ''}'>")
        badge = " <span class='badge'>conflicting labels</span>" if conflict else ""
        P.append(f"<p>group {e['group']}: {e['size']} identical copies{badge}<br>"
                 f"labels: {_e(', '.join(f'{k} {v}' for k, v in e.get('labels', {}).items()))}<br>"
                 f"<span class='muted'>indices: {_e(', '.join(map(str, members[:40])))}"
                 f"{' ...' if len(members) > 40 else ''}</span></p>")
        P.append(f"<div class='thumbs'>{_thumb(images, members[0], f'#{members[0]}')}</div></div>")
    if ex["n_groups"] > MAX_GROUPS:
        P.append(f"<p class='muted'>{ex['n_groups'] - MAX_GROUPS} more groups: see --json</p>")

    nd = report["near_duplicates"]
    beyond = [nd["groups"][i] for i in nd["beyond_exact"]]
    P.append(f"<h2>Near duplicates (pHash distance &le; {nd['max_distance']}, similarity &ge; "
             f"{nd['min_similarity']}): {len(beyond):,} groups beyond the exact copies</h2>")
    if not beyond:
        P.append("<p class='muted'>none</p>")
    for e in beyond[:MAX_GROUPS]:
        conflict = e.get("conflicting")
        badge = " <span class='badge'>conflicting labels</span>" if conflict else ""
        P.append(f"<div class='group{' conflict' if conflict else ''}'>"
                 f"<p>group {e['group']}: {e['size']} images{badge}</p><div class='thumbs'>")
        for i in e["members"][:MAX_MEMBERS]:
            P.append(_thumb(images, i, f"#{i} {_label(labels, class_names, i)}"))
        if e["size"] > MAX_MEMBERS:
            P.append(f"<p class='muted'>+{e['size'] - MAX_MEMBERS} more</p>")
        P.append("</div></div>")

    ol = report["outliers"]
    P.append(f"<h2>Colour outliers (robust z &gt; {ol['z_threshold']}): {ol['n_images']:,} "
             f"images</h2><p class='muted'>{_e(ol['method'])}; strong colour casts are often "
             "legitimate. Copies of one image are shown once.</p><div class='thumbs'>")
    seen: set[int] = set()
    shown = 0
    for e in ol["images"]:
        if shown >= MAX_OUTLIERS:
            break
        g = e["exact_group"]
        if g is not None:
            if g in seen:
                continue
            seen.add(g)
        cap = f"#{e['index']} {e.get('label', '')} {e['feature']} z={e['z']:+.1f}"
        if g is not None:
            cap += f" (group {g})"
        P.append(_thumb(images, e["index"], cap))
        shown += 1
    P.append("</div></body></html>")
    return "\n".join(P)


def write(path: Path, report: dict[str, Any], images: np.ndarray, labels: np.ndarray | None,
          class_names: list[str]) -> Path:
    """Render and write atomically (a temp file in the same folder, then os.replace)."""
    from subkit.fsutil import write_text_atomic

    return write_text_atomic(path, render(report, images, labels, class_names))
