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
from typing import TYPE_CHECKING, Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from subkit.errors import ProfileError

if TYPE_CHECKING:
    from subkit.kinds import Kind

WORKSPACE_FILE = "subkit.toml"
DEFAULT_PROFILE = "an2dl-2024-blood-cells"

PLATFORMS = ("codabench", "codalab", "kaggle")
# The tasks, their metrics, outputs and input kinds are the kinds' (subkit.kinds): a new
# kind of competition is a module there and a profile here, nothing else.


def _tasks() -> dict[str, list[Kind]]:
    from subkit import kinds

    return kinds.tasks()


def _task_metrics(task: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(m for k in _tasks().get(task, []) for m in k.metrics))


def _metrics() -> tuple[str, ...]:
    return tuple(dict.fromkeys(m for t in _tasks() for m in _task_metrics(t)))


def _input_kinds() -> tuple[str, ...]:
    return tuple(dict.fromkeys(k.input_kind for ks in _tasks().values() for k in ks))


LOWER_IS_BETTER = ("mse", "mae", "rmse")
CSV_LAYOUTS = ("labels", "pixels")  # one label per row | `id` then one column per pixel
CSV_LABEL_VALUES = ("indices", "names")
SUBMISSION_PLACEHOLDER = "{submission}"  # in init_args: the unzipped submission's folder
NETWORK_POLICIES = ("off", "on")
DTYPES = ("uint8", "float32", "float64", "int32", "int64", "float16")

# field -> (type, required) of every table; unknown keys are refused (typos must not
# silently fall back to a default).
SCHEMA: dict[str, dict[str, tuple[type | tuple[type, ...], bool]]] = {
    "": {
        "name": (str, True), "title": (str, False), "platform": (str, True),
        "task": (str, True), "profile": (str, False),
    },
    "input": {"shape": (list, True), "dtype": (str, True), "range": (list, True),
              "kind": (str, False), "extra_values": (dict, False)},
    "classes": {"names": (list, True), "reference_counts": (list, False)},
    "data": {
        "file": (str, False), "images_key": (str, True), "labels_key": (str, True),
        "labels_shape": (str, False), "n_samples": (int, False),
        "n_duplicated_outliers": (int, False), "n_clean": (int, False),
        "allow_pickle": (bool, False),
    },
    "submission": {
        "entry_file": (str, True), "class_name": (str, True), "init_args": (list, False),
        "predict_method": (str, True), "files_at_root": (bool, False),
        "working_directory": (str, False), "zip_size_limit_mb": ((int, float), False),
        "weights_formats": (list, False), "predict_extra_inputs": (list, False),
        "required_files": (dict, False),
    },
    "output": {"kind": (str, True), "shape": (str, False), "dtype": (str, False),
               "tensor": (bool, False), "horizon": (int, False), "phase": (dict, False)},
    "evaluation": {
        "metric": (str, True), "higher_is_better": (bool, False),
        "time_limit_s": ((int, float), True), "max_submissions_per_day": (int, False),
        "time_cap_s": ((int, float), False),  # the platform's own cap on a run (subkit.clock)
        "phases": (list, False), "hidden_set_shifted": (bool, False),
        "ignore_classes": (list, False), "secondary_metrics": (list, False),
    },
    "grader": {
        "python": (str, True), "tensorflow": (str, True), "keras": (str, True),
        "numpy": (str, True), "extras": (dict, False),
    },
    "kaggle": {"id_column": (str, False), "label_column": (str, False), "rows": (int, False),
               "layout": (str, False), "label_values": (str, False), "id_width": (int, False)},
    # what `subkit probe import` measured on the grader (subkit.commands.probe)
    "probe": {"date": (str, False), "measured": (str, False), "source": (str, False),
              "sha256": (str, False), "profile": (str, False), "file": (str, False),
              "network": (str, False), "machine": (dict, False)},
    # the grader's surroundings: network "off" | "on" (what the platform's worker does; a
    # run's network is cut when "off", unless the command line says otherwise)
    "sandbox": {"network": (str, False)},
    # the shift suite the profile's hypothesis of the hidden test names (`--shift` alone)
    "shift": {"default": (str, False)},
    # what the sandbox allows one run (subkit.grader.sandbox.Limits, safezip.bounds)
    "limits": {
        "processes": (int, False), "memory_mb": (int, False), "file_size_mb": (int, False),
        "disk_mb": (int, False), "tmp_mb": (int, False), "unzipped_mb": (int, False),
        "zip_members": (int, False),
    },
}
# [limits] keys where 0 means "derive it" (memory: from this machine; unzipped: from the zip
# size limit); the others must be positive
_LIMITS_ZERO_OK = ("memory_mb", "unzipped_mb")


