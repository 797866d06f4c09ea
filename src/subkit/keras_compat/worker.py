"""The target-side worker of subkit.keras_compat: one Keras process in one environment
(the current one or the grader's), driven by JSON lines on stdin, replying on stdout
behind a tag. Standalone: it runs in the target interpreter, where subkit is not
installed, so it imports nothing of subkit."""

import ast
import importlib
import inspect
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from typing import Any

TAG = "@@SUBKIT@@"
_out = sys.stdout
sys.stdout = sys.stderr  # whatever Keras prints must not mix with replies

def reply(obj):
    _out.write(TAG + json.dumps(obj, default=repr) + "\n")
    _out.flush()

def short(exc):
    # Keras nests the real cause after "Exception encountered:", behind pages of config
    msg = str(exc)
    if "Exception encountered:" in msg:
        msg = msg.rsplit("Exception encountered:", 1)[1]
    lines = msg.strip().splitlines() or [""]
    return "%s: %s" % (type(exc).__name__, lines[0][:400])

def jsonable(value):
    return json.loads(json.dumps(value, default=repr))

# imported once stdout points at stderr: nothing Keras prints reaches the replies
import keras  # noqa: E402
import numpy as np  # noqa: E402

# the submission's classes (and functions), by the names the weights' config uses: given
# to every load and trial once op_register has imported the submission
CUSTOM: dict = {}


def resolve(module, name):
    try:
        mod = importlib.import_module(module)
    except Exception as exc:
        return None, "module %s does not exist (%s)" % (module, type(exc).__name__)
    cls = getattr(mod, name, None)
    if cls is None or not inspect.isclass(cls):
        return None, "%s has no class %s" % (module, name)
    return cls, None

def init_params(cls):
    accepted, defaults, required, first = [], {}, [], True
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            sig = inspect.signature(init)
        except (TypeError, ValueError):
            break
        var_kw = False
        for i, (n, p) in enumerate(sig.parameters.items()):
            if i == 0:
                continue
            if p.kind == p.VAR_KEYWORD:
                var_kw = True
                continue
            if p.kind == p.VAR_POSITIONAL:
                continue
            if n in accepted:
                continue
            accepted.append(n)
            if p.default is p.empty:
                if first:
                    required.append(n)
            else:
                defaults[n] = jsonable(p.default)
        first = False
        if not var_kw:
            break
    return accepted, defaults, required

def probe_class(module, name, sample=None):
    cls, why = resolve(module, name)
    if cls is None:
        return {"found": False, "why": why}
    info = {"found": True, "qualname": cls.__module__ + "." + cls.__qualname__}
    info["is_model"] = bool(issubclass(cls, keras.Model))
    info["accepted"], info["defaults"], info["required"] = init_params(cls)
    info["accepts_any"] = False
    if sample is not None and not info["is_model"]:
        # does the class swallow keys it does not know? (InputLayer's **kwargs does)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cls.from_config(dict(sample, subkit_probe_unknown_key=None))
            info["accepts_any"] = True
        except Exception:
            pass
    info["default_config"] = None
    if not info["is_model"] and not info["required"]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                info["default_config"] = jsonable(cls().get_config())
        except Exception as exc:
            info["default_config_error"] = "%s: %s" % (type(exc).__name__, exc)
    return info

def op_probe(req):
    out = {"keras": keras.__version__, "python": "%d.%d.%d" % sys.version_info[:3],
           "classes": {}}
    samples = req.get("samples") or {}
    for module, name in req["classes"]:
        try:
            out["classes"][module + ":" + name] = probe_class(
                module, name, samples.get(module + ":" + name))
        except Exception as exc:
            out["classes"][module + ":" + name] = {"found": False,
                                                   "why": "%s: %s" % (type(exc).__name__, exc)}
    d = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
         "registered_name": None}
    try:
        keras.layers.Activation("linear", dtype=d)
        out["dtype_dict_ok"] = True
    except Exception:
        out["dtype_dict_ok"] = False
    return out

def op_trial(req):
    errors = {}
    for idx, _name, obj in req["objects"]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                keras.saving.deserialize_keras_object(obj, custom_objects=CUSTOM,
                                                      safe_mode=True)
        except Exception as exc:
            errors[str(idx)] = short(exc)
    return {"errors": errors}


# -- the submission's own classes ----------------------------------------------------------------
def _under(path, root):
    if not path:
        return False
    path = os.path.realpath(path)
    return path == root or path.startswith(root + os.sep)


def _rel(path, root):
    return os.path.relpath(os.path.realpath(path), root) if _under(path, root) else path


