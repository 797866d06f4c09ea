"""The config tree of a ``.keras`` file, read without Keras: its members, the Keras
classes it names, the layers it holds, and version numbers.

A ``.keras`` file is a zip of ``metadata.json``, ``config.json`` and ``model.weights.h5``;
``config.json`` is a tree of serialized objects (``{"module", "class_name", "config",
"registered_name"}``), layers nested in models nested in models."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeGuard

from subkit.errors import InputError


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
def is_serialized(node: Any) -> TypeGuard[dict]:
    return (isinstance(node, dict) and isinstance(node.get("class_name"), str)
            and "config" in node)


def is_keras_module(module: Any) -> TypeGuard[str]:
    return isinstance(module, str) and (module == "keras" or module.startswith("keras."))


def is_custom(obj: dict) -> bool:
    """A serialized object of a class (or function) that is not Keras's own: the
    submission's, or a package's. Keras writes ``module`` None for a class of ``__main__``
    (a notebook's) and "builtins" for Python's own values."""
    module, name = obj.get("module"), obj.get("class_name")
    if not isinstance(name, str) or name.startswith("__") or is_keras_module(module):
        return False
    if name == "function":  # a function: custom unless it is one of Keras's built-ins
        return module not in (None, "builtins") and isinstance(obj.get("config"), str)
    # Keras 3 always writes "module"; an object without it is a legacy (Keras 2) config's
    return module != "builtins" and "module" in obj


Layer = tuple  # (name, index in walk order); index 0 is "no layer yet"


def walk(node: Any, label: str, layer: Layer, is_layer: bool,
          visit: Callable[[dict, str, Layer, bool], None], counter: list | None = None) -> None:
    """Call ``visit(obj, label, layer, is_layer)`` for every serialized object, parents
    before children. ``label`` is "layer.key.key" for objects nested in a layer's config;
    ``layer`` is (name, index) of the nearest enclosing layer (models count as layers),
    numbered in walk order, the same for the same tree."""
    counter = [0] if counter is None else counter
    if isinstance(node, list):
        for item in node:
            walk(item, label, layer, False, visit, counter)
        return
    if not isinstance(node, dict):
        return
    if is_serialized(node):
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
                        walk(item, label, layer, True, visit, counter)
                else:
                    walk(value, f"{label}.{key}", layer, False, visit, counter)
        if isinstance(node.get("compile_config"), dict):
            walk(node["compile_config"], f"{label}.compile_config", layer, False, visit,
                  counter)
        return
    for key, value in node.items():
        walk(value, f"{label}.{key}", layer, False, visit, counter)


def read_keras_zip(path: Path) -> tuple[dict, dict, list[str]]:
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
    config, metadata, names = read_keras_zip(Path(path))
    layers: list[str] = []
    custom: list[dict] = []

    def visit(obj: dict, label: str, layer: Layer, is_layer: bool) -> None:
        module = obj.get("module")
        if is_layer:
            layers.append(obj["class_name"])
        if is_custom(obj) and obj["class_name"] != "function":
            custom.append({"layer": label, "module": module, "class_name": obj["class_name"],
                           "registered_name": obj.get("registered_name")})

    walk(config, "", ("", 0), True, visit)
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



def collect_samples(config: dict) -> dict[str, dict]:
    """The first config of each Keras class in a tree ("module:name" -> config): the probe
    tries it on the target with an unknown key added, to learn whether the class swallows
    keys it does not know."""
    out: dict[str, dict] = {}

    def visit(obj: dict, label: str, layer: Layer, is_layer: bool) -> None:
        module = obj.get("module")
        if is_keras_module(module) and isinstance(obj.get("config"), dict) \
                and not obj["class_name"].startswith("__"):
            out.setdefault(f"{module}:{obj['class_name']}", obj["config"])

    walk(config, "", ("", 0), True, visit)
    return out


def collect_classes(config: dict) -> list[tuple[str, str]]:
    """Every (module, class_name) of Keras's own classes in a config tree."""
    seen: dict[tuple[str, str], None] = {}

    def visit(obj: dict, label: str, layer: Layer, is_layer: bool) -> None:
        module = obj.get("module")
        if is_keras_module(module) and isinstance(obj.get("config"), dict) \
                and not obj["class_name"].startswith("__"):
            seen[(module, obj["class_name"])] = None

    walk(config, "", ("", 0), True, visit)
    return list(seen)


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

    walk(config, "", ("", 0), True, visit)
    return out


def custom_needed(config: dict) -> list[dict]:
    """The custom classes and functions a config tree needs, once each, in walk order:
    ``{"class_name", "registered_name", "module", "layer", "object"}`` (``object``: the
    first serialized object of that class, which the worker tries to construct)."""
    out: dict[tuple[str, str], dict] = {}

    def visit(obj: dict, label: str, layer: Layer, is_layer: bool) -> None:
        # what compile() was given (a custom loss or metric) is not loaded with compile=False
        if not is_custom(obj) or ".compile_config" in label:
            return
        key = (obj["class_name"], str(obj.get("registered_name") or obj.get("config")))
        out.setdefault(key, {"class_name": obj["class_name"],
                             "registered_name": obj.get("registered_name"),
                             "module": obj.get("module"), "config": obj.get("config")
                             if obj["class_name"] == "function" else None,
                             "layer": layer[0] or label, "object": obj})

    walk(config, "", ("", 0), True, visit)
    return list(out.values())


def lambda_layers(config: dict) -> list[str]:
    """The names of the layers whose config holds Python code (a ``__lambda__``)."""
    names: list[str] = []

    def visit(obj: dict, label: str, layer: Layer, is_layer: bool) -> None:
        if obj["class_name"] == "__lambda__" and (layer[0] or label) not in names:
            names.append(layer[0] or label)

    walk(config, "", ("", 0), True, visit)
    return names