@dataclass(frozen=True)
class CsvLayout:
    """A Kaggle CSV: ``labels`` (id, label) or ``pixels`` (id, then one column per pixel)."""

    layout: str
    id_column: str
    label_column: str
    label_values: str  # "indices" or "names" (the class names, e.g. no_pain)
    id_width: int = 0  # ids 0..n-1 zero-padded to this many digits (000, 001, ...)
    rows: int = 0  # the hidden test set's rows, when known (0: unknown)


@dataclass(frozen=True)
class TaskSpec:
    """What scoring (``subkit.grader.scoring``) needs from a profile, as plain values:
    ``Profile.task_spec(phase)`` builds it."""

    kind: str  # "labels" | "forecasts" | "masks"
    metric: str
    class_names: list = field(default_factory=list)
    horizon: int | None = None
    phase: str | None = None
    ignore_classes: list = field(default_factory=list)
    mask_shape: tuple = ()
    secondary: list = field(default_factory=list)


@dataclass
class Profile:
    """The effective profile: a built-in merged with a workspace's overrides."""

    data: dict[str, Any]
    source: str  # where it came from, for `profile show`
    workspace: Path | None = None  # the folder holding subkit.toml, if any
    workspace_settings: dict[str, Any] = field(default_factory=dict)

    # -- convenient accessors -------------------------------------------------------
    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def title(self) -> str:
        return str(self.data.get("title") or self.name)

    @property
    def limits(self) -> dict[str, Any]:
        """The ``[limits]`` table: the sandbox's and the zip reader's bounds (may be empty)."""
        return dict(self.data.get("limits") or {})

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
        return list(self.data.get("classes", {}).get("names", []))

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def reference_counts(self) -> list[int]:
        """Per-class counts of the competition's training file, when known."""
        return [int(c) for c in self.data.get("classes", {}).get("reference_counts", [])]

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

    def time_limit(self, override: float | None = None) -> float:
        """The limit a run gets: ``override`` (a command's --time-limit) or the profile's."""
        return float(override) if override else self.time_limit_s

    @property
    def grader(self) -> dict[str, Any]:
        return dict(self.data["grader"])

    @property
    def task(self) -> str:
        return self.data["task"]

    @property
    def network(self) -> str:
        """``"off"`` or ``"on"``: whether the grader leaves a submission the network
        (``[sandbox] network``; ``"off"`` where the profile does not say)."""
        return str((self.data.get("sandbox") or {}).get("network", "off"))

    def isolate_network(self, override: bool | None = None) -> bool:
        """Whether a run cuts the child's network: ``override`` when the command line gave
        one, else the profile's ``[sandbox] network`` (cut when "off")."""
        return override if override is not None else self.network == "off"

    @property
    def default_shift_suite(self) -> str:
        """The suite ``--shift`` without a name runs: ``[shift] default``, else "default"."""
        return str((self.data.get("shift") or {}).get("default") or "default").strip()

    @property
    def platform(self) -> str:
        return self.data["platform"]

    # -- the kind of competition ----------------------------------------------------
    @property
    def input_kind(self) -> str:
        """``images`` or ``series`` (time steps x features, or one value per step)."""
        return self.data["input"].get("kind", "images")

    @property
    def kind(self) -> str:
        """classification | series-classification | forecasting | segmentation."""
        from subkit import kinds

        kind = kinds.for_profile_data(self.task, self.input_kind)
        return kind.name if kind is not None else self.task

    @property
    def kind_spec(self) -> Kind:
        """The kind's object (``subkit.kinds``): everything that differs by kind."""
        from subkit import kinds

        return kinds.of(self)

    @property
    def extra_inputs(self) -> list[str]:
        """Names of predict's inputs after X, in order (the test set's arrays of that name)."""
        return list(self.data["submission"].get("predict_extra_inputs", []))

    def extra_input_values(self, name: str) -> list | None:
        """The values an extra input may hold (e.g. the categories A-F), if the profile says."""
        values = self.data["input"].get("extra_values", {}).get(name)
        return list(values) if values is not None else None

    @property
    def required_files(self) -> dict[str, str]:
        """Files the zip must hold besides the entry file: name -> text (CodaLab's metadata)."""
        return dict(self.data["submission"].get("required_files", {}))

    @property
    def output_kind(self) -> str:
        return self.data["output"]["kind"]

    @property
    def returns_tensor(self) -> bool:
        """The course's own template returns a TF tensor (CodaLab: ``tf.argmax(...)``)."""
        return bool(self.data["output"].get("tensor", False))

    @property
    def phases(self) -> list[str]:
        return list(self.data["evaluation"].get("phases", []))

    def phase(self, name: str | None) -> str | None:
        """The profile's phase called ``name`` (a name or a 0-based index); None: the first."""
        phases = self.phases
        if name is None:
            return phases[0] if phases else None
        if name in phases:
            return name
        if name.isdigit() and int(name) < len(phases):
            return phases[int(name)]
        raise ProfileError(f"profile {self.name} has no phase {name!r}",
                           hint=f"its phases: {', '.join(phases) or 'none'} (a name or an index)")

    def horizon(self, phase: str | None = None) -> int | None:
        """Steps a forecast must hold in ``phase`` (the first phase by default)."""
        out = self.data["output"]
        over = out.get("phase", {}).get(self.phase(phase) or "", {})
        return over.get("horizon", out.get("horizon"))

    @property
    def higher_is_better(self) -> bool:
        return bool(self.data["evaluation"].get("higher_is_better",
                                                self.metric not in LOWER_IS_BETTER))

    @property
    def max_submissions_per_day(self) -> int | None:
        value = self.data["evaluation"].get("max_submissions_per_day")
        return None if value is None else int(value)

    @property
    def secondary_metrics(self) -> list[str]:
        return list(self.data["evaluation"].get("secondary_metrics", []))

    @property
    def ignore_classes(self) -> list[int]:
        return [int(c) for c in self.data["evaluation"].get("ignore_classes", [])]

    @property
    def allow_pickle(self) -> bool:
        """The competition's file stores Python objects (e.g. string labels)."""
        return bool(self.data["data"].get("allow_pickle", False))

    @property
    def csv(self) -> CsvLayout:
        kag = self.data.get("kaggle", {})
        return CsvLayout(layout=kag.get("layout", "labels"), id_column=kag.get("id_column", "id"),
                         label_column=kag.get("label_column", "label"),
                         label_values=kag.get("label_values", "indices"),
                         id_width=int(kag.get("id_width", 0)), rows=int(kag.get("rows", 0)))

    @property
    def workspace_file(self) -> Path:
        """The workspace's subkit.toml (``workspace`` must be set)."""
        return Path(self.workspace or ".") / WORKSPACE_FILE

    def task_spec(self, phase: str | None = None):
        """What scoring needs, as plain values (subkit.grader.scoring stays profile-free)."""
        return TaskSpec(kind=self.output_kind, metric=self.metric, class_names=self.class_names,
                        horizon=self.horizon(phase), phase=self.phase(phase),
                        ignore_classes=self.ignore_classes,
                        mask_shape=self.input_shape[:2] if self.kind_spec.output == "masks"
                        else (),
                        secondary=self.secondary_metrics)

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
        p = self.workspace_path("submissions", "submissions")
        assert p is not None  # it has a default, and a TOML value is never None
        return p

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
                    hint=f"known tables: {', '.join('[' + k + ']' for k in SCHEMA if k)}, "
                         "[workspace]",
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
    for name, fields in SCHEMA.items():
        if name == "classes" and name not in data and not any(
                k.needs_classes for k in _tasks().get(data.get("task", ""), [None])
                if k is not None):  # a kind without classes (forecasting) needs no table
            continue
        section = data if name == "" else data.get(name, {})
        for k, (_, required) in fields.items():
            if required and k not in section and not (name == "" and k == "profile"):
                label = k if name == "" else f"[{name}] {k}"
                raise ProfileError(f"{where}: missing {label}", hint="every profile must say it")
    if data["platform"] not in PLATFORMS:
        raise ProfileError(f"{where}: platform {data['platform']!r} is not known",
                           hint=f"one of: {', '.join(PLATFORMS)}")
    if data["task"] not in _tasks():
        raise ProfileError(f"{where}: task {data['task']!r} is not known",
                           hint=f"one of: {', '.join(_tasks())}")
    if data["evaluation"]["metric"] not in _metrics():
        raise ProfileError(f"{where}: metric {data['evaluation']['metric']!r} is not known",
                           hint=f"one of: {', '.join(_metrics())}")
    if data["input"]["dtype"] not in DTYPES:
        raise ProfileError(f"{where}: input dtype {data['input']['dtype']!r} is not known",
                           hint=f"one of: {', '.join(DTYPES)}")
    shape = data["input"]["shape"]
    if not shape or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ProfileError(f"{where}: [input] shape must be positive integers, got {shape}",
                           hint="e.g. shape = [96, 96, 3] (one sample, without the batch axis)")
    if "classes" in data and len(data["classes"]["names"]) < 2:
        raise ProfileError(f"{where}: [classes] names needs at least two classes",
                           hint='e.g. names = ["cat", "dog"]')
    for k, v in (data.get("limits") or {}).items():
        if v < 0 or (v == 0 and k not in _LIMITS_ZERO_OK):
            raise ProfileError(f"{where}: [limits] {k} must be positive, got {v}",
                               hint="see `subkit profile show` for the defaults"
                                    + (" (0 derives it)" if k in _LIMITS_ZERO_OK else ""))
    network = (data.get("sandbox") or {}).get("network", "off")
    if network not in NETWORK_POLICIES:
        raise ProfileError(f"{where}: [sandbox] network {network!r} is not off or on",
                           hint='network = "off" (the grader cuts it) or "on" (it leaves it)')
    suite = (data.get("shift") or {}).get("default")
    if suite is not None and not str(suite).strip():
        raise ProfileError(f"{where}: [shift] default is empty",
                           hint='name a suite, e.g. default = "hidden-2024", or drop the key')
    if float(data["evaluation"]["time_limit_s"]) <= 0:
        raise ProfileError(f"{where}: [evaluation] time_limit_s must be positive",
                           hint="Codabench's default is 600")
    _validate_kind(data, where)


