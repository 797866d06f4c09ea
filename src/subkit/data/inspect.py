"""`subkit data inspect`: what a data set holds, and what would make a local score lie.

Shapes, dtypes, value range, label layout, class counts and imbalance; exact and near
duplicate groups (and those whose members carry different labels); colour outliers; the
suggested class weights. Everything is computed with numpy over the whole array.

Colour outliers: for each image, the mean and standard deviation of each channel; each of
these features becomes a robust z-score, ``0.6745 * (x - median) / MAD`` (Iglewicz and
Hoaglin), and an image is an outlier when its largest ``|z|`` exceeds the threshold
(default 3.5). Strong colour casts are often legitimate (about 2% of the reference set);
the list is for looking, not for deleting.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from subkit.data import duplicates, weights

if TYPE_CHECKING:
    from subkit.profile import Profile

DEFAULT_Z = 3.5


# -- colour statistics ----------------------------------------------------------------------
def colour_features(images: np.ndarray, chunk: int = 32) -> tuple[np.ndarray, list[str]]:
    """(n, 2C) per-image channel means then channel standard deviations, and their names."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    n, c = x.shape[0], x.shape[-1]
    pixels = int(np.prod(x.shape[1:-1]))
    ones = np.ones(pixels, np.float32)
    out = np.empty((n, 2 * c), np.float64)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        block = x[s:e].reshape(e - s, pixels, c).astype(np.float32)
        mean = (ones @ block) / pixels  # sums as BLAS products: 10x faster than .mean(axis)
        block -= mean[:, None, :]  # centred first: no cancellation in the variance
        block *= block
        out[s:e, :c] = mean
        out[s:e, c:] = np.sqrt((ones @ block) / pixels)
    chan = ["R", "G", "B"] if c == 3 else (["gray"] if c == 1 else [f"ch{i}" for i in range(c)])
    return out, [f"mean {ch}" for ch in chan] + [f"std {ch}" for ch in chan]


def robust_z(features: np.ndarray) -> np.ndarray:
    """0.6745 (x - median) / MAD per column; a column with MAD 0 uses the mean absolute
    deviation (x 1.2533), and a constant column gives 0."""
    med = np.median(features, axis=0)
    dev = np.abs(features - med)
    mad = np.median(dev, axis=0)
    z = np.zeros_like(features)
    ok = mad > 0
    z[:, ok] = 0.6745 * (features[:, ok] - med[ok]) / mad[ok]
    meanad = dev.mean(axis=0)
    alt = ~ok & (meanad > 0)
    z[:, alt] = (features[:, alt] - med[alt]) / (1.2533 * meanad[alt])
    return z


def colour_outliers(images: np.ndarray, z_threshold: float = DEFAULT_Z) -> dict[str, Any]:
    feats, names = colour_features(images)
    z = robust_z(feats)
    worst = np.abs(z).argmax(axis=1) if len(z) else np.zeros(0, int)
    score = np.abs(z)[np.arange(len(z)), worst] if len(z) else np.zeros(0)
    idx = np.flatnonzero(score > z_threshold)
    idx = idx[np.lexsort((idx, -score[idx]))]  # highest score first, then index
    return {"z_threshold": z_threshold, "features": names, "index": idx,
            "score": score, "worst": worst, "z": z}


# -- the report -------------------------------------------------------------------------------
def _num(v) -> float | int:
    v = v.item() if hasattr(v, "item") else v
    return round(v, 6) if isinstance(v, float) else v


def _group_entry(gid: int, g: np.ndarray, labels: np.ndarray | None, names: list[str]) -> dict:
    entry: dict[str, Any] = {"group": gid, "size": int(len(g)), "members": g.tolist()}
    if labels is not None:
        ids, cnt = np.unique(labels[g], return_counts=True)
        entry["labels"] = {names[i]: int(k) for i, k in zip(ids.tolist(), cnt.tolist())}
        entry["conflicting"] = bool(len(ids) > 1)
    return entry


def _groups_summary(groups: list[np.ndarray], labels, names) -> dict[str, Any]:
    entries = [_group_entry(i, g, labels, names) for i, g in enumerate(groups)]
    conflicting = [e for e in entries if e.get("conflicting")]
    return {
        "n_groups": len(groups),
        "n_images": int(sum(len(g) for g in groups)),
        "n_extra_copies": int(sum(len(g) - 1 for g in groups)),
        "n_conflicting_groups": len(conflicting),
        "n_images_in_conflicting_groups": int(sum(e["size"] for e in conflicting)),
        "conflicting_groups": [e["group"] for e in conflicting],
        "groups": entries,
    }


