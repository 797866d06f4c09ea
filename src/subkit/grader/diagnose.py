"""What went wrong in a run, in the words a participant needs: the child's status and
exit (timeout, a limit, a signal, an exception at import, init or predict) turned into one
``Failure`` with a message, a hint and the log tail.

``grader/run.py`` imports ``Failure`` and ``diagnose`` from here (and callers still find them
there); nothing here runs the child.
"""

from __future__ import annotations

import io
import os
import signal as _signal
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from subkit.grader import sandbox, untrusted

if TYPE_CHECKING:
    from subkit.profile import Profile

# how much of each field a Failure keeps: (characters, one line)
_FIELDS = {"stage": (60, True), "message": (3000, True), "hint": (2000, True),
           "tail": (16000, False)}


@dataclass
class Failure:
    """What went wrong, as the summary, run.json and the report show it. Its texts quote
    the submission (an exception, a file name, a log tail), so every field passes through
    ``untrusted.printable`` whenever it is set, at construction or later: stage, message and
    hint on one line (an ``error:`` line is followed by its ``hint:`` line, nothing between),
    the tail with its lines, each escaped."""

    stage: str
    message: str
    hint: str
    tail: str = ""

    def __setattr__(self, name: str, value) -> None:
        if name in _FIELDS:
            limit, one_line = _FIELDS[name]
            value = untrusted.printable(value, limit, one_line=one_line,
                                        keep_end=not one_line)
        object.__setattr__(self, name, value)

    def to_dict(self) -> dict:
        return asdict(self)


_STAGE_WORDS = {"start": "starting", "load_input": "loading the input",
                "import": "importing model.py", "init": "Model()", "predict": "predict(X)",
                "save": "saving the predictions", "done": "finishing"}


def diagnose(child: sandbox.ChildResult, status: dict, prof: Profile,
             time_limit: float) -> Failure | None:
    """Turn what the child did into the message and hint a participant needs."""
    from subkit.modelcheck import init_call, predict_call

    stage = status.get("stage", "start")
    where = _STAGE_WORDS.get(stage, stage)
    tail = child.tail("stderr", 30)
    entry, cls = prof.entry_file, prof.class_name
    calls = (init_call(prof), predict_call(prof))
    lim = child.sandbox.get("limits") or sandbox.Limits.of(prof).to_dict()
    if child.timed_out:
        paused = (f"; subkit itself was stopped for {child.paused_s:g} s of it, and the grader's "
                  "clock does not stop" if child.paused_s else "")
        return Failure(stage, f"the submission exceeded the time limit of {time_limit:g} s "
                              f"during {where} (the grader kills it: "
                              f"'Execution Time Limit exceeded'{paused})",
                       "predict in batches (the template does), use fewer TTA views or a "
                       "smaller model; an endless loop or input() hangs too", tail)
    if child.limit == "memory":  # the run's memory cgroup (sandbox.py, grader/cgroup.py)
        return Failure(stage, f"the submission used more than the memory limit of "
                              f"{lim['memory_mb']} MB (all its processes together, shared memory "
                              f"included) during {where}; the kernel killed it",
                       "predict in batches and free what you do not need; the limit is the "
                       "profile's [limits] memory_mb", tail)
    if child.limit == "disk":
        return Failure(stage, f"the submission wrote more than {lim['disk_mb']} MB into its "
                              f"folders during {where}; the sandbox stopped it",
                       "write nothing big next to model.py or into the output; the limit is the "
                       "profile's [limits] disk_mb", tail)
    if child.limit == "files":
        return Failure(stage, f"the submission created more than {untrusted.MAX_FILES} files "
                              f"during {where}; the sandbox stopped it",
                       "do not write files in a loop", tail)
    if status.get("ok") and child.returncode == 0:
        return None
    etype, err = status.get("error_type"), status.get("error", "")
    tb = status.get("traceback", "") or tail
    tb_tail = "\n".join(tb.strip().splitlines()[-12:])
    if etype == "SystemExit":
        return Failure(stage, err or "the submission called sys.exit()",
                       "never exit from model.py: raise an exception or return normally", tb_tail)
    if etype:
        return _limit_exception(stage, etype, err, tb_tail, lim) or \
            _diagnose_exception(stage, etype, err, tb_tail, entry, cls, calls,
                                prof.grader.get("keras"), status=status, pins=prof.grader)
    if child.signal is not None:
        return _diagnose_signal(child.signal, stage, where, lim, tail)
    return Failure(stage, f"the submission's process ended with exit code {child.returncode} "
                          f"during {where} without raising an error (os._exit or a hard exit "
                          "in a library?)",
                   "never call os._exit/sys.exit in model.py; see the log tail for what ran "
                   "last", tail)


