"""The child side of a local evaluation: what the grader's ingestion program does.

Standalone on purpose: it imports only the standard library and numpy (and whatever the
submission imports), so that it runs in any environment, including the grader-version
environment that has no subkit installed, and inside an exported Codabench bundle.

    python ingestion.py --submission DIR --input X.npy --output DIR
        [--entry model.py] [--class-name Model] [--method predict] [--init-arg A ...]
        [--predict-input NAME=PATH ...]
        [--proba] [--extra-input NAME=PATH ...] [--extra-wait S]

It does exactly what the grader does: puts the submission first on sys.path, changes the
working directory to it, ``from model import Model``, ``Model(*init_args)``, one
``predict(X, *predict_inputs)``, and saves what predict returned. An init argument
``{submission}`` is the submission's folder (CodaLab's ``model(path)``); each
``--predict-input`` is one more array passed after X, in order (the forecasting
competition's ``predict(X, categories)``). A TensorFlow tensor returned by predict (the
CodaLab template's ``tf.argmax(...)``) is converted with ``.numpy()``, as numpy would.
Progress and failures go to ``OUTPUT/ingestion.json`` at every stage (written atomically),
so a parent that sees the process die knows where it died.

Options beyond the grader's run (subkit's shift suite and report; unused, nothing changes):
after the clean run has been saved and marked ok,

- ``--proba`` calls ``predict_proba(X)`` when the model has it and saves
  ``proba.npy`` (the report ranks mistakes by confidence);
- ``--extra-input NAME=PATH`` (repeatable) calls ``predict`` once on each extra array, in
  order, saving ``predictions_NAME.npy`` and per-name timings and errors under ``"extra"``
  in the status. An extra input that does not exist yet is waited for (up to
  ``--extra-wait`` seconds) until PATH or ``PATH.failed`` appears: the parent may still be
  writing the later ones while the model predicts the first. A failure on one extra input
  is recorded and the next one is tried.
"""

import argparse
import json
import os
import sys
import time
import traceback
from typing import Any


def _peak_rss_mb():
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / 1024.0 if sys.platform != "darwin" else kb / 1024.0 / 1024.0
    except Exception:  # pragma: no cover - not on Linux
        return None


