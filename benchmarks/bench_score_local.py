"""Benchmark: `subkit score-local` against a bare prediction script (issues 3 and 12).

Issue 12 (the default, `--env grader`): score-local runs the submission in the grader's
versions (the cached environment of the profile, keras 3.4.1 + tensorflow 2.17.0 on Python
3.10), so the baseline is the bare script run by that environment's interpreter, on the
weights rewritten for keras 3.4.1 (what `subkit build` puts in the zip); target 1.10x.
`--env current` measures the issue-3 pair (this interpreter on both sides; target 1.15x).

2,000 synthetic images (`subkit.data.synthetic.generate(2000, seed=0)`, saved as an npz with
keys images/labels) and an EfficientNetV2B0-sized model (`weights=None`, ~6M parameters,
saved as weights.keras), zipped with the template model.py with `TTA = False` so that both
sides do the same work (one forward pass per image). In a temporary workspace made by
`subkit init`, interleaved (A B A B ...), medians:

- A: `subkit score-local ZIP --data test.npz --json`, run as
  `python -c "from subkit.__main__ import run; ..." score-local ...` (what `python -m subkit`
  does, plus printing the parent's own getrusage peak to stderr) under `/usr/bin/time -v`;
- B (baseline): a bare script in a fresh interpreter: import TensorFlow/Keras, np.load the
  npz, `keras.saving.load_model(weights.keras, compile=False)`, `model.predict(images)`,
  argmax; under `/usr/bin/time -v`.

Targets: wall time A/B under 1.15x; peak memory under 1.2x. Peak memory of score-local:
the submission runs in a child process; score-local's JSON reports that child's peak
(`peak_rss_mb`, from the kernel's rusage of the reaped child), which is compared with the
bare script's peak. `/usr/bin/time -v` on A reports max(parent, child) (ru_maxrss of a
reaped process includes its reaped children); the parent's own peak is printed by the
wrapper.

    python benchmarks/bench_score_local.py            # writes benchmarks/results/score_local.md
    python benchmarks/bench_score_local.py --quick    # 300 images, 2 rounds, no result file
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

CACHE = Path("/tmp/subkit-bench-score")
TIME_TARGETS, MEM_TARGET = {"grader": 1.10, "current": 1.15}, 1.2

MAKE_MODEL = r"""
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras
net = keras.applications.EfficientNetV2B0(weights=None, input_shape=(96, 96, 3), classes=8)
net.save(sys.argv[1] + ".tmp.keras")
os.replace(sys.argv[1] + ".tmp.keras", sys.argv[1])
print(net.count_params())
"""

BARE = r"""
import json, sys, time
t0 = time.perf_counter()
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
import keras
t1 = time.perf_counter()
data = np.load(sys.argv[2])
images = data["images"]
t2 = time.perf_counter()
model = keras.saving.load_model(sys.argv[1], compile=False)
t3 = time.perf_counter()
labels = np.argmax(model.predict(images, verbose=0), axis=-1)
t4 = time.perf_counter()
np.save(sys.argv[3], labels)
print(json.dumps({"import_s": t1 - t0, "load_data_s": t2 - t1, "load_model_s": t3 - t2,
                  "predict_s": t4 - t3}))