def _frame(exc, root):
    """The innermost frame of the submission's own files in ``exc``'s traceback."""
    found = None
    for fs in traceback.extract_tb(exc.__traceback__):
        if _under(fs.filename, root):
            found = {"file": _rel(fs.filename, root), "line": fs.lineno, "function": fs.name,
                     "code": (fs.line or "").strip()[:160]}
    return found


class _Defs(ast.NodeVisitor):
    """Every ``class NAME`` and ``def NAME`` of one file: (line, enclosing function or class
    or None at the top level)."""

    def __init__(self):
        self.found, self.stack = [], []

    def _visit(self, node, kind):
        self.found.append((node.name, kind, node.lineno, self.stack[-1] if self.stack else None))
        self.stack.append(node.name)
        self.generic_visit(node)
        self.stack.pop()

    def visit_ClassDef(self, node):
        self._visit(node, "class")

    def visit_FunctionDef(self, node):
        self._visit(node, "def")

    def visit_AsyncFunctionDef(self, node):
        self._visit(node, "def")


def _definitions(root):
    """name -> [{"file", "line", "kind", "inside"}] over the submission's .py files."""
    out: dict[str, list[dict[str, Any]]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
        for f in sorted(files):
            if not f.endswith(".py"):
                continue
            path = os.path.join(folder, f)
            try:
                with open(path, encoding="utf-8") as fh:
                    tree = ast.parse(fh.read(), path)
            except (SyntaxError, ValueError, OSError, UnicodeDecodeError):
                continue  # a file the import did not need; its own import would say
            v = _Defs()
            v.visit(tree)
            direct = {n.lineno for n in tree.body}  # not under an if/try at the top level
            for name, kind, line, inside in v.found:
                out.setdefault(name, []).append({"file": _rel(path, root), "line": line,
                                                 "kind": kind, "inside": inside,
                                                 "direct": line in direct})
    return out


def _needed_name(obj):
    """(name the config looks the object up by, its class name, "class" or "def")."""
    if obj.get("class_name") == "function":
        name = obj.get("config") if isinstance(obj.get("config"), str) else None
        return name, (name or "").split(">")[-1], "def"
    return obj.get("registered_name") or obj["class_name"], obj["class_name"], "class"


def op_register(req):
    """Import the submission (as the grader does: its folder the working directory and the
    first entry of sys.path) and make the classes its weights need available to every later
    load: the ones it registers with Keras, and the plain classes (and functions) it defines
    at the top level of its files, by name. Reports what it could not make available."""
    root = os.path.realpath(req["folder"])
    entry = req["entry"]
    out: dict[str, list[Any]] = {"classes": [], "problems": []}
    os.chdir(root)
    sys.path.insert(0, root)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importlib.import_module(os.path.splitext(entry)[0])
    except SyntaxError as exc:
        out["problems"].append({"kind": "syntax", "file": _rel(exc.filename or entry, root),
                                "line": exc.lineno, "error": "%s: %s" % (type(exc).__name__,
                                                                          exc.msg),
                                "code": (exc.text or "").strip()[:160]})
        return out
    except BaseException as exc:  # SystemExit too: the submission's, reported
        p = {"kind": "import", "etype": type(exc).__name__, "error": short(exc),
             "frame": _frame(exc, root)}
        if isinstance(exc, ImportError):
            p["module"] = exc.name
        out["problems"].append(p)
        return out
    mine = [m for m in list(sys.modules.values())
            if _under(getattr(m, "__file__", None), root)]
    # name -> objects defined at the top level of the submission's imported files, by id
    top: dict[str, dict[int, Any]] = {}
    for m in mine:
        for name, value in list(vars(m).items()):
            if getattr(value, "__module__", None) != m.__name__:
                continue
            if (inspect.isclass(value) and hasattr(value, "from_config")) or \
                    inspect.isfunction(value):
                top.setdefault(name, {})[id(value)] = value
    defs = _definitions(root)
    imported = {_rel(m.__file__, root) for m in mine}
    registry = keras.saving.get_custom_objects()
    for obj in req.get("needed") or []:
        key, name, kind = _needed_name(obj)
        if not key:
            continue
        places = [d for d in defs.get(name, []) if d["kind"] == kind]
        at_top = [d for d in places if d["inside"] is None]
        info = {"name": name, "registered_name": key, "layer": obj.get("layer")}
        if len([d for d in at_top if d["direct"]]) > 1:  # not `if ...: class X / else: ...`
            out["problems"].append(dict(info, kind="twice",
                                        places=[d for d in at_top if d["direct"]]))
            continue
        value = registry.get(key)
        if value is None:
            candidates = list(top.get(name, {}).values()) or \
                [v for v in registry.values() if getattr(v, "__name__", None) == name]
            value = candidates[0] if len(candidates) == 1 else None
        if value is None:
            nested = [d for d in places if d["inside"] is not None]
            elsewhere = [d for d in at_top if d["file"] not in imported]
            why = "runtime" if nested else ("not-imported" if elsewhere else "missing")
            out["problems"].append(dict(info, kind=why, places=nested or elsewhere))
            continue
        CUSTOM[key] = CUSTOM[name] = value
        try:
            source = inspect.getsourcefile(value)
            line = inspect.getsourcelines(value)[1]
        except (TypeError, OSError):
            source, line = None, None
        rel = _rel(source, root) if source else None
        line = next((d["line"] for d in at_top if d["file"] == rel), line)  # not a decorator's
        info.update(file=rel, line=line,
                    how="registered" if registry.get(key) is value else "by name",
                    mine=_under(source, root))
        out["classes"].append(info)
    if out["problems"] or not req.get("construct"):
        return out
    for obj in req.get("needed") or []:
        if obj.get("class_name") == "function":
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                keras.saving.deserialize_keras_object(obj["object"], custom_objects=CUSTOM,
                                                      safe_mode=True)
        except Exception as exc:
            info = next((c for c in out["classes"] if c["name"] == obj["class_name"]), {})
            out["problems"].append(dict(info, name=obj["class_name"], kind="construct",
                                        error=short(exc), frame=_frame(exc, root)))
            break  # the first one: a class inside another would fail twice
    return out

def _inputs_for(model, n, seed):
    rng = np.random.default_rng(seed)
    arrays = []
    for t in model.inputs:
        shape = [n] + [int(d) if d is not None else 32 for d in tuple(t.shape)[1:]]
        dtype = str(getattr(t, "dtype", "float32"))
        if "int" in dtype:
            arrays.append(rng.integers(0, 256, size=shape).astype(dtype))
        else:
            arrays.append(rng.uniform(0.0, 255.0, size=shape).astype("float32"))
    return arrays

def load_model(path, scratch):
    """``path`` loaded through a link in a new folder under ``scratch`` (writable).

    Keras 3.4 extracts model.weights.h5 into the folder of the ``.keras`` file it loads and,
    where that folder is read-only (``path`` is, in the sandbox), reads the weights through
    ``zipfile`` instead, seeking back and forth in a stored member: four times slower on a
    215 MB EfficientNetV2M (keras 3.4.1 ``keras/src/saving/saving_lib.py``,
    ``_load_model_from_fileobj``: ``zf.extract(_VARS_FNAME_H5, working_dir)`` with
    ``working_dir = pathlib.Path(fileobj.name).parent``, ``except OSError`` "Fall back when
    it is a read-only system"). Later Keras extracts into a temporary folder or reads it
    into memory; the link changes nothing there."""
    folder = tempfile.mkdtemp(prefix="load-", dir=scratch)
    link = os.path.join(folder, os.path.basename(path))
    try:
        os.symlink(os.path.abspath(path), link)
        return keras.models.load_model(link, compile=False, safe_mode=True,
                                       custom_objects=CUSTOM or None)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

def op_predict(req):
    t0 = time.time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model(req["model"], os.path.dirname(os.path.abspath(req["out"])))
    load_s = time.time() - t0
    if req.get("make_batch"):
        arrays = _inputs_for(model, req["make_batch"]["n"], req["make_batch"]["seed"])
        np.savez(req["batch"], **{"input_%d" % i: a for i, a in enumerate(arrays)})
    with np.load(req["batch"]) as z:
        arrays = [z["input_%d" % i] for i in range(len(z.files))]
    x = arrays[0] if len(arrays) == 1 else arrays
    # one eager call: the batch is small, and tracing a tf.function costs seconds
    y = model(x, training=False)
    if isinstance(y, dict):
        y = [y[k] for k in sorted(y)]
    if not isinstance(y, (list, tuple)):
        y = [y]
    np.savez(req["out"], **{"output_%d" % i: keras.ops.convert_to_numpy(a)
                            for i, a in enumerate(y)})
    return {"load_seconds": round(load_s, 2), "seconds": round(time.time() - t0, 2),
            "warnings": [str(w.message)[:300] for w in caught
                         if "could not be loaded" in str(w.message)
                         or "mismatch" in str(w.message).lower()]}

OPS = {"probe": op_probe, "trial": op_trial, "predict": op_predict, "register": op_register}


def main():
    tf = sys.modules.get("tensorflow")
    reply({"ready": True, "keras": keras.__version__,
           "python": "%d.%d.%d" % sys.version_info[:3],
           "tensorflow": getattr(tf, "__version__", None) if tf else None})
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            reply({"ok": True, "result": OPS[req["op"]](req)})
        except Exception as exc:
            reply({"ok": False, "error": short(exc),
                   "traceback": traceback.format_exc()[-3000:]})


if __name__ == "__main__":
    main()
