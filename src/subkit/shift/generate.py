"""Making the shifted sets: in this process (``apply``) or in the generator process that
``score-local --shift`` starts (``python -m subkit.shift.generate PLAN.json``).

The generator process is subkit's own interpreter with subkit's own (newest) Keras and
Pillow, whatever versions the submission's child runs; it keeps TensorFlow out of the
parent, pins Keras' backend to TensorFlow and TensorFlow to one thread (a core is left to
the child's forward passes, and the numbers do not depend on the machine's core count).

Seeding: batch ``b`` of family ``name`` draws from ``np.random.default_rng((seed,
crc32(name), b))``, and Keras layers take their integer seeds from that generator: a seed
gives the same sets, byte for byte, on the same library versions (recorded with the run).
The severities of a family share their draws (the same ops, places and partners at
growing strength), so the drop from one severity to the next is the strength's, not the
luck of the draw.
"""

from __future__ import annotations

import json
import os
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from subkit.fsutil import atomic_open, temp_sibling, write_text_atomic
from subkit.shift import ops
from subkit.shift.families import FAMILIES, SuiteError
from subkit.shift.plan import mark_failed

BATCH = 256  # images per generated batch; part of the seeding: do not change lightly
KERAS_MIN = (3, 9)  # RandomErasing, CutMix, AugMix's op layers
Array = np.ndarray


def _rng(seed: int, name: str, batch: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(name.encode()), int(batch)])


def _to_canonical(xb: Array, lo: float, hi: float) -> Array:
    """A batch as float32 (n, h, w, c) in [0, 255]; grey images as three equal channels."""
    x = np.asarray(xb).astype(np.float32)
    if lo:
        x -= np.float32(lo)
    x *= np.float32(255.0 / (hi - lo))
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return x


def _from_canonical(y: Array, shape: tuple, dtype, lo: float, hi: float) -> Array:
    y = np.clip(np.asarray(y, np.float32), 0, 255)
    if len(shape) == 3 or shape[-1] == 1:
        y = y.mean(axis=-1, keepdims=True)
    y *= np.float32((hi - lo) / 255.0)
    if lo:
        y += np.float32(lo)
    if np.dtype(dtype).kind in "ui":
        np.rint(y, out=y)
    return y.reshape(shape)


def apply(X: Array, name: str, severity: int, *, seed: int = 0,
          value_range: tuple[float, float] = (0, 255), labels: Array | None = None,
          n_classes: int | None = None, out: Array | None = None) -> tuple[Array, Array | None]:
    """``X`` under family ``name`` at ``severity`` (same dtype, shape and range) and, for a
    family that mixes images, the new labels (the larger part of each mixed image, as the
    mixed one-hot label says); else ``None``. ``out`` receives the images in place."""
    fam = FAMILIES.get(name)
    if fam is None:
        raise SuiteError(f"unknown shift {name!r}")
    if not 1 <= severity <= len(fam.severities):
        raise SuiteError(f"severity of {name} must be 1 to {len(fam.severities)}, "
                         f"not {severity}")
    if X.ndim not in (3, 4):
        raise SuiteError(f"the shift suite needs images (n, h, w[, c]), not shape {X.shape}")
    channels = 1 if X.ndim == 3 else X.shape[-1]
    if fam.rgb_only and channels != 3:
        raise SuiteError(f"{name} needs RGB images")
    if fam.mixes and (labels is None or not n_classes):
        raise SuiteError(f"{name} mixes images: it needs the labels and the number of classes")
    lo, hi = float(value_range[0]), float(value_range[1])
    out = np.empty_like(X) if out is None else out
    new_labels = np.empty(len(X), np.int64) if fam.mixes else None
    params = fam.params(severity)
    side = min(X.shape[1], X.shape[2])
    for bi, start in enumerate(range(0, len(X), BATCH)):
        stop = min(start + BATCH, len(X))
        xb = _to_canonical(X[start:stop], lo, hi)
        ctx = ops.Ctx(_rng(seed, name, bi), side)
        if fam.mixes:
            # labels and n_classes: refused above unless given; new_labels: made above
            assert labels is not None and n_classes is not None and new_labels is not None
            own = np.eye(n_classes, dtype=np.float32)[np.asarray(labels[start:stop]).ravel()]
            yb, mixed = fam.op(xb, own, ctx, **params)
            new_labels[start:stop] = np.argmax(mixed + 1e-6 * own, axis=1)  # tie: its own
        else:
            yb = fam.op(xb, ctx, **params)
        out[start:stop] = _from_canonical(yb, out[start:stop].shape, out.dtype, lo, hi)
    return out, new_labels


