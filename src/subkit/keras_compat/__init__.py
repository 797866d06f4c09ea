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

import datetime as _dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from subkit.errors import InputError, SubkitError
from subkit.fsutil import hold_lock

TOLERANCE = 1e-5
BATCH_SIZE = 8
BATCH_SEED = 1234
WORKER_TIMEOUT_S = 900
TAG = "@@SUBKIT@@"

Echo = Callable[[str], None]


def _stderr_echo(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- versions ---------------------------------------------------------------------------------
def version_tuple(version: str | None) -> tuple[int, ...]:
    """(3, 15, 1) from "3.15.1" (pre-release tails like ".dev0" or "rc1" ignored)."""
    out = []
    for part in str(version or "").split("."):
        m = re.match(r"\d+", part)
        if not m:
            break
        out.append(int(m.group()))
    return tuple(out)


# -- reading a .keras file --------------------------------------------------------------------
def _is_serialized(node: Any) -> bool:
    return (isinstance(node, dict) and isinstance(node.get("class_name"), str)
            and "config" in node)


def _is_keras_module(module: Any) -> bool:
    return isinstance(module, str) and (module == "keras" or module.startswith("keras."))


Layer = tuple  # (name, index in walk order); index 0 is "no layer yet"


def _walk(node: Any, label: str, layer: Layer, is_layer: bool,
          visit: Callable[[dict, str, Layer, bool], None], counter: list | None = None) -> None:
    """Call ``visit(obj, label, layer, is_layer)`` for every serialized object, parents
    before children. ``label`` is "layer.key.key" for objects nested in a layer's config;
    ``layer`` is (name, index) of the nearest enclosing layer (models count as layers),
    numbered in walk order, the same for the same tree."""
    counter = [0] if counter is None else counter
    if isinstance(node, list):
        for item in node:
            _walk(item, label, layer, False, visit, counter)
        return
    if not isinstance(node, dict):
        return
    if _is_serialized(node):
        cfg = node["config"]
        if is_layer:
            counter[0] += 1
            name = cfg.get("name") if isinstance(cfg, dict) else None
            name = name if isinstance(name, str) else node["class_name"]
            label, layer = name, (name, counter[0])
        visit(node, label, layer, is_layer)
        cfg = node["config"]  # visit may have replaced values
        if isinstance(cfg, dict):
            for key, value in list(cfg.items()):
                if key == "layers" and isinstance(value, list):
                    for item in value:
                        _walk(item, label, layer, True, visit, counter)
                else:
                    _walk(value, f"{label}.{key}", layer, False, visit, counter)
        if isinstance(node.get("compile_config"), dict):
            _walk(node["compile_config"], f"{label}.compile_config", layer, False, visit,
                  counter)
        return
    for key, value in node.items():
        _walk(value, f"{label}.{key}", layer, False, visit, counter)


def _read_zip(path: Path) -> tuple[dict, dict, list[str]]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist", hint="give the path of a .keras file")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if "config.json" not in names:
                raise InputError(f"{path} has no config.json: not a Keras 3 .keras file",
                                 hint="save the model with model.save('name.keras')")
            config = json.loads(zf.read("config.json"))
            metadata = json.loads(zf.read("metadata.json")) if "metadata.json" in names else {}
    except zipfile.BadZipFile:
        raise InputError(f"{path} is not a zip: not a Keras 3 .keras file",
                         hint="legacy .h5 files are not retargeted; save as .keras") from None
    except ValueError as exc:
        raise InputError(f"{path}: unreadable JSON inside ({exc})",
                         hint="save the model again with model.save('name.keras')") from None
    return config, metadata, names


def keras_file_info(path) -> dict:
    """What a ``.keras`` file says about itself, without Keras.

    ``{"keras_version", "date_saved", "retargeted_from", "members", "model_class",
    "layer_classes": [sorted class names of every layer, nested models included],
    "n_layers", "has_custom_objects", "custom_objects": [{"layer", "module", "class_name",
    "registered_name"}]}``.
    """
    config, metadata, names = _read_zip(Path(path))
    layers: list[str] = []
    custom: list[dict] = []

    def visit(obj: dict, label: str, layer: Layer, is_layer: bool) -> None:
        module = obj.get("module")
        if is_layer:
            layers.append(obj["class_name"])
        if module is not None and not _is_keras_module(module) and \
                not obj["class_name"].startswith("__") and module != "builtins":
            custom.append({"layer": label, "module": module, "class_name": obj["class_name"],
                           "registered_name": obj.get("registered_name")})

    _walk(config, "", ("", 0), True, visit)
    return {
        "keras_version": metadata.get("keras_version"),
        "date_saved": metadata.get("date_saved"),
        "retargeted_from": metadata.get("subkit_retargeted_from"),
        "members": names,
        "model_class": config.get("class_name"),
        "layer_classes": sorted(set(layers)),
        "n_layers": len(layers),
        "has_custom_objects": bool(custom),
        "custom_objects": custom,
    }


# -- the worker: one process per environment, JSON lines on stdin/stdout -----------------------
# the program itself is worker.py, shipped with the package and run by the target
# environment's interpreter as ``python -c`` (its text: no file of subkit's needs to be
# visible to that process)
WORKER_PROGRAM = Path(__file__).with_name("worker.py")


class _Work:
    """The folder a retarget's workers and subkit exchange files through: ``in_`` holds what
    subkit gives them (the model, linked or copied in; the rewrite), read-only for them;
    ``out`` what they write. Locked while in use: a killed subkit's is swept later."""

    def __init__(self, prefix: str = "subkit-retarget-"):
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self._lock = hold_lock(self.root)
        self.in_, self.out = self.root / "in", self.root / "out"
        self.in_.mkdir()
        self.out.mkdir()

    def give(self, src: Path) -> Path:
        """``src`` inside ``in_`` (a hard link where it can be, else a copy)."""
        dst = self.in_ / Path(src).name
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
        return dst

    def close(self) -> None:
        """Idempotent: a retarget closes its workers, and so does build when it started them."""
        if self._lock is None:
            return
        shutil.rmtree(self.root, ignore_errors=True)
        os.close(self._lock)
        self._lock = None


class _Worker:
    """A keras process in one environment, driven by JSON lines.

    It loads weights a participant may have been handed (a config.json can name any module
    for Keras 3.4 to import, even in safe mode), so it runs in subkit's sandbox like a
    submission: the system and its interpreter read-only, the ``work`` folders (read-only /
    writable) at their own paths, nothing else, no network."""

    def __init__(self, python: str, label: str, timeout: float = WORKER_TIMEOUT_S,
                 work: _Work | None = None):
        from subkit.grader import sandbox

        self.label = label
        self.timeout = timeout
        self.work = work
        self._box = sandbox.Sandbox(sandbox.Limits(), python=python)
        if work is not None:
            self._box.bind(work.in_)
            self._box.bind(work.out, writable=True)
        env = {"TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow",
               "PYTHONNOUSERSITE": "1"}
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        self.asked: Path | None = None  # the file a retarget's first questions were about
        try:
            self.proc = self._box.spawn([python, "-c", WORKER_PROGRAM.read_text("utf-8")],
                                        cwd=None, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                        bufsize=1)
        except OSError as exc:
            raise SubkitError(f"cannot start {python} ({label}): {exc}",
                              hint="recreate the grader environment: subkit env create "
                                   "--force") from None
        self._timer = threading.Timer(timeout, self.proc.kill)
        self._timer.daemon = True
        self._timer.start()
        self.ready: dict | None = None

    def _stderr_tail(self, n: int = 6) -> str:
        self._stderr.seek(0)
        lines = [ln for ln in self._stderr.read().splitlines()
                 if ln.strip() and not ln.startswith(("WARNING: All log", "I0000", "W0000"))]
        return " | ".join(lines[-n:])

    def send(self, op: str, **payload: Any) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"op": op, **payload}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # read() reports the crash

    def read(self) -> dict:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                raise SubkitError(
                    f"the Keras worker in the {self.label} environment stopped "
                    f"(exit code {self.proc.returncode}): {self._stderr_tail()}",
                    hint="run `subkit env show` and recreate the environment if it is broken")
            if line.startswith(TAG):
                return json.loads(line[len(TAG):])

    def start(self) -> dict:
        if self.ready is None:
            self.ready = self.read()
        return self.ready

    def call(self, op: str, **payload: Any) -> dict:
        self.start()
        self.send(op, **payload)
        return self.result()

    def result(self) -> dict:
        self.start()
        reply = self.read()
        if not reply.get("ok"):
            raise _WorkerError(reply.get("error", "unknown error"), reply.get("traceback", ""))
        return reply["result"]

    def close(self) -> None:
        """End the worker: it holds no state worth a clean exit (TensorFlow's own exit
        takes seconds), so it is killed."""
        self._timer.cancel()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._box.close()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        self._stderr.close()


