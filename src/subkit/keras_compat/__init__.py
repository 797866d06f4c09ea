"""Make a ``.keras`` file load in an older Keras 3 (the grader's), and prove that it does.

A ``.keras`` file is a zip of ``metadata.json``, ``config.json`` and ``model.weights.h5``.
Keras 3 adds constructor arguments from one release to the next and writes every one of
them into ``config.json`` (``optional`` on InputLayer, ``input_axes``/``output_axes`` on
initializers, ``quantization_config`` on Dense, ``renorm*`` on BatchNormalization,
``data_format`` on RandomFlip, ...). An older Keras passes the config back to the class's
constructor and fails on the keys it does not know. ``retarget`` rewrites ``config.json``
for a target version:

1. **Ask the target Keras itself** what each class accepts: a worker process started with the
   target environment's python imports every (module, class) of the config tree and reads
   the parameters of its ``__init__`` (following ``**kwargs`` up the class hierarchy), and
   the ``get_config()`` of a default instance where one can be built. The same worker in the
   current environment tells the *source* defaults (signature defaults and default-instance
   configs). No list of keys is kept here.
2. Drop a key the target does not accept only when its value is the source's default (so the
   target's behaviour, which has no such argument, is the behaviour the model had); a key with
   another value, a class the target does not have, or an argument the target requires that
   the file lacks, is an error naming the layer, the key and why.
3. Ask the target again: each rewritten layer is deserialized on its own (so an error names
   its layer, not "Functional could not be deserialized"), then the whole file is loaded with
   ``keras.models.load_model(path, compile=False)`` and run on a fixed seeded batch; its
   outputs are compared with the original file's outputs in the current environment
   (max abs difference under ``TOLERANCE``). Only a file that passed is written to ``dst``.

Models (``keras.Model`` subclasses: Sequential, Functional) read their own config keys by
name in ``from_config``; their keys are passed through and listed as ``unchecked`` (the load
and the comparison are their check). Custom classes (module not under ``keras``) are the
submission's own: their keys are left alone and listed too.

``model.weights.h5`` and any other member are copied byte for byte: the HDF5 layout of the
layers tested here (Conv/BatchNorm/Dense/Dropout/augmentation/Rescaling/EfficientNetV2) did
not change between 3.4 and 3.15; if one did, the target's load would fail or the comparison
would differ, and retarget refuses.

``metadata.json`` stays truthful: ``keras_version`` becomes the target version, because the
field tells readers (Keras, subkit's build check, other tools) which Keras's format the file
is in, and after the rewrite that is the target's; ``date_saved`` keeps the original save
date, and ``subkit_retargeted_from`` (the version that saved it) and ``subkit_retargeted``
(when, by which subkit, which keys) say what happened to it.

Nothing here imports TensorFlow or Keras into subkit's process: both sides run in workers.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from subkit import ui
from subkit.errors import SubkitError
from subkit.keras_compat.config import collect_classes, layer_objects, read_keras_zip, version_tuple
from subkit.keras_compat.processes import (
    BATCH_SEED,
    BATCH_SIZE,
    SubmissionCode,
    Worker,
    WorkerError,
    answer,
    ask,
    blame_custom,
    close_workers,
    refuse_lambdas,
    register_names,
    start_workers,
)
from subkit.keras_compat.rewrite import metadata_for, plan_rewrite, write_keras

TOLERANCE = 1e-5

def _probe_cache_path(target_version: str) -> Path:
    from subkit.grader.environment import cache_root

    return cache_root() / "probes" / f"keras-{target_version}.json"


def _save_probe(target_version: str, probe: dict) -> None:
    path = _probe_cache_path(target_version)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        old = json.loads(path.read_text("utf-8")) if path.exists() else {"classes": {}}
        old["classes"].update(probe["classes"])
        old["keras"] = probe["keras"]
        old["dtype_dict_ok"] = probe.get("dtype_dict_ok", True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(old), "utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a cache only


def _cached_probe(target_version: str, classes: list[tuple[str, str]]) -> dict | None:
    try:
        probe = json.loads(_probe_cache_path(target_version).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if all(f"{m}:{c}" in probe.get("classes", {}) for m, c in classes):
        return probe
    return None


def _max_abs_diff(a_path: Path, b_path: Path) -> float:
    import numpy as np

    with np.load(a_path) as a, np.load(b_path) as b:
        if sorted(a.files) != sorted(b.files):
            return float("inf")
        worst = 0.0
        for k in a.files:
            x, y = a[k].astype("float64"), b[k].astype("float64")
            if x.shape != y.shape:
                return float("inf")
            if x.size:
                worst = max(worst, float(np.max(np.abs(x - y))))
        return worst


def retarget(src: Path, dst: Path, target_version: str, *, env_python: str | None,
             source_python: str | None = None,
             strict: bool = True,
             workers: tuple[Worker, Worker | None] | None = None,
             code: SubmissionCode | None = None) -> dict:
    """Rewrite the ``.keras`` file ``src`` into ``dst`` so that keras ``target_version``
    loads it, and verify it there.

    ``env_python``: the python of an environment with the target Keras (the grader
    environment). Without it the target's answers come from an earlier probe of the same
    version cached under subkit's cache folder, the rewrite is not verified and the report
    says why (``skipped_reason``); with no cached probe it raises SubkitError.

    Returns ``{"source_version", "target_version", "changed_keys", "status", "verified",
    "max_abs_diff", "skipped_reason", "unchecked", "seconds"}``; ``status`` is
    "rewritten" (config changed), "unchanged" (no key needed a change; metadata records
    the check) or "not-needed" (the target is not older than the saving version: ``dst`` is
    a plain copy). Raises SubkitError naming the layer when one cannot be expressed in the
    target, and when the target cannot load the rewrite or predicts differently (unless
    ``strict=False``: then ``verified`` is False and ``dst`` is still written).
    """
    t0 = time.monotonic()
    src, dst = Path(src), Path(dst)
    config, metadata, _names = read_keras_zip(src)
    source_version = metadata.get("keras_version")
    report: dict[str, Any] = {
        "source_version": source_version, "target_version": target_version,
        "changed_keys": [], "status": "not-needed", "verified": None, "max_abs_diff": None,
        "skipped_reason": None, "unchecked": [],
    }
    if source_version and version_tuple(source_version) <= version_tuple(target_version):
        ui.echo(f"nothing to do: {src.name} was saved by keras {source_version}, which is not "
                f"newer than the target keras {target_version}; the file is kept as it is")
        if src.resolve() != dst.resolve():
            tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        report["skipped_reason"] = "target not older than the saving version"
        report["seconds"] = round(time.monotonic() - t0, 2)
        return report

    refuse_lambdas(config, src.name)
    classes = collect_classes(config)
    target: dict | None = None
    if not env_python:
        target = _cached_probe(target_version, classes)
        if target is None:
            raise SubkitError(
                f"cannot retarget to keras {target_version} without an environment that has "
                "it: subkit asks that Keras which arguments its classes take",
                hint="create the grader environment: subkit env create (then build again)")
    ui.echo(f"retargeting {src.name} from keras {source_version or '(unknown)'} to "
            f"{target_version}: asking both Kerases about {len(classes)} classes...")
    source_worker, target_worker = workers or start_workers(env_python, source_python,
                                                            code=code)
    work = source_worker.work
    assert work is not None
    try:
        originals = layer_objects(config)
        if source_worker.asked is None:
            ask((source_worker, target_worker), src, config)
        out = work.out
        batch, out_src, out_dst = out / "batch.npz", out / "source.npz", out / "target.npz"
        source = answer(source_worker, "probe")
        if source_worker.registered:  # the submission's classes the weights need
            report["custom_classes"] = source_worker.registered["classes"]
        fix: set[int] | None = None
        if target_worker is not None:
            target = answer(target_worker, "probe")
            assert target is not None
            if version_tuple(target["keras"]) != version_tuple(target_version):
                raise SubkitError(
                    f"the target environment has keras {target['keras']}, not {target_version}",
                    hint="pass the grader environment of a profile whose [grader] keras is "
                         "the target")
            _save_probe(target_version, target)
            refused = answer(target_worker, "trial")["errors"]
            fix = {int(i) for i in refused}
            report["layers_refused"] = len(fix)
            if refused:  # what the grader would have said about the original file
                first = min(refused, key=int)
                name = next(n for i, n, _o in originals if str(i) == first)
                report["original_error"] = f"layer {name!r}: {refused[first]}"
            report["layers"] = len(originals)
        else:
            report["skipped_reason"] = ("no grader environment: the rewrite used a cached "
                                        f"probe of keras {target_version} and was not loaded "
                                        "there")
        # the target worker's probe, or (no environment) the cached one, refused above if none
        assert target is not None
        new_config, changed, unchecked, trials = plan_rewrite(config, target, source,
                                                              target_version, fix=fix)
        report["changed_keys"] = changed
        report["unchecked"] = unchecked
        report["status"] = "rewritten" if changed else "unchanged"
        new_metadata = metadata_for(metadata, source_version, target_version, changed)
        tmp_dst = work.in_ / "retargeted.keras"
        write_keras(src, tmp_dst, new_config if changed else None, new_metadata)

        if target_worker is not None:
            ui.echo(f"  loading the rewritten file in keras {target_version} and comparing "
                    f"predictions on {BATCH_SIZE} fixed inputs...")
            answer(source_worker, "predict")
            try:
                pred = answer(target_worker, "predict", model=str(tmp_dst), batch=str(batch),
                               out=str(out_dst))
            except SubkitError as exc:
                _name_refused_layer(target_worker, trials, target_version)
                custom = blame_custom(exc.message, target_worker, target_version)
                if custom is not None:
                    raise custom from None
                raise SubkitError(
                    f"keras {target_version} cannot load the rewritten file: {exc.message}",
                    hint="report this file's layers to subkit; meanwhile train with keras "
                         f"{target_version}") from None
            diff = _max_abs_diff(out_src, out_dst)
            report["max_abs_diff"] = diff
            report["verified"] = diff < TOLERANCE and not pred.get("warnings")
            if pred.get("warnings"):
                report["load_warnings"] = pred["warnings"]
            if not report["verified"] and strict:
                why = (f"max abs difference {diff:.3g} >= {TOLERANCE:g}" if diff >= TOLERANCE
                       else "; ".join(pred["warnings"]))
                raise SubkitError(
                    f"the rewritten file loads in keras {target_version} but does not "
                    f"predict like the original: {why}",
                    hint="nothing was written; train with keras " + target_version)
        else:
            ui.warn(f"warning: {report['skipped_reason']}")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(tmp_dst), str(dst.with_name(f".{dst.name}.tmp-{os.getpid()}")))
        os.replace(dst.with_name(f".{dst.name}.tmp-{os.getpid()}"), dst)
    finally:
        close_workers((source_worker, target_worker))
    report["seconds"] = round(time.monotonic() - t0, 2)
    verdict = ("verified" if report["verified"] else
               "NOT verified" if report["verified"] is False else "not verified")
    ui.echo(f"  {report['status']}: {len(changed)} keys dropped; {verdict}"
            + (f" (max abs diff {report['max_abs_diff']:.2g})"
               if report["max_abs_diff"] is not None else "")
            + f"; {report['seconds']:.1f} s")
    return report


def probe(python: str, classes: list[tuple[str, str]], label: str = "target",
          samples: dict[str, dict] | None = None) -> dict:
    """What the Keras of ``python`` says about ``classes`` ((module, class_name) pairs):
    ``{"keras", "python", "dtype_dict_ok", "classes": {"module:name": {"found",
    "accepted", "defaults", "required", "default_config", "is_model", "accepts_any"}}}``.
    ``samples`` (from ``collect_samples``) let it learn which classes swallow unknown
    keys."""
    worker = Worker(python, label)
    try:
        return answer(worker, "probe", classes=[list(c) for c in classes],
                       samples=samples or {})
    finally:
        worker.close()


def _name_refused_layer(worker: Worker, trials: list, target_version: str) -> None:
    """After the target failed to load the rewrite: try each rewritten layer on its own
    there, and raise naming the first one it refuses (returns when it takes them all)."""
    if not trials:
        return
    try:
        errors = worker.call("trial", objects=trials)["errors"]
    except (SubkitError, WorkerError):
        return
    if not errors:
        return
    idx, why = next(iter(errors.items()))
    name, cls = next(((n, o["class_name"]) for i, n, o in trials if str(i) == idx),
                     ("?", "?"))
    raise SubkitError(
        f"layer {name!r} ({cls}) cannot be expressed in keras {target_version}: keras "
        f"{target_version} refuses its config: {why}"
        + (f" (and {len(errors) - 1} more layers)" if len(errors) > 1 else ""),
        hint=f"train with keras {target_version}, or rebuild that layer with default "
             "arguments")


def verify_load(src: Path, target_version: str, *, env_python: str,
                source_python: str | None = None, code: SubmissionCode | None = None,
                custom: list[str] | None = None) -> dict:
    """Load a model file (``.keras`` or a legacy ``.h5`` model) in the target environment
    as it is, and compare its outputs on a fixed seeded batch with the current
    environment's: the proof that the target loads it, without rewriting anything.

    Returns ``{"status": "loads", "source_version", "target_version", "verified",
    "max_abs_diff", "seconds"}``; raises SubkitError with the target's own refusal."""
    t0 = time.monotonic()
    src = Path(src)
    ui.echo(f"loading {src.name} in keras {target_version} and comparing predictions on "
            f"{BATCH_SIZE} fixed inputs...")
    source_worker, target_worker = start_workers(env_python, source_python, code=code)
    work = source_worker.work
    # start_workers gives each worker the work folder, and env_python (a str) a grader worker
    assert work is not None and target_worker is not None
    try:
        for w in (source_worker, target_worker):  # custom: the registered names it needs
            register_names(w, custom or [])
        model, out = str(work.give(src)), work.out
        batch, out_src, out_dst = out / "batch.npz", out / "source.npz", out / "target.npz"
        answer(source_worker, "predict", model=model, batch=str(batch), out=str(out_src),
                make_batch={"n": BATCH_SIZE, "seed": BATCH_SEED})
        try:
            pred = answer(target_worker, "predict", model=model, batch=str(batch),
                           out=str(out_dst))
        except SubkitError as exc:
            raise SubkitError(f"keras {target_version} cannot load {src.name}: "
                              f"{exc.message.split(': ', 1)[-1]}",
                              hint="save it from keras " + target_version) from None
        diff = _max_abs_diff(out_src, out_dst)
    finally:
        close_workers((source_worker, target_worker))
    return {"status": "loads", "target_version": target_version,
            "verified": diff < TOLERANCE and not pred.get("warnings"), "max_abs_diff": diff,
            "load_warnings": pred.get("warnings") or [],
            "seconds": round(time.monotonic() - t0, 2)}


