"""Static checks of a submission's model.py: what the grader's import and calls need.

Reads the source with ``ast`` (never imports it): the profile's class exists at the top
level, ``__init__`` takes no required argument, ``predict(self, X)`` takes one, the weights
file names it mentions exist in the submission, nothing points at an absolute path that
exists only on the author's machine, and its imports are ones the grader has.

A TensorFlow SavedModel folder (``saved_model.pb`` + ``variables/``, what tf.keras 2 wrote
for ``model.save("Name")``) is a weights "file" too: model.py loads it by the folder's name,
``load_model(os.path.join(path, 'Name'))``. A string that is only a suffix (``'.keras'`` in
``f.endswith('.keras')`` of a folder listing) names no file.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from subkit.weights import is_weights_name, version_tuple

if TYPE_CHECKING:
    from subkit.profile import Profile

GRADER_PACKAGES = {"numpy", "tensorflow", "keras", "tf_keras", "h5py", "google", "absl"}


@dataclass
class Finding:
    level: str  # "error" | "warning"
    message: str
    hint: str = ""
    contestable: bool = False  # a run may prove it wrong (a name model.py may never load)


@dataclass
class ModelPyReport:
    findings: list[Finding] = field(default_factory=list)
    weights_names: list[str] = field(default_factory=list)
    lists_directory: bool = False
    missing_weights: list[str] = field(default_factory=list)  # surely loaded, not in the zip
    defined_names: set[str] = field(default_factory=set)
    savedmodels: list[str] = field(default_factory=list)  # SavedModel folders model.py names

    def error(self, message: str, hint: str = "") -> None:
        self.findings.append(Finding("error", message, hint))

    def warn(self, message: str, hint: str = "") -> None:
        self.findings.append(Finding("warning", message, hint))

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]


def check_source(source: str, prof: Profile, *, files: list[str],
                 extra_modules: set[str] | None = None,
                 filename: str = "model.py") -> ModelPyReport:
    """``files``: the names at the submission's root (to check weights names against)."""
    rep = ModelPyReport()
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        rep.error(f"{filename} has a syntax error at line {exc.lineno}: {exc.msg}",
                  f"run `python -m py_compile {filename}` and fix that line")
        return rep
    cls_name = prof.class_name
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    rep.defined_names = {n.name for n in ast.walk(tree)
                         if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    rep.defined_names |= {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign)
                          for t in n.targets if isinstance(t, ast.Name)}
    if cls_name not in classes:
        other = [c for c in classes if c.lower() == cls_name.lower()]
        rep.error(f"{filename} defines no top-level class {cls_name!r}"
                  + (f" (it has {other[0]!r}: names are case-sensitive)" if other else ""),
                  f"the grader runs `from {filename[:-3]} import {cls_name}`; "
                  f"define `class {cls_name}:`")
    else:
        _check_class(classes[cls_name], prof, rep, filename)
    _check_strings(tree, rep, files, filename)
    _check_imports(tree, rep, files, extra_modules or set(), filename)
    return rep


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    found = None
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            found = node  # the last definition wins, as in Python
    return found


