"""A stratified, group-aware train/test split of a data set.

Group-aware: all near duplicates of an image (its group, see ``duplicates``) land on the
same side, so no test image has a copy in training. Stratified: each class gets
``round(test_size * count)`` test images, met exactly whenever the groups allow it.

The algorithm, deterministic for a seed:

1. groups of two or more images, in a seeded random order, each go to the test side with
   probability ``test_size`` if that keeps every class within its test quota;
2. single images then fill each class's remaining quota, picked in a seeded random order;
3. if a class is still short (its remaining images are all in groups), groups that fit are
   added, in the same order.

Every class present must end with at least one image on each side, else nothing is
written and the error says which class and why.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from subkit.data.subsets import (
    check_classification,
    check_outputs,
    read_arrays,
    subset,
    write_all,
)
from subkit.errors import InputError, ProfileError, UsageError
from subkit.fsutil import temp_sibling

if TYPE_CHECKING:
    from subkit.profile import Profile


# -- the split -----------------------------------------------------------------------------------
def quotas(counts: np.ndarray, test_size: float) -> np.ndarray:
    return np.floor(np.asarray(counts) * test_size + 0.5).astype(np.int64)


def split_indices(labels: np.ndarray, groups: list[np.ndarray], n_classes: int,
                  test_size: float, seed: int, class_names: list[str] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) sorted index arrays; see the module docstring for the algorithm."""
    labels = np.asarray(labels, np.int64)
    n = len(labels)
    names = class_names or [str(i) for i in range(n_classes)]
    counts = np.bincount(labels, minlength=n_classes)
    quota = quotas(counts, test_size)
    for c in np.flatnonzero(counts).tolist():
        if quota[c] < 1 or quota[c] >= counts[c]:
            side = "test" if quota[c] < 1 else "training"
            raise InputError(
                f"--test-size {test_size} leaves class {names[c]!r} ({counts[c]} images) with "
                f"no image on the {side} side",
                hint="every class needs at least one image on each side: choose a test size "
                     f"between {1 / counts[c]:.3g} and {1 - 1 / counts[c]:.3g} for it, or add "
                     "images of that class" if counts[c] >= 2 else
                     "a class with a single image cannot be on both sides: add images of it")
    rng = np.random.default_rng(seed)
    is_test = np.zeros(n, bool)
    in_group = np.zeros(n, bool)
    multi = [g for g in groups if len(g) > 1]
    for g in multi:
        in_group[g] = True
    test_count: np.ndarray = np.zeros(n_classes, np.int64)
    comp = [np.bincount(labels[g], minlength=n_classes) for g in multi]
    order = rng.permutation(len(multi))
    draws = rng.random(len(multi))
    for gi in order:  # 1. groups, each with probability test_size, within the quotas
        if draws[gi] < test_size and np.all(test_count + comp[gi] <= quota):
            is_test[multi[gi]] = True
            test_count += comp[gi]
    for c in range(n_classes):  # 2. singles fill the quotas
        single = np.flatnonzero((labels == c) & ~in_group)
        single = single[rng.permutation(len(single))]
        take = single[: max(0, int(quota[c] - test_count[c]))]
        is_test[take] = True
        test_count[c] += len(take)
    if np.any(test_count < quota):  # 3. groups for the classes still short
        for gi in order:
            short = test_count < quota
            if not short.any():
                break
            if is_test[multi[gi][0]] or not np.any(comp[gi][short]):
                continue
            if np.all(test_count + comp[gi] <= quota):
                is_test[multi[gi]] = True
                test_count += comp[gi]
    train_count = counts - test_count
    for c in np.flatnonzero(counts).tolist():
        if test_count[c] == 0 or train_count[c] == 0:
            side = "test" if test_count[c] == 0 else "training"
            raise InputError(
                f"class {names[c]!r} ends with no image on the {side} side: its "
                f"{counts[c]} images are in near-duplicate groups that cannot be split",
                hint="near duplicates stay on one side; lower --near (0 keeps only "
                     "identical hashes together), or remove duplicates first with "
                     "`subkit data dedupe`")
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def split_file(path: Path, profile: Profile, *, test_size: float, out_train: Path, out_test: Path,
               seed: int = 0, near: int = 4, min_similarity: float = 0.98,
               force: bool = False, set_default: bool = False) -> dict[str, Any]:
    """Split a labelled data set into two files; returns the report (JSON-ready)."""
    from subkit.data import duplicates, io

    check_classification(profile)
    if not 0.0 < test_size < 1.0:
        raise UsageError(f"--test-size must be between 0 and 1 (exclusive), got {test_size}",
                         hint="e.g. --test-size 0.15 keeps 15% of each class for the test set")
    if set_default and profile.workspace is None:
        raise UsageError("--set-default needs a workspace: no subkit.toml here or above",
                         hint="run `subkit init` first (or set SUBKIT_WORKSPACE), or drop "
                              "--set-default")
    ds = io.load(path, profile)
    assert ds.labels is not None  # io.load(require_labels=True) refuses a set without labels
    check_outputs(Path(path), [out_train, out_test], force, ["--out-train", "--out-test"])
    dups = duplicates.find(ds.images, near=near, min_similarity=min_similarity)
    groups = dups.groups()
    train, test = split_indices(ds.labels, groups, profile.n_classes, test_size, seed,
                                profile.class_names)
    arrays, skipped = read_arrays(ds, profile)
    n = len(ds)
    write_all({out_train: subset(arrays, train, n), out_test: subset(arrays, test, n)})
    names = profile.class_names
    tr_c = np.bincount(ds.labels[train], minlength=profile.n_classes)
    te_c = np.bincount(ds.labels[test], minlength=profile.n_classes)
    is_test = np.zeros(n, bool)
    is_test[test] = True
    multi = [g for g in groups if len(g) > 1]
    report: dict[str, Any] = {
        "input": str(path), "n_images": n, "test_size": test_size, "seed": seed,
        "near": {"max_distance": near, "min_similarity": min_similarity},
        "train": {"path": str(out_train), "n_images": int(len(train))},
        "test": {"path": str(out_test), "n_images": int(len(test))},
        "classes": [{"id": c, "name": names[c], "train": int(tr_c[c]), "test": int(te_c[c]),
                     "test_share": round(float(te_c[c] / max(1, tr_c[c] + te_c[c])), 4)}
                    for c in range(profile.n_classes)],
        "groups_kept_together": len(multi),
        "images_in_groups": int(sum(len(g) for g in multi)),
        "groups_on_test_side": int(sum(bool(is_test[g[0]]) for g in multi)),
        "exact_duplicate_groups": len(dups.exact),
        "groups_across_sides": int(sum(bool(is_test[g].any() != is_test[g].all()) for g in multi)),
        "skipped_arrays": skipped,
        "missing_classes": [names[c] for c in range(profile.n_classes) if tr_c[c] + te_c[c] == 0],
    }
    if set_default:
        report["set_default"] = str(set_local_test(profile, out_test))
    return report


