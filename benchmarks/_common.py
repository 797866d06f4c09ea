"""Helpers shared by the benchmark scripts: machine description, interleaved timing,
subprocess timing with peak memory, and writing a result file atomically.

Timing rule of these benchmarks: the machine is shared (2 cores, other jobs), so a figure
is always a ratio against a baseline measured in the same run, the measured and baseline
runs interleaved (A B A B ...), and medians reported. No absolute time is a pass/fail.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def mem_total_gb() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "?"


def versions(*mods: str) -> str:
    out = [f"Python {platform.python_version()}"]
    for m in mods:
        mod = sys.modules.get(m)
        if mod is None:
            try:
                from importlib.metadata import version

                out.append(f"{m} {version(m)}")
            except Exception:
                out.append(f"{m} ?")
        else:
            out.append(f"{m} {getattr(mod, '__version__', '?')}")
    return ", ".join(out)


class Run:
    """What a result file says about the run: date, machine, load at start and end."""

    def __init__(self, script: str, argv: list[str]):
        self.script = script
        self.argv = argv
        self.date = sh(["date", "-u"])
        self.uname = sh(["uname", "-srm"])
        self.nproc = sh(["nproc"])
        self.mem = mem_total_gb()
        self.load_start = loadavg()
        self.load_end = "?"
        self.t0 = time.monotonic()

    def finish(self) -> None:
        self.load_end = loadavg()
        self.elapsed = time.monotonic() - self.t0

    def header(self, title: str, mods: tuple[str, ...] = ()) -> list[str]:
        cmd = " ".join(["python", f"benchmarks/{self.script}"] + self.argv)
        return [
            f"# {title}",
            "",
            f"- date: {self.date}",
            f"- machine: `{self.uname}`, nproc {self.nproc}, memory {self.mem}",
            f"- versions: {versions(*mods)}",
            f"- load average (1/5/15 min) at start: {self.load_start}; at end: {self.load_end}",
            f"- command: `{cmd}` (whole script: {getattr(self, 'elapsed', 0):.0f} s)",
            "",
        ]


def interleave(fns: dict[str, Callable[[], object]], repeat: int,
               say: Callable[[str], None] = print) -> dict[str, list[float]]:
    """Run each fn `repeat` times, round-robin (A B C A B C ...; the order rotates each
    round so no fn always follows the same one). Returns name -> list of seconds."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeat):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            t = time.perf_counter()
            fns[n]()
            dt = time.perf_counter() - t
            times[n].append(dt)
            say(f"  round {r + 1}/{repeat} {n}: {dt:.3f} s")
    return times


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def paired_ratios(num: list[float], den: list[float]) -> list[float]:
    return [a / b for a, b in zip(num, den, strict=True)]


_RSS = re.compile(r"Maximum resident set size \(kbytes\):\s*(\d+)")


def timed_process(cmd: list[str], *, cwd: str | Path | None = None, env: dict | None = None,
                  time_v: bool = True) -> dict:
    """Run cmd; wall seconds, exit code, stdout, and (with /usr/bin/time -v) its peak RSS in MB.

    /usr/bin/time -v reports the maximum RSS of the process it ran (and of its waited-for
    children, whichever is largest: getrusage's ru_maxrss of the reaped process)."""
    full_env = dict(os.environ)
    full_env.update(QUIET_TF)
    if env:
        full_env.update(env)
    use_time = time_v and os.path.exists("/usr/bin/time")
    full = (["/usr/bin/time", "-v"] if use_time else []) + cmd
    t = time.perf_counter()
    p = subprocess.run(full, cwd=cwd, env=full_env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    rss = None
    if use_time:
        m = _RSS.search(p.stderr)
        rss = int(m.group(1)) / 1024 if m else None
    return {"wall": wall, "rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr,
            "peak_rss_mb": rss}


def write_result(name: str, lines: list[str]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.md"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines).rstrip() + "\n")
    os.replace(tmp, path)
    return path


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**MISSED**"
