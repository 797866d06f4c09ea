"""Competition profiles: what a competition's grader expects, as data.

A profile is a TOML file. Built-in profiles live in ``subkit/profiles/``; a workspace's
``subkit.toml`` names one (``profile = "..."``) and may override any field by repeating
its table, e.g.::

    profile = "an2dl-2024-blood-cells"

    [grader]
    keras = "3.5.0"

    [workspace]
    local_test = "data/local_test.npz"

The ``[workspace]`` table is not part of the profile: it holds the workspace's own paths.
"""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from subkit.errors import ProfileError

WORKSPACE_FILE = "subkit.toml"
DEFAULT_PROFILE = "an2dl-2024-blood-cells"

PLATFORMS = ("codabench", "kaggle")
TASKS = ("classification", "segmentation")
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "mean_iou_ignore_0")
DTYPES = ("uint8", "float32", "float64", "int32", "int64", "float16")

# field -> (type, required) of every table; unknown keys are refused (typos must not
# silently fall back to a default).
SCHEMA: dict[str, dict[str, tuple[type | tuple[type, ...], bool]]] = {
    "": {
        "name": (str, True), "title": (str, False), "platform": (str, True),
        "task": (str, True), "profile": (str, False),
    },
    "input": {"shape": (list, True), "dtype": (str, True), "range": (list, True)},
    "classes": {"names": (list, True), "reference_counts": (list, False)},
    "data": {
        "file": (str, False), "images_key": (str, True), "labels_key": (str, True),
        "labels_shape": (str, False), "n_samples": (int, False),
        "n_duplicated_outliers": (int, False), "n_clean": (int, False),
    },
    "submission": {
        "entry_file": (str, True), "class_name": (str, True), "init_args": (list, False),
        "predict_method": (str, True), "files_at_root": (bool, False),
        "working_directory": (str, False), "zip_size_limit_mb": ((int, float), False),
        "weights_formats": (list, False),
    },
    "output": {"kind": (str, True), "shape": (str, False), "dtype": (str, False)},
    "evaluation": {
        "metric": (str, True), "higher_is_better": (bool, False),
        "time_limit_s": ((int, float), True), "max_submissions_per_day": (int, False),
        "phases": (list, False), "hidden_set_shifted": (bool, False),
    },
    "grader": {
        "python": (str, True), "tensorflow": (str, True), "keras": (str, True),
        "numpy": (str, True), "extras": (dict, False),
    },
    "kaggle": {"id_column": (str, False), "label_column": (str, False), "rows": (int, False)},
}


@dataclass
class Profile:
    """The effective profile: a built-in merged with a workspace's overrides."""

    data: dict[str, Any]
    source: str  # where it came from, for `profile show`
    workspace: Path | None = None  # the folder holding subkit.toml, if any
    workspace_settings: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)

    # -- convenient accessors -------------------------------------------------------
    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(x) for x in self.data["input"]["shape"])

    @property
    def input_dtype(self) -> str:
        return self.data["input"]["dtype"]

    @property
    def input_range(self) -> tuple[float, float]:
        lo, hi = self.data["input"]["range"]
        return float(lo), float(hi)

    @property
    def class_names(self) -> list[str]:
        return list(self.data["classes"]["names"])

    @property
    def n_classes(self) -> int:
        return len(self.data["classes"]["names"])

    @property
    def images_key(self) -> str:
        return self.data["data"]["images_key"]

    @property
    def labels_key(self) -> str:
        return self.data["data"]["labels_key"]

    @property
    def entry_file(self) -> str:
        return self.data["submission"]["entry_file"]

    @property
    def class_name(self) -> str:
        return self.data["submission"]["class_name"]

    @property
    def init_args(self) -> list[str]:
        return list(self.data["submission"].get("init_args", []))

    @property
    def predict_method(self) -> str:
        return self.data["submission"]["predict_method"]

    @property
    def zip_size_limit_mb(self) -> float:
        return float(self.data["submission"].get("zip_size_limit_mb", 0) or 0)

    @property
    def weights_formats(self) -> list[str]:
        return list(self.data["submission"].get("weights_formats", [".keras", ".h5"]))

    @property
    def metric(self) -> str:
        return self.data["evaluation"]["metric"]

    @property
    def time_limit_s(self) -> float:
        return float(self.data["evaluation"]["time_limit_s"])

    @property
    def grader(self) -> dict[str, Any]:
        return dict(self.data["grader"])

    @property
    def task(self) -> str:
        return self.data["task"]

    @property
    def platform(self) -> str:
        return self.data["platform"]

    def workspace_path(self, key: str, default: str | None = None) -> Path | None:
        """A path from ``[workspace]`` of subkit.toml, resolved against its folder."""
        value = self.workspace_settings.get(key, default)
        if value is None:
            return None
        p = Path(value).expanduser()
        if not p.is_absolute():
            p = (self.workspace or Path.cwd()) / p
        return p

    @property
    def submissions_dir(self) -> Path:
        return self.workspace_path("submissions", "submissions")  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.data)


