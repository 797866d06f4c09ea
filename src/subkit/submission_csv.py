"""A Kaggle CSV against its competition's profile, before it is uploaded.

Kaggle scores a CSV whose header, row count, ids or values are wrong as an ERROR (the
submission's ``errorDescription`` says why, Kaggle/kaggle-cli issue #1190), after it took
one of the day's submissions. The profile knows the shape: its CSV layout
(``subkit.kaggle_csv.header``: ``id,label`` or the id and one column per pixel), the label
values (class ids, or class names such as Pirate Pain's ``no_pain``), ``[kaggle] rows``.
Given the test set's ids (``subkit check FILE.csv --data TEST.npz``), the rows must hold
exactly those ids in that order.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from subkit.profile import Profile


def csv_columns(profile: Profile) -> list[str] | None:
    """The header a Kaggle CSV of this profile has: ``id,label`` for labels; for masks the id
    and one column per pixel, ``0``..``H*W-1`` (row-major), as AN2DL's Mars competition;
    None for a kind no CSV layout describes (forecasts)."""
    from subkit.kaggle_csv import header

    return header(profile) if profile.kind_spec.csv_header() else None


def _values(profile: Profile) -> tuple[set[str], str]:
    """The cells a label or pixel may hold, and their description for a message."""
    if profile.kind_spec.named_cells and profile.csv.label_values == "names":
        return set(profile.class_names), f"class name ({', '.join(profile.class_names)})"
    return {str(i) for i in range(profile.n_classes)}, f"class id (0..{profile.n_classes - 1})"


def _ids_problem(got: list[str], want: list[str]) -> str | None:
    """Unknown ids first (zero-padding?), then the first row out of the test set's order."""
    if got == want:
        return None
    known = set(want)
    unknown = [i for i in got if i not in known]
    if unknown:
        return (f"ids the test set does not have: {', '.join(unknown[:3])} (it has "
                f"{want[0]}..{want[-1]}, written as the test set writes them)")
    line, have, should = next((k + 2, a, b) for k, (a, b) in enumerate(zip(got, want)) if a != b)
    return (f"the ids are shuffled: line {line} has id {have!r}, the test set has {should!r} "
            "there (write the rows in the test set's order)")


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


def check_csv(path: Path, profile: Profile, ids: list[str] | None = None) -> tuple[int, list[str]]:
    """``(rows, problems)`` of a Kaggle CSV against the profile: header, row count (the
    test set's, else the profile's ``[kaggle] rows`` when known), unique ids, the test set's
    ids in its order when ``ids`` is given, labels or pixels among the profile's classes."""
    expected = csv_columns(profile)
    want_rows = len(ids) if ids is not None else profile.csv.rows
    allowed, what = _values(profile)
    problems: list[str] = []
    seen: list[str] = []
    ids_seen: set[str] = set()
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
                if row[0] in ids_seen:
                    problems.append(f"line {line}: the id {row[0]!r} appears twice")
                    break
                ids_seen.add(row[0])
                seen.append(row[0])
                values = set(row[1:])
                if not wrong and expected and not values <= allowed:
                    bad = sorted(values - allowed)[:3]
                    problems.append(f"line {line}: {', '.join(map(repr, bad))} is not a {what}")
                    break
    except UnicodeDecodeError:
        return rows, ["the file is not UTF-8 text"]
    except csv.Error as exc:
        return rows, [f"not a readable CSV: {exc}"]
    if want_rows and rows != want_rows and not any("line" in p for p in problems):
        problems.append(f"{rows} rows, the competition expects {want_rows}")
    if ids is not None and not problems:
        problems += [p for p in [_ids_problem(seen, ids)] if p]
    return rows, problems
