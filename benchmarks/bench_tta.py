"""Benchmark: test-time augmentation of the template model.py (issue 2).

An EfficientNetV2B0-sized model (`keras.applications.EfficientNetV2B0(weights=None,
input_shape=(96, 96, 3), classes=8)`), saved as weights.keras next to a copy of the
template `src/subkit/templates/model.py` in a temporary folder; 512 uint8 images of
96x96x3; k = 5 views (the template's default TTA_VIEWS). Measured in one process; in each
round (a) runs first and again after every other variant (their order rotating), and a
variant's multiple of (a) is its time over the mean of the two (a) runs around it (the
machine is shared: its load changes within seconds); medians over the rounds:

- (a) one single-view `model.predict(X)` — the unit (k = 1);
- (b) the template: `Model().predict(X)` with 5 views, after one warm-up call on a small
  batch (its first call traces);
- (c) 5 separate `model.predict` calls, one per view, and a mean merge (the reference the
  template must equal, label for label);
- (d) eager `model(x, training=False)` on the 5 views of each 64-image batch stacked;
- (old) the template's previous forward pass: the views of a batch concatenated into one
  model call of BATCH_SIZE * 5 = 320 images (what (b) did before this benchmark);
- the students' per-image loop (5 `model.predict` of one image each, per image) once, on
  32 images, extrapolated to 512.

Target (issue 2): (b) at most 0.85 x k times (a).

    python benchmarks/bench_tta.py              # writes benchmarks/results/tta.md
    python benchmarks/bench_tta.py --quick      # 128 images, 2 rounds, no result file
    python benchmarks/bench_tta.py --profile    # also: pass sizes, map_fn concurrency,
                                                # views unrolled, XLA (slow), no result file
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

TEMPLATE = Path(__file__).resolve().parents[1] / "src" / "subkit" / "templates" / "model.py"
CACHE = Path("/tmp/subkit-bench-tta")
TARGET = 0.85
# numpy equivalents of the template's views (tf.image.rot90 turns counter-clockwise, as
# np.rot90 over the (H, W) axes does)
NP_VIEWS = {
    "identity": lambda x: x,
    "flip_lr": lambda x: x[:, :, ::-1],
    "flip_ud": lambda x: x[:, ::-1],
    "rot90": lambda x: np.rot90(x, 1, axes=(1, 2)),
    "rot180": lambda x: np.rot90(x, 2, axes=(1, 2)),
    "rot270": lambda x: np.rot90(x, 3, axes=(1, 2)),
    "transpose": lambda x: np.transpose(x, (0, 2, 1, 3)),
}

import numpy as np  # noqa: E402

PROFILE_NOTES = """
## Why the template missed the target, and what changed

Until this benchmark the template ran the views of a batch as ONE model call on their
concatenation: BATCH_SIZE x k = 320 images per call. On this 2-core CPU a model call costs
more per image on big batches (activations of 320 images of 96x96 are far out of cache):
in exploratory runs on the same machine and day, the plain model over the same 640 images
took 5.6 / 5.5 / 5.7 / 7.6 s in passes of 16 / 32 / 64 / 128 images, and `model.predict`
with batch_size 320 took twice as long as with 32 (10.4 s against 5.3 s). So the old
forward pass ("(old)" above, measured in the same run) lost most of what one compiled call
per batch saves, and landed at about 0.85-1.0k: at or over the 0.85k target.

