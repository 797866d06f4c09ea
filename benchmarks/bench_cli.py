"""Benchmark: CLI start-up (issue 3).

`python -m subkit --help` against the floor any click CLI pays, `python -c "import click"`,
both as fresh subprocesses, interleaved (A B A B ...), 15 runs each by default; the median
ratio must stay under 2x. Also checks that `import subkit` and `subkit --help` (and the
`--help` of every command) never import TensorFlow/Keras, by looking at `sys.modules` in a
fresh interpreter, and lists the slowest imports of `--help` from `python -X importtime`.

    python benchmarks/bench_cli.py            # prints, writes benchmarks/results/cli.md
    python benchmarks/bench_cli.py --quick    # 3 runs each, no result file
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

TARGET = 2.0
HEAVY = ("tensorflow", "keras", "jax", "torch", "h5py", "numpy", "requests", "tqdm", "PIL")

PROBE = r"""
import json, sys
what = sys.argv[1]
if what == "import":
    import subkit
    rc = 0
else:
    from subkit.__main__ import run
    import contextlib, io
    with contextlib.redirect_stdout(io.StringIO()):
        rc = run(what.split() + ["--help"])
heavy = %r
print("PROBE " + json.dumps({"rc": rc, "loaded": [m for m in heavy if m in sys.modules],
                             "n_modules": len(sys.modules)}))
""" % (HEAVY,)


def one(cmd: list[str]) -> float:
    t = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.decode()[-2000:]}")
    return dt


def commands() -> list[str]:
    """Every command path of the CLI ('' is the group itself), without importing TF."""
    import click

    from subkit.cli import main as group

    out = [""]

    def walk(cmd: click.Command, path: list[str]) -> None:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(click.Context(cmd)):
                sub = cmd.get_command(click.Context(cmd), name)
                if sub is None:
                    continue
                out.append(" ".join(path + [name]))
                walk(sub, path + [name])

    walk(group, [])
    return out


def probe(what: str) -> dict:
    p = subprocess.run([sys.executable, "-c", PROBE, what], capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.startswith("PROBE "):
            return json.loads(line[6:])
    return {"rc": p.returncode, "loaded": ["?"], "error": p.stderr[-500:]}


def importtime(n_top: int = 12) -> tuple[list[tuple[int, str]], int, list[str]]:
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "subkit", "--help"],
                       capture_output=True, text=True, env=dict(os.environ))
    rows = []
    for line in p.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        try:
            self_us, cum_us, name = line[len("import time:"):].split("|", 2)
            rows.append((int(cum_us), int(self_us), name[1:]))  # nesting kept as indentation
        except ValueError:
            continue
    top_level = [(cum, name.strip()) for cum, _s, name in rows if not name.startswith(" ")]
    top_level.sort(reverse=True)
    total = sum(c for c, _ in top_level)
    names = [name.strip() for _c, _s, name in rows]
    return top_level[:n_top], total, names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="3 runs each, no result file")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeat = 3
    run = C.Run("bench_cli.py", sys.argv[1:] if argv is None else argv)
    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    py = sys.executable
    subkit_cmd = [py, "-m", "subkit", "--help"]
    click_cmd = [py, "-c", "import click"]
    bare_cmd = [py, "-c", "pass"]
    # warm the page cache and .pyc files of both (not timed)
    for cmd in (subkit_cmd, click_cmd, bare_cmd):
        one(cmd)
    times = C.interleave({"subkit --help": lambda: one(subkit_cmd),
                          "import click": lambda: one(click_cmd),
                          "python -c pass": lambda: one(bare_cmd)},
                         args.repeat, say=lambda s: print(s, flush=True))
    s, c, b = (times["subkit --help"], times["import click"], times["python -c pass"])
    ratio = C.med(s) / C.med(c)
    paired = C.med(C.paired_ratios(s, c))

    probes = {"import subkit": probe("import")}
    for path in commands():
        probes[f"subkit {path} --help".replace("  ", " ")] = probe(path)
    top, total_us, all_names = importtime()
    tf_in_importtime = [n for n in all_names if n.split(".")[0] in ("tensorflow", "keras")]
    run.finish()

    for ln in run.header("Benchmark: CLI start-up (`subkit --help`, issue 3)", ("click",)):
        say(ln)
    say(f"Fresh subprocesses, {args.repeat} runs each, interleaved (the three commands in "
        "rotating order each round), after one untimed warm-up run of each.")
    say()
    say("| command | median s | min s | max s |")
    say("|---|---:|---:|---:|")
    for label, xs in (("`python -m subkit --help`", s),
                      ('`python -c "import click"` (baseline)', c),
                      ('`python -c "pass"` (interpreter alone)', b)):
        say(f"| {label} | {C.med(xs):.3f} | {min(xs):.3f} | {max(xs):.3f} |")
    say()
    say(f"**`subkit --help` / `import click`: {ratio:.2f}x** (ratio of medians; median of the "
        f"per-round ratios {paired:.2f}x). Target: under {TARGET:g}x: {C.verdict(ratio < TARGET)}.")
    say()
    above = (C.med(s) - C.med(b)) / max(1e-9, C.med(c) - C.med(b))
    say(f"Above the bare interpreter: subkit --help costs {1000 * (C.med(s) - C.med(b)):.0f} ms, "
        f"import click {1000 * (C.med(c) - C.med(b)):.0f} ms ({above:.1f}x).")
    say()
    say("## TensorFlow is never imported by `import subkit` or any `--help`")
    say()
    say("Each line is a fresh interpreter (`python -c PROBE`) that imports subkit or runs "
        "`subkit.__main__.run([... '--help'])`, then lists which heavy modules are in "
        "`sys.modules`.")
    say()
    say("| what | exit | heavy modules loaded | modules in sys.modules |")
    say("|---|---:|---|---:|")
    any_tf = False
    for what, r in probes.items():
        loaded = r.get("loaded", [])
        any_tf |= any(m in ("tensorflow", "keras", "jax", "torch") for m in loaded)
        say(f"| `{what}` | {r.get('rc')} | {', '.join(loaded) or 'none'} | "
            f"{r.get('n_modules', '?')} |")
    say()
    listed = ("these TF/Keras modules: " + ", ".join(tf_in_importtime[:5])
              if tf_in_importtime else "no tensorflow or keras module")
    say(f"TensorFlow/Keras imported by any of them: **{'YES' if any_tf else 'no'}**; "
        f"`python -X importtime -m subkit --help` lists {listed} "
        f"({len(all_names)} imports in all).")
    say()
    say(f"Slowest top-level imports of `subkit --help` (`-X importtime`, cumulative, one run; "
        f"sum of top-level imports {total_us / 1000:.0f} ms):")
    say()
    say("| module | cumulative ms |")
    say("|---|---:|")
    for cum, name in top:
        say(f"| `{name}` | {cum / 1000:.1f} |")
    if not args.quick:
        path = C.write_result("cli", lines)
        print(f"\nwrote {path}")
    return 0 if (ratio < TARGET and not any_tf) else 1


if __name__ == "__main__":
    sys.exit(main())