def builtin_names() -> list[str]:
    folder = resources.files("subkit") / "profiles"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _read_toml(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(
            f"{where} is not valid TOML: {exc}",
            hint="fix the line it names; strings need quotes, tables look like [grader]",
        ) from None


def load_builtin(name: str) -> dict[str, Any]:
    names = builtin_names()
    if name not in names:
        raise ProfileError(
            f"no built-in profile named {name!r}",
            hint=f"built-in profiles: {', '.join(names)} (subkit profile list)",
        )
    text = (resources.files("subkit") / "profiles" / f"{name}.toml").read_text("utf-8")
    return _read_toml(text, f"built-in profile {name}")


def find_workspace(start: Path | None = None) -> Path | None:
    """The nearest folder from ``start`` upwards that holds subkit.toml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / WORKSPACE_FILE).is_file():
            return folder
    return None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "extras":
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate(data: dict[str, Any], where: str) -> None:
    """Refuse unknown tables/keys, wrong types, and values outside the known sets."""
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in SCHEMA or key == "":
                raise ProfileError(
                    f"{where}: unknown table [{key}]",
                    hint=f"known tables: {', '.join('[' + k + ']' for k in SCHEMA if k)}, [workspace]",
                )
            table, fields = value, SCHEMA[key]
            for k, v in table.items():
                if k not in fields:
                    raise ProfileError(
                        f"{where}: unknown key {k!r} in [{key}]",
                        hint=f"keys of [{key}]: {', '.join(fields)}",
                    )
                _check_type(f"[{key}] {k}", v, fields[k][0], where)
        else:
            if key not in SCHEMA[""]:
                raise ProfileError(
                    f"{where}: unknown key {key!r}",
                    hint=f"top-level keys: {', '.join(SCHEMA[''])}; others belong in a [table]",
                )
            _check_type(key, value, SCHEMA[""][key][0], where)
    # required fields
    for table, fields in SCHEMA.items():
        section = data if table == "" else data.get(table, {})
        for k, (_, required) in fields.items():
            if required and k not in section and not (table == "" and k == "profile"):
                label = k if table == "" else f"[{table}] {k}"
                raise ProfileError(f"{where}: missing {label}", hint="every profile must say it")
    if data["platform"] not in PLATFORMS:
        raise ProfileError(f"{where}: platform {data['platform']!r} is not known",
                           hint=f"one of: {', '.join(PLATFORMS)}")
    if data["task"] not in TASKS:
        raise ProfileError(f"{where}: task {data['task']!r} is not known",
                           hint=f"one of: {', '.join(TASKS)}")
    if data["evaluation"]["metric"] not in METRICS:
        raise ProfileError(f"{where}: metric {data['evaluation']['metric']!r} is not known",
                           hint=f"one of: {', '.join(METRICS)}")
    if data["input"]["dtype"] not in DTYPES:
        raise ProfileError(f"{where}: input dtype {data['input']['dtype']!r} is not known",
                           hint=f"one of: {', '.join(DTYPES)}")
    shape = data["input"]["shape"]
    if not shape or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ProfileError(f"{where}: [input] shape must be positive integers, got {shape}",
                           hint="e.g. shape = [96, 96, 3] (one sample, without the batch axis)")
    if len(data["classes"]["names"]) < 2:
        raise ProfileError(f"{where}: [classes] names needs at least two classes",
                           hint='e.g. names = ["cat", "dog"]')
    if float(data["evaluation"]["time_limit_s"]) <= 0:
        raise ProfileError(f"{where}: [evaluation] time_limit_s must be positive",
                           hint="Codabench's default is 600")


def _check_type(label: str, value: Any, typ: Any, where: str) -> None:
    if isinstance(value, bool) and typ in (int, float, (int, float)):
        ok = False
    else:
        ok = isinstance(value, typ)
    if not ok:
        names = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise ProfileError(f"{where}: {label} should be {names}, got {value!r}",
                           hint="see `subkit profile show` for the expected form")


def load(name: str | None = None, workspace: Path | None | bool = None) -> Profile:
    """The effective profile.

    ``name`` forces a built-in (or a path to a .toml profile); otherwise the workspace's
    subkit.toml decides, and without a workspace the default built-in is used.
    ``workspace=False`` ignores any subkit.toml.
    """
    ws: Path | None
    if workspace is False:
        ws = None
    elif isinstance(workspace, Path):
        ws = workspace.resolve() if (workspace / WORKSPACE_FILE).is_file() else None
    else:
        env = os.environ.get("SUBKIT_WORKSPACE")
        ws = find_workspace(Path(env)) if env else find_workspace()
    ws_data: dict[str, Any] = {}
    if ws is not None:
        path = ws / WORKSPACE_FILE
        ws_data = _read_toml(path.read_text("utf-8"), str(path))
    workspace_settings = ws_data.pop("workspace", {}) if ws_data else {}
    if not isinstance(workspace_settings, dict):
        raise ProfileError(f"{ws / WORKSPACE_FILE}: workspace must be a table",
                           hint='write it as [workspace] with keys like local_test = "..."')
    base_name = name or ws_data.pop("profile", None) or DEFAULT_PROFILE
    ws_data.pop("profile", None)
    if base_name.endswith(".toml") or os.sep in base_name:
        p = Path(base_name)
        if not p.is_file():
            raise ProfileError(f"profile file not found: {p}",
                               hint="give a built-in name (subkit profile list) or a .toml path")
        base = _read_toml(p.read_text("utf-8"), str(p))
        source = str(p)
    else:
        base = load_builtin(base_name)
        source = f"built-in {base_name}"
    merged = _merge(base, ws_data) if ws_data else base
    where = f"{ws / WORKSPACE_FILE}" if ws_data else source
    validate(merged, where)
    if ws_data:
        source += f" + overrides from {ws / WORKSPACE_FILE}"
    return Profile(data=merged, source=source, workspace=ws,
                   workspace_settings=workspace_settings, overrides=ws_data)


def to_toml(data: dict[str, Any]) -> str:
    import tomli_w

    return tomli_w.dumps(data)