def _diagnose_signal(sig: int, stage: str, where: str, lim: dict, tail: str) -> Failure:
    name = _signal.Signals(sig).name if sig in set(_signal.Signals) else str(sig)
    if sig == _signal.SIGXFSZ:
        return Failure(stage, f"the submission's process wrote a file larger than "
                              f"{lim['file_size_mb']} MB during {where} (killed by SIGXFSZ)",
                       "write nothing that big; the limit is the profile's [limits] "
                       "file_size_mb", tail)
    oom = sig in (_signal.SIGKILL, _signal.SIGABRT)
    return Failure(stage, f"the submission's process was killed by {name} during {where}"
                          + (f" (out of memory? the sandbox allows {lim['memory_mb']} MB per "
                             "process)" if oom else ""),
                   "reduce memory: predict in batches, free what you do not need; a crash in a "
                   "native library (SIGSEGV) can come from mismatched TensorFlow/numpy versions"
                   if oom or sig == _signal.SIGSEGV else "see the log tail", tail)


def _limit_exception(stage, etype, err, tb, lim: dict) -> Failure | None:
    """An exception that is the sandbox's limit speaking, in the limit's words."""
    low = err.lower()
    if "MemoryError" in etype or "allocate" in low:
        return Failure(stage, f"the submission ran out of memory: {etype}: {err} "
                              f"(the sandbox allows {lim['memory_mb']} MB per process)",
                       "predict in batches and free what you do not need; the limit is the "
                       "profile's [limits] memory_mb", tb)
    if "file too large" in low:
        return Failure(stage, f"the submission wrote a file larger than {lim['file_size_mb']} MB: "
                              f"{etype}: {err}",
                       "write nothing that big; the limit is the profile's [limits] "
                       "file_size_mb", tb)
    if etype == "BlockingIOError" or "resource temporarily unavailable" in low:
        return Failure(stage, f"the submission could not start another process or thread: {etype}: "
                              f"{err} (the sandbox allows {lim['processes']})",
                       "do not fork in a loop; the limit is the profile's [limits] processes", tb)
    if "no space left" in low:
        return Failure(stage, f"the submission filled its space: {etype}: {err} (/tmp holds "
                              f"{lim['tmp_mb']} MB)", "write less to /tmp; the limit is the "
                                                      "profile's [limits] tmp_mb", tb)
    return None


def keras_cause(err: str) -> str:
    """The cause Keras nests after "Exception encountered:", behind pages of config."""
    if "Exception encountered:" in err:
        err = err.rsplit("Exception encountered:", 1)[1]
    lines = err.strip().splitlines() or [""]
    return lines[0][:400]


def _name_the_weights(f: Failure, submission_dir: Path) -> Failure:
    """The hint's YOUR_WEIGHTS.keras, as the one .keras file of the submission."""
    found = sorted(p.name for p in submission_dir.glob("*.keras"))
    if len(found) == 1:  # the submission's own name: shown escaped (Failure's setattr)
        f.hint = f.hint.replace("YOUR_WEIGHTS.keras", untrusted.printable(found[0], 200,
                                                                          one_line=True))
    return f