class _WorkerError(Exception):
    def __init__(self, message: str, tb: str):
        super().__init__(message)
        self.message = message
        self.tb = tb


# -- the rewrite --------------------------------------------------------------------------------
def collect_samples(config: dict) -> dict[str, dict]:
    """The first config of each Keras class in a tree ("module:name" -> config): the probe
    tries it on the target with an unknown key added, to learn whether the class swallows
    keys it does not know."""
    out: dict[str, dict] = {}

    def visit(obj: dict, label: str, layer: Layer, is_layer: bool) -> None:
        module = obj.get("module")
        if _is_keras_module(module) and isinstance(obj.get("config"), dict) \
                and not obj["class_name"].startswith("__"):
            out.setdefault(f"{module}:{obj['class_name']}", obj["config"])

    _walk(config, "", ("", 0), True, visit)
    return out


def collect_classes(config: dict) -> list[tuple[str, str]]:
    """Every (module, class_name) of Keras's own classes in a config tree."""
    seen: dict[tuple[str, str], None] = {}

    def visit(obj: dict, label: str, layer: Layer, is_layer: bool) -> None:
        module = obj.get("module")
        if _is_keras_module(module) and isinstance(obj.get("config"), dict) \
                and not obj["class_name"].startswith("__"):
            seen[(module, obj["class_name"])] = None

    _walk(config, "", ("", 0), True, visit)
    return list(seen)