"""

WRAPPER = r"""
import resource, sys
from subkit.__main__ import run
rc = run(sys.argv[1:])
sys.stdout.flush()
print("PARENT_MAXRSS_KB %d" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(rc)
"""


def grader_python() -> str:
    from subkit import profile
    from subkit.errors import SubkitError
    from subkit.grader import environment

    try:
        return str(environment.ensure_env(profile.load("an2dl-2024-blood-cells",
                                                       workspace=False), create=False))
    except SubkitError as exc:
        raise SystemExit(f"{exc.message}; {exc.hint}") from None


def for_grader(weights: Path, python: str) -> Path:
    """The weights rewritten for the grader's keras (and verified there), cached."""
    from subkit import keras_compat

    out = CACHE / "weights-grader.keras"
    if not out.exists():
        print(f"rewriting {weights.name} for keras 3.4.1 ...", flush=True)
        keras_compat.retarget(weights, out, "3.4.1", env_python=python)
    return out


def prepare(n: int, work: Path, env: str) -> dict:
    CACHE.mkdir(parents=True, exist_ok=True)
    weights = CACHE / "weights.keras"
    if not weights.exists():
        print(f"making {weights} ...", flush=True)
        r = C.timed_process([sys.executable, "-c", MAKE_MODEL, str(weights)], time_v=False)
        if r["rc"]:
            raise SystemExit(r["stderr"][-3000:])
        (CACHE / "params.txt").write_text(r["stdout"].strip().splitlines()[-1])
    python = grader_python() if env == "grader" else sys.executable
    if env == "grader":
        weights = for_grader(weights, python)
    params = int((CACHE / "params.txt").read_text())
    data = CACHE / f"test-{n}.npz"
    if not data.exists():
        import numpy as np

        from subkit.data.synthetic import generate

        print(f"generating {n} synthetic images ...", flush=True)
        d = generate(n, seed=0)
        np.savez(str(data) + ".tmp.npz", images=d["images"], labels=d["labels"])
        Path(str(data) + ".tmp.npz").replace(data)
    ws = work / "ws"
    r = subprocess.run([sys.executable, "-m", "subkit", "init", str(ws)], capture_output=True,
                       text=True)
    if r.returncode:
        raise SystemExit(f"subkit init failed: {r.stderr}")
    source = (ws / "model.py").read_text()
    source, k = re.subn(r"^TTA = True$", "TTA = False", source, count=1, flags=re.M)
    if k != 1:
        raise SystemExit("the template's `TTA = True` line was not found")
    zp = ws / "submissions" / "bench-tta-off.zip"
    with zipfile.ZipFile(zp, "w") as zf:
        zf.writestr("model.py", source, compress_type=zipfile.ZIP_DEFLATED)
        zf.write(weights, "weights.keras", compress_type=zipfile.ZIP_STORED)
    shutil.copy(data, ws / "test.npz")
    return {"ws": ws, "zip": zp, "data": ws / "test.npz", "weights": weights, "params": params,
            "python": python}


def setup(argv: list[str] | None, script: str, doc: str):
    """The options every score-local benchmark takes, its Run, a work folder and prepare()."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="synthetic test images")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="300 images, 2 rounds, no result file")
    ap.add_argument("--env", choices=["grader", "current"], default="grader",
                    help="versions of score-local's child and of the bare script")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.repeat = 300, 2
    run = C.Run(script, sys.argv[1:] if argv is None else argv)
    work = Path(tempfile.mkdtemp(prefix=f"subkit-bench-{Path(script).stem}-"))
    return args, run, work, prepare(args.n, work, args.env)


def main(argv: list[str] | None = None) -> int:
    args, run, work, p = setup(argv, "bench_score_local.py", __doc__)
    TIME_TARGET = TIME_TARGETS[args.env]
    ws, py = p["ws"], sys.executable
    a_cmd = [py, "-c", WRAPPER, "score-local", str(Path("submissions") / p["zip"].name),
             "--data", "test.npz", "--json", "--env", args.env]
    b_cmd = [p["python"], "-c", BARE, str(p["weights"]), "test.npz",
             str(work / "bare-labels.npy")]

    res: dict[str, list[dict]] = {"A": [], "B": []}

    def run_a() -> None:
        r = C.timed_process(a_cmd, cwd=ws)
        if r["rc"] != 0:
            raise SystemExit(f"score-local failed ({r['rc']}):\n{r['stdout'][-2000:]}\n"
                             f"{r['stderr'][-3000:]}")
        out = json.loads(r["stdout"])
        m = re.search(r"PARENT_MAXRSS_KB (\d+)", r["stderr"])
        r["parent_rss_mb"] = int(m.group(1)) / 1024 if m else None
        r["json"] = out
        res["A"].append(r)

    def run_b() -> None:
        r = C.timed_process(b_cmd, cwd=ws)
        if r["rc"] != 0:
            raise SystemExit(f"bare script failed ({r['rc']}):\n{r['stderr'][-3000:]}")
        r["json"] = json.loads(r["stdout"].strip().splitlines()[-1])
        res["B"].append(r)

    print("warm-up (page cache, .pyc files, unshare probe) ...", flush=True)
    run_a()
    run_b()
    res = {"A": [], "B": []}
    C.interleave({"A: subkit score-local": run_a, "B: bare script": run_b}, args.repeat)
    run.finish()

    A, B = res["A"], res["B"]
    ta, tb = [r["wall"] for r in A], [r["wall"] for r in B]
    ratio = C.med(ta) / C.med(tb)
    paired = C.med(C.paired_ratios(ta, tb))
    child = [r["json"]["peak_rss_mb"] for r in A]
    tree = [r["peak_rss_mb"] for r in A]
    parent = [r["parent_rss_mb"] for r in A]
    bare = [r["peak_rss_mb"] for r in B]
    mem_ratio = C.med(child) / C.med(bare)
    tree_ratio = C.med(tree) / C.med(bare)

    import numpy as np

    last = A[-1]["json"]
    sub_labels = np.load(Path(last["run_dir"]) / "output" / "labels.npy")
    bare_labels = np.load(work / "bare-labels.npy")
    agree = float(np.mean(sub_labels == bare_labels))

    def tmed(rows, key):
        vals = [r["json"]["timings"].get(key) for r in rows]
        vals = [v for v in vals if v is not None]
        return C.med(vals) if vals else float("nan")

    def bmed(key):
        return C.med([r["json"][key] for r in B])

    parent_overhead = C.med([r["wall"] - r["json"]["timings"]["child_s"] for r in A])

    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    for ln in run.header(
            "Benchmark: `subkit score-local` against a bare script "
            f"({'issue 12: the grader' if args.env == 'grader' else 'issue 3: the current'}"
            "'s versions)", ("tensorflow", "keras", "numpy")):
        say(ln)
    env = last_env = A[-1]["json"]["env"]
    say(f"The submission's child and the bare script both ran in: python "
        f"{env.get('python_version')}, tensorflow {env.get('tensorflow')}, keras "
        f"{env.get('keras')}, numpy {env.get('numpy')} (`{p['python']}`; score-local "
        f"`--env {args.env}`, its summary: {last_env.get('name')}).")
    say()
    say(f"Data: `subkit.data.synthetic.generate({args.n}, seed=0)` saved as an npz (images "
        f"uint8 ({args.n}, 96, 96, 3), labels). Model: `keras.applications.EfficientNetV2B0("
        f"weights=None, input_shape=(96, 96, 3), classes=8)`, {p['params']:,} parameters, "
        f"saved as weights.keras ({p['weights'].stat().st_size / 1e6:.1f} MB), zipped with the "
        "template model.py with its settings line changed to `TTA = False` (one view: the "
        "same work as the bare script). A temporary workspace from `subkit init`; runs land "
        "in its submissions/runs/.")
    say()
    say(f"{args.repeat} rounds, A and B interleaved (order alternating), after one untimed "
        "warm-up of each; both under `/usr/bin/time -v`, cwd the workspace:")
    say()
    say(f"- A: `python -m subkit score-local submissions/{p['zip'].name} --data test.npz "
        "--json` (through a 4-line wrapper calling `subkit.__main__.run`, which prints the "
        "parent's own `getrusage(RUSAGE_SELF)` peak)")
    say(f"- B: `{'GRADER_ENV/bin/python' if args.env == 'grader' else 'python'} -c BARE "
        f"{p['weights'].name} test.npz` — import numpy/tensorflow/keras, "
        "`np.load`, `keras.saving.load_model(compile=False)`, `model.predict(images)` "
        "(batch 32), argmax, save the labels")
    say()
    say("| | median | min | max |")
    say("|---|---:|---:|---:|")
    say(f"| A: score-local wall s | {C.med(ta):.2f} | {min(ta):.2f} | {max(ta):.2f} |")
    say(f"| B: bare script wall s | {C.med(tb):.2f} | {min(tb):.2f} | {max(tb):.2f} |")
    say(f"| A: child's peak RSS MB (score-local's `peak_rss_mb`) | {C.med(child):.0f} | "
        f"{min(child):.0f} | {max(child):.0f} |")
    say(f"| A: parent's own peak RSS MB (getrusage self) | {C.med(parent):.0f} | "
        f"{min(parent):.0f} | {max(parent):.0f} |")
    say(f"| A: `/usr/bin/time -v` max RSS MB (max of parent and child) | {C.med(tree):.0f} | "
        f"{min(tree):.0f} | {max(tree):.0f} |")
    say(f"| B: bare script's peak RSS MB | {C.med(bare):.0f} | {min(bare):.0f} | "
        f"{max(bare):.0f} |")
    say()
    say(f"**Wall time A / B: {ratio:.3f}x** (ratio of medians; median of per-round ratios "
        f"{paired:.3f}x). Target: under {TIME_TARGET:g}x: {C.verdict(ratio < TIME_TARGET)}.")
    say()
    say(f"**Peak memory, score-local's child / bare script: {mem_ratio:.3f}x**. Target: under "
        f"{MEM_TARGET:g}x: {C.verdict(mem_ratio < MEM_TARGET)}. The parent alone peaks at "
        f"{C.med(parent):.0f} MB ({C.med(parent) / C.med(bare):.2f}x the bare script); the "
        f"two processes are alive at the same time, so the sum, an upper bound of the "
        f"tree's simultaneous use, is {C.med(child) + C.med(parent):.0f} MB "
        f"({(C.med(child) + C.med(parent)) / C.med(bare):.2f}x); `time -v`'s max(parent, "
        f"child) is {tree_ratio:.2f}x.")
    say()
    say("## Where the time goes (medians)")
    say()
    say("| score-local | s | bare script | s |")
    say("|---|---:|---:|---:|")
    say(f"| parent: start, load npz, write X.npy, unzip, score, ledger (wall - child) | "
        f"{parent_overhead:.2f} | | |")
    say(f"| child: np.load X.npy | {tmed(A, 'load_input_s'):.2f} | np.load npz | "
        f"{bmed('load_data_s'):.2f} |")
    say(f"| child: import model.py (numpy) | {tmed(A, 'import_s'):.2f} | import tensorflow, "
        f"keras | {bmed('import_s'):.2f} |")
    say(f"| child: `Model()` (imports TF, loads the model) | {tmed(A, 'init_s'):.2f} | "
        f"load_model | {bmed('load_model_s'):.2f} |")
    say(f"| child: `predict(X)` | {tmed(A, 'predict_s'):.2f} | model.predict + argmax | "
        f"{bmed('predict_s'):.2f} |")
    say(f"| child: process (from spawn to reaped) | {tmed(A, 'child_s'):.2f} | | |")
    say()
    say(f"Labels of score-local (run {Path(last['run_dir']).name}) and of the bare script agree "
        f"on {100 * agree:.2f}% of the {len(bare_labels)} images (float noise can flip "
        f"near-ties of an untrained network). Accuracy reported by score-local: "
        f"{last.get('score')}.")
    if not args.quick:
        path = C.write_result("score_local" if args.env == "current" else "score_local_grader",
                              lines)
        print(f"\nwrote {path}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if (ratio < TIME_TARGET and mem_ratio < MEM_TARGET) else 1


if __name__ == "__main__":
    sys.exit(main())
