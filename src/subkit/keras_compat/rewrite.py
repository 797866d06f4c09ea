"""The rewrite of a ``.keras`` file's config for an older Keras: which keys to drop (from
both Kerases' answers), the truthful metadata, and the file written member by member."""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

from subkit.errors import SubkitError
from subkit.keras_compat.config import Layer, is_keras_module, is_serialized, layer_objects, walk
from subkit.weights import corrupt_keras


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
        if not is_keras_module(module):
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
        if is_serialized(dt) and not target.get("dtype_dict_ok", True):
            inner = dt.get("config")
            if dt.get("class_name") == "DTypePolicy" and isinstance(inner, dict) \
                    and set(inner) == {"name"}:
                cfg["dtype"] = inner["name"]
                changed.append(f"{label}.dtype")
            else:
                fail(layer_name, name, f"its dtype policy {dt.get('class_name')} "
                     f"cannot be written as a plain dtype for keras {target_version}",
                     hint="use a float32 model for the submission")

    walk(new, "", ("", 0), True, visit)
    return new, changed, unchecked, trials


def metadata_for(metadata: dict, source_version: str | None, target_version: str,
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
    except zipfile.BadZipFile as exc:  # a member damaged inside: its CRC is checked here
        raise corrupt_keras(src, exc) from None
    finally:
        if tmp.exists():
            tmp.unlink()