def _diagnose_exception(stage, etype, err, tb, entry, cls, calls, keras=None, *,
                        status: dict | None = None, pins: dict | None = None) -> Failure:
    """``calls``: how the grader calls the class and predict, e.g. ("model(path)",
    "predict(X, categories)"). The hint names where the participant's code raised it
    (``grader.hints``); the whole traceback and the versions come from ``status``."""
    from subkit.grader import hints

    full, versions = (status or {}).get("traceback") or tb, (status or {}).get("versions")
    said = (hints.predict_failure(etype, err, full, entry, calls[1], _INPUT_WORDS)
            if stage == "predict" else
            hints.load_failure(etype, err, full, cls, (versions or {}).get("keras") or keras)
            if stage == "init" else None)
    name = hints.missing_module_name(err) if etype in ("ModuleNotFoundError",
                                                       "ImportError") else None
    if name:  # an import the environment lacks, at the top of model.py or inside it
        said = (f"importing {entry} failed: {etype}: {err}" if stage == "import" else
                f"{ {'init': calls[0], 'predict': calls[1]}.get(stage, stage)} raised {etype}: "
                f"{err}", hints.missing_module_hint(name, hints.env_words(versions, pins)))
    f = Failure(stage, *said, tb) if said else _exception_text(stage, etype, err, tb, entry, cls,
                                                               calls, keras)
    f.hint = hints.name_frame(f.hint, full, entry)
    return f


_INPUT_WORDS = ("X is a numpy array shaped and typed as the profile says (e.g. uint8 "
                "(n, 96, 96, 3))")


def _exception_text(stage, etype, err, tb, entry, cls, calls, keras=None) -> Failure:
    low = err.lower()
    init_call, predict_call = calls
    if stage == "import":
        if etype in ("SyntaxError", "IndentationError", "TabError"):
            return Failure(stage, f"{entry} has a syntax error: {err}",
                           f"run `python -m py_compile {entry}` and fix the line it names", tb)
        if etype in ("ModuleNotFoundError", "ImportError"):
            return Failure(stage, f"importing {entry} failed: {etype}: {err}",
                           "use only packages the grader has (numpy, tensorflow/keras); put helper "
                           "modules at the zip root next to model.py", tb)
        if etype == "FileNotFoundError" and entry in err:
            return Failure(stage, err,
                           f"put {entry} at the root of the zip, not inside a folder", tb)
        if etype == "AttributeError" and cls in err:
            return Failure(stage, f"{entry} defines no class {cls!r}",
                           f"the grader runs `from {entry[:-3]} import {cls}`: "
                           f"define `class {cls}:`", tb)
        return Failure(stage, f"importing {entry} raised {etype}: {err}",
                       f"code at the top level of {entry} runs on import: "
                       "move work into __init__", tb)
    if stage == "init":
        if etype == "TypeError" and ("positional argument" in low or "required" in low):
            if not init_call.endswith("()"):
                return Failure(stage, f"{init_call} failed: {err}",
                               f"the grader calls {init_call}: define __init__ to take exactly "
                               "that and load the weights from os.path.join(path, NAME)", tb)
            return Failure(stage, f"{init_call} needs arguments: {err}",
                           f"the grader calls {init_call} with no argument (CodaLab's model(path) "
                           "passed the folder; this grader does not): def __init__(self): and "
                           "load the weights from os.path.dirname(os.path.abspath(__file__))", tb)
        if etype in ("FileNotFoundError", "OSError", "IOError") or "no such file" in low \
                or "not found" in low or "file not found" in low or "unable to open" in low:
            return Failure(stage, f"{cls}() could not find its weights from the grader's working "
                                  f"directory: {etype}: {err}",
                           "load them with "
                           "os.path.join(os.path.dirname(os.path.abspath(__file__)), "
                           "'weights.keras') and check the name matches the file in the zip", tb)
        if "unknown layer" in low or "could not locate" in low or "custom_objects" in low:
            return Failure(stage, "the weights need a custom class that model.py does not "
                                  f"provide: {err}",
                           "define the class in model.py (decorated with "
                           "@keras.saving.register_keras_serializable()) or pass "
                           "custom_objects", tb)
        if "unrecognized keyword" in low or "keyword argument" in low or "deserializ" in low:
            cause = keras_cause(tb if "Exception encountered:" in tb else err)
            return Failure(stage, f"{cls}() could not load the weights: {etype}: {cause}",
                           "the weights were saved by a newer Keras than this one: rebuild the zip "
                           "with `subkit build --weights YOUR_WEIGHTS.keras` (it rewrites them "
                           f"for keras {keras} and proves they load there)", tb)
        return Failure(stage, f"{cls}() raised {etype}: {err}", "see the traceback tail", tb)
    if stage == "predict":
        if etype == "TypeError" and ("positional argument" in low or "takes" in low):
            return Failure(stage, f"predict could not be called as {predict_call}: {err}",
                           f"define def {predict_call.replace('(', '(self, ', 1)}: the grader "
                           "passes exactly these inputs", tb)
        return Failure(stage, f"{predict_call} raised {etype}: {err}",
                       "X is a numpy array shaped and typed as the profile says (e.g. uint8 "
                       "(n, 96, 96, 3)); run `subkit check` to reproduce on a small batch", tb)
    if stage == "load_input":
        return Failure(stage, f"the child could not read the input: {etype}: {err}",
                       "this is subkit's side; rerun with --debug and report it", tb)
    return Failure(stage, f"{etype}: {err}", "see the traceback tail", tb)


