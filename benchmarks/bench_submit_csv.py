"""Benchmark: the CSV check before a Kaggle upload (issue 14).

`subkit submit FILE.csv --kaggle ...` reads the whole CSV against the profile before it
uploads. On the largest CSV of the course's Kaggle competitions (AN2DL 2024-25 Mars
terrain: 10,022 rows, `id` + 8,192 pixel columns, about 165 MB), its cost is measured
against the floor any such check pays: one pass of Python's `csv.reader` over the file.
Interleaved runs (A B A B ...), medians; target: at most 1.5x.

    python benchmarks/bench_submit_csv.py            # prints, writes results/submit_csv.md
    python benchmarks/bench_submit_csv.py --quick    # 1,000 rows, 2 rounds, no result file
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import _common as C

TARGET = 1.5


def write_csv(path: Path, rows: int, pixels: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "w") as fh:
        fh.write("id," + ",".join(str(i) for i in range(pixels)) + "\n")
        for i in range(rows):
            fh.write(f"{i}," + ",".join(map(str, rng.integers(0, 5, pixels))) + "\n")


def read_only(path: Path) -> int:
    with open(path, newline="", encoding="utf-8") as fh:
        return sum(1 for _ in csv.reader(fh))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10022)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    rows, repeat = (1000, 2) if args.quick else (args.rows, args.repeat)
    run = C.Run("bench_submit_csv.py", argv if argv is not None else sys.argv[1:])

    from subkit import profile
    from subkit.submission_csv import check_csv

    prof = profile.load("an2dl-2024-mars-terrain", workspace=False)
    prof.data["kaggle"]["rows"] = rows
    with tempfile.TemporaryDirectory(prefix="bench-csv-") as tmp:
        path = Path(tmp) / "preds.csv"
        write_csv(path, rows, 64 * 128)
        size_mb = path.stat().st_size / 1e6
        print(f"{rows} rows x 8,193 columns, {size_mb:.1f} MB")
        outcome = check_csv(path, prof)
        assert outcome == (rows, []), outcome
        times = C.interleave({"csv.reader pass": lambda: read_only(path),
                              "check_csv": lambda: check_csv(path, prof)}, repeat)
    run.finish()
    ratios = C.paired_ratios(times["check_csv"], times["csv.reader pass"])
    ratio = C.med(ratios)
    ok = ratio <= TARGET
    print(f"check_csv / csv.reader pass = {ratio:.2f}x (target <= {TARGET}x): "
          f"{'met' if ok else 'MISSED'}")
    if args.quick:
        return 0
    lines = run.header("Benchmark: the CSV check before a Kaggle upload (issue 14)", ("numpy",))
    lines += [
        f"A Mars-terrain-shaped CSV: {rows:,} rows, `id` + 8,192 pixel columns, "
        f"{size_mb:.1f} MB, every value a class id 0..4 (a valid file: the check reads it all).",
        "",
        "| | median s | runs |",
        "|---|---:|---|",
        f"| one `csv.reader` pass (the floor) | {C.med(times['csv.reader pass']):.2f} | "
        + ", ".join(f"{t:.2f}" for t in times["csv.reader pass"]) + " |",
        f"| `check_csv` (header, rows, unique ids, class ids) | {C.med(times['check_csv']):.2f}"
        " | " + ", ".join(f"{t:.2f}" for t in times["check_csv"]) + " |",
        "",
        f"**check_csv / one csv.reader pass: {ratio:.2f}x** (median of the paired ratios "
        f"{', '.join(f'{r:.2f}' for r in ratios)}); target <= {TARGET}x: {C.verdict(ok)}.",
    ]
    print(f"wrote {C.write_result('submit_csv', lines)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
