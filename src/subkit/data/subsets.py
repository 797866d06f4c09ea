"""Reading a data set's arrays and writing subsets of it, keeping the input's layout:
outputs checked before anything is written, then written together atomically (used by
``split`` and ``duplicates``)."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from subkit.errors import InputError, UsageError
from subkit.fsutil import temp_sibling

if TYPE_CHECKING:
    from subkit.profile import Profile


def check_classification(profile: Profile) -> None:
    if not profile.kind_spec.one_label:
        raise UsageError(
            f"profile {profile.name} is a {profile.task} competition; this data tool handles "
            "classification labels (one class id per image)",
            hint="`subkit data split` handles forecasting and segmentation sets, `inspect` and "
                 "`dedupe` segmentation sets too; see docs/competitions.md")


def read_arrays(ds, profile: Profile) -> tuple[dict[str, np.ndarray], list[str]]:
    """All arrays of the data set as stored (labels keep their shape and dtype).

    Returns ``(arrays, skipped)``: ``skipped`` names arrays that cannot be copied (pickled
    objects). Images come from ``ds`` (not read twice).
    """
    arrays: dict[str, np.ndarray] = {}
    skipped: list[str] = []
    ik, lk = profile.images_key, profile.labels_key
    p = Path(ds.path)
    if p.is_file() and zipfile.is_zipfile(p):
        with np.load(p, allow_pickle=False) as npz:
            for key in npz.keys():
                if key == ik:
                    arrays[key] = ds.images
                    continue
                try:
                    arrays[key] = npz[key]
                except ValueError:
                    skipped.append(key)
    else:  # a folder of class folders
        arrays[ik] = ds.images
        if ds.labels is not None:
            arrays[lk] = ds.labels
    return arrays, skipped


def subset(arrays: dict[str, np.ndarray], index: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Per-image arrays (first axis of length n) indexed; other arrays copied as they are."""
    return {k: (v[index] if v.ndim >= 1 and v.shape[0] == n else v) for k, v in arrays.items()}


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(inp: Path, outs: list[Path], force: bool, what: list[str]) -> None:
    """Refuse to write over the input, twice to one path, or over a file without --force."""
    for out, opt in zip(outs, what):
        if same_file(inp, out) or out.resolve() == inp.resolve():
            raise UsageError(f"{opt} {out} is the input file; the input is never changed",
                             hint=f"give {opt} a new file name")
        if not out.parent.is_dir():
            raise InputError(f"folder {out.parent} does not exist (for {opt})",
                             hint="create it first, or choose another path")
        if out.exists() and not force:
            raise InputError(f"{out} exists; refusing to overwrite",
                             hint="pass --force to overwrite it, or choose another path")
    resolved = [o.resolve() for o in outs]
    if len(set(resolved)) != len(resolved):
        raise UsageError(f"{' and '.join(what)} name the same file",
                         hint="give each output its own path")


def write_all(npz_outputs: dict[Path, dict[str, np.ndarray]],
              json_outputs: dict[Path, Any] | None = None) -> None:
    """Write every file to a temp name first, then rename them all into place.

    If any write fails, every temp file is removed and no output appears.
    """
    temps: list[tuple[Path, Path]] = []
    try:
        for final, arrays in npz_outputs.items():
            tmp = temp_sibling(final, ".npz.tmp")
            temps.append((tmp, final))
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)  # type: ignore[arg-type]
        for final, obj in (json_outputs or {}).items():
            tmp = temp_sibling(final, ".json.tmp")
            temps.append((tmp, final))
            tmp.write_text(json.dumps(obj, indent=1) + "\n", "utf-8")
        for tmp, final in temps:
            os.replace(tmp, final)
    except BaseException:
        for tmp, _ in temps:
            if tmp.exists():
                tmp.unlink()
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    write_all({}, {path: obj})