The fix (`src/subkit/templates/model.py`, `_forward_impl`): the views of a batch are
stacked, shape (k, BATCH_SIZE, 96, 96, 3), and `tf.map_fn` runs the model on one view at a
time (BATCH_SIZE images per model call), inside the same `tf.function`; the probabilities
are merged as before. Settings, their values and the merge are unchanged; labels equal one
`model.predict` per view plus a mean merge (the check above; `tests/test_template.py`
passes; it was also run under the grader's TensorFlow 2.17 / Keras 3.4.1). Alternatives
profiled (`--profile`; and in a focused run with (a) around each run, 6 rounds: map_fn
0.63k, map_fn with parallel_iterations=2 0.66k, old 0.85k):

- the views unrolled (k model calls written out in the graph): as fast, but the graph
  holds k copies of the model: its first call traced in 10.8 s against 4.6 s for map_fn
  (the grader pays that trace inside its time limit; more on an EfficientNetV2M);
- a smaller concatenated pass (BATCH_SIZE 8: 40 images per call): as fast, but it changes
  the setting's meaning and value;
- `jit_compile=True` (XLA on CPU): 44-67 s to compile, then 4-5x SLOWER per call: no;
- freezing the graph (variables as constants, so Grappler folds the batch normalisations):
  about 15% faster per call, but 40 s to freeze an EfficientNetV2B0 and a private TF API:
  no.
"""


def load_template(folder: Path, weights: Path, name: str):
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(TEMPLATE, folder / "model.py")
    if not (folder / "weights.keras").exists():
        shutil.copy(weights, folder / "weights.keras")
    spec = importlib.util.spec_from_file_location(name, folder / "model.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # as `from model import Model` leaves it (autograph looks it up)
    spec.loader.exec_module(mod)
    return mod


def make_weights(keras) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / "effnetv2b0-96-8.keras"
    if not path.exists():
        net = keras.applications.EfficientNetV2B0(weights=None, input_shape=(96, 96, 3),
                                                  include_top=True, classes=8)
        tmp = path.with_name(".tmp-" + path.name)
        net.save(tmp)
        os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--loop-images", type=int, default=32,
                    help="images of the per-image loop (extrapolated to --n)")
    ap.add_argument("--quick", action="store_true", help="128 images, 2 rounds, no result file")
    ap.add_argument("--profile", action="store_true",
                    help="extra variants of the forward pass; prints, writes no result file")
    ap.add_argument("--xla", action="store_true", help="with --profile: also jit_compile=True")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.repeat, args.loop_images = 128, 2, 8
    run = C.Run("bench_tta.py", sys.argv[1:] if argv is None else argv)

    import keras
    import tensorflow as tf

    weights = make_weights(keras)
    work = Path(tempfile.mkdtemp(prefix="subkit-bench-tta-"))
    T = load_template(work / "submission", weights, "bench_tta_template")
    views = list(T.TTA_VIEWS)
    k = len(views)
    batch = T.BATCH_SIZE
    model = keras.saving.load_model(weights, compile=False)
    n_params = model.count_params()
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (args.n, 96, 96, 3), dtype=np.uint8)

    # numpy views == the template's tf views
    for v in views:
        a = NP_VIEWS[v](X[:3]).astype(np.float32)
        b = T._VIEWS[v](tf.constant(X[:3].astype(np.float32)), tf).numpy()
        assert np.array_equal(a, b), v

    print(f"template: {TEMPLATE}\nviews {views}, BATCH_SIZE {batch}, {args.n} images, "
          f"{n_params:,} parameters", flush=True)

    # -- first calls (cold: includes tracing), informational -----------------------------
    t = time.perf_counter()
    model.predict(X, verbose=0)
    cold_a = time.perf_counter() - t
    t = time.perf_counter()
    tmpl = T.Model()
    cold_init = time.perf_counter() - t
    t = time.perf_counter()
    tmpl.predict(X)
    cold_b = time.perf_counter() - t

    # -- the variants ----------------------------------------------------------------------
    # a fresh instance for the timed runs. Warm-up: one call on a small batch (its first
    # call traces), then one on a full batch: a second input shape makes the tf.function
    # (reduce_retracing=True) trace once more, with the batch dimension relaxed. The
    # grader, calling predict once, pays one trace; the timed runs pay none.
    tmpl = T.Model()
    tmpl.predict(X[:4])
    tmpl.predict(X[:batch])

    def a_single():
        return model.predict(X, verbose=0)

    def b_template():
        return tmpl.predict_proba(X)

    def c_k_predicts():
        return np.mean([model.predict(NP_VIEWS[v](X), verbose=0) for v in views], axis=0)

    def d_eager():
        out = []
        for s in range(0, len(X), batch):
            xb = X[s:s + batch].astype(np.float32)
            st = np.concatenate([NP_VIEWS[v](xb) for v in views])
            y = np.asarray(model(st, training=False))
            out.append(y.reshape(k, len(xb), -1).mean(0))
        return np.concatenate(out)

    class OldConcat(T.Model):
        """The template's forward pass before this benchmark: one model call on the views
        of a batch concatenated (BATCH_SIZE * k images)."""

        def _forward_impl(self, x):
            tf_ = self.tf
            n = tf_.shape(x)[0]
            stacked = tf_.concat([T._VIEWS[v](x, tf_) for v in self.views], axis=0)
            y = self._to_probabilities(tf_.cast(self.models[0](stacked, training=False),
                                                tf_.float32))
            return tf_.reduce_mean(tf_.reshape(y, [len(self.views), n, -1]), axis=0)

    old = OldConcat()
    old.predict(X[:4])
    old.predict(X[:batch])

    fns = {"(a) model.predict, 1 view": a_single, "(b) template Model().predict": b_template,
           "(c) 5 x model.predict + mean": c_k_predicts, "(d) eager, stacked views": d_eager,
           "(old) template before: one call on 320": lambda: old.predict_proba(X)}

    extra = {}
    if args.profile:
        extra = profile_variants(T, tf, X, batch, args.xla)
        fns.update(extra)

    # warm-up of (a), (c), (d): keras' predict_function traces on its first call (and
    # once more, relaxed, on a second batch shape)
    model.predict(X[:4], verbose=0)
    model.predict(X[:40], verbose=0)
    for v in views[:1]:
        model.predict(NP_VIEWS[v](X[:4]), verbose=0)
    model(X[:2].astype(np.float32), training=False)

    # Timing: (a) runs before the first variant and again after every variant; each
    # variant's multiple of (a) is taken against the mean of the two (a) runs around it,
    # so that a change of the machine's load between runs falls on both alike.
    names = list(fns)
    a_name = names[0]
    others = names[1:]
    times: dict[str, list[float]] = {n: [] for n in names}
    mult: dict[str, list[float]] = {n: [] for n in others}
    outputs: dict[str, np.ndarray] = {}

    def timed(name):
        t = time.perf_counter()
        out = fns[name]()
        dt = time.perf_counter() - t
        outputs[name] = out
        times[name].append(dt)
        return dt

    for r in range(args.repeat):
        order = others[r % len(others):] + others[:r % len(others)]
        a_prev = timed(a_name)
        for n in order:
            dt = timed(n)
            a_next = timed(a_name)
            mult[n].append(dt / ((a_prev + a_next) / 2))
            print(f"  round {r + 1}/{args.repeat} {n}: {dt:.2f} s, (a) around it "
                  f"{a_prev:.2f}/{a_next:.2f} s: {mult[n][-1]:.2f} x (a) "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
            a_prev = a_next

    # correctness, on the last timed outputs: (b) against (c), label for label
    pb, pc = outputs[names[1]], outputs[names[2]]
    pd, po = outputs[names[3]], outputs[names[4]]
    agree = float(np.mean(pb.argmax(1) == pc.argmax(1)))
    maxdiff = float(np.abs(pb - pc).max())

    # per-image loop, once, on a few images, between two (a) runs
    Xl = X[:args.loop_images]
    a_before = timed(a_name)
    t = time.perf_counter()
    loop_labels = []
    for img in Xl:
        p = np.mean([model.predict(NP_VIEWS[v](img[None]), verbose=0)[0] for v in views], 0)
        loop_labels.append(int(p.argmax()))
    loop_s = (time.perf_counter() - t) * len(X) / len(Xl)
    a_after = timed(a_name)
    loop_mult = loop_s / ((a_before + a_after) / 2)
    run.finish()

    A = times[a_name]
    unit = C.med(A)
    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    for ln in run.header("Benchmark: test-time augmentation of the template model.py (issue 2)",
                         ("tensorflow", "keras", "numpy")):
        say(ln)
    say(f"Model: `keras.applications.EfficientNetV2B0(weights=None, input_shape=(96, 96, 3), "
        f"include_top=True, classes=8)`, {n_params:,} parameters, saved as weights.keras next "
        f"to a copy of `src/subkit/templates/model.py` (settings as shipped: TTA_VIEWS = "
        f"{views}, TTA_MERGE = {T.TTA_MERGE!r}, BATCH_SIZE = {batch}). {len(X)} random uint8 "
        f"images 96x96x3; k = {k} views. One process. Warm-up before timing, untimed: the "
        f"template's `predict` on 4 images (its first call traces) then on {batch} (a second "
        f"shape makes its tf.function trace once more, relaxed; the grader, calling predict "
        f"once, pays one trace), and likewise Keras' `predict` on 4 then 40 images. "
        f"{args.repeat} rounds; in each, (a) runs first and again after every other variant "
        f"(the order of those rotating each round): a variant's multiple of (a) is its time "
        f"over the mean of the two (a) runs around it, and the table gives medians.")
    say()
    say("| variant | median s | min s | max s | x (a): median of neighbour ratios | "
        "/ k | ratio of medians / k |")
    say("|---|---:|---:|---:|---:|---:|---:|")
    say(f"| {a_name} ({len(A)} runs) | {unit:.2f} | {min(A):.2f} | {max(A):.2f} | 1 | | |")
    for n in others:
        xs, m = times[n], C.med(mult[n])
        say(f"| {n} | {C.med(xs):.2f} | {min(xs):.2f} | {max(xs):.2f} | {m:.2f} | "
            f"{m / k:.2f} | {C.med(xs) / unit / k:.2f} |")
    say(f"| per-image loop, 5 `model.predict` of 1 image each (one run on {len(Xl)} images, "
        f"x{len(X) / len(Xl):g} extrapolated) | {loop_s:.1f} | | | {loop_mult:.1f} | "
        f"{loop_mult / k:.1f} | |")
    say()
    rb = C.med(mult[names[1]]) / k
    rb2 = C.med(times[names[1]]) / (k * unit)
    say(f"**(b) / (k x (a)) = {rb:.2f}** (median of the per-run ratios against the neighbouring "
        f"(a) runs; the ratio of the medians gives {rb2:.2f}). Target: at most {TARGET}: "
        f"{C.verdict(rb <= TARGET)}.")
    say()
    mk = {n: C.med(mult[n]) / k for n in others}
    say("Multiples of k x (a), this run vs the figures measured elsewhere (issue 2): "
        f"(b) {mk[names[1]]:.2f}k (0.76k); (c) {mk[names[2]]:.2f}k (0.98k); "
        f"(d) {mk[names[3]]:.2f}k (1.7k); per-image loop {loop_mult / k:.0f}k (23k). "
        f"The template's previous forward pass (old) {mk[names[4]]:.2f}k.")
    say()
    agree_d = 100 * np.mean(pd.argmax(1) == pc.argmax(1))
    say(f"Same labels: (b) vs (c) agree on {100 * agree:.2f}% of the {len(X)} images, largest "
        f"probability difference {maxdiff:.1e}; (d) vs (c) {agree_d:.2f}%; "
        f"(old) vs (c) {100 * np.mean(po.argmax(1) == pc.argmax(1)):.2f}%; per-image loop vs "
        f"(c) {100 * np.mean(np.array(loop_labels) == pc[:len(Xl)].argmax(1)):.2f}%.")
    say()
    say(f"First calls (cold, one run each, informational: tracing included): "
        f"`model.predict(X)` {cold_a:.1f} s; `Model()` {cold_init:.1f} s then its first "
        f"`predict(X)` with {k} views {cold_b:.1f} s.")
    say()
    for ln in PROFILE_NOTES.strip("\n").splitlines():
        say(ln)
    if not (args.quick or args.profile):
        path = C.write_result("tta", lines)
        print(f"\nwrote {path}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if rb <= TARGET and agree == 1.0 else 1


def profile_variants(T, tf, X, batch, xla: bool) -> dict:
    """Other ways to run the views of a batch, for --profile."""
    out = {}

    def merged(fwd):
        def f():
            res = []
            for s in range(0, len(X), batch):
                xb = X[s:s + batch].astype(np.float32)
                res.append(fwd(tf.constant(xb)).numpy())
            return np.concatenate(res)
        return f

    base = T.Model()
    m = base.models[0]

    def prob(y):
        return base._to_probabilities(tf.cast(y, tf.float32))

    def unrolled(x):  # one model call per view, unrolled in the graph (k traces of the model)
        ys = [prob(m(T._VIEWS[v](x, tf), training=False)) for v in base.views]
        return tf.reduce_mean(tf.stack(ys), axis=0)

    def mapfn(pi):
        def impl(x):
            st = tf.stack([T._VIEWS[v](x, tf) for v in base.views])
            y = tf.map_fn(lambda v: prob(m(v, training=False)), st,
                          fn_output_signature=tf.float32, parallel_iterations=pi)
            return tf.reduce_mean(y, axis=0)
        return impl

    def concat(x):
        n = tf.shape(x)[0]
        st = tf.concat([T._VIEWS[v](x, tf) for v in base.views], axis=0)
        return tf.reduce_mean(tf.reshape(prob(m(st, training=False)),
                                         [len(base.views), n, -1]), axis=0)

    variants = {
        "(p) views unrolled, k model calls of 64": unrolled,
        "(p) map_fn over views, parallel_iterations=1": mapfn(1),
        "(p) map_fn over views, parallel_iterations=2": mapfn(2),
    }
    for name, impl in variants.items():
        fn = tf.function(impl, reduce_retracing=True)
        t = time.perf_counter()
        fn(tf.constant(X[:batch].astype(np.float32)))
        print(f"  {name}: first call (trace) {time.perf_counter() - t:.1f} s", flush=True)
        out[name] = merged(fn)
    for b in (8, 16, 32):  # the concatenated pass at other sizes: b * k images per call
        fn = tf.function(concat, reduce_retracing=True)

        def f(fn=fn, b=b):
            res = []
            for s in range(0, len(X), b):
                res.append(fn(tf.constant(X[s:s + b].astype(np.float32))).numpy())
            return np.concatenate(res)
        f()
        out[f"(p) one call on the concatenated views, BATCH_SIZE {b}"] = f
    if xla:
        fn = tf.function(mapfn(1), jit_compile=True)
        t = time.perf_counter()
        fn(tf.constant(X[:batch].astype(np.float32)))
        print(f"  XLA: first call (compile) {time.perf_counter() - t:.1f} s", flush=True)
        out["(p) map_fn, jit_compile=True (XLA)"] = merged(fn)
    return out


if __name__ == "__main__":
    sys.exit(main())