def _required_positional(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    args = fn.args.posonlyargs + fn.args.args
    n_defaults = len(fn.args.defaults)
    required = args[: len(args) - n_defaults] if n_defaults else args
    return [a.arg for a in required]


def _check_class(cls: ast.ClassDef, prof: Profile, rep: ModelPyReport, filename: str) -> None:
    name = cls.name
    init = _method(cls, "__init__")
    n_init = len(prof.init_args)
    if init is None:
        if not cls.bases:
            rep.warn(f"{name} has no __init__: nothing loads the weights when the grader "
                     f"calls {name}()",
                     "define def __init__(self): that loads the model (is it commented out?)")
    else:
        req = _required_positional(init)[1:]  # drop self
        kwonly_req = [a.arg for a, d in zip(init.args.kwonlyargs, init.args.kw_defaults)
                      if d is None]
        if len(req) > n_init or kwonly_req:
            _init_needs_more(name, req[n_init:] + kwonly_req, prof, rep)
        elif len(init.args.posonlyargs + init.args.args) - 1 < n_init and init.args.vararg is None:
            rep.error(f"{name}.__init__ takes no path, but the grader calls {init_call(prof)}",
                      "define def __init__(self, path): and load the weights from "
                      "os.path.join(path, NAME)")
    meth = prof.predict_method
    call = predict_call(prof)
    define = f"def {call.replace('(', '(self, ', 1)}:"
    n_in = 1 + len(prof.extra_inputs)
    pred = _method(cls, meth)
    if pred is None:
        if not cls.bases:
            rep.error(f"{name} has no method {call.replace('(', '(self, ', 1)}",
                      f"define {define} returning {prof.output_kind}")
    else:
        args = pred.args.posonlyargs + pred.args.args
        is_static = any(isinstance(d, ast.Name) and d.id == "staticmethod"
                        for d in pred.decorator_list)
        positional = len(args) - (0 if is_static else 1)
        required = len(_required_positional(pred)) - (0 if is_static else 1)
        if required > n_in:
            rep.error(f"{name}.{meth} requires {required} arguments, but the grader calls {call}",
                      f"define {define} with any other parameter given a default")
        elif positional < n_in and pred.args.vararg is None:
            takes = "no input" if positional < 1 else f"{positional} input{'s' * (positional > 1)}"
            rep.error(f"{name}.{meth} takes {takes}, but the grader calls {call}",
                      f"define {define}")


PATH_NAMES = ("path", "folder", "dir", "directory", "model_path", "submission_dir", "root")


def init_call(prof: Profile) -> str:
    """How the grader makes the model, in words: ``Model()``, ``model(path)``."""
    from subkit.profile import SUBMISSION_PLACEHOLDER

    args = ("path" if a == SUBMISSION_PLACEHOLDER else repr(a) for a in prof.init_args)
    return f"{prof.class_name}({', '.join(args)})"


def predict_call(prof: Profile) -> str:
    """How the grader calls predict, in words: ``predict(X)``, ``predict(X, categories)``."""
    return f"{prof.predict_method}({', '.join(['X', *prof.extra_inputs])})"


def _init_needs_more(name: str, missing: list[str], prof: Profile, rep: ModelPyReport) -> None:
    """__init__ wants arguments the grader does not pass (a CodaLab model(path) on Codabench)."""
    call = init_call(prof)
    if not prof.init_args and len(missing) == 1 and missing[0].lower() in PATH_NAMES:
        rep.error(f"{name}.__init__ requires argument(s) {missing[0]}, the submission's path as "
                  f"CodaLab's model(path) passed it, but a {prof.platform} grader calls {call} "
                  "with no argument",
                  "define def __init__(self): and find the folder yourself: "
                  "os.path.dirname(os.path.abspath(__file__))")
        return
    rep.error(f"{name}.__init__ requires argument(s) {', '.join(missing)}, "
              f"but the grader calls {call}",
              "take no argument: def __init__(self): and load the weights by a path relative "
              "to model.py" if not prof.init_args
              else f"define __init__ to take what {call} passes")


_TEXT_CALLS = {"print", "debug", "info", "warning", "warn", "error", "exception", "critical",
               "log", "write", "echo", "secho", "format"}
_EXISTS_CALLS = {"exists", "isfile", "isdir", "is_file", "is_dir", "access", "lexists"}
_ABSOLUTE = ("/content/", "/kaggle/", "/home/", "/Users/", "/mnt/", "/gdrive", "/drive/")


def _call_name(node: ast.AST) -> str:
    fn = node.func if isinstance(node, ast.Call) else None
    return fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")


def _context(node: ast.AST, parents: dict) -> str:
    """How sure a string's use is: "text" (printed, logged, a piece of an f-string: never
    a path that is loaded), "fallback" (in an except handler, under an `if
    os.path.exists(...)` or `if __name__ == "__main__"`: maybe never run), or "direct"."""
    cur = parents.get(node)
    while cur is not None:
        if isinstance(cur, ast.JoinedStr) or (isinstance(cur, ast.Call)
                                              and _call_name(cur) in _TEXT_CALLS):
            return "text"
        if isinstance(cur, ast.ExceptHandler):
            return "fallback"
        if isinstance(cur, (ast.If, ast.IfExp, ast.While)):
            names = {_call_name(n) for n in ast.walk(cur.test)} | \
                {n.id for n in ast.walk(cur.test) if isinstance(n, ast.Name)}
            if names & (_EXISTS_CALLS | {"__name__"}):
                return "fallback"
        cur = parents.get(cur)
    return "direct"


def _siblings(node: ast.AST, parents: dict) -> list[str]:
    """The other strings of the dict/list/tuple/set literal a string is a member of: the
    alternatives model.py chooses from."""
    parent = parents.get(node)
    if isinstance(parent, ast.Dict):
        items = parent.values if node in parent.values else []
    elif isinstance(parent, (ast.List, ast.Tuple, ast.Set)):
        items = parent.elts
    else:
        items = []
    return [n.value for n in items if n is not node and isinstance(n, ast.Constant)
            and isinstance(n.value, str)]


def savedmodel_dirs(files: list[str]) -> list[str]:
    """The TensorFlow SavedModel folders among a submission's files (``X/saved_model.pb``;
    "." for one at the root)."""
    out = []
    for f in files:
        parts = f.rstrip("/").split("/")
        if parts[-1] == "saved_model.pb":
            out.append("/".join(parts[:-1]) or ".")
    return sorted(set(out))


def _names_savedmodel(s: str, dirs: list[str]) -> str | None:
    """The SavedModel folder a model.py string names: the folder's path in the zip, or its
    last component (``os.path.join(path, 'models', 'Forecaster')``)."""
    rel = s[2:] if s.startswith("./") else s
    rel = rel.rstrip("/")
    for d in dirs:
        if rel == d or (d != "." and rel == d.split("/")[-1]):
            return d
    return None


def _is_bare_suffix(s: str) -> bool:
    """``'.keras'``, ``'.h5'``, ``'.weights.h5'``: a suffix to match names against, no name."""
    low = s.lower()
    return low.startswith(".") and "/" not in low and any(
        low == suf for suf in (".keras", ".weights.h5", ".h5", ".hdf5"))


def _check_strings(tree: ast.AST, rep: ModelPyReport, files: list[str], filename: str) -> None:
    """Weights names and absolute paths in model.py's strings. An error only where the
    string is surely used as a path; where it may never be (printed, a fallback, one of
    several alternatives), a warning that leaves the verdict to the smoke test."""
    root = {f.split("/")[-1] for f in files}
    all_files = set(files)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def present(name: str) -> bool:
        rel = name[2:] if name.startswith("./") else name
        return rel in all_files or rel.split("/")[-1] in root

    seen: list[str] = []
    missing: dict[str, str] = {}  # name -> why it may be fine ("" when it surely is used)
    saved_dirs = savedmodel_dirs(files)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) in (
                "listdir", "glob", "iglob", "scandir", "walk", "rglob", "iterdir"):
            rep.lists_directory = True
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        s = node.value.strip()
        if not s or "\n" in s or len(s) > 400 or any(c.isspace() for c in s):
            continue
        ctx = _context(node, parents)
        if ctx == "text":
            continue
        if s.startswith(_ABSOLUTE) or (len(s) > 2 and s[1] == ":" and s[2] in "\\/"):
            fix = ("load files relative to model.py: "
                   "os.path.join(os.path.dirname(os.path.abspath(__file__)), NAME)")
            if ctx == "fallback":
                rep.warn(f"{filename} names the absolute path {s!r} in a fallback (an except "
                         "handler or an existence test): the grader has no such path, so "
                         "that branch must never be needed there; the smoke test decides",
                         fix)
            else:
                rep.error(f"{filename} uses the absolute path {s!r}, which exists only on "
                          "your machine", fix)
            continue
        found = _names_savedmodel(s, saved_dirs)
        if found and found not in rep.savedmodels:
            rep.savedmodels.append(found)
        if not is_weights_name(s) or _is_bare_suffix(s) or any(c in s for c in "*{%"):
            continue
        if present(s):
            seen.append(s[2:] if s.startswith("./") else s)
            continue
        zipped = [a for a in _siblings(node, parents) if is_weights_name(a) and present(a)]
        why = ("one of several alternatives, and " + ", ".join(repr(z) for z in zipped)
               + " is zipped") if zipped else \
            ("only in a fallback (an except handler or an existence test)"
             if ctx == "fallback" else "")
        if s not in missing or not why:
            missing[s] = why
    have = ", ".join(sorted(f for f in files if is_weights_name(f))) or "no weights file"
    for name, why in missing.items():
        if why:
            rep.warn(f"{filename} names {name!r}, which is not in the submission ({why}); "
                     "the smoke test decides",
                     "nothing to do if the smoke test passes; otherwise zip that file too")
        else:
            rep.missing_weights.append(name)
            rep.error(f"{filename} loads {name!r}, which is not in the submission (it has: "
                      f"{have})",
                      "make the name in model.py match the weights file you zip (a placeholder "
                      "name?), or pass that file with --weights")
            rep.findings[-1].contestable = True
    rep.weights_names = sorted(set(seen))