def inspect(ds, profile: Profile, *, near: int = duplicates.DEFAULT_NEAR,
            min_similarity: float = duplicates.DEFAULT_SIMILARITY,
            z_threshold: float = DEFAULT_Z, labels_dtype: str | None = None,
            keep_arrays: bool = False) -> dict[str, Any]:
    """The inspect report of a loaded Dataset (JSON-ready, deterministic).

    With ``keep_arrays`` the report also carries ``_groups``, ``_outliers`` (numpy, for
    the HTML view); drop keys starting with ``_`` before printing JSON.
    """
    images, labels = ds.images, ds.labels
    n = len(ds)
    names = profile.class_names
    k = profile.n_classes
    warnings: list[str] = []
    lo, hi = float(images.min()), float(images.max())
    p_lo, p_hi = profile.input_range
    if lo < p_lo or hi > p_hi:
        warnings.append(f"values {lo:g}..{hi:g} fall outside the profile's input range "
                        f"{p_lo:g}..{p_hi:g}")
    elif hi <= 1.0 < p_hi:
        warnings.append(f"values {lo:g}..{hi:g} look rescaled to [0, 1]; the grader sends "
                        f"{p_lo:g}..{p_hi:g}")
    if str(images.dtype) != profile.input_dtype:
        warnings.append(f"images are {images.dtype}; the profile says the grader sends "
                        f"{profile.input_dtype}")
    report: dict[str, Any] = {
        "file": str(ds.path), "profile": profile.name, "n_images": n,
        "images": {"shape": list(images.shape), "dtype": str(images.dtype),
                   "min": _num(images.min()), "max": _num(images.max()),
                   "mean": round(float(images.mean(dtype=np.float64)), 4)},
        "labels": None,
    }
    if labels is not None:
        stored = ds.labels_stored_shape  # None: labels come from class folders
        report["labels"] = {"stored_shape": list(stored) if stored else None,
                            "dtype": labels_dtype or str(labels.dtype)}
        counts = np.bincount(labels, minlength=k)[:k]
        present = counts[counts > 0]
        report["classes"] = [{"id": c, "name": names[c], "count": int(counts[c]),
                              "share": round(float(counts[c] / n), 4)} for c in range(k)]
        report["imbalance_ratio"] = (round(float(present.max() / present.min()), 4)
                                     if len(present) else None)
        missing = [names[c] for c in range(k) if counts[c] == 0]
        if missing:
            warnings.append("classes with no image: " + ", ".join(missing))
    dups = duplicates.find(images, near=near, min_similarity=min_similarity)
    report["exact_duplicates"] = _groups_summary(dups.exact, labels, names)
    near_summary = _groups_summary(dups.near, labels, names)
    exact_sets = {tuple(g.tolist()) for g in dups.exact}
    near_summary["beyond_exact"] = [i for i, g in enumerate(dups.near)
                                    if tuple(g.tolist()) not in exact_sets]
    report["near_duplicates"] = {"max_distance": near, "min_similarity": min_similarity,
                                 **near_summary}
    out = colour_outliers(images, z_threshold)
    gid = duplicates.group_index(dups.exact, n)
    entries = []
    for i in out["index"].tolist():
        e = {"index": i, "score": round(float(out["score"][i]), 3),
             "feature": out["features"][out["worst"][i]],
             "z": round(float(out["z"][i, out["worst"][i]]), 3),
             "exact_group": int(gid[i]) if gid[i] >= 0 else None}
        if labels is not None:
            e["label"] = names[int(labels[i])]
        entries.append(e)
    report["outliers"] = {
        "method": "robust z-score (median/MAD) of per-channel mean and std",
        "z_threshold": z_threshold, "n_images": len(entries),
        "n_in_exact_groups": int(sum(e["exact_group"] is not None for e in entries)),
        "images": entries,
    }
    if labels is not None:
        report["class_weights"] = weights.class_weights(labels, names)
    report["warnings"] = warnings
    if keep_arrays:
        report["_dups"] = dups
    return report


def public(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if not k.startswith("_")}


# -- text -------------------------------------------------------------------------------------
def _labels_text(entry: dict) -> str:
    if "labels" not in entry:
        return ""
    parts = ", ".join(f"{name} {k}" for name, k in entry["labels"].items())
    return f"labels: {parts}" + ("  CONFLICTING" if entry["conflicting"] else "")


def _members_text(members: list[int], limit: int = 6) -> str:
    shown = ", ".join(f"#{m}" for m in members[:limit])
    return shown + (f", ... (+{len(members) - limit})" if len(members) > limit else "")


def _n(k: int, word: str) -> str:
    return f"{k:,} {word}" + ("" if k == 1 else "s")


