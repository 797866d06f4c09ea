"""Benchmark: `subkit score-local` in the sandbox against the same run without it (issues 11
and 20: with the kernel's caps, the run's memory cgroup and the disk cap's tmpfs + overlays).

The data, model and zip of `bench_score_local.py` (2,000 synthetic images, an
EfficientNetV2B0-sized model, the template model.py with `TTA = False`), in a temporary
workspace, the same interpreter on both sides, interleaved (A B A B ...), medians:

- A: `python -m subkit score-local ZIP --data test.npz --json --env ENV` with `SUBKIT_SANDBOX=bwrap`
  (bubblewrap required: the run fails rather than fall back), the memory and disk caps on
  where this machine has them (run.json says which);
- B (baseline): the same command with `SUBKIT_SANDBOX=none` and `SUBKIT_KERNEL_CAPS=off`
  (the path without isolation and without the caps).

Target: median(A) <= 1.05 x median(B) + 0.5 s (the sandbox's start-up). Also measured: the
start-up alone (`Sandbox.run(["true"])` sandboxed against unsandboxed, 20 interleaved
rounds; with bubblewrap also without the caps), the child's time on subkit's clock and its
peak memory on both sides.

    python benchmarks/bench_sandbox.py            # writes benchmarks/results/sandbox.md
    python benchmarks/bench_sandbox.py --quick    # 300 images, 2 rounds, no result file
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
from bench_score_local import setup

SLOPE, STARTUP_S = 1.05, 0.5


def startup_rounds(rounds: int) -> dict[str, list[float]]:
    """Seconds of Sandbox.run(["true"]) with bubblewrap and the caps, bubblewrap without
    them, and neither."""
    import os

    from subkit.grader import cgroup, diskcap, sandbox

    work = Path(tempfile.mkdtemp(prefix="subkit-bench-box-"))
    out: dict[str, list[float]] = {"bubblewrap": [], "bubblewrap, no caps": [], "none": []}
    try:
        for _ in range(rounds):
            for key in out:
                mode = key.split(",")[0]
                if key != "bubblewrap":
                    os.environ[cgroup.CAPS_ENV] = "off"
                diskcap._STATE = None
                box = sandbox.Sandbox(sandbox.Limits(), mode=mode)
                os.environ.pop(cgroup.CAPS_ENV, None)
                caps = (box.memory_cap, box.disk_cap)
                if key == "bubblewrap" and caps != (True, True):
                    raise SystemExit(f"the caps are not available here: {box.caps()}")
                box.bind(work, "/app/output", writable=True)
                t = time.perf_counter()
                r = box.run(["true"], cwd=work, log_dir=work / "logs", time_limit=30)
                out[key].append(time.perf_counter() - t)
                box.close()
                if r.returncode != 0:
                    raise SystemExit(f"`true` failed in mode {key}: {r.tail()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    args, run, work, p = setup(argv, "bench_sandbox.py", __doc__)
    cmd = [sys.executable, "-m", "subkit", "score-local", str(Path("submissions") / p["zip"].name),
           "--data", "test.npz", "--json", "--env", args.env]
    res: dict[str, list[dict]] = {"A": [], "B": []}

    def runner(key: str, mode: str):
        def go() -> None:
            r = C.timed_process(cmd, cwd=p["ws"], env={"SUBKIT_SANDBOX": mode, **(
                {"SUBKIT_KERNEL_CAPS": "off"} if mode == "none" else {})})
            if r["rc"] != 0:
                raise SystemExit(f"score-local ({mode}) failed ({r['rc']}):\n"
                                 f"{r['stdout'][-2000:]}\n{r['stderr'][-3000:]}")
            r["json"] = json.loads(r["stdout"])
            res[key].append(r)
        return go

    print("warm-up ...", flush=True)
    runner("A", "bwrap")()
    runner("B", "none")()
    res = {"A": [], "B": []}
    C.interleave({"A: sandboxed": runner("A", "bwrap"), "B: no sandbox": runner("B", "none")},
                 args.repeat)
    boot = startup_rounds(5 if args.quick else 20)
    run.finish()

    A, B = res["A"], res["B"]
    assert all(r["json"]["sandbox"]["isolated"] for r in A)
    assert not any(r["json"]["sandbox"]["isolated"] for r in B)
    caps_a = {(r["json"]["sandbox"].get("memory_capped"), r["json"]["sandbox"].get("disk_capped"))
              for r in A}
    assert not any(r["json"]["sandbox"].get("memory_capped") for r in B)
    ta, tb = [r["wall"] for r in A], [r["wall"] for r in B]
    ma, mb = C.med(ta), C.med(tb)
    budget = SLOPE * mb + STARTUP_S
    ratio = ma / mb
    child_a = [r["json"]["timings"]["child_s"] for r in A]
    child_b = [r["json"]["timings"]["child_s"] for r in B]
    rss_a = [r["json"]["peak_rss_mb"] for r in A]
    rss_b = [r["json"]["peak_rss_mb"] for r in B]
    boot_a, boot_b = C.med(boot["bubblewrap"]), C.med(boot["none"])
    boot_nc = C.med(boot["bubblewrap, no caps"])
    scores = {r["json"]["score"] for r in A + B}

    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    for ln in run.header("Benchmark: score-local in the sandbox with the kernel's caps against "
                         "the same run without either (issues 11, 20)",
                         ("tensorflow", "keras", "numpy")):
        say(ln)
    say(f"Data and model as in `bench_score_local.py`: {args.n} synthetic images, "
        f"EfficientNetV2B0-sized ({p['params']:,} parameters), template model.py with "
        "`TTA = False`. The same interpreter runs subkit and the child on both sides; "
        f"{args.repeat} interleaved rounds after one untimed warm-up of each.")
    say()
    say(f"- A: `SUBKIT_SANDBOX=bwrap python -m subkit score-local ZIP --data test.npz --json "
        f"--env {args.env}` (the child in "
        f"{'the grader venv' if args.env == 'grader' else 'this interpreter'}; memory cgroup "
        f"and disk cap (memory_capped, disk_capped) = {sorted(caps_a)})")
    say("- B: the same with `SUBKIT_SANDBOX=none SUBKIT_KERNEL_CAPS=off`")
    say()
    say("| | A: sandboxed | B: no sandbox |")
    say("|---|---:|---:|")
    say(f"| wall s, median (min-max) | {ma:.2f} ({min(ta):.2f}-{max(ta):.2f}) | "
        f"{mb:.2f} ({min(tb):.2f}-{max(tb):.2f}) |")
    say(f"| the child on subkit's clock, s (median) | {C.med(child_a):.2f} | "
        f"{C.med(child_b):.2f} |")
    say(f"| the child's peak RSS, MB (median) | {C.med(rss_a):.0f} | {C.med(rss_b):.0f} |")
    say(f"| `Sandbox.run([\"true\"])`, ms (median of {len(boot['none'])}) | {1000 * boot_a:.0f} | "
        f"{1000 * boot_b:.0f} |")
    say(f"| the same, bubblewrap without the caps, ms | {1000 * boot_nc:.0f} | |")
    say()
    say(f"**A = {ma:.2f} s against the budget {SLOPE:g} x B + {STARTUP_S:g} s = {budget:.2f} s**: "
        f"{C.verdict(ma <= budget)} (A / B = {ratio:.3f}x; median of per-round ratios "
        f"{C.med(C.paired_ratios(ta, tb)):.3f}x). The sandbox's own start-up (namespaces, "
        f"mounts, uid map, `timeout`, `setpriv`, `prlimit`, the cgroup, the tmpfs and overlays) "
        f"costs {1000 * (boot_a - boot_b):.0f} ms over a plain child, of which the caps "
        f"{1000 * (boot_a - boot_nc):.0f} ms.")
    say()
    say(f"Scores: {sorted(scores)} (the same predictions on both sides).")
    if not args.quick:
        path = C.write_result("sandbox", lines)
        print(f"\nwrote {path}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ma <= budget else 1


if __name__ == "__main__":
    sys.exit(main())