# -- verified rewrites, cached by the weights' sha256 ----------------------------------------
CACHE_KEEP = 3  # rewritten files kept (each is as big as the stripped weights)


def _cache_dir() -> Path:
    from subkit.grader.environment import cache_root

    return cache_root() / "retargets"


def cached_retarget(key: str) -> tuple[Path, dict] | None:
    """The verified rewrite stored under ``key`` (see ``store_retarget``): (file, report),
    or None. A hit counts as a use (the cache keeps the most recently used)."""
    folder = _cache_dir()
    path, meta = folder / f"{key}.keras", folder / f"{key}.json"
    try:
        report = json.loads(meta.read_text("utf-8"))
        if path.stat().st_size != report.get("cached_size"):
            return None
        os.utime(meta)
    except (OSError, ValueError):
        return None
    return path, report


def store_retarget(key: str, path: Path, report: dict) -> None:
    """Keep a verified rewrite (a cache: failures to write are ignored); only the
    ``CACHE_KEEP`` most recently used entries stay."""
    folder = _cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}.tmp-{os.getpid()}"
        shutil.copyfile(path, tmp)
        os.replace(tmp, folder / f"{key}.keras")
        meta = dict(report, cached_size=(folder / f"{key}.keras").stat().st_size)
        meta.pop("path", None)
        tmp_meta = folder / f".{key}.json.tmp-{os.getpid()}"
        tmp_meta.write_text(json.dumps(meta), "utf-8")
        os.replace(tmp_meta, folder / f"{key}.json")
        entries = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[CACHE_KEEP:]:
            old.unlink(missing_ok=True)
            old.with_suffix(".keras").unlink(missing_ok=True)
    except OSError:
        pass