def _norm(value: Any) -> Any:
    """A value for comparing configs: JSON-normal, without sharing ids."""
    value = json.loads(json.dumps(value, default=repr))

    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k != "shared_object_id"}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    return strip(value)


_MISSING = object()


def _source_default(info: dict | None, key: str) -> Any:
    if not info or not info.get("found"):
        return _MISSING
    candidates = []
    if key in (info.get("defaults") or {}):
        candidates.append(info["defaults"][key])
    dc = info.get("default_config")
    if isinstance(dc, dict) and key in dc:
        candidates.append(dc[key])
    return candidates if candidates else _MISSING


def layer_objects(config: dict) -> list[tuple[int, str, dict]]:
    """The layer-level objects of a config tree that are not models (no "layers" list in
    their config), as (index, name, obj)."""
    out: list[tuple[int, str, dict]] = []

    def visit(obj: dict, label: str, layer: Layer, is_layer: bool) -> None:
        if not is_layer or obj["class_name"].startswith("__"):
            return
        cfg = obj.get("config")
        if isinstance(cfg, dict) and not isinstance(cfg.get("layers"), list):
            out.append((layer[1], layer[0], obj))

    _walk(config, "", ("", 0), True, visit)
    return out


def plan_rewrite(config: dict, target: dict, source: dict, target_version: str,
                 fix: set[int] | None = None,
                 ) -> tuple[dict, list[str], list[str], list[tuple[int, str, dict]]]:
    """The rewritten config, the keys changed ("layer.key"), notes on unchecked classes and
    the rewritten layer-level objects to try in the target, as (index, name, obj).

    ``target``/``source`` are the workers' probe results. ``fix``: the indices (see
    ``layer_objects``) of the layers the target refused as they are; the others, and what
    they hold, are left untouched (the target takes them). None: fix every layer.
    A key the target's class does not take is dropped when its value is the saving Keras's
    default; otherwise, and for a class the target does not have, raises SubkitError
    naming the layer.
    """
    new = json.loads(json.dumps(config))
    changed: list[str] = []
    unchecked: list[str] = []
    trials: list[tuple[int, str, dict]] = []
    tclasses, sclasses = target["classes"], source["classes"]
    layer_idx = {i for i, _n, _o in layer_objects(config)}

    def fail(layer: str, cls: str, why: str, hint: str) -> None:
        raise SubkitError(f"layer {layer!r} ({cls}) cannot be expressed in keras "
                          f"{target_version}: {why}", hint=hint)

    def visit(obj: dict, label: str, layer: Layer, is_layer: bool) -> None:
        module, name = obj.get("module"), obj["class_name"]
        cfg = obj.get("config")
        if name.startswith("__") or not isinstance(cfg, dict):
            return
        layer_name = layer[0] or "<model>"
        if not _is_keras_module(module):
            if module not in (None, "builtins"):
                unchecked.append(f"{label} ({module}.{name}): a custom class; its keys are "
                                 "the submission's own")
            return
        key = f"{module}:{name}"
        t = tclasses.get(key)
        s = sclasses.get(key)
        if not t or not t.get("found"):
            why = (t or {}).get("why", "unknown class")
            fail(layer_name, name, f"keras {target_version} has no {module}.{name} ({why})",
                 hint="an augmentation layer is an identity at inference: save an inference "
                      "model without it (rebuild the graph from its input to the layer after "
                      "it and copy the weights), or train with keras " + target_version)
        if fix is not None and layer[1] in layer_idx and layer[1] not in fix:
            return  # the target takes this layer as it is
        if is_layer and layer[1] in layer_idx:
            trials.append((layer[1], layer_name, obj))
        if t.get("is_model"):
            extra = [k for k in cfg if k not in t["accepted"] and k != "layers"
                     and k not in (t.get("default_config") or {})]
            if extra:
                unchecked.append(f"{label} ({name}): keys read by the model's own "
                                 f"from_config: {', '.join(extra)}")
            return
        accepted = set(t["accepted"]) | set((t.get("default_config") or {}).keys())
        for k in list(cfg) if not t.get("accepts_any") else []:
            if k in accepted:
                continue
            defaults = _source_default(s, k)
            if defaults is _MISSING:
                fail(layer_name, name,
                     f"its key {k!r} is not accepted by keras {target_version}'s {name}, "
                     "and its default in the saving Keras is unknown",
                     hint=f"build the layer without {k!r} or train with keras "
                          f"{target_version}")
            if not any(_norm(cfg[k]) == _norm(d) for d in defaults):
                fail(layer_name, name,
                     f"it sets {k}={json.dumps(cfg[k])}, and keras {target_version}'s "
                     f"{name} has no {k!r} argument (only the default "
                     f"{json.dumps(defaults[0])} could be dropped safely)",
                     hint=f"use {k}={json.dumps(defaults[0])} or train with keras "
                          f"{target_version}")
            del cfg[k]
            changed.append(f"{label}.{k}")
        missing = [k for k in t.get("required", []) if k not in cfg]
        if missing:
            fail(layer_name, name,
                 f"keras {target_version}'s {name} requires {', '.join(missing)}, which "
                 "the file does not have", hint=f"train with keras {target_version}")
        # dtype policies: a dict where the target only takes a dtype name
        dt = cfg.get("dtype")
        if _is_serialized(dt) and not target.get("dtype_dict_ok", True):
            inner = dt.get("config")
            if dt.get("class_name") == "DTypePolicy" and isinstance(inner, dict) \
                    and set(inner) == {"name"}:
                cfg["dtype"] = inner["name"]
                changed.append(f"{label}.dtype")
            else:
                fail(layer_name, name, f"its dtype policy {dt.get('class_name')} "
                     f"cannot be written as a plain dtype for keras {target_version}",
                     hint="use a float32 model for the submission")

    _walk(new, "", ("", 0), True, visit)
    return new, changed, unchecked, trials