# -- what the submission wrote where its predictions go ------------------------------------------
class BadOutput(Exception):
    """A predictions file that is not a plain array of numbers, in words (message, hint);
    ``found``: what stood where the file goes when it was not a file ("a folder")."""

    def __init__(self, message: str, hint: str, found: str | None = None):
        super().__init__(message)
        self.message, self.hint, self.found = message, hint, found


def wanted(prof: Profile) -> str:
    """What the grader wants back, in the profile's words: "labels as a numpy int array of
    shape (n,)"."""
    out = prof.data.get("output", {}) if isinstance(getattr(prof, "data", None), dict) else {}
    kind = out.get("kind", "predictions")
    dtype, shape = out.get("dtype", "number"), out.get("shape")
    return f"{kind} as a numpy {dtype} array" + (f" of shape {shape}" if shape else "")


_HANDS_OFF = ("predict returns the {want}; the ingestion program saves them: write nothing "
              "into /app/output yourself")
_NOT_A_FILE = {stat.S_IFDIR: "a folder", stat.S_IFLNK: "a symbolic link", stat.S_IFIFO: "a FIFO",
               stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device"}


def occupied(path: Path, want: str) -> BadOutput | None:
    """A name subkit writes after the run (``labels.npy``) that the submission took with
    something subkit cannot replace (a folder), or None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISDIR(st.st_mode):
        return BadOutput(f"the submission wrote a folder where {path.name} goes (subkit writes "
                         "its own file there after the run)", _HANDS_OFF.format(want=want),
                         "a folder")
    return None


def read_predictions(path: Path, cap: int, want: str, data: bytes | None = None):
    """The array the submission left at ``path`` (its bytes ``data`` when they were read
    earlier), or BadOutput naming what it found there: no file, a folder, a link, a FIFO, a
    file too big, something that is not a .npy, or an array that is not plain numbers or
    text (structured, void, complex, dates, bytes that are not UTF-8). The file was written
    by code subkit does not trust: nothing in it can make this raise anything else."""
    if data is None:
        data = _plain_file(path, cap, want)
    return _array(data, path.name, want)


def _plain_file(path: Path, cap: int, want: str) -> bytes:
    name = path.name
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        kind = untrusted.sealed(path)  # what the sandbox removed there, if anything
        if kind is not None:
            raise BadOutput(f"the submission wrote {kind} where {name} goes",
                            _HANDS_OFF.format(want=want), kind) from None
        raise BadOutput(f"the submission's run ended without writing {name}",
                        f"predict must return the {want}; the ingestion program saves them "
                        "(do not remove or move files of /app/output)") from None
    except OSError as exc:
        raise BadOutput(f"{name} cannot be read: {exc.strerror}",
                        _HANDS_OFF.format(want=want)) from None
    if not stat.S_ISREG(st.st_mode):
        kind = _NOT_A_FILE.get(stat.S_IFMT(st.st_mode), "something that is not a file")
        raise BadOutput(f"the submission wrote {kind} where {name} goes",
                        _HANDS_OFF.format(want=want), kind)
    if st.st_size > cap:
        raise BadOutput(f"the submission wrote a {name} of {st.st_size / 2**20:.0f} MiB, more "
                        f"than the {cap / 2**20:.0f} MiB predictions of this test set can take",
                        f"return the {want}, nothing more")
    got = untrusted.read_untrusted(path, cap)
    if got is None:
        raise BadOutput(f"{name} changed while subkit read it, or is not a plain file",
                        _HANDS_OFF.format(want=want))
    return got


def _array(data: bytes, name: str, want: str):
    import numpy as np

    fix = f"return the {want} from predict"
    start = untrusted.printable(repr(data[:8]), 40, one_line=True)
    if data.startswith(b"\x80"):  # numpy takes anything but its magic and a zip's for one
        raise BadOutput(f"{name} is a pickle of Python objects, not a .npy file", fix)
    if not data.startswith((b"\x93NUMPY", b"PK\x03\x04")):
        raise BadOutput(f"{name} is not a .npy file (it starts with {start})", fix)
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        text = untrusted.printable(exc, 300, one_line=True)
        if "Object arrays" in text or "pickle" in text:
            raise BadOutput(f"{name} holds Python objects (an object array), which the grader "
                            "loads without pickle", fix + ": numbers, one array, not a list of "
                            "arrays or objects") from None
        raise BadOutput(f"{name} is not a readable .npy file: {text}", fix) from None
    except Exception as exc:  # EOFError, OSError, BadZipFile: anything numpy raises on junk
        raise BadOutput(f"{name} is not a readable .npy file ({type(exc).__name__}: "
                        f"{untrusted.printable(exc, 300, one_line=True)})", fix) from None
    if not isinstance(arr, np.ndarray):  # np.load of a zip: an NpzFile
        if hasattr(arr, "close"):
            arr.close()
        raise BadOutput(f"{name} is an .npz archive (np.savez), not one array", fix)
    problem = _dtype_problem(arr)
    if problem:
        raise BadOutput(f"predictions are {problem}", fix)
    return arr


def _dtype_problem(arr) -> str | None:
    """What is wrong with the array's dtype, in words, or None for numbers and text."""
    import numpy as np

    dt = arr.dtype
    if dt.kind == "V" and dt.names:
        fields = ", ".join(untrusted.printable(f, 40, one_line=True) for f in dt.names[:8])
        more = f" and {len(dt.names) - 8} more" if len(dt.names) > 8 else ""
        return f"a structured array with fields {fields}{more} (shape {arr.shape}), not numbers"
    if dt.kind == "V":
        return f"raw bytes (numpy void dtype {dt.str.lstrip('|')}), not numbers"
    if dt.kind == "c":
        return f"complex numbers ({dt}), not real ones"
    if dt.kind == "M":
        return f"dates and times ({dt}), not numbers"
    if dt.kind == "m":
        return f"time spans ({dt}), not numbers"
    if dt.kind == "O":
        return "Python objects (an object array), not numbers"
    if dt.kind == "S":
        try:
            np.char.decode(arr, "utf-8")
        except UnicodeDecodeError:
            bad = next((v for v in arr.ravel().tolist() if not _utf8(v)), b"")
            return f"byte strings that are not UTF-8 text (e.g. {bad[:20]!r}), not numbers"
    return None


def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
