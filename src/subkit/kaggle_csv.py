"""Kaggle CSV submissions: written exactly in a profile's layout, and checked.

Two layouts (``[kaggle] layout``):

- ``labels``: ``id_column,label_column`` then one row per test sample, the label as a class
  index or a class name (``[kaggle] label_values``), e.g. Pirate Pain's
  ``sample_index,label`` / ``000,high_pain``;
- ``pixels``: ``id`` then one column per pixel named ``0``..``H*W-1``, the class of pixel
  (row, col) in column ``row * W + col`` (row-major), e.g. Mars terrain's 8193 columns.

The ids are the test set's own (an array named like the id column in the .npz), else
0..n-1 in the test set's order, zero-padded to ``[kaggle] id_width`` digits when the
competition's sample submission pads them. ``check`` reads a CSV back and names the first
problem a Kaggle scorer would trip on: wrong or missing columns, a wrong number of rows,
duplicated, unknown or shuffled ids, labels or pixel values outside the classes.
"""

from __future__ import annotations

import csv
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

from subkit.errors import InputError


def header(prof) -> list[str]:
    lay = prof.csv
    if lay.layout == "pixels":
        h, w = prof.input_shape[:2]
        return [lay.id_column] + [str(i) for i in range(h * w)]
    return [lay.id_column, lay.label_column]


def test_ids(data_path: Path, prof, n: int) -> list[str]:
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


def _label_cells(values: np.ndarray, prof) -> list[str]:
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


def write(path: Path, values: np.ndarray, ids: list[str], prof) -> int:
    """Write the CSV atomically (a temp file in the same folder, then rename); rows."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write((",".join(header(prof)) + "\n").encode())
            cells = (_pixel_rows(values) if prof.csv.layout == "pixels"
                     else [c.encode() for c in _label_cells(values, prof)])
            for i, cell in zip(ids, cells):
                fh.write(i.encode() + b"," + cell + b"\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return len(ids)


# -- checking a CSV ----------------------------------------------------------------------------
class CsvProblem(Exception):
    def __init__(self, name: str, message: str, hint: str):
        super().__init__(message)
        self.name, self.message, self.hint = name, message, hint


def _check_header(got: list[str], want: list[str]) -> None:
    if got == want:
        return
    if len(want) > 10 and len(got) != len(want):
        raise CsvProblem("columns", f"the CSV has {len(got)} columns, the layout has {len(want)} "
                                    f"({want[0]}, {want[1]}, ..., {want[-1]})",
                         "one column per pixel after the id: write it with `subkit predict`")
    missing = [c for c in want if c not in got]
    extra = [c for c in got if c not in want]
    if missing or extra:
        what = "; ".join(x for x in (f"missing {', '.join(missing[:5])}" if missing else "",
                                     f"unexpected {', '.join(extra[:5])}" if extra else "") if x)
        raise CsvProblem("columns", f"the CSV's columns are wrong: {what} (expected "
                                    f"{', '.join(want[:4])}{', ...' if len(want) > 4 else ''})",
                         "name the columns exactly as the competition's sample submission does "
                         "(names are case-sensitive)")
    i = next(k for k, (a, b) in enumerate(zip(got, want)) if a != b)
    raise CsvProblem("columns", f"the CSV's columns are out of order: column {i + 1} is {got[i]!r}, "
                                f"the layout wants {want[i]!r}",
                     "write the columns in the layout's order (pixels row-major: row * W + col)")


def _check_ids(got: list[str], want: list[str] | None) -> None:
    seen: set[str] = set()
    for i, v in enumerate(got):
        if v in seen:
            raise CsvProblem("ids", f"id {v!r} appears twice (row {i + 1})",
                             "one row per test sample, each id once")
        seen.add(v)
    if want is None:
        return
    if len(got) != len(want):
        raise CsvProblem("rows", f"the CSV has {len(got)} rows, the test set has {len(want)} samples",
                         "predict every test sample, one row each (check batching and a dropped "
                         "last batch)")
    if got == want:
        return
    unknown = [v for v in got if v not in set(want)]
    if unknown:
        raise CsvProblem("ids", f"ids the test set does not have: {', '.join(unknown[:5])} "
                                f"(expected {want[0]}..{want[-1]})",
                         "use the test set's ids as they are written (zero-padding included)")
    i = next(k for k, (a, b) in enumerate(zip(got, want)) if a != b)
    raise CsvProblem("order", f"the ids are shuffled: row {i + 1} has id {got[i]!r}, the test set "
                              f"has {want[i]!r} there",
                     "write the rows in the test set's order (a shuffled data pipeline or "
                     "a dict iterated out of order?)")


def _check_labels(rows: list[list[str]], prof) -> None:
    names = prof.class_names
    allowed = names if prof.csv.label_values == "names" else [str(i) for i in range(len(names))]
    for i, row in enumerate(rows):
        if row[1] not in allowed:
            what = "class names" if prof.csv.label_values == "names" else "class indices"
            raise CsvProblem("values", f"row {i + 1} has label {row[1]!r}, not one of the profile's "
                                       f"{what} ({', '.join(allowed)})",
                             "write the label column as the sample submission does")


def _pixel_values(line: str, width: int, k: int, row: int) -> None:
    with warnings.catch_warnings():  # numpy < 2.3 warns and stops at a bad cell, later raises
        warnings.simplefilter("ignore")
        try:
            values = np.fromstring(line, dtype=np.int64, sep=",")
        except ValueError:
            values = np.zeros(0, np.int64)
    if len(values) != width - 1:
        raise CsvProblem("values", f"row {row} has a value that is not a class id (or "
                                   f"{len(line.split(','))} cells, not {width - 1})",
                         "each pixel column holds an integer class id")
    bad = (values < 0) | (values >= k)
    if bad.any():
        raise CsvProblem("values", f"row {row} holds classes outside 0..{k - 1} "
                                   f"(e.g. {values[bad][0]})", "pixels hold class indices")


def check(path: Path, prof, *, ids: list[str] | None = None) -> dict:
    """Read ``path`` back: {"rows", "columns"}; CsvProblem names the first problem."""
    path = Path(path)
    want = header(prof)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        first = fh.readline().rstrip("\r\n")
        if not first:
            raise CsvProblem("columns", "the CSV is empty", "write a header and one row per sample")
        _check_header(next(csv.reader([first])), want)
        got_ids, label_rows = [], []
        for r, line in enumerate(fh, start=2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            head, _, rest = line.partition(",")
            got_ids.append(head)
            if prof.csv.layout == "pixels":
                _pixel_values(rest, len(want), prof.n_classes, r)
            else:
                cells = next(csv.reader([line]))
                if len(cells) != len(want):
                    raise CsvProblem("columns", f"row {r} has {len(cells)} cells, the header "
                                                f"{len(want)}", "one cell per column in every row")
                label_rows.append(cells)
    _check_ids(got_ids, ids)
    if label_rows:
        _check_labels(label_rows, prof)
    return {"rows": len(got_ids), "columns": len(want)}
