"""Kaggle CSV submissions written exactly in a profile's layout (``subkit predict``).

Two layouts (``[kaggle] layout``):

- ``labels``: ``id_column,label_column`` then one row per test sample, the label as a class
  index or a class name (``[kaggle] label_values``), e.g. Pirate Pain's
  ``sample_index,label`` / ``000,high_pain``;
- ``pixels``: ``id`` then one column per pixel named ``0``..``H*W-1``, the class of pixel
  (row, col) in column ``row * W + col`` (row-major), e.g. Mars terrain's 8193 columns.

The ids are the test set's own (an array named like the id column in the .npz), else
0..n-1 in the test set's order, zero-padded to ``[kaggle] id_width`` digits when the
competition's sample submission pads them. ``subkit.submission_csv`` reads a CSV back
against the same layout (before ``subkit submit`` uploads it, and in ``subkit check``).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from subkit.errors import InputError
from subkit.fsutil import atomic_open

if TYPE_CHECKING:
    from subkit.profile import Profile


def header(prof: Profile) -> list[str]:
    lay = prof.csv
    if lay.layout == "pixels":
        h, w = prof.input_shape[:2]
        return [lay.id_column] + [str(i) for i in range(h * w)]
    return [lay.id_column, lay.label_column]


def test_ids(data_path: Path, prof: Profile, n: int) -> list[str]:
    """The test set's ids: its array named like the id column, else 0..n-1 (padded)."""
    key = prof.csv.id_column
    p = Path(data_path)
    if p.is_file() and zipfile.is_zipfile(p):
        with np.load(p, allow_pickle=False) as npz:
            if key in npz.files:
                ids = npz[key].reshape(-1)
                if len(ids) != n:
                    raise InputError(f"{p}: {key!r} has {len(ids)} ids for {n} samples",
                                     hint="one id per test sample, in the same order")
                return [str(v) for v in ids.tolist()]
    width = prof.csv.id_width
    return [f"{i:0{width}d}" for i in range(n)]


def _label_cells(values: np.ndarray, prof: Profile) -> list[str]:
    if prof.csv.label_values == "names":
        names = prof.class_names
        return [names[int(v)] for v in values]
    return [str(int(v)) for v in values]


def _pixel_rows(masks: np.ndarray) -> list[bytes]:
    """'c0,c1,...' per mask, row-major; one byte per value when the classes are 0-9."""
    flat = masks.reshape(len(masks), -1)
    if flat.size and flat.max() < 10 and flat.min() >= 0:
        buf = np.full((len(flat), 2 * flat.shape[1]), ord(","), np.uint8)
        buf[:, 0::2] = flat + ord("0")
        return [row[:-1].tobytes() for row in buf]
    return [",".join(map(str, row)).encode() for row in flat.tolist()]


def write(path: Path, values: np.ndarray, ids: list[str], prof: Profile) -> int:
    """Write the CSV atomically (a temp file in the same folder, then rename); rows."""
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fh.write((",".join(header(prof)) + "\n").encode())
        cells = (_pixel_rows(values) if prof.csv.layout == "pixels"
                 else [c.encode() for c in _label_cells(values, prof)])
        for i, cell in zip(ids, cells):
            fh.write(i.encode() + b"," + cell + b"\n")
    return len(ids)