def _metadata_for(metadata: dict, source_version: str | None, target_version: str,
                  changed: list[str]) -> dict:
    from subkit import __version__

    out = dict(metadata)
    out["keras_version"] = target_version
    out["subkit_retargeted_from"] = metadata.get("subkit_retargeted_from") or source_version
    out["subkit_retargeted"] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "subkit_version": __version__,
        "from": source_version,
        "to": target_version,
        "changed_keys": len(changed),
    }
    return out


def write_keras(src: Path, dst: Path, config: dict | None, metadata: dict | None) -> None:
    """Copy ``src`` to ``dst`` member by member (order, compression and bytes kept),
    replacing config.json and/or metadata.json. Written to a temp name, then renamed."""
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    try:
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w") as zout:
            for info in zin.infolist():
                new_info = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                new_info.compress_type = info.compress_type
                new_info.external_attr = info.external_attr
                if info.filename == "config.json" and config is not None:
                    zout.writestr(new_info, json.dumps(config))
                elif info.filename == "metadata.json" and metadata is not None:
                    zout.writestr(new_info, json.dumps(metadata))
                else:
                    with zin.open(info) as fin, zout.open(new_info, "w", force_zip64=True) \
                            as fout:
                        shutil.copyfileobj(fin, fout, 1 << 20)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()


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


