"""Benchmark: duplicate finding of `subkit data` (issue 4).

Measured in one run, on synthetic blood-cell-like images laid out like the reference
training set (13,759 images of 96x96x3 uint8, 1,800 of them byte-identical copies of a few
joke images):

1. ours (``subkit.data.duplicates``: perceptual hashes of the whole array + near-duplicate
   grouping) against the ``imagehash`` library's per-image ``phash`` loop (PIL), the way
   students did it;
2. ours at ~14k against ~56k images: near-linear growth, not quadratic.

The images: a base of synthetic cells (about 8 ms each to generate), each in up to 32
variants (the 8 rotations/flips times 4 translations) with +-2 noise, so that no two
clean images are byte-identical; plus the joke copies. Timings of ours are the median of
``--repeat`` runs (14k and 56k interleaved); the imagehash loop runs once over all images.

    python benchmarks/bench_hashing.py            # prints, and writes benchmarks/results/hashing.md
    python benchmarks/bench_hashing.py --no-write
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from subkit.data import duplicates as D
from subkit.data import synthetic

REFERENCE_N, REFERENCE_DUPS = 13_759, 1_800
RESULTS = Path(__file__).parent / "results" / "hashing.md"


def variants(base: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    out, v = [], 0
    total = 0
    while total < n:
        y = np.rot90(base, v % 4, axes=(1, 2))
        if (v // 4) % 2:
            y = y[:, :, ::-1]
        shift = 24 * ((v // 8) % 4)
        if shift:
            y = np.roll(y, (shift, shift), axis=(1, 2))
        out.append(y)
        total += len(y)
        v += 1
        if v >= 32:
            raise SystemExit(f"base too small for {n} distinct images")
    y = np.concatenate(out)[:n].astype(np.int16)
    y += rng.integers(-2, 3, y.shape, dtype=np.int16)
    return np.clip(y, 0, 255).astype(np.uint8)


def make_set(base: np.ndarray, jokes: np.ndarray, scale: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n_dup = REFERENCE_DUPS * scale
    clean = variants(base, REFERENCE_N * scale - n_dup, rng)
    copies = jokes[rng.integers(0, len(jokes), n_dup)]
    images = np.concatenate([clean, copies])
    return images[rng.permutation(len(images))]


def ours(images: np.ndarray, near: int) -> dict[str, float]:
    t0 = time.perf_counter()
    hashes, features = D.perceptual(images)
    t1 = time.perf_counter()
    exact = D.exact_groups(images)
    t2 = time.perf_counter()
    groups = D.near_groups(hashes, near, features=features, min_similarity=D.DEFAULT_SIMILARITY,
                           same=D.group_index(exact, len(images)))
    t3 = time.perf_counter()
    return {"phash": t1 - t0, "exact": t2 - t1, "group": t3 - t2,
            "phash+group": (t1 - t0) + (t3 - t2), "all": t3 - t0,
            "n_groups": len(groups), "n_in_groups": int(sum(map(len, groups))),
            "n_exact": len(exact), "n_in_exact": int(sum(map(len, exact))),
            "hashes": hashes}


def median_of(runs: list[dict]) -> dict[str, float]:
    out = {k: statistics.median(r[k] for r in runs) for k in ("phash", "exact", "group",
                                                              "phash+group", "all")}
    out.update({k: runs[0][k] for k in ("n_groups", "n_in_groups", "n_exact", "n_in_exact",
                                        "hashes")})
    return out


def imagehash_loop(images: np.ndarray) -> tuple[float, np.ndarray]:
    import imagehash
    from PIL import Image

    t0 = time.perf_counter()
    hs = [imagehash.phash(Image.fromarray(x)) for x in images]
    dt = time.perf_counter() - t0
    return dt, np.array([int(str(h), 16) for h in hs], np.uint64)


def machine() -> str:
    uname = subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip()
    load = ""
    if os.path.exists("/proc/loadavg"):
        load = Path("/proc/loadavg").read_text().split()[:3]
        load = f"; load average at start {' '.join(load)}"
    import imagehash
    import PIL

    return (f"{uname}\nnproc {os.cpu_count()}; Python {platform.python_version()}, numpy "
            f"{np.__version__}, imagehash {imagehash.__version__}, Pillow {PIL.__version__}{load}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", type=int, default=1750, help="synthetic base images (8 ms each)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--near", type=int, default=D.DEFAULT_NEAR)
    ap.add_argument("--no-write", action="store_true", help="only print")
    args = ap.parse_args(argv)

    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    started = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    mach = machine()
    t = time.perf_counter()
    base = synthetic.generate(args.base, seed=7, duplicates=0)["images"]
    # a few distinct joke images (generate() draws the copies at random: keep the distinct)
    jokes = synthetic.generate(0, seed=8, duplicates=64, n_joke_images=4)["images"]
    jokes = np.unique(jokes, axis=0)
    gen = time.perf_counter() - t
    x14 = make_set(base, jokes, 1)
    x56 = make_set(base, jokes, 4, seed=1)

    # warm up (first-call costs: BLAS threads, page faults) on a slice
    ours(x14[:2000], args.near)

    # interleaved, so that other load on the machine falls on both sizes alike
    runs14, runs56 = [], []
    for i in range(args.repeat):
        runs14.append(ours(x14, args.near))
        if i == 0:
            ih_time, ih_hashes = imagehash_loop(x14)
        runs56.append(ours(x56, args.near))
    r14, r56 = median_of(runs14), median_of(runs56)
    agree = D.hamming(r14["hashes"], ih_hashes)
    pairs14 = sum(len(a) for a, _ in D.candidate_pairs(np.unique(r14["hashes"]), args.near))
    pairs56 = sum(len(a) for a, _ in D.candidate_pairs(np.unique(r56["hashes"]), args.near))

    say("# Benchmark: duplicate finding (`subkit data`, issue 4)")
    say()
    say(f"Run {started} with `python benchmarks/bench_hashing.py` (base {args.base} synthetic "
        f"images generated in {gen:.0f} s; near = Hamming distance <= {args.near}, "
        f"similarity >= {D.DEFAULT_SIMILARITY}).")
    say()
    say("Machine:")
    say()
    say("```")
    for ln in mach.splitlines():
        say(ln)
    say("```")
    say()
    say(f"## 1. Ours against the imagehash phash loop, {len(x14):,} images of 96x96x3")
    say()
    say("| | seconds | images/s |")
    say("|---|---:|---:|")
    say(f"| imagehash: `phash(Image.fromarray(x))` per image (one run) | {ih_time:.2f} | "
        f"{len(x14) / ih_time:,.0f} |")
    say(f"| ours: perceptual hashes, whole array | {r14['phash']:.3f} | "
        f"{len(x14) / r14['phash']:,.0f} |")
    say(f"| ours: near-duplicate grouping (banded, {pairs14:,} candidate pairs) | "
        f"{r14['group']:.3f} | |")
    say(f"| ours: **perceptual hashes + grouping** | **{r14['phash+group']:.3f}** | "
        f"{len(x14) / r14['phash+group']:,.0f} |")
    say(f"| ours: exact (byte) hashes and groups | {r14['exact']:.3f} | |")
    say(f"| ours: everything (`duplicates.find`) | {r14['all']:.3f} | |")
    say()
    say(f"**Speed-up, perceptual hashing + near-duplicate grouping against the imagehash loop "
        f"(which does not even group): {ih_time / r14['phash+group']:.1f}x** "
        f"(everything, exact hashing included: {ih_time / r14['all']:.1f}x). "
        f"Target: at least 10x.")
    say()
    say(f"Found {r14['n_exact']} exact-duplicate groups holding {r14['n_in_exact']:,} images "
        f"(the {REFERENCE_DUPS:,} injected copies of {len(jokes)} joke images) and "
        f"{r14['n_groups']} near-duplicate groups holding {r14['n_in_groups']:,} images. "
        f"Agreement with imagehash on the same images: mean Hamming "
        f"distance {agree.mean():.2f} bits (median {np.median(agree):.0f}, 99th percentile "
        f"{np.percentile(agree, 99):.0f}; same bit order, a different resize filter).")
    say()
    say(f"## 2. Scaling: {len(x14):,} against {len(x56):,} images "
        f"({len(x56) / len(x14):.2f}x as many)")
    say()
    say("| | 14k s | 56k s | ratio |")
    say("|---|---:|---:|---:|")
    for key, label in (("phash", "perceptual hashes"), ("group", "near-duplicate grouping"),
                       ("phash+group", "**hashes + grouping**"), ("exact", "exact hashes"),
                       ("all", "everything")):
        say(f"| {label} | {r14[key]:.3f} | {r56[key]:.3f} | {r56[key] / r14[key]:.2f}x |")
    say(f"| candidate pairs compared (not n^2/2: {len(x14) ** 2 // 2:,} / {len(x56) ** 2 // 2:,}) "
        f"| {pairs14:,} | {pairs56:,} | {pairs56 / max(1, pairs14):.2f}x |")
    say()
    ratio = r56["phash+group"] / r14["phash+group"]
    k = len(x56) / len(x14)
    say(f"Linear growth would be {k:.2f}x, quadratic {k * k:.1f}x; measured {ratio:.2f}x for "
        f"hashes + grouping. The candidate pairs of the banded search grow faster than n (a "
        f"bucket's size grows with n), but each costs a few vectorized integer operations: "
        f"grouping stays a small share of the time, which hashing (linear) dominates.")
    say()
    say(f"56k set: {r56['n_exact']} exact-duplicate groups ({r56['n_in_exact']:,} images), "
        f"{r56['n_groups']} near-duplicate groups ({r56['n_in_groups']:,} images).")
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        tmp = RESULTS.with_suffix(".md.tmp")
        tmp.write_text("\n".join(lines) + "\n", "utf-8")
        os.replace(tmp, RESULTS)
        print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
