"""Benchmark: `subkit tta tune` (issue 24): its cost against one pass per view, and whether
its choice beats the template's default views on the shifted score.

On subkit's synthetic blood-cell-like set (train 1600, local test 480 images, 96x96x3),
two tiny CNNs are trained here (A: plain; B: wider, trained with random flips), each put
in a zip with the template model.py. For each model, in the same process and the same
sandbox and interpreter:

- (a) one warm pass of the suite: `score-local --shift SUITE` with the template's TTA off
  (SUBKIT_TTA=0: one view), timed once after training (files cached; wall: what a
  participant pays per view without tta tune);
- (a') the forward passes alone of one view over the suite (the template's predict_proba,
  TTA off, warm, in this process, on the clean set and every shifted set made beforehand);
- (b) `tta tune` with k candidate views (the template's ten) over the same suite.

Cost: (b)'s wall time against k x (a)'s wall time, and (b)'s forward-pass time (the child's
predict time over the clean and shifted sets) against k x (a'): target at most 1.2x (the
physical limit is one forward pass per view per image). Quality: the chosen subset's
shifted score on the report half against the template's default five views (mean) on the
same half: target at least as good, with no more views.

    python benchmarks/bench_tta_tune.py            # suite "default" (48 sets)
    python benchmarks/bench_tta_tune.py --quick    # suite "quick" (6 sets), no result file
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

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from _common import loadavg, mem_total_gb, verdict, versions, write_result  # noqa: E402


def train(kind: str, X, y, seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((96, 96, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    if kind == "B":
        x = keras.layers.RandomFlip("horizontal_and_vertical")(x)
    w = 8 if kind == "A" else 16
    x = keras.layers.Conv2D(w, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(2 * w, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(2 * w, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(8, activation="softmax")(x)
    m = keras.Model(inp, out)
    m.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    m.fit(X, y, epochs=8 if kind == "A" else 10, batch_size=64, verbose=0)
    return m


def forward_pass(ws: Path, X, sets_of) -> float:
    """(a'): the forward passes alone of one view over the suite: the template's
    predict_proba with its TTA off, in this process, warm, on the clean set and on every
    shifted set made beforehand (score-local's child shares the CPU with the generator)."""
    import importlib.util

    os.environ["SUBKIT_TTA"] = "0"
    try:
        spec = importlib.util.spec_from_file_location("bench_model", ws / "model.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        m = mod.Model(str(ws))
    finally:
        os.environ.pop("SUBKIT_TTA", None)
    m.predict_proba(X[:64])  # traced
    t0 = time.perf_counter()
    m.predict_proba(X)
    for path in sets_of:
        m.predict_proba(np.load(path))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--env", default="current", choices=["current", "grader", "auto"])
    a = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from subkit import ui
    from subkit.commands.score_local import score_zip
    from subkit.commands.tta import VIEWS, TuneOptions, tune
    from subkit.data.synthetic import generate
    from subkit.profile import load
    from subkit.workspace import init_workspace, template_text

    suite = "quick" if a.quick else "default"
    root = Path(tempfile.mkdtemp(prefix="bench-tta-tune-"))
    ws = root / "ws"
    init_workspace(ws, None)
    os.chdir(ws)
    os.environ["SUBKIT_ENV"] = a.env
    d = generate(2080, seed=24)
    X, y = d["images"], d["labels"].ravel()
    np.savez(ws / "local_test.npz", images=X[1600:], labels=y[1600:])
    prof = load(None)
    import platform

    lines = [f"# bench_tta_tune ({time.strftime('%Y-%m-%d %H:%M')})", "",
             f"{platform.node()}: {os.cpu_count()} cores, {mem_total_gb()}, load {loadavg()}; "
             f"{versions('numpy', 'tensorflow', 'keras')}", "",
             f"suite {suite}, {len(VIEWS)} candidate views, local test 480 images, "
             f"env {a.env}", ""]
    table = ["| model | (a) one pass s | (b) tune s | wall (b)/(k x a) | predict (b)/(k x a') | "
             "chosen | chosen shifted | default-5 shifted | no TTA shifted |",
             "|---|---|---|---|---|---|---|---|---|"]
    from subkit import shift

    plan = shift.prepare(X[1600:], y[1600:], suite, 0, ws / "bench_sets", work=ws / "bench_work",
                         value_range=prof.input_range, n_classes=prof.n_classes)
    sets_of = [e["path"] for e in plan.entries if Path(e["path"]).is_file()]
    ok = True
    try:
        for kind, seed in (("A", 1), ("B", 2)):
            model = train(kind, X[:1600], y[:1600], seed)
            model.save(ws / "weights.keras")
            z = ws / f"model{kind}.zip"
            with zipfile.ZipFile(z, "w") as zf:
                zf.writestr("model.py", template_text("model.py"))
                zf.write(ws / "weights.keras", "weights.keras")
            with ui.quiet():
                os.environ["SUBKIT_TTA"] = "0"  # the child inherits it: one view
                try:
                    t0 = time.monotonic()  # warm: after training, the files cached
                    score_zip(z, ws / "local_test.npz", prof, shift=suite,
                              record=False, report=False, env=a.env)
                    one = time.monotonic() - t0
                finally:
                    os.environ.pop("SUBKIT_TTA", None)
                one_predict = forward_pass(ws, X[1600:], sets_of)
                t0 = time.monotonic()
                rec = tune(TuneOptions(zip=z, data=ws / "local_test.npz", shift=suite,
                                       env=a.env, progress=False), prof)
                tuned = time.monotonic() - t0
            k = len(rec["candidates"])
            tp = rec["timings"]["predict_s"] + rec["timings"]["shift_predict_s"]
            c, dflt = rec["chosen"], rec["references"]["template_default"]
            no = rec["references"]["no_tta"]
            wall_r, pred_r = tuned / (k * one), tp / (k * one_predict)
            good = (c["report"]["shifted"] >= dflt["report"]["shifted"] - 1e-12
                    and c["n_views"] <= dflt["n_views"])
            ok = ok and pred_r <= 1.2 and wall_r <= 1.2 and good
            table.append(
                f"| {kind} | {one:.1f} | {tuned:.1f} | {wall_r:.2f}x | {pred_r:.2f}x | "
                f"{'+'.join(c['views'])} ({c['merge']}, {c['n_views']}) | "
                f"{c['report']['shifted']:.4f} ± {c.get('sd', 0):.4f} | "
                f"{dflt['report']['shifted']:.4f} | {no['report']['shifted']:.4f} |")
            print(table[-1], flush=True)
            front = " / ".join(f"{p['n_views']}: {p['report']['shifted']:.4f}"
                               for p in rec["front"])
            lines.append(f"- model {kind}: front (report half, shifted) {front}; search "
                         f"{rec['timings']['search_s']:.1f} s over {rec['n_candidates_scored']}"
                         f" (subset, merge)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    lines += ["", *table, "", "targets: wall and predict ratios at most 1.2x; chosen at "
              "least as good as the default five views on the report half, with no more "
              f"views: {verdict(ok)}", f"load average at the end: {loadavg()}"]
    text = "\n".join(lines) + "\n"
    print(text)
    if not a.quick:
        write_result("tta_tune", lines)


if __name__ == "__main__":
    main()