def start_workers(env_python: str | None, source_python: str | None = None, *,
                  reference: Path | None = None,
                  target_version: str | None = None) -> tuple[_Worker, _Worker | None]:
    """The two Keras workers of a ``retarget``, started now: importing TensorFlow takes
    seconds in each, which a caller can spend on other work (build strips the optimizer
    state meanwhile). ``retarget(..., workers=...)`` uses and closes them.

    With ``reference`` (the file as the user saved it) and a ``target_version`` older than
    its Keras, the workers are also asked at once what needs only its config: both probes,
    the target's trial of its layers, and the reference predictions (the current Keras
    loads ``reference`` while the caller strips it). The proof is then against the user's
    own file, not the stripped copy."""
    work = _Work()
    source = _Worker(source_python or sys.executable, "current", work=work)
    workers = source, (_Worker(env_python, "grader", work=work) if env_python else None)
    if reference is not None and target_version is not None:
        config, metadata, _names = _read_zip(Path(reference))
        saved = metadata.get("keras_version")
        if saved and version_tuple(saved) > version_tuple(target_version):
            _ask(workers, Path(reference), config)
    return workers


def _ask(workers: tuple[_Worker, _Worker | None], reference: Path, config: dict) -> None:
    """Send a retarget's first questions: the probes of ``config``'s classes, the target's
    trial of its original layers, and (when there is a target to compare with) the
    current Keras' predictions of ``reference`` on the fixed batch."""
    source_worker, target_worker = workers
    work = source_worker.work
    assert work is not None
    req = [list(c) for c in collect_classes(config)]
    source_worker.send("probe", classes=req)
    if target_worker is not None:
        source_worker.send("predict", model=str(work.give(reference)),
                           batch=str(work.out / "batch.npz"), out=str(work.out / "source.npz"),
                           make_batch={"n": BATCH_SIZE, "seed": BATCH_SEED})
        target_worker.send("probe", classes=req, samples=collect_samples(config))
        target_worker.send("trial", objects=layer_objects(config))
    source_worker.asked = reference


def close_workers(workers: tuple[_Worker, _Worker | None]) -> None:
    for w in workers:
        if w is not None:
            w.close()
    if workers[0].work is not None:
        workers[0].work.close()