class Status:
    def __init__(self, path):
        self.path = path
        self.data: dict[str, Any] = {"stage": "start", "ok": False, "timings": {},
                                     "python": sys.version.split()[0],
                                     "executable": sys.executable, "pid": os.getpid()}
        self.write()

    def write(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(self.data, fh, indent=1, default=str)
        os.replace(tmp, self.path)

    def stage(self, name):
        self.data["stage"] = name
        self.data["stage_started"] = time.time()
        self.write()

    def fail(self, stage, exc, tb):
        self.data.update(stage=stage, ok=False, error_type=str(type(exc).__name__)[:200],
                         error=_exc_text(exc)[:2000], traceback=tb[-8000:])
        self.data["peak_rss_mb"] = _peak_rss_mb()
        self.write()


def _exc_text(exc):
    """str(exc), even for an exception whose __str__ raises (the status is still written)."""
    try:
        return str(exc)
    except BaseException:  # the submission's __str__, whatever it does
        return "<%s whose str() failed>" % type(exc).__name__


def _versions():
    out = {"python": "%d.%d.%d" % sys.version_info[:3]}
    for mod in ("numpy", "tensorflow", "keras", "torch"):
        m = sys.modules.get(mod)
        if m is not None:
            out[mod] = getattr(m, "__version__", "?")
    return out


SUBMISSION_PLACEHOLDER = "{submission}"


def describe_output(y, np):
    """What predict returned, in words the parent can turn into a hint."""
    info: dict[str, Any] = {"python_type": type(y).__module__ + "." + type(y).__name__}
    to_numpy = getattr(y, "numpy", None)
    if not isinstance(y, np.ndarray) and callable(to_numpy):  # a TF/Keras tensor
        try:
            y = to_numpy()
            info["converted"] = "tensor.numpy()"
        except Exception as exc:
            info["convertible"] = False
            info["error"] = "tensor.numpy() failed: " + _exc_text(exc)[:500]
            return info, None
    try:
        arr = np.asarray(y)
    except Exception as exc:
        info["convertible"] = False
        info["error"] = _exc_text(exc)[:500]
        return info, None
    info.update(convertible=True, dtype=str(arr.dtype), shape=list(arr.shape))
    return info, arr


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--submission", required=True)
    p.add_argument("--input", required=True, help=".npy of the images")
    p.add_argument("--output", required=True)
    p.add_argument("--entry", default="model.py")
    p.add_argument("--class-name", default="Model")
    p.add_argument("--method", default="predict")
    p.add_argument("--init-arg", action="append", default=[],
                   help=SUBMISSION_PLACEHOLDER + " is the submission's folder")
    p.add_argument("--predict-input", action="append", default=[], metavar="NAME=PATH",
                   help="one more .npy passed to predict after X (repeatable, in order)")
    p.add_argument("--proba", action="store_true", help="also save predict_proba(X) if any")
    p.add_argument("--extra-input", action="append", default=[], metavar="NAME=PATH",
                   help="predict once more on this .npy after the main run (repeatable)")
    p.add_argument("--extra-wait", type=float, default=600.0, metavar="S",
                   help="seconds to wait for an extra input that does not exist yet")
    a = p.parse_args(argv)
    extras = [_name_path(p, "--extra-input", item) for item in a.extra_input]
    inputs = [_name_path(p, "--predict-input", item) for item in a.predict_input]

    os.makedirs(a.output, exist_ok=True)
    status = Status(os.path.join(a.output, "ingestion.json"))
    if extras:
        status.data["ppid"] = os.getppid()
    t_all = time.time()
    stage = "load_input"
    try:
        status.stage(stage)
        import numpy as np

        t = time.time()
        X = np.load(a.input, allow_pickle=False)
        status.data["input"] = {"shape": list(X.shape), "dtype": str(X.dtype)}
        more = [np.load(path, allow_pickle=False) for _, path in inputs]
        if inputs:
            status.data["predict_inputs"] = {name: {"shape": list(v.shape), "dtype": str(v.dtype)}
                                             for (name, _), v in zip(inputs, more)}
        status.data["timings"]["load_input_s"] = time.time() - t

        stage = "import"
        status.stage(stage)
        sub = os.path.abspath(a.submission)
        os.chdir(sub)
        sys.path.insert(0, sub)
        module_name = os.path.splitext(os.path.basename(a.entry))[0]
        if not os.path.exists(os.path.join(sub, a.entry)):
            raise FileNotFoundError(
                f"{a.entry} is not at the root of the submission (files there: "
                f"{sorted(os.listdir(sub))[:20]})")
        t = time.time()
        import importlib

        module = importlib.import_module(module_name)
        status.data["timings"]["import_s"] = time.time() - t
        if not hasattr(module, a.class_name):
            raise AttributeError(f"{a.entry} defines no {a.class_name!r}")
        cls = getattr(module, a.class_name)

        stage = "init"
        status.stage(stage)
        t = time.time()
        model = cls(*[sub if arg == SUBMISSION_PLACEHOLDER else arg for arg in a.init_arg])
        status.data["timings"]["init_s"] = time.time() - t
        if not hasattr(model, a.method):
            raise AttributeError(f"{a.class_name} has no method {a.method!r}")

        stage = "predict"
        status.stage(stage)
        t = time.time()
        y = getattr(model, a.method)(X, *more)
        status.data["timings"]["predict_s"] = time.time() - t

        stage = "save"
        status.stage(stage)
        info, arr = describe_output(y, np)
        status.data["output"] = info
        if arr is not None and arr.dtype != object:
            np.save(os.path.join(a.output, "predictions.npy"), arr, allow_pickle=False)
        elif arr is not None:
            status.data["output"]["object_dtype"] = True
        status.data["versions"] = _versions()
        status.data["timings"]["total_s"] = time.time() - t_all
        status.data["peak_rss_mb"] = _peak_rss_mb()
        status.data["ok"] = True
        if a.proba or extras:
            _after_main(a, extras, model, X, more, status, np)
        status.stage("done")
    except SystemExit as exc:
        status.data["versions"] = _versions()
        status.fail(stage, exc, traceback.format_exc())
        status.data["error_type"] = "SystemExit"
        status.data["error"] = f"the submission called sys.exit({exc.code!r}) during {stage}"
        status.write()
        os._exit(3)
    except BaseException as exc:  # the submission's failure, reported to the parent
        status.data["versions"] = _versions()
        status.fail(stage, exc, traceback.format_exc())
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(2)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip interpreter teardown: TF's can take seconds and is not ours to time


def _name_path(parser, flag, item):
    name, sep, path = item.partition("=")
    if not sep or not name or not path:
        parser.error(f"{flag} wants NAME=PATH, got {item!r}")
    return name, path


def _wait_for(path, seconds, parent):
    """True when ``path`` exists; False when ``path.failed`` appears, time runs out or the
    parent is gone."""
    end = time.time() + seconds
    while not os.path.exists(path):
        if os.path.exists(path + ".failed") or time.time() > end or os.getppid() != parent:
            return False
        time.sleep(0.02)
    return True


def _after_main(a, extras, model, X, more, status, np):
    """--proba and --extra-input: after the clean run, which is already saved and ok.
    ``more``: predict's other inputs, the same for every extra input."""
    if a.proba:
        status.stage("proba")
        fn = getattr(model, "predict_proba", None)
        if fn is None:
            status.data["proba"] = {"ok": False, "error": "the model has no predict_proba"}
        else:
            t = time.time()
            try:
                p = np.asarray(fn(X, *more))
                np.save(os.path.join(a.output, "proba.npy"), p, allow_pickle=False)
                status.data["proba"] = {"ok": True, "shape": list(p.shape)}
            except (Exception, SystemExit) as exc:
                status.data["proba"] = {"ok": False, "error_type": type(exc).__name__,
                                        "error": _exc_text(exc)[:500]}
            status.data["timings"]["proba_s"] = time.time() - t
        status.write()
    del X
    if not extras:
        return
    done: dict[str, dict[str, Any]] = {}
    status.data["extra"] = done
    t_extra = time.time()
    parent = status.data.get("ppid")
    for name, path in extras:
        if os.getppid() != parent:  # subkit was killed: nobody will read what follows
            status.data["extra_stopped"] = "the parent process ended"
            break
        status.data["extra_current"] = name
        status.stage("extra:" + name)
        info: dict[str, Any] = {"ok": False}
        done[name] = info
        t = time.time()
        if not _wait_for(path, a.extra_wait, parent):
            info["error_type"] = "MissingInput"
            info["error"] = f"the extra input {path} was not written"
            try:
                with open(path + ".failed") as fh:
                    info["error"] += ": " + fh.read(500)
            except OSError:
                pass
            status.write()
            continue
        info["wait_s"] = time.time() - t
        try:
            Xe = np.load(path, allow_pickle=False)
            t = time.time()
            y = getattr(model, a.method)(Xe, *more)
            info["predict_s"] = time.time() - t
            del Xe
            out, arr = describe_output(y, np)
            info["output"] = out
            if arr is not None and arr.dtype != object:
                np.save(os.path.join(a.output, "predictions_" + name + ".npy"), arr,
                        allow_pickle=False)
                info["ok"] = True
            else:
                info["error_type"], info["error"] = "BadOutput", "predict returned no array"
        except (Exception, SystemExit) as exc:
            info["error_type"] = type(exc).__name__
            info["error"] = _exc_text(exc)[:500]
        status.write()
    status.data.pop("extra_current", None)
    status.data["timings"]["extra_total_s"] = time.time() - t_extra
    status.data["peak_rss_mb"] = _peak_rss_mb()


if __name__ == "__main__":
    main()