# -- subkit.toml: [workspace] local_test -----------------------------------------------------
_HEADER = re.compile(r"^\s*\[\s*workspace\s*\]\s*(#.*)?$")
_ANY_HEADER = re.compile(r"^\s*\[")
_KEY = re.compile(r"^\s*local_test\s*=")


def set_local_test(profile: Profile, test_path: Path) -> Path:
    """Set ``local_test`` in the ``[workspace]`` table of the workspace's subkit.toml.

    The file is edited as text, so comments and layout survive; the result is parsed back
    to check it, and written atomically. Returns the path of subkit.toml.
    """
    import tomli_w

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    ws = profile.workspace
    if ws is None:
        raise UsageError("no workspace: no subkit.toml here or above",
                         hint="run `subkit init` first, or drop --set-default")
    toml_path = profile.workspace_file  # subkit.profile is above data (subkit.kinds)
    test_path = Path(test_path).resolve()
    try:
        value = test_path.relative_to(Path(ws).resolve()).as_posix()
    except ValueError:
        value = test_path.as_posix()
    line = tomli_w.dumps({"local_test": value}).strip()
    text = toml_path.read_text("utf-8")
    new_text = _edit_workspace_table(text, line)
    try:
        parsed = tomllib.loads(new_text)
        ok = parsed.get("workspace", {}).get("local_test") == value
    except tomllib.TOMLDecodeError:
        ok = False
    if not ok:  # an unusual layout (dotted keys, inline table): rewrite the data instead
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ProfileError(f"{toml_path} is not valid TOML: {exc}",
                               hint="fix it, then rerun with --set-default") from None
        ws_table = data.setdefault("workspace", {})
        if not isinstance(ws_table, dict):
            raise ProfileError(f"{toml_path}: workspace is not a table",
                               hint='write it as [workspace] with local_test = "..."')
        ws_table["local_test"] = value
        new_text = tomli_w.dumps(data)
    tmp = temp_sibling(toml_path, ".tmp")
    try:
        tmp.write_text(new_text, "utf-8")
        os.replace(tmp, toml_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return toml_path


def _edit_workspace_table(text: str, line: str) -> str:
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if _HEADER.match(ln)), None)
    if start is None:
        sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        return f"{text}{sep}[workspace]\n{line}\n"
    end = next((i for i in range(start + 1, len(lines)) if _ANY_HEADER.match(lines[i])), len(lines))
    for i in range(start + 1, end):
        if _KEY.match(lines[i]):
            lines[i] = line
            break
    else:
        last = start  # after the table's last key line, before blank lines/comments that follow
        for i in range(start + 1, end):
            if lines[i].strip() and not lines[i].lstrip().startswith("#"):
                last = i
        lines.insert(last + 1, line)
    return "\n".join(lines) + "\n"