def _check_imports(tree: ast.AST, rep: ModelPyReport, files: list[str], extra: set[str],
                   filename: str) -> None:
    local = {f.split("/")[0].removesuffix(".py") for f in files}
    stdlib = set(getattr(sys, "stdlib_module_names", ()))
    # the extras are distribution names: scikit-learn is imported as sklearn
    modules = {m for m, d in _DIST_OF.items() if d in extra}
    allowed = GRADER_PACKAGES | extra | {e.replace("-", "_") for e in extra} | modules | local \
        | stdlib
    for node in ast.walk(tree):
        mods = []
        if isinstance(node, ast.Import):
            mods = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods = [node.module.split(".")[0]]
        for m in mods:
            if m not in allowed:
                now = ", ".join(sorted(extra)) or "none"
                rep.warn(f"{filename} imports {m!r}, which the grader may not have installed",
                         "use numpy/tensorflow/keras only, or list the package in the profile's "
                         f"[grader] extras (now: {now}) if the competition provides it")


# -- the real cause of a failed run, in the grader's words --------------------------------------
_NETWORK_SIGNS = ("urlopen error", "Temporary failure in name resolution", "Name or service not "
                  "known", "getaddrinfo failed", "Network is unreachable", "No route to host",
                  "Connection refused", "nodename nor servname", "gaierror",
                  "URL fetch failure", "Failed to establish a new connection", "socket.timeout")
