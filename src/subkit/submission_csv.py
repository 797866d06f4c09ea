"""A Kaggle CSV against its competition's profile, before it is uploaded.

Kaggle scores a CSV whose header, row count, ids or values are wrong as an ERROR (the
submission's ``errorDescription`` says why, Kaggle/kaggle-cli issue #1190), after it took
one of the day's submissions. The profile knows the shape: ``[kaggle] id_column``,
``label_column`` and ``rows``, ``[output] kind`` and ``shape``, the class count.
"""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path
from typing import Any, Iterator


def csv_columns(profile: Any) -> list[str] | None:
    """The header a Kaggle CSV of this profile has: ``id,label`` for labels; for masks the id
    and one column per pixel, ``0``..``H*W-1`` (row-major), as AN2DL's Mars competition."""
    kag = profile.data.get("kaggle", {})
    id_col = kag.get("id_column", "id")
    output = profile.data.get("output", {})
    if output.get("kind") == "labels":
        return [id_col, kag.get("label_column", "label")]
    if output.get("kind") == "masks":
        dims = [d for d in str(output.get("shape", "")).strip("()").split(",")[1:] if d.strip()]
        try:
            pixels = math.prod(int(d) for d in dims)
        except ValueError:
            return None
        return [id_col] + [str(i) for i in range(pixels)]
    return None


def _header_problem(header: list[str], expected: list[str]) -> str | None:
    if header == expected:
        return None
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in expected]

    def few(cols: list[str]) -> str:
        return ", ".join(cols[:5]) + (f" and {len(cols) - 5} more" if len(cols) > 5 else "")

    if not missing and not extra:
        return "the columns are in another order than the competition's"
    parts = ([f"missing {few(missing)}"] if missing else []) + \
        ([f"unexpected {few(extra)}"] if extra else [])
    return "the header is not the competition's: " + "; ".join(parts)


def _records(fh: Any) -> Iterator[list[str]]:
    """The rows of a CSV file. While no line holds a quote, ``str.split`` gives what the csv
    module would, twice as fast on the wide numeric rows of a mask CSV; from the first quote
    on, the csv module reads the rest. Blank lines are skipped (pandas, which scorers use,
    skips them too)."""
    for line in fh:
        if '"' in line:
            yield from (row for row in csv.reader(itertools.chain([line], fh)) if row)
            return
        text = line.rstrip("\r\n")
        if text:
            yield text.split(",")


def check_csv(path: Path, profile: Any) -> tuple[int, list[str]]:
    """``(rows, problems)`` of a Kaggle CSV against the profile: header, row count (the
    profile's ``[kaggle] rows`` when known), unique ids, labels in 0..n_classes-1."""
    expected = csv_columns(profile)
    want_rows = profile.data.get("kaggle", {}).get("rows")
    allowed = {str(i) for i in range(profile.n_classes)}
    problems: list[str] = []
    ids: set[str] = set()
    rows = 0
    try:
        # utf-8-sig: a spreadsheet's byte-order mark is not part of the first column's name
        with open(path, newline="", encoding="utf-8-sig") as fh:
            records = _records(fh)
            header = next(records, None)
            if not header:
                return 0, ["the file is empty"]
            wrong = _header_problem(header, expected) if expected else None
            if wrong:
                problems.append(wrong)
            for line, row in enumerate(records, start=2):
                rows += 1
                if len(row) != len(header):
                    problems.append(f"line {line} has {len(row)} values for {len(header)} columns")
                    break
                if row[0] in ids:
                    problems.append(f"line {line}: the id {row[0]!r} appears twice")
                    break
                ids.add(row[0])
                values = set(row)
                values.discard(row[0])
                if not wrong and expected and not values <= allowed:
                    bad = sorted(values - allowed)[:3]
                    problems.append(f"line {line}: {', '.join(map(repr, bad))} is not a class id "
                                    f"(0..{profile.n_classes - 1})")
                    break
    except UnicodeDecodeError:
        return rows, ["the file is not UTF-8 text"]
    except csv.Error as exc:
        return rows, [f"not a readable CSV: {exc}"]
    if want_rows and rows != want_rows and not any("line" in p for p in problems):
        problems.append(f"{rows} rows, the competition expects {want_rows}")
    return rows, problems
