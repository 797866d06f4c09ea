"""Hints that lead to the cause of a submission's failure: where in the participant's own
code it was raised, whether it is about the input at all, what a missing module means and
both ways out, and the load failures that `subkit build` cannot fix.

Pure functions of the texts a run leaves (the exception's type and message, the traceback,
the versions the child reported, the profile's pins): no I/O, nothing of subkit imported.
``grader.run`` (its diagnosis) and ``keras_compat`` (build's custom classes) call them.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

# `File "/app/ingested_program/model.py", line 41, in predict`, then the line's code
_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+), in (.+?)\s*$')
_LIBRARY = ("/site-packages/", "/dist-packages/", "/lib/python")

# the import name of a well-known package -> the distribution pip installs it from
DISTRIBUTIONS = {
    "cv2": "opencv-python", "sklearn": "scikit-learn", "PIL": "pillow",
    "skimage": "scikit-image", "yaml": "pyyaml", "tensorflow_addons": "tensorflow-addons",
    "tensorflow_hub": "tensorflow-hub", "keras_cv": "keras-cv", "keras_hub": "keras-hub",
    "keras_nlp": "keras-nlp", "tensorflow_probability": "tensorflow-probability",
    "efficientnet": "efficientnet", "segmentation_models": "segmentation-models",
    "albumentations": "albumentations", "timm": "timm", "torch": "torch",
    "torchvision": "torchvision", "scipy": "scipy", "pandas": "pandas",
    "matplotlib": "matplotlib", "seaborn": "seaborn", "tqdm": "tqdm", "joblib": "joblib",
    "h5py": "h5py", "numba": "numba", "xgboost": "xgboost", "lightgbm": "lightgbm",
    "statsmodels": "statsmodels", "imgaug": "imgaug", "transformers": "transformers",
}


@dataclass(frozen=True)
class Frame:
    """One frame of the participant's code: the file (relative to model.py's folder), the
    line, the function and the line's code."""

    file: str
    line: int
    function: str
    code: str = ""

    def where(self) -> str:
        """``model.py:41 in predict()``, with the line's code when the traceback had it."""
        fn = "" if self.function == "<module>" else f" in {self.function}()"
        return f"{self.file}:{self.line}{fn}" + (f" (`{self.code}`)" if self.code else "")


def frames(tb: str) -> list[tuple[str, int, str, str]]:
    """(path, line, function, code) of each frame of a formatted traceback, outermost
    first (chained tracebacks: all of them, in the order printed)."""
    out: list[tuple[str, int, str, str]] = []
    lines = (tb or "").splitlines()
    for i, text in enumerate(lines):
        m = _FRAME.match(text)
        if not m:
            continue
        code = ""
        if i + 1 < len(lines) and not _FRAME.match(lines[i + 1]):
            nxt = lines[i + 1].strip()
            if nxt and not set(nxt) <= set("^~ ") and not nxt.startswith("Traceback"):
                code = nxt[:120]
        out.append((m.group(1), int(m.group(2)), m.group(3), code))
    return out


def participant_frame(tb: str, entry: str = "model.py") -> Frame | None:
    """The frame of the participant's code nearest to where the error was raised, when the
    traceback goes through ``entry``: the innermost frame in ``entry``'s folder (model.py
    and the files next to it), libraries excluded. None when it does not."""
    fs = frames(tb)
    root = next((posixpath.dirname(p) for p, _l, _f, _c in fs
                 if posixpath.basename(p) == entry), None)
    if root is None:
        return None
    mine = [(p, line, fn, code) for p, line, fn, code in fs
            if posixpath.dirname(p) == root or p.startswith(root.rstrip("/") + "/")]
    mine = [f for f in mine if not any(s in f[0][len(root):] for s in _LIBRARY)]
    if not mine:
        return None
    p, line, fn, code = mine[-1]
    return Frame(p[len(root):].lstrip("/") or posixpath.basename(p), line, fn, code)