_IMAGENET = ("weights='imagenet'", 'weights="imagenet"')


def keras_major(version: str | None) -> int | None:
    v = version_tuple(version)
    return v[0] if v else None


def cause_hints(text: str, prof: Profile, *, savedmodels: list[str],
                h5_models: dict[str, str | None],
                network_cut: bool, source: str = "") -> list[tuple[str, str]]:
    """What a failed run's traceback (``text``) says the cause was, as (message, hint) pairs
    naming it: a SavedModel folder or a Keras 2 .h5 in front of a Keras 3 grader (which
    format, which versions load it), a module the grader lacks (the profile's ``[grader]
    extras``), a download with the network cut (what the profile's grader does; ``source``,
    model.py's text, tells what it downloads when the traceback does not)."""
    out: list[tuple[str, str]] = []
    g = prof.grader
    keras = str(g.get("keras"))
    k3 = (keras_major(keras) or 0) >= 3
    if k3 and savedmodels and ("File format not supported" in text or "SavedModel" in text
                               or "saved_model" in text):
        names = ", ".join(d + "/" for d in savedmodels)
        out.append((f"{names} is a TensorFlow SavedModel folder (written by tf.keras, Keras 2: "
                    f"TensorFlow 2.15 or older); the grader's keras {keras} cannot load a "
                    "SavedModel with load_model (Keras 3 reads only .keras and .h5 files)",
                    "a grader with tensorflow<=2.15 (Keras 2) loads it: set [grader] "
                    'tensorflow = "2.15.0", keras = "2.15.0" in subkit.toml if that is the '
                    "competition's; for Keras 3 re-save it as .keras from TF 2.15 "
                    "(model.save('Name.keras')) or load it with keras.layers.TFSMLayer"))
    old = {n: v for n, v in h5_models.items() if (keras_major(v) or 3) < 3}
    if k3 and old and any(s in text for s in ("Unknown", "Could not locate", "deserializ",
                                              "h5", "hdf5", "is not a valid")):
        names = ", ".join(f"{n} (Keras {v})" for n, v in old.items())
        out.append((f"{names}: a Keras 2 (tf.keras) HDF5 model; the grader's keras {keras} "
                    "cannot read all of its config (Keras 2 optimizers and schedules such as "
                    "PolynomialDecay, tf.keras-only layers)",
                    "tensorflow<=2.15 (Keras 2) loads it as it is; for Keras 3 load it with "
                    "compile=False, or re-save it as .keras"))
    m = re.search(r"No module named '([\w.]+)'", text)
    if m:
        mod = m.group(1).split(".")[0]
        extras = g.get("extras") or {}
        have = ", ".join(f"{k} {v}" for k, v in extras.items()) or "none"
        dist = _DIST_OF.get(mod, mod)
        out.append((f"model.py imports {mod!r}, which the grader environment of {prof.name} "
                    f"does not have (its [grader] extras: {have})",
                    f"if the competition's grader has it, add it to [grader] extras in "
                    f'subkit.toml (extras = {{ "{dist}" = "VERSION" }}) and run `subkit env '
                    "create`; otherwise do without it"))
    if network_cut and any(s in text for s in _NETWORK_SIGNS):
        where = f"{text}\n{source}"
        tb_url = re.search(r"https?://[^\s'\"]+", text)
        url = re.search(r"https?://[^\s'\"]+", source)
        what = ("weights='imagenet'" if any(d in where for d in _IMAGENET) else
                tb_url.group(0).rstrip(":,.;)") if tb_url else
                url.group(0).rstrip(":,.;)") if url else "")
        on = prof.network == "on"
        out.append((f"model.py tried to reach the network{f' ({what})' if what else ''} and "
                    "this run had it cut; "
                    f"the grader of {prof.name} has the network {'on' if on else 'off'}"
                    + ("" if on else " too"),
                    ("the grader leaves the network on: `subkit score-local "
                     "--no-network-isolation` runs as it does, but a download at run time "
                     "still costs the time limit; zip the weights instead")
                    if on else
                    "zip what it downloads (e.g. weights=None, then load the zipped weights): "
                    "the grader cannot download it either"))
    return out