def library_versions(with_keras: bool = True) -> dict:
    import PIL

    v = {"pillow": PIL.__version__, "numpy": np.__version__}
    if with_keras:
        import keras

        v.update(keras=keras.__version__, backend=keras.backend.backend())
        if v["backend"] == "tensorflow":
            import tensorflow as tf

            v["tensorflow"] = tf.__version__
    return v


def _keras_check() -> str | None:
    try:
        import keras
    except Exception as exc:
        return f"keras could not be imported in subkit's environment: {exc}"
    parts = tuple(int(p) for p in keras.__version__.split(".")[:2] if p.isdigit())
    if parts < KERAS_MIN:
        return (f"the shift suite needs keras >= {'.'.join(map(str, KERAS_MIN))} in subkit's own "
                f"environment (found {keras.__version__}): pip install -U keras")
    return None


def _one_thread() -> None:
    try:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except (ImportError, RuntimeError):  # another backend, or TF already initialised
        pass


def _write_set(X, labels, spec, e) -> float:
    """One set to ``e['path']`` (its labels first when they change), via a temp name."""
    t0 = time.perf_counter()
    path = Path(e["path"])
    part = temp_sibling(path)
    try:
        mm = np.lib.format.open_memmap(part, mode="w+", dtype=X.dtype, shape=X.shape)
        _, new_labels = apply(X, e["name"], e["severity"], seed=spec["seed"],
                              value_range=tuple(spec["value_range"]), labels=labels,
                              n_classes=spec.get("n_classes"), out=mm)
        mm.flush()
        del mm
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if new_labels is not None:
        with atomic_open(e["labels_path"], "wb") as fh:
            np.save(fh, new_labels)
    os.replace(part, path)
    return time.perf_counter() - t0


def run_plan(spec: dict) -> dict:
    """Write every set of a plan (the worker's job); a set that fails gets ``PATH.failed``
    with the reason and the next one goes on. Returns the generation record."""
    t0 = time.perf_counter()
    X = np.load(spec["source"], mmap_mode="r")
    labels = np.load(spec["labels"]) if spec.get("labels") else None
    record: dict = {"sets": {}, "errors": {}}
    fatal = None
    keras = any(FAMILIES[e["name"]].needs_keras for e in spec["entries"]
                if e["name"] in FAMILIES)
    if keras:  # a Pillow/numpy-only suite (microscopy) never imports TensorFlow
        fatal = _keras_check()
        _one_thread()
    if fatal is None:
        record["versions"] = library_versions(keras)
    parent = os.getppid()
    for i, e in enumerate(spec["entries"]):
        if os.getppid() != parent:  # subkit died: nobody reads the rest
            fatal = fatal or "stopped: subkit ended"
        if fatal is not None:
            for rest in spec["entries"][i:]:
                mark_failed(rest, fatal)
                record["errors"][rest["key"]] = fatal
            break
        try:
            record["sets"][e["key"]] = _write_set(X, labels, spec, e)
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"[:500]
            mark_failed(e, why)
            record["errors"][e["key"]] = why
    record["generate_s"] = time.perf_counter() - t0
    return record


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    plan_path = Path(argv[0])
    spec = json.loads(plan_path.read_text())
    record = run_plan(spec)
    write_text_atomic(plan_path.with_name("generate.json"), json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