def to_text(report: dict[str, Any], max_items: int = 10) -> str:
    L: list[str] = []
    im = report["images"]
    L.append(f"{report['file']}: {report['n_images']:,} images of {tuple(im['shape'][1:])} "
             f"{im['dtype']}, values {im['min']}..{im['max']} (mean {im['mean']})")
    if report["labels"]:
        lab = report["labels"]
        stored = (f"stored as {tuple(lab['stored_shape'])} {lab['dtype']}" if lab["stored_shape"]
                  else "from the class folders")
        L.append(f"labels: {stored}; profile {report['profile']}, "
                 f"{len(report['classes'])} classes")
        L.append("")
        w = {c["id"]: c["weight"] for c in report["class_weights"]["classes"]}
        width = max(len(c["name"]) for c in report["classes"])
        L.append(f"  {'id':>2}  {'class':<{width}}  {'count':>7}  {'share':>6}  {'weight':>7}")
        for c in report["classes"]:
            L.append(f"  {c['id']:>2}  {c['name']:<{width}}  {c['count']:>7,}  "
                     f"{c['share'] * 100:5.1f}%  {w[c['id']]:7.4f}")
        ratio = report["imbalance_ratio"]
        L.append(f"  imbalance ratio (largest / smallest class): "
                 f"{ratio:.2f}" if ratio is not None else "  imbalance ratio: n/a")
        L.append("  weight: balanced class weights n / (classes * count); "
                 "`subkit data weights` prints them for Keras")
    else:
        L.append("labels: none in this file")
    L.append("")
    ex = report["exact_duplicates"]
    L.append(f"exact duplicates (same bytes): {_n(ex['n_groups'], 'group')}, "
             f"{_n(ex['n_images'], 'image')} ({ex['n_extra_copies']:,} extra "
             f"cop{'y' if ex['n_extra_copies'] == 1 else 'ies'}); "
             f"{_n(ex['n_conflicting_groups'], 'group')} with conflicting labels "
             f"({_n(ex['n_images_in_conflicting_groups'], 'image')})")
    for e in ex["groups"][:max_items]:
        L.append(f"  group {e['group']}: {e['size']} copies: {_members_text(e['members'])}; "
                 f"{_labels_text(e)}")
    if ex["n_groups"] > max_items:
        L.append(f"  ... {ex['n_groups'] - max_items} more groups (--json or --html lists all)")
    nd = report["near_duplicates"]
    L.append(f"near duplicates (pHash distance <= {nd['max_distance']}, similarity >= "
             f"{nd['min_similarity']}): {_n(nd['n_groups'], 'group')}, "
             f"{_n(nd['n_images'], 'image')}; {nd['n_conflicting_groups']:,} with conflicting "
             f"labels; {_n(len(nd['beyond_exact']), 'group')} not just exact copies")
    beyond = [nd["groups"][i] for i in nd["beyond_exact"]]
    for e in beyond[:max_items]:
        L.append(f"  group {e['group']}: {e['size']} images: {_members_text(e['members'])}; "
                 f"{_labels_text(e)}")
    if len(beyond) > max_items:
        L.append(f"  ... {len(beyond) - max_items} more groups (--json or --html lists all)")
    ol = report["outliers"]
    L.append(f"colour outliers (robust z > {ol['z_threshold']} on a channel mean or std): "
             f"{_n(ol['n_images'], 'image')}, {ol['n_in_exact_groups']:,} of them in "
             "exact-duplicate groups")
    shown, seen = 0, set()
    for e in ol["images"]:
        if shown >= max_items:
            break
        if e["exact_group"] is not None:
            if e["exact_group"] in seen:
                continue
            seen.add(e["exact_group"])
        extra = (f" (and its copies, exact group {e['exact_group']})"
                 if e["exact_group"] is not None else "")
        lab = f" {e['label']}," if "label" in e else ""
        L.append(f"  #{e['index']}{lab} {e['feature']} z={e['z']:+.1f}{extra}")
        shown += 1
    for wmsg in report["warnings"]:
        L.append(f"warning: {wmsg}")
    if ex["n_groups"] or len(beyond):
        L.append("")
        L.append("next: `subkit data dedupe FILE --out clean.npz --drop all-copies` removes them; "
                 "`subkit data split` keeps near duplicates on one side")
    return "\n".join(L)


def labels_dtype(path: Path, profile: Profile) -> str | None:
    """The stored dtype of the labels array (io.load normalises it to int64)."""
    import zipfile

    p = Path(path)
    if not (p.is_file() and zipfile.is_zipfile(p)):
        return None
    try:
        with np.load(p, allow_pickle=False) as npz:
            if profile.labels_key in npz.keys():
                return str(npz[profile.labels_key].dtype)
    except (ValueError, OSError):
        return None
    return None