def name_frame(hint: str, tb: str, entry: str = "model.py") -> str:
    """``hint`` with where the participant's code raised the error, when the traceback
    goes through ``entry`` (and the hint does not already say it)."""
    frame = participant_frame(tb, entry)
    if frame is None or f"{frame.file}:{frame.line}" in hint:
        return hint
    return f"{hint} (raised at {frame.where()})"


# -- the input, or the code ----------------------------------------------------------------
_CALL = re.compile(r"takes \d+ positional arguments? but \d+ (were|was) given|"
                   r"got an unexpected keyword argument|missing \d+ required (positional|"
                   r"keyword-only) arguments?|got multiple values for argument|"
                   r"takes (no|exactly \d+|at most \d+|at least \d+|from \d+ to \d+) "
                   r"(positional )?arguments?")
_INPUT = re.compile(r"shape|dtype|\brank\b|dimension|broadcast|incompatible with the layer|"
                    r"min_ndim|ndim|cannot reshape|input 0 of layer|could not convert|"
                    r"data type|expected (a |an )?(float|int|uint8|image|array)|"
                    r"cannot (be )?cast", re.I)


def about_input(etype: str, err: str) -> bool:
    """Whether the error speaks about an array's shape or type (the input's, or one the
    code made from it), not about the code itself."""
    if etype in ("NameError", "UnboundLocalError", "AttributeError", "ImportError",
                 "ModuleNotFoundError", "KeyError", "FileNotFoundError", "RecursionError"):
        return False
    if _CALL.search(err):
        return False
    return bool(_INPUT.search(err))


def predict_failure(etype: str, err: str, tb: str, entry: str, predict_call: str,
                    input_words: str) -> tuple[str, str] | None:
    """(message, hint) for an exception that predict's own code raised (the traceback goes
    through ``entry``); None when it was not raised in the participant's code (the call
    itself did not match, or the traceback says nothing), for the caller's words."""
    frame = participant_frame(tb, entry)
    if frame is None:
        return None
    at = frame.where()
    if etype == "TypeError" and _CALL.search(err):
        return (f"{predict_call} raised {etype} at {frame.file}:{frame.line}: {err}",
                f"{at} calls a function with arguments it does not take: make the call match "
                "that function's definition (the grader's call of predict was fine)")
    if about_input(etype, err):
        return (f"{predict_call} raised {etype} at {frame.file}:{frame.line}: {err}",
                f"{input_words}; the error at {at} is about an array's shape or type: check "
                "what that line does with it (`subkit check` reproduces it on a small batch)")
    return (f"{predict_call} raised {etype} at {frame.file}:{frame.line}: {err}",
            f"the error is in the code at {at}, not in the input: fix that line "
            "(`subkit check` reproduces it on a small batch)")


# -- a module the environment lacks ----------------------------------------------------------
_NO_MODULE = re.compile(r"No module named '([^']+)'")


def missing_module_name(err: str) -> str | None:
    m = _NO_MODULE.search(err or "")
    return m.group(1) if m else None


def env_words(versions: dict | None, pins: dict | None) -> str:
    """The environment that ran the child, in words: the grader's (its versions) when its
    versions are the profile's pins, else the current one with the grader's pins named."""
    versions, pins = dict(versions or {}), dict(pins or {})
    said = ", ".join(f"{k} {versions[k]}" for k in ("python", "tensorflow", "keras", "numpy")
                     if versions.get(k))
    pinned = ", ".join(f"{k} {pins[k]}" for k in ("python", "tensorflow", "keras", "numpy")
                       if pins.get(k))

    def same(k: str) -> bool:
        v, p = str(versions.get(k) or ""), str(pins.get(k) or "")
        return not v or not p or v == p or v.startswith(p + ".")

    if pins and all(same(k) for k in ("python", "tensorflow", "keras", "numpy")):
        return f"the grader's environment ({said or pinned})"
    return (f"the environment that ran it ({said or 'versions unknown'}; the grader's pins: "
            f"{pinned or 'none'})")