def retarget(src: Path, dst: Path, target_version: str, *, env_python: str | None,
             echo: Echo = _stderr_echo, source_python: str | None = None,
             strict: bool = True,
             workers: tuple[_Worker, _Worker | None] | None = None) -> dict:
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
    config, metadata, _names = _read_zip(src)
    source_version = metadata.get("keras_version")
    report: dict[str, Any] = {
        "source_version": source_version, "target_version": target_version,
        "changed_keys": [], "status": "not-needed", "verified": None, "max_abs_diff": None,
        "skipped_reason": None, "unchecked": [],
    }
    if source_version and version_tuple(source_version) <= version_tuple(target_version):
        echo(f"nothing to do: {src.name} was saved by keras {source_version}, which is not "
             f"newer than the target keras {target_version}; the file is kept as it is")
        if src.resolve() != dst.resolve():
            tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        report["skipped_reason"] = "target not older than the saving version"
        report["seconds"] = round(time.monotonic() - t0, 2)
        return report

    classes = collect_classes(config)
    target: dict | None = None
    if not env_python:
        target = _cached_probe(target_version, classes)
        if target is None:
            raise SubkitError(
                f"cannot retarget to keras {target_version} without an environment that has "
                "it: subkit asks that Keras which arguments its classes take",
                hint="create the grader environment: subkit env create (then build again)")
    echo(f"retargeting {src.name} from keras {source_version or '(unknown)'} to "
         f"{target_version}: asking both Kerases about {len(classes)} classes...")
    source_worker, target_worker = workers or start_workers(env_python, source_python)
    work = source_worker.work
    assert work is not None
    try:
        originals = layer_objects(config)
        if source_worker.asked is None:
            _ask((source_worker, target_worker), src, config)
        out = work.out
        batch, out_src, out_dst = out / "batch.npz", out / "source.npz", out / "target.npz"
        source = _result(source_worker, "probe")
        fix: set[int] | None = None
        if target_worker is not None:
            target = _result(target_worker, "probe")
            assert target is not None
            if version_tuple(target["keras"]) != version_tuple(target_version):
                raise SubkitError(
                    f"the target environment has keras {target['keras']}, not {target_version}",
                    hint="pass the grader environment of a profile whose [grader] keras is "
                         "the target")
            _save_probe(target_version, target)
            refused = _result(target_worker, "trial")["errors"]
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
        new_config, changed, unchecked, trials = plan_rewrite(config, target, source,
                                                              target_version, fix=fix)
        report["changed_keys"] = changed
        report["unchecked"] = unchecked
        report["status"] = "rewritten" if changed else "unchanged"
        new_metadata = _metadata_for(metadata, source_version, target_version, changed)
        tmp_dst = work.in_ / "retargeted.keras"
        write_keras(src, tmp_dst, new_config if changed else None, new_metadata)

        if target_worker is not None:
            echo(f"  loading the rewritten file in keras {target_version} and comparing "
                 f"predictions on {BATCH_SIZE} fixed inputs...")
            _result(source_worker, "predict")
            try:
                pred = _result(target_worker, "predict", model=str(tmp_dst), batch=str(batch),
                               out=str(out_dst))
            except SubkitError as exc:
                _name_refused_layer(target_worker, trials, target_version)
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
            echo(f"warning: {report['skipped_reason']}")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(tmp_dst), str(dst.with_name(f".{dst.name}.tmp-{os.getpid()}")))
        os.replace(dst.with_name(f".{dst.name}.tmp-{os.getpid()}"), dst)
    finally:
        close_workers((source_worker, target_worker))
    report["seconds"] = round(time.monotonic() - t0, 2)
    verdict = ("verified" if report["verified"] else
               "NOT verified" if report["verified"] is False else "not verified")
    echo(f"  {report['status']}: {len(changed)} keys dropped; {verdict}"
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
    worker = _Worker(python, label)
    try:
        return _result(worker, "probe", classes=[list(c) for c in classes],
                       samples=samples or {})
    finally:
        worker.close()


def _name_refused_layer(worker: _Worker, trials: list, target_version: str) -> None:
    """After the target failed to load the rewrite: try each rewritten layer on its own
    there, and raise naming the first one it refuses (returns when it takes them all)."""
    if not trials:
        return
    try:
        errors = worker.call("trial", objects=trials)["errors"]
    except (SubkitError, _WorkerError):
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


def _result(worker: _Worker, op: str, **payload: Any) -> dict:
    """The reply to ``op``: sends it first when a payload is given (else it was sent)."""
    try:
        if payload:
            return worker.call(op, **payload)
        return worker.result()
    except _WorkerError as exc:
        raise SubkitError(f"{op} failed in the {worker.label} environment: {exc.message}",
                          hint="rerun with --debug for the worker's traceback") from None


def verify_load(src: Path, target_version: str, *, env_python: str, echo: Echo = _stderr_echo,
                source_python: str | None = None) -> dict:
    """Load a model file (``.keras`` or a legacy ``.h5`` model) in the target environment
    as it is, and compare its outputs on a fixed seeded batch with the current
    environment's: the proof that the target loads it, without rewriting anything.

    Returns ``{"status": "loads", "source_version", "target_version", "verified",
    "max_abs_diff", "seconds"}``; raises SubkitError with the target's own refusal."""
    t0 = time.monotonic()
    src = Path(src)
    echo(f"loading {src.name} in keras {target_version} and comparing predictions on "
         f"{BATCH_SIZE} fixed inputs...")
    source_worker, target_worker = start_workers(env_python, source_python)
    work = source_worker.work
    try:
        model, out = str(work.give(src)), work.out
        batch, out_src, out_dst = out / "batch.npz", out / "source.npz", out / "target.npz"
        _result(source_worker, "predict", model=model, batch=str(batch), out=str(out_src),
                make_batch={"n": BATCH_SIZE, "seed": BATCH_SEED})
        try:
            pred = _result(target_worker, "predict", model=model, batch=str(batch),
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