_DIST_OF = {"sklearn": "scikit-learn", "cv2": "opencv-python", "PIL": "pillow",
            "skimage": "scikit-image", "yaml": "pyyaml"}


def name_the_cause(failure, submission_dir, prof: Profile, network_cut: bool):
    """A run's Failure (subkit.grader.run) with the cause its traceback shows named in its
    message and hint (``cause_hints``); the submission's SavedModel folders and Keras 2 .h5
    models are read from ``submission_dir`` (what the child left there is untrusted: no
    symlink is followed, at most MAX_LISTED entries are looked at, and an .h5 is opened only
    to read its Keras version, as ``subkit check`` does). The failure unchanged when nothing
    is known."""
    from itertools import islice
    from pathlib import Path

    from subkit.errors import InputError
    from subkit.weights import inspect

    text = f"{failure.message}\n{failure.tail}"
    root = Path(submission_dir)
    files = []
    for p in islice(root.rglob("*"), MAX_LISTED):
        if not p.is_symlink() and p.is_file():
            files.append(str(p.relative_to(root)))
    h5: dict[str, str | None] = {}
    if (keras_major(str(prof.grader.get("keras"))) or 0) >= 3:
        models = [r for r in files if r.lower().endswith((".h5", ".hdf5"))
                  and not r.lower().endswith(".weights.h5")]
        for rel in models[:20]:
            try:
                info = inspect(root / rel)
            except (InputError, OSError, ValueError):
                continue
            if info.kind == "h5-model":
                h5[rel] = info.keras_version
    try:
        with open(root / prof.entry_file, encoding="utf-8", errors="replace") as fh:
            source = fh.read(200_000)
    except OSError:
        source = ""
    causes = cause_hints(text, prof, savedmodels=savedmodel_dirs(files), h5_models=h5,
                         network_cut=network_cut, source=source)
    if "[grader] extras" in failure.hint:  # the diagnosis named the missing module already
        causes = [c for c in causes if "[grader] extras" not in c[1]]
    if causes:
        failure.message = f"{failure.message}: {causes[0][0]}"
        failure.hint = "; ".join([causes[0][1]] + [f"also: {m} ({h})" for m, h in causes[1:]])
    return failure


MAX_LISTED = 5000
