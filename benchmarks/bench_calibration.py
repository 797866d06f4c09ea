"""Benchmark: how well the shift suite and the ledger's calibration predict a hidden test.

Small CNNs of different robustness (trained on subkit's synthetic cells with numpy
augmentation of growing strength, and one narrower net) are built into zips with the
template model.py and scored for real with ``score_local(zip, local_test, shift=SUITE)``.
Their "leaderboard" is a hidden test the way the reference competition had one: other
images of the same distribution (another seed) under a shift made with other code than the
suite (tests/robustness_helpers.hidden_shift: a Pillow RandAugment, a Cutout and noise; no
Keras layer). Then, model by model, the other models' hidden scores go into the ledger and
``subkit.calibration`` predicts the held-out one, as ``score-local --shift`` would.

Reported per model: clean, shifted (the suite's plain mean), hidden, predicted with its
band; and overall the mean absolute error against the hidden score of the clean score, the
plain shifted score and the calibrated prediction (ratios against the clean score's error:
the baseline of the same run), the band's coverage, and Spearman rank correlations.

    python benchmarks/bench_calibration.py          # writes benchmarks/results/calibration.md
    python benchmarks/bench_calibration.py --quick  # 3 models, small sets, no result file
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent / "tests"))
from _common import Run, write_result  # noqa: E402

# (label, augmentation strength, epochs, width)
MODELS = [("no augmentation", 0.0, 12, 16), ("light augmentation", 0.3, 12, 16),
          ("medium augmentation", 0.6, 14, 16), ("strong augmentation", 1.0, 16, 16),
          ("narrow net, medium augmentation", 0.6, 14, 8)]


def spearman(a, b) -> float:
    import robustness_helpers as R

    return R.spearman(a, b)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--suites", default="hidden-2024,default,microscopy")
    ap.add_argument("--train", type=int, default=None)
    ap.add_argument("--test", type=int, default=None)
    ap.add_argument("--keep", default=None, metavar="DIR")
    a = ap.parse_args(argv)
    n_train = a.train or (600 if a.quick else 1500)
    n_test = a.test or (120 if a.quick else 300)
    models = MODELS[:3] if a.quick else MODELS
    suites = a.suites.split(",")

    import numpy as np

    from subkit import calibration
    from subkit import profile as profile_mod
    from subkit.commands.score_local import score_zip as score_local
    from subkit.data.synthetic import generate
    from subkit.workspace import init_workspace, template_text

    import robustness_helpers as R

    run = Run("bench_calibration.py", list(sys.argv[1:] if argv is None else argv))
    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="subkit-bench-cal-"))
    ws = root / "ws"
    if not (ws / "subkit.toml").exists():
        init_workspace(ws, None)
    tr, te, hid = generate(n_train, seed=11), generate(n_test, seed=12), generate(n_test, seed=13)
    np.savez(ws / "local_test.npz", images=te["images"], labels=te["labels"])
    hidden_x, hidden_y = R.hidden_shift(hid["images"]), hid["labels"].ravel()
    template = template_text("model.py").replace("\nTTA = True", "\nTTA = False")
    os.chdir(ws)
    prof = profile_mod.load(None)
    rows = []
    for label, strength, epochs, width in models:
        t = time.monotonic()
        w = root / f"{len(rows)}.keras"
        if w.exists():  # --keep DIR: a second run reuses the trained models
            import keras

            model = keras.models.load_model(w)
        else:
            model = R.train(tr["images"], tr["labels"].ravel(), strength, epochs, width=width)
            model.save(w)
        train_s = time.monotonic() - t
        z = ws / f"model{len(rows)}.zip"
        with zipfile.ZipFile(z, "w") as zf:
            zf.writestr("model.py", template)
            zf.write(w, "weights.keras")
        row = {"label": label, "zip": z, "train_s": train_s,
               "hidden": R.accuracy(model, hidden_x, hidden_y), "shift": {}}
        for suite in suites:
            t = time.monotonic()
            res = score_local(z, ws / "local_test.npz", prof, shift=suite, report=False)
            assert res.ok, res.failure
            row["clean"] = res.score
            row["shift"][suite] = {"score": res.shift["shifted_score"],
                                   "wall_s": time.monotonic() - t,
                                   "data_sha256": res.shift["data_sha256"],
                                   "sha": res.zip_sha256}
        rows.append(row)
        print(f"{label}: clean {row['clean']:.3f}, hidden {row['hidden']:.3f}, "
              + ", ".join(f"{s} {v['score']:.3f}" for s, v in row["shift"].items())
              + f" (trained in {train_s:.0f} s)", flush=True)
    from subkit.ledger import Ledger

    records = Ledger(ws / "submissions").records()
    for suite in suites:  # each model predicted from the others' hidden scores
        for i, row in enumerate(rows):
            boards = [{"kind": "leaderboard", "zip_sha256": r["shift"][suite]["sha"],
                       "leaderboard_score": r["hidden"], "phase": "hidden",
                       "time": "2026-01-01"} for j, r in enumerate(rows) if j != i]
            sh_ = row["shift"][suite]
            group = (sh_["data_sha256"], suite, 0)
            own = next(rec for rec in reversed(records) if rec.get("zip_sha256") == sh_["sha"]
                       and rec.get("shift_suite") == suite)
            sh_["predicted"] = calibration.predict(records + boards, own["shift_scores"], group,
                                                   sh_["sha"])
    run.finish()
    lines = run.header("Benchmark: shifted score and leaderboard calibration against a hidden "
                       "test (issue 15)", ("keras", "numpy", "tensorflow", "PIL"))
    lines += _report(rows, suites, n_train, n_test)
    if not a.quick:
        print(f"wrote {write_result('calibration', lines)}")
    print("\n".join(lines))
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def _report(rows, suites, n_train, n_test) -> list[str]:
    import numpy as np

    hidden = [r["hidden"] for r in rows]
    clean = [r["clean"] for r in rows]
    err_clean = float(np.mean(np.abs(np.array(clean) - hidden)))
    lines = [
        f"- data: subkit's synthetic cells; {n_train} training images, a local test set of "
        f"{n_test} (seed 12); the hidden test: {n_test} other images (seed 13) through "
        "`tests/robustness_helpers.hidden_shift` (Pillow RandAugment, 2 ops at magnitude 0.4, "
        "Cutout p .5, noise σ 6: no Keras layer)",
        "- models: small CNNs (`robustness_helpers.small_cnn`) trained with numpy augmentation "
        "of growing strength, zipped with the template model.py (TTA off) and scored by "
        "`score_local(..., shift=SUITE)`; each model's prediction calibrated on the other "
        f"{len(rows) - 1} models' hidden scores (leave one model out)",
        "",
    ]
    for suite in suites:
        shifted = [r["shift"][suite]["score"] for r in rows]
        preds = [r["shift"][suite]["predicted"] for r in rows]
        lines += [f"## suite `{suite}`", "",
                  "| model | clean | shifted (plain mean) | hidden | predicted | 90% band | "
                  "error of the prediction | inside the band |",
                  "|---|---:|---:|---:|---:|---|---:|:---:|"]
        for r, s, p in zip(rows, shifted, preds):
            inside = p["low"] <= r["hidden"] <= p["high"]
            lines.append(f"| {r['label']} | {r['clean']:.3f} | {s:.3f} | {r['hidden']:.3f} | "
                         f"{p['score']:.3f} | {p['low']:.3f} to {p['high']:.3f} | "
                         f"{p['score'] - r['hidden']:+.3f} | {'yes' if inside else 'no'} |")
        err_shift = float(np.mean(np.abs(np.array(shifted) - hidden)))
        err_pred = float(np.mean([abs(p["score"] - h) for p, h in zip(preds, hidden)]))
        cover = sum(p["low"] <= h <= p["high"] for p, h in zip(preds, hidden))
        width = float(np.mean([p["high"] - p["low"] for p in preds]))
        wall = float(np.median([r["shift"][suite]["wall_s"] for r in rows]))
        lines += ["",
                  f"- mean absolute error against the hidden score: clean {err_clean:.3f}; "
                  f"shifted {err_shift:.3f} (**{err_shift / err_clean:.2f}x** the clean "
                  f"score's); calibrated prediction {err_pred:.3f} "
                  f"(**{err_pred / err_clean:.2f}x**)",
                  f"- the band holds the hidden score for {cover} of {len(rows)} models; mean "
                  f"band width {width:.3f}",
                  f"- rank correlation with the hidden scores (Spearman): clean "
                  f"{spearman(clean, hidden):+.2f}, shifted {spearman(shifted, hidden):+.2f}, "
                  f"predicted {spearman([p['score'] for p in preds], hidden):+.2f}",
                  f"- one `score-local --shift {suite}` run: median wall time {wall:.0f} s", ""]
    return lines


if __name__ == "__main__":
    sys.exit(main())