def missing_module_hint(module: str, env: str, local_files: list[str] | tuple = ()) -> str:
    """Both ways out of an import the environment ``env`` lacks: drop it, or add the
    package to the profile's ``[grader] extras`` once the grader is known to have it (and,
    when a file of that name sits next to model.py, put it in the zip)."""
    top = module.split(".")[0]
    dist = DISTRIBUTIONS.get(top, top.replace("_", "-"))
    local = f"{top}.py" in set(local_files)
    own = (f"{top}.py is next to your model.py but not in the zip: build with --include "
           f"{top}.py; otherwise " if local else
           "" if top in DISTRIBUTIONS else
           f"if {top} is a file of yours, put it in the zip (--include {top}.py); if it is a "
           "package, ")
    return (own + f"{env} has no {top}: drop the import (and the code that uses it), or, once "
            f"the grader is known to have {dist}, add it to the profile's [grader] extras "
            f"(subkit.toml: [grader] extras = {{ \"{dist}\" = \"VERSION\" }}) so that subkit's "
            "grader environment installs it too")


# -- load failures `subkit build` cannot fix ------------------------------------------------
_CLASS_REPR = re.compile(r"<class '([\w.]+)\.(\w+)'> could not be deserialized")
_LOCATE = re.compile(r"Could not locate class '(\w+)'.*?'module': '([\w.]+)'", re.S)


def _cause(err: str) -> str:
    if "Exception encountered:" in err:
        err = err.rsplit("Exception encountered:", 1)[1]
    return (err.strip().splitlines() or [""])[0][:400]


def load_failure(etype: str, err: str, tb: str, cls: str, keras: str | None
                 ) -> tuple[str, str] | None:
    """(message, hint) for a failure to load the weights that rewriting them for the
    grader's Keras (`subkit build`) would not fix: a Lambda's code refused in safe mode, a
    class of the participant's that does not rebuild from its own config, a Keras class the
    grader's Keras lacks. None otherwise (the caller's words)."""
    text = f"{err}\n{tb}"
    low = text.lower()
    k = f"keras {keras}" if keras else "this Keras"
    if "deserialization of a python lambda" in low:
        return (f"{cls}() could not load the weights: they hold a Lambda layer's Python code, "
                "which keras.models.load_model refuses with safe_mode=True (its default)",
                "replace the Lambda by a small layer class defined in model.py (its call() "
                "does what the lambda did), or pass safe_mode=False to load_model in model.py "
                "(the weights are your own); `subkit build` cannot rewrite a lambda")
    m = _CLASS_REPR.search(text)
    if m and not (m.group(1) == "keras" or m.group(1).startswith("keras.")):
        name, cause = m.group(2), _cause(text)
        fix = config_fix(name, cause) or f"make {name}.from_config({name}(...).get_config()) work"
        return (f"{cls}() could not load the weights: custom class {name} (module "
                f"{m.group(1)}) does not rebuild from the config saved with them: {cause}",
                f"{fix}; this is the class's own code, which `subkit build` does not rewrite")
    m = _LOCATE.search(err) or _LOCATE.search(text)
    if m and (m.group(2) == "keras" or m.group(2).startswith("keras.")):
        return (f"{cls}() could not load the weights: {k} has no {m.group(2)}.{m.group(1)} "
                "(the weights were saved by a newer Keras)",
                f"train with {k}, or save an inference model without that layer (an "
                "augmentation layer is an identity at inference); `subkit build` cannot "
                "rewrite a layer the grader's Keras lacks")
    return None


def config_fix(cls: str, error: str) -> str | None:
    """What to change when the participant's class ``cls`` does not rebuild from the config
    saved with the weights, read from Keras' ``error``; None when the error says neither."""
    low = error.lower()
    if "unexpected keyword" in low or "unrecognized keyword" in low:
        return (f"{cls}.__init__ must accept every key its get_config() returns: add those "
                "parameters (or take **kwargs and pass them to super().__init__(**kwargs))")
    if "required" in low and "argument" in low:
        return (f"{cls}.get_config() must return every argument of its __init__ "
                "({**super().get_config(), 'name_of_arg': self.name_of_arg}) and the model be "
                "saved again; or give those arguments defaults (the values it was trained "
                "with)")
    return None
