"""Benchmark: `subkit probe` end to end against a plain score-local of the template, and the
grader's clock's prediction error on the ledger's own history (issue 21).

1. Cost of the probe. In a workspace made by `subkit init` (the reference profile), with
   N synthetic images (`subkit.data.synthetic.generate(N, seed=0)`), interleaved A B A B,
   medians:

   - A: `subkit probe` then `subkit score-local PROBE.zip --env grader` (the probe built and
     run the way the grader runs it: the fingerprint, TensorFlow imported for CUDA/cuDNN and
     the GPUs, the bounded network check, dummy predictions);
   - B (baseline): `subkit score-local TEMPLATE.zip --env grader`, the template model.py as
     `subkit init` lays it out (its TTA on) with a small CNN saved by the grader's Keras
     (keras 3.4.1, so that no rewrite runs), zipped by `subkit build --no-smoke`.

   Target: A/B at most 1.2x.

2. The clock's error. A synthetic ledger of K zips: local run times log-uniform in 20-600 s,
   the grader's time = local x a machine ratio (2.1) x a per-zip noise (log-normal, sigma
   0.10: the platform's own jitter and the first call's tracing); each zip's grader time is
   predicted from the K-1 others (leave one out, `subkit.clock.leave_one_out`), and compared
   with the naive guess "the grader is as fast as this machine" (ratio 1). Reported: median
   and worst relative error, and how often the true time falls in the stated range.

    python benchmarks/bench_probe.py            # writes benchmarks/results/probe.md
    python benchmarks/bench_probe.py --quick    # 1 round, no result file
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

MAKE_MODEL = r"""
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras
keras.utils.set_random_seed(0)
inp = keras.Input((96, 96, 3))
x = keras.layers.Rescaling(1 / 255.0)(inp)
x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
x = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(x)
x = keras.layers.GlobalAveragePooling2D()(x)
out = keras.layers.Dense(8, activation="softmax")(x)
keras.Model(inp, out).save(sys.argv[1])
"""


def subkit(*args: str, cwd: Path) -> dict:
    r = C.timed_process([sys.executable, "-m", "subkit", *args], cwd=cwd, time_v=False)
    if r["rc"] != 0:
        raise SystemExit(f"subkit {' '.join(args)} failed:\n{r['stdout'][-2000:]}"
                         f"\n{r['stderr'][-2000:]}")
    return r


def clock_error(k: int, seed: int, ratio: float = 2.1, sigma: float = 0.10) -> dict:
    from subkit import clock

    rng = random.Random(seed)
    ps = []
    for i in range(k):
        local = math.exp(rng.uniform(math.log(20), math.log(600)))
        plat = local * ratio * math.exp(rng.gauss(0, sigma))
        ps.append(clock.Pair(f"{i:064x}", local, plat, 500))
    errs, naive, inside = [], [], 0
    for p, pred in clock.leave_one_out(ps):
        errs.append(abs(pred - p.platform_s) / p.platform_s)
        naive.append(abs(p.local_s - p.platform_s) / p.platform_s)
        est = clock.estimate(ps, p.local_s, 1.0, n=p.n, exclude=p.zip_sha256)
        assert est is not None
        inside += est.low <= p.platform_s <= est.high
    return {"k": k, "median_err": statistics.median(errs), "max_err": max(errs),
            "naive_median_err": statistics.median(naive), "in_range": inside / len(errs)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    run = C.Run("bench_probe.py", sys.argv[1:])
    rounds = 1 if a.quick else a.rounds
    from subkit import profile
    from subkit.grader import environment

    grader_py = str(environment.ensure_env(profile.load("an2dl-2024-blood-cells",
                                                        workspace=False), create=False))
    with tempfile.TemporaryDirectory(prefix="subkit-bench-probe-") as tmp:
        ws = Path(tmp) / "ws"
        subprocess.run([sys.executable, "-m", "subkit", "init", str(ws)], check=True,
                       capture_output=True)
        import numpy as np

        from subkit.data.synthetic import generate

        d = generate(a.n, seed=0)
        np.savez(ws / "test.npz", images=d["images"], labels=d["labels"])
        subprocess.run([grader_py, "-c", MAKE_MODEL, str(ws / "weights.keras")], check=True,
                       capture_output=True, env={**C.QUIET_TF, "PATH": "/usr/bin:/bin"})
        built = json.loads(subkit("build", "--weights", "weights.keras", "--no-smoke",
                                  "--tag", "template", "--json", cwd=ws)["stdout"])
        template_zip = built["path"]

        def probe() -> None:
            info = json.loads(subkit("probe", "--json", cwd=ws)["stdout"])
            subkit("score-local", info["path"], "--data", "test.npz", "--env", "grader",
                   "--json", cwd=ws)

        def template() -> None:
            subkit("score-local", str(template_zip), "--data", "test.npz", "--env", "grader",
                   "--json", cwd=ws)

        times = C.interleave({"probe": probe, "template": template}, rounds)
    ratios = C.paired_ratios(times["probe"], times["template"])
    ratio = C.med(ratios)
    clocks = [clock_error(k, seed=s) for k in (3, 5, 10, 20) for s in range(50)]
    by_k = {k: [c for c in clocks if c["k"] == k] for k in (3, 5, 10, 20)}
    run.finish()
    lines = run.header("subkit probe: cost and the grader's clock", ("numpy",))
    lines += [
        f"## 1. The probe end to end against score-local of the template ({a.n} images, "
        f"{rounds} interleaved rounds, `--env grader`)",
        "",
        "| | median s | runs |",
        "|---|---|---|",
        f"| A: `subkit probe` + score-local of the probe | {C.med(times['probe']):.1f} | "
        + ", ".join(f"{t:.1f}" for t in times["probe"]) + " |",
        f"| B: score-local of the template (small CNN, TTA on) | "
        f"{C.med(times['template']):.1f} | " + ", ".join(f"{t:.1f}" for t in times["template"])
        + " |",
        "",
        f"A/B (median of paired ratios): **{ratio:.2f}x**, target at most 1.2x: "
        f"{C.verdict(ratio <= 1.2)}",
        "",
        "## 2. The grader's clock, leave one out on a synthetic ledger",
        "",
        "grader time = local x 2.1 x log-normal noise (sigma 0.10); 50 ledgers per size",
        "",
        "| pairs in the ledger | median rel. error | worst rel. error | naive (ratio 1) "
        "median error | true time inside the stated range |",
        "|---|---|---|---|---|",
    ]
    for k, cs in by_k.items():
        lines.append(
            f"| {k} | {statistics.median(c['median_err'] for c in cs):.1%} | "
            f"{max(c['max_err'] for c in cs):.1%} | "
            f"{statistics.median(c['naive_median_err'] for c in cs):.1%} | "
            f"{statistics.mean(c['in_range'] for c in cs):.0%} |")
    text = "\n".join(lines)
    print(text)
    if not a.quick:
        print(f"wrote {C.write_result('probe', lines)}")


if __name__ == "__main__":
    main()
