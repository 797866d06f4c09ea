"""`subkit data` for the kinds that are not one label per image.

- Forecasting: ``split`` keeps every series whole on one side. The windows of one series
  overlap (window k's future is window k+1's past), so a split by window puts the test
  set's values in the training set. The series of each window are the npz's ``series``
  array; each category keeps its share of series on both sides.
- Segmentation: ``split`` keeps exact and near-duplicate IMAGES on one side (the masks
  play no part in finding them); ``dedupe`` drops duplicate images (``keep-one`` keeps the
  first of a group whose masks agree) and, with ``drop_shared_masks``, every image of a
  group of three or more whose masks are byte-identical and not uniform: the Mars set's
  110 "alien" images share one mask; ``inspect`` reports both, with the classes' pixel
  shares.

Series classification needs nothing here: one label per sample, the classification tools
apply (exact duplicates compare the series' bytes).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from subkit.data import duplicates, io
from subkit.data.split import set_local_test, split_indices
from subkit.data.subsets import check_outputs, read_arrays, subset, write_all
from subkit.errors import InputError, UsageError

if TYPE_CHECKING:
    from subkit.profile import Profile

SERIES_KEY = "series"
MIN_SHARED = 3  # images sharing one mask before they count as outliers


def _check_args(profile: Profile, test_size: float, set_default: bool) -> None:
    if not 0.0 < test_size < 1.0:
        raise UsageError(f"--test-size must be between 0 and 1 (exclusive), got {test_size}",
                         hint="e.g. --test-size 0.15")
    if set_default and profile.workspace is None:
        raise UsageError("--set-default needs a workspace: no subkit.toml here or above",
                         hint="run `subkit init` first (or set SUBKIT_WORKSPACE), "
                              "or drop --set-default")


def split_file(path: Path, profile: Profile, *, test_size: float, out_train: Path, out_test: Path,
               seed: int = 0, near: int = 4, min_similarity: float = 0.98,
               force: bool = False, set_default: bool = False) -> dict[str, Any]:
    """The split of a forecasting or segmentation set; the report (JSON-ready)."""
    _check_args(profile, test_size, set_default)
    ds = io.load(path, profile)
    check_outputs(Path(path), [out_train, out_test], force, ["--out-train", "--out-test"])
    arrays, skipped = read_arrays(ds, profile)
    n = len(ds)
    train, test, report = profile.kind_spec.split_rows(ds, arrays, test_size, seed, near,
                                                       min_similarity)
    write_all({out_train: subset(arrays, train, n), out_test: subset(arrays, test, n)})
    report = {"input": str(path), "kind": profile.kind, "n_samples": n, "test_size": test_size,
              "seed": seed, "train": {"path": str(out_train), "n_samples": int(len(train))},
              "test": {"path": str(out_test), "n_samples": int(len(test))}, **report,
              "skipped_arrays": skipped}
    if set_default:
        report["set_default"] = str(set_local_test(profile, out_test))
    return report


def split_by_duplicates(ds, arrays: dict, test_size: float, seed: int, near: int,
                        min_similarity: float):
    """Exact and near-duplicate images kept on one side; (train, test, report)."""
    n = len(ds)
    dups = duplicates.find(ds.images, near=near, min_similarity=min_similarity)
    groups = [g for g in dups.groups() if len(g) > 1]
    train, test = split_indices(np.zeros(n, np.int64), groups, 1, test_size, seed, ["image"])
    is_test = np.zeros(n, bool)
    is_test[test] = True
    report = {"groups_kept_together": len(groups),
              "images_in_groups": int(sum(len(g) for g in groups)),
              "groups_on_test_side": int(sum(bool(is_test[g[0]]) for g in groups))}
    return train, test, report


def split_by_series(ds, arrays: dict, test_size: float, seed: int, near: int = 0,
                    min_similarity: float = 0.0):
    """Every series whole on one side, each category's share on both; (train, test,
    report)."""
    if SERIES_KEY not in arrays:
        raise InputError(f"{ds.path} has no {SERIES_KEY!r} array: "
                         "the series each window comes from",
                         hint="windows of one series overlap, so a split by window leaks the test "
                              f"values into training: store each window's series id as "
                              f"{SERIES_KEY}=... (subkit's synthetic data does)")
    series = np.asarray(arrays[SERIES_KEY]).reshape(-1)
    cats = np.asarray(ds.extras.get("categories", np.zeros(len(series)))).astype(str)
    first = dict(zip(series.tolist(), cats.tolist()))
    rng = np.random.default_rng(seed)
    test_series: list = []
    per_category = []
    for cat in sorted(set(first.values())):
        ids = np.array(sorted(s for s, c in first.items() if c == cat))
        k = int(np.floor(len(ids) * test_size + 0.5))
        if len(ids) >= 2:
            k = min(max(k, 1), len(ids) - 1)
        else:
            k = 0
        chosen: Any = rng.choice(ids, k, replace=False) if k else []
        test_series += list(chosen)
        per_category.append({"category": cat, "series": int(len(ids)), "test_series": int(k)})
    is_test = np.isin(series, test_series)
    if not is_test.any() or is_test.all():
        raise InputError(f"--test-size {test_size} leaves no series on one side "
                         f"({len(first)} series)", hint="use more series or another test size")
    report = {"n_series": len(first), "test_series": len(test_series),
              "categories": per_category, "windows_across_sides": 0}
    return np.flatnonzero(~is_test), np.flatnonzero(is_test), report


# -- segmentation: shared masks, inspect, dedupe -----------------------------------------------
def shared_mask_groups(masks: np.ndarray, min_size: int = MIN_SHARED) -> list[np.ndarray]:
    """Groups of ``min_size`` or more images whose masks are byte-identical and hold more
    than one class (identical all-background masks can be legitimate)."""
    return [g for g in duplicates.exact_groups(masks)
            if len(g) >= min_size and len(np.unique(masks[g[0]])) > 1]


def mask_ids(masks: np.ndarray) -> np.ndarray:
    """One id per image, equal when the masks are byte-identical."""
    ids = np.arange(len(masks))
    for g in duplicates.exact_groups(masks):
        ids[g] = g[0]
    return ids


def inspect(ds, profile: Profile, *, near: int | None = duplicates.DEFAULT_NEAR,
            min_similarity: float = duplicates.DEFAULT_SIMILARITY) -> dict[str, Any]:
    masks, names = ds.labels, profile.class_names
    counts = (np.bincount(masks.reshape(-1), minlength=profile.n_classes)
              if masks is not None else None)
    dups = duplicates.find(ds.images, near=near, min_similarity=min_similarity)
    ids = mask_ids(masks) if masks is not None else None
    report: dict[str, Any] = {
        "file": str(ds.path), "profile": profile.name, "n_images": len(ds),
        "images": {"shape": list(ds.images.shape), "dtype": str(ds.images.dtype),
                   "min": float(ds.images.min()), "max": float(ds.images.max())},
        "duplicate_images": [{"members": g.tolist(),
                              "masks_agree": not duplicates.label_conflict(ids, g)}
                             for g in dups.groups()],
        "near": near,
    }
    if counts is not None:
        report["classes"] = [{"id": c, "name": names[c], "pixels": int(counts[c]),
                              "share": round(float(counts[c] / counts.sum()), 4),
                              "ignored": c in profile.ignore_classes}
                             for c in range(profile.n_classes)]
        report["shared_masks"] = [{"members": g.tolist(), "size": int(len(g))}
                                  for g in shared_mask_groups(masks)]
    return report


def to_text(report: dict[str, Any]) -> str:
    lines = [f"{report['file']}: {report['n_images']:,} images "
             f"{tuple(report['images']['shape'][1:])} {report['images']['dtype']}, "
             f"values {report['images']['min']:g}..{report['images']['max']:g}"]
    for c in report.get("classes", []):
        lines.append(f"  {c['id']:>2} {c['name']:<14} {c['share'] * 100:6.2f}% of pixels"
                     + ("  (ignored by the metric)" if c["ignored"] else ""))
    dup = report["duplicate_images"]
    lines.append(f"duplicate images (pHash distance <= {report['near']}): {len(dup)} groups, "
                 f"{sum(len(g['members']) for g in dup)} images, "
                 f"{sum(not g['masks_agree'] for g in dup)} with different masks")
    for g in report.get("shared_masks", []):
        lines.append(f"  {g['size']} images share ONE identical mask (outliers? Mars' 'alien' "
                     f"images did): {', '.join(map(str, g['members'][:8]))}"
                     + (", ..." if g["size"] > 8 else ""))
    if report.get("shared_masks"):
        lines.append("  drop them: subkit data dedupe FILE --out CLEAN.npz --drop-shared-masks")
    return "\n".join(lines)


def dedupe_file(path: Path, profile: Profile, *, out: Path, drop: str = "keep-one",
                near: int | None = None,
                min_similarity: float = duplicates.DEFAULT_SIMILARITY, force: bool = False,
                record: Path | None = None, drop_shared_masks: bool = False) -> dict[str, Any]:
    """A copy without duplicate images (and shared-mask outliers), and the record."""
    path, out = Path(path), Path(out)
    record = Path(record) if record else out.with_name(out.name + ".removed.json")
    ds = io.load(path, profile)
    assert ds.labels is not None  # io.load(require_labels=True) refuses a set without labels
    check_outputs(path, [out, record], force, ["--out", "--record"])
    dups = duplicates.find(ds.images, near=near, min_similarity=min_similarity)
    ids = mask_ids(ds.labels)
    remove, removed = duplicates.removal_plan(dups.groups(), ids, drop)
    shared = shared_mask_groups(ds.labels) if drop_shared_masks else []
    for gi, g in enumerate(shared):
        removed += [{"index": int(i), "reason": "shares one identical mask with "
                     f"{len(g) - 1} other images", "shared_mask_group": gi}
                    for i in g.tolist() if i not in set(remove.tolist())]
    remove = np.union1d(remove, np.concatenate(shared) if shared else np.zeros(0, np.int64))
    n = len(ds)
    keep = np.setdiff1d(np.arange(n), remove)
    if len(keep) == 0:
        raise InputError(f"--drop {drop} would remove all {n} images of {path}",
                         hint="try --drop keep-one, or check that this is the right file")
    arrays, skipped = read_arrays(ds, profile)
    summary = {"input": str(path), "output": str(out), "record": str(record), "drop": drop,
               "n_input": n, "n_output": int(len(keep)), "n_removed": int(len(remove)),
               "n_groups": len(dups.groups()), "n_shared_mask_groups": len(shared),
               "n_removed_shared_masks": int(sum(len(g) for g in shared)),
               "match": ("exact bytes" if near is None else
                         f"pHash distance <= {near}, similarity >= {min_similarity}"),
               "skipped_arrays": skipped}
    full = dict(summary, removed=sorted(removed, key=lambda r: r["index"]))
    write_all({out: subset(arrays, keep, n)}, {record: full})
    return summary