def _refuse(where: str, what: str, hint: str) -> None:
    raise ProfileError(f"{where}: {what}", hint=hint)


def _validate_kind(data: dict[str, Any], where: str) -> None:
    """What the task, the output, the metric and the CSV layout must agree on."""
    task, ev, out = data["task"], data["evaluation"], data["output"]
    sub, inp = data["submission"], data["input"]
    metrics = _task_metrics(task)
    if ev["metric"] not in metrics:
        _refuse(where, f"metric {ev['metric']!r} does not rank a {task} task",
                f"one of: {', '.join(metrics)}")
    for m in ev.get("secondary_metrics", []):
        if m not in metrics:
            _refuse(where, f"[evaluation] secondary_metrics: {m!r} is not a {task} metric",
                    f"any of: {', '.join(metrics)}")
    if inp.get("kind", "images") not in _input_kinds():
        _refuse(where, f"[input] kind {inp['kind']!r} is not known",
                f"one of: {', '.join(_input_kinds())}")
    from subkit import kinds

    output = kinds.for_profile_data(task, inp.get("kind", "images"))
    if output is not None and out["kind"] != output.output:
        _refuse(where, f"[output] kind {out['kind']!r} does not fit a {task} task",
                f'a {task} task returns kind = "{output.output}"')
    n_classes = len(data.get("classes", {}).get("names", []))
    for c in ev.get("ignore_classes", []):
        if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c < n_classes:
            _refuse(where, f"[evaluation] ignore_classes: {c!r} is not a class id "
                           f"0..{n_classes - 1}",
                    "e.g. ignore_classes = [0] (the background)")
    phases = ev.get("phases", [])
    if task == "forecasting" and (not isinstance(out.get("horizon"), int) or out["horizon"] < 1):
        _refuse(where, "[output] horizon is missing for a forecasting task",
                "say how many steps predict returns, e.g. horizon = 9")
    for phase, over in out.get("phase", {}).items():
        if phase not in phases:
            _refuse(where, f"[output.phase.{phase}] names no phase of [evaluation] phases {phases}",
                    "name one of the phases listed in [evaluation] phases")
        if not isinstance(over, dict) or set(over) - {"horizon"}:
            _refuse(where, f"[output.phase.{phase}] may only change horizon",
                    f"e.g. [output.phase.{phase}] horizon = 18")
        if not isinstance(over.get("horizon", 1), int) or isinstance(over.get("horizon"), bool) \
                or over.get("horizon", 1) < 1:
            _refuse(where, f"[output.phase.{phase}] horizon should be a positive int",
                    "e.g. horizon = 18")
    names = sub.get("predict_extra_inputs", [])
    for name in names:
        if not isinstance(name, str) or not name.isidentifier():
            _refuse(where, f"[submission] predict_extra_inputs: {name!r} is not a name",
                    'names of the test set\'s arrays passed after X, e.g. ["categories"]')
    for name, values in inp.get("extra_values", {}).items():
        if name not in names or not isinstance(values, list) or not values:
            _refuse(where, f"[input] extra_values: {name!r} is not a predict input "
                           "or has no values",
                    'e.g. extra_values = { categories = ["A", "B"] } with "categories" in '
                    "[submission] predict_extra_inputs")
    for fname, text in sub.get("required_files", {}).items():
        if not isinstance(text, str) or "/" in fname or fname in ("", sub["entry_file"]):
            _refuse(where, f"[submission] required_files: {fname!r} should map a file name at the "
                           "zip root to its text", 'e.g. required_files = { metadata = "..." }')
    for a in sub.get("init_args", []):
        if not isinstance(a, str):
            _refuse(where, f"[submission] init_args: {a!r} should be a string",
                    f'e.g. init_args = ["{SUBMISSION_PLACEHOLDER}"] (the submission\'s folder)')
    kag = data.get("kaggle", {})
    if kag.get("layout", "labels") not in CSV_LAYOUTS:
        _refuse(where, f"[kaggle] layout {kag['layout']!r} is not known",
                f"one of: {', '.join(CSV_LAYOUTS)}")
    if kag.get("label_values", "indices") not in CSV_LABEL_VALUES:
        _refuse(where, f"[kaggle] label_values {kag['label_values']!r} is not known",
                f"one of: {', '.join(CSV_LABEL_VALUES)}")


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
    ws_file = None if ws is None else ws / WORKSPACE_FILE  # ws_data is read from it, or empty
    workspace_settings = ws_data.pop("workspace", {}) if ws_data else {}
    if not isinstance(workspace_settings, dict):
        raise ProfileError(f"{ws_file}: workspace must be a table",
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
    where = f"{ws_file}" if ws_data else source
    validate(merged, where)
    if ws_data:
        source += f" + overrides from {ws_file}"
    return Profile(data=merged, source=source, workspace=ws,
                   workspace_settings=workspace_settings)


def to_toml(data: dict[str, Any]) -> str:
    import tomli_w

    return tomli_w.dumps(data)
