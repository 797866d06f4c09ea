"""The Keras workers of a retarget: one process per environment (the current one, the
grader's), each running ``worker.py`` in subkit's sandbox, driven by JSON lines.

Weights whose custom classes the submission defines (issue 25): each worker first imports
the submission (op "register": model.py and the files it imports, from a working copy of
its own, in the sandbox with the profile's limits and no network, as the smoke test runs
it) and loads every model with the classes it registers and the plain top-level classes it
defines, by name, as ``custom_objects``; safe_mode stays on. What it cannot make available
(``custom_failure``) stops the rewrite naming the class, its file and what to change. The
submission's code runs in these workers as it does in the smoke test: it can only fool its
own build (a forged reply on the worker's stdout), never reach beyond the sandbox."""

from __future__ import annotations

import collections
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subkit.errors import SubkitError
from subkit.fsutil import hold_lock
from subkit.keras_compat.config import (
    collect_classes,
    collect_samples,
    custom_needed,
    lambda_layers,
    layer_objects,
    read_keras_zip,
    version_tuple,
)

BATCH_SIZE = 8  # the fixed inputs both Kerases predict, to compare
BATCH_SEED = 1234
WORKER_TIMEOUT_S = 900
TAG = "@@SUBKIT@@"  # marks the worker's replies on its stdout
# the program itself is worker.py, shipped with the package and run by the target
# environment's interpreter as ``python -c`` (its text: no file of subkit's needs to be
# visible to that process)
WORKER_PROGRAM = Path(__file__).with_name("worker.py")


class CustomClassError(SubkitError):
    """A custom class of the submission that the workers could not make available."""


@dataclass(frozen=True)
class SubmissionCode:
    """The submission's own code, for weights whose custom classes it defines: the files
    (name at the zip root -> file on disk) the workers import, as the smoke test does, from
    a working copy of their own, with the profile's limits (``grader.sandbox.Limits``)."""

    files: dict[str, Path]
    entry: str = "model.py"
    limits: Any = None  # sandbox.Limits; None: the sandbox's defaults
    origin: str = ""  # where model.py came from, for messages
    folder: Path | None = field(default=None)  # the folder next to model.py, for hints

    def copy_into(self, folder: Path) -> Path:
        folder.mkdir(parents=True)
        for name, src in self.files.items():
            shutil.copyfile(src, folder / name)
        return folder


class WorkFolder:
    """The folder a retarget's workers and subkit exchange files through: ``in_`` holds what
    subkit gives them (the model, linked or copied in; the rewrite), read-only for them;
    ``out`` what they write. Locked while in use: a killed subkit's is swept later."""

    def __init__(self, prefix: str = "subkit-retarget-"):
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self._lock: int | None = hold_lock(self.root)  # None once closed
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


class Worker:
    """A keras process in one environment, driven by JSON lines.

    It loads weights a participant may have been handed (a config.json can name any module
    for Keras 3.4 to import, even in safe mode), so it runs in subkit's sandbox like a
    submission: the system and its interpreter read-only, the ``work`` folders (read-only /
    writable) at their own paths, nothing else, no network."""

    def __init__(self, python: str, label: str, timeout: float = WORKER_TIMEOUT_S,
                 work: WorkFolder | None = None, code: SubmissionCode | None = None):
        from subkit.grader import sandbox

        self.label = label
        self.timeout = timeout
        self.work = work
        self.code = code
        self.code_dir: Path | None = None
        self.pending: collections.deque[str] = collections.deque()  # ops sent, not yet read
        self.registered: dict | None = None  # the submission's classes (op "register")
        limits = code.limits if code is not None and code.limits is not None else None
        self._box = sandbox.Sandbox(limits or sandbox.Limits(), python=python)
        if work is not None:
            self._box.bind(work.in_)
            self._box.bind(work.out, writable=True)
            if code is not None:  # a working copy of its own, writable, as the smoke test's
                self.code_dir = code.copy_into(work.root / f"code-{label}")
                self._box.bind(self.code_dir, writable=True)
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
        self.limit_hit: str | None = None
        if self.code_dir is not None and work is not None:  # the smoke test's disk limits
            limit = (limits or sandbox.Limits()).disk_mb * 1024**2
            self._watch = threading.Thread(target=self._watch_disk,
                                           args=([self.code_dir, work.out], limit), daemon=True)
            self._watch.start()
        self.ready: dict | None = None
        # requests go out in order through a thread of their own: a request bigger than the
        # pipe (a model's layer configs) would otherwise block subkit until the worker has
        # imported TensorFlow and starts reading, seconds it can spend stripping the weights
        self._outbox: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_requests, daemon=True)
        self._writer.start()

    def _watch_disk(self, folders: list[Path], limit: int) -> None:
        """Kill the worker when the submission's code, which it ran, wrote past the
        profile's disk or file limits into its writable folders (as the smoke test would)."""
        from subkit.grader.untrusted import DiskWatch

        watch = DiskWatch(folders, limit)
        while self.proc.poll() is None:
            # the folders are small (model.py, its helpers, the batch): counted each tick, not
            # through the file system's free space, which other programs move too
            _wrote, passed = watch.written()
            if passed:
                self.limit_hit = passed
                self.proc.kill()
                return
            time.sleep(0.5)

    def _stderr_tail(self, n: int = 6) -> str:
        self._stderr.seek(0)
        lines = [ln for ln in self._stderr.read().splitlines()
                 if ln.strip() and not ln.startswith(("WARNING: All log", "I0000", "W0000"))]
        return " | ".join(lines[-n:])

    def send(self, op: str, **payload: Any) -> None:
        """Queue a request; it is written after every earlier one, without waiting."""
        self.pending.append(op)
        self._outbox.put(json.dumps({"op": op, **payload}) + "\n")

    def _write_requests(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        while (line := self._outbox.get()) is not None:
            try:
                stdin.write(line)
                stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                return  # read() reports the crash

    def read(self) -> dict:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                if self.limit_hit:
                    raise SubkitError(
                        f"the submission's code, imported by the Keras worker in the {self.label} "
                        f"environment, wrote past the sandbox's {self.limit_hit} limit",
                        hint="write nothing big next to model.py when it is imported; the "
                             "limit is the profile's [limits] disk_mb")
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
        if self.pending:
            self.pending.popleft()
        reply = self.read()
        if not reply.get("ok"):
            raise WorkerError(reply.get("error", "unknown error"), reply.get("traceback", ""))
        return reply["result"]

    def close(self) -> None:
        """End the worker: it holds no state worth a clean exit (TensorFlow's own exit
        takes seconds), so it is killed."""
        self._timer.cancel()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._outbox.put(None)
        self._writer.join(timeout=5)
        self._box.close()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        self._stderr.close()


class WorkerError(Exception):
    def __init__(self, message: str, tb: str):
        super().__init__(message)
        self.message = message
        self.tb = tb


def start_workers(env_python: str | None, source_python: str | None = None, *,
                  reference: Path | None = None, target_version: str | None = None,
                  code: SubmissionCode | None = None) -> tuple[Worker, Worker | None]:
    """The two Keras workers of a ``retarget``, started now: importing TensorFlow takes
    seconds in each, which a caller can spend on other work (build strips the optimizer
    state meanwhile). ``retarget(..., workers=...)`` uses and closes them.

    With ``reference`` (the file as the user saved it) and a ``target_version`` older than
    its Keras, the workers are also asked at once what needs only its config: both probes,
    the target's trial of its layers, and the reference predictions (the current Keras
    loads ``reference`` while the caller strips it). The proof is then against the user's
    own file, not the stripped copy.

    ``code``: the submission's model.py and the files it imports, for weights whose custom
    classes it defines; each worker imports it first (op "register"), from a working copy,
    with its limits, and loads every model with those classes. A file that needs a Lambda's
    Python code is refused here, before anything starts."""
    config: dict | None = None
    if reference is not None and target_version is not None:
        config, metadata, _names = read_keras_zip(Path(reference))
        saved = metadata.get("keras_version")
        if not (saved and version_tuple(saved) > version_tuple(target_version)):
            config = None
        else:
            refuse_lambdas(config, Path(reference).name)
    work = WorkFolder()
    try:
        source = Worker(source_python or sys.executable, "current", work=work, code=code)
        workers = source, (Worker(env_python, "grader", work=work, code=code)
                           if env_python else None)
    except BaseException:
        work.close()
        raise
    if config is not None:
        assert reference is not None  # config is only read from it
        ask(workers, Path(reference), config)
    return workers


def refuse_lambdas(config: dict, name: str) -> None:
    """A Lambda layer's Python code is what ``safe_mode`` refuses to load (arbitrary code):
    the rewrite and its proof load with safe_mode on, so such a file stops here."""
    lambdas = lambda_layers(config)
    if lambdas:
        raise SubkitError(
            f"{name}: layer {lambdas[0]!r} is a Lambda holding Python code"
            + (f" (and {len(lambdas) - 1} more)" if len(lambdas) > 1 else "")
            + ": Keras refuses to load a lambda with safe_mode=True (it runs arbitrary code), "
              "and subkit proves the rewrite for the grader's Keras with safe_mode on",
            hint="replace the Lambda by a small layer class at the top level of model.py "
                 "(class MyOp(keras.layers.Layer) with a call(); registered with "
                 "@keras.saving.register_keras_serializable()), rebuild the model with it, "
                 "copy the weights (new.set_weights(old.get_weights())) and save it again")


def register_names(worker: Worker | None, names: list[str]) -> None:
    """"register" for a file whose config subkit does not read (a legacy .h5 model): the
    custom classes by the names its config uses ("package>Name" or "Name")."""
    if worker is None or not names or worker.code is None or worker.code_dir is None:
        return
    needed = [{"class_name": n.split(">")[-1], "registered_name": n, "module": None,
               "layer": None, "object": None} for n in names]
    worker.send("register", folder=str(worker.code_dir), entry=worker.code.entry,
                needed=needed, construct=False)


def register(worker: Worker, config: dict, *, construct: bool) -> None:
    """Send "register" first when the weights need custom classes and the worker has the
    submission's code (the reply is read by ``answer`` before any other)."""
    needed = custom_needed(config)
    if not needed or worker.code is None or worker.code_dir is None:
        return
    worker.send("register", folder=str(worker.code_dir), entry=worker.code.entry,
                needed=needed, construct=construct)


def ask(workers: tuple[Worker, Worker | None], reference: Path, config: dict) -> None:
    """Send a retarget's first questions: the probes of ``config``'s classes, the target's
    trial of its original layers, and (when there is a target to compare with) the
    current Keras' predictions of ``reference`` on the fixed batch."""
    source_worker, target_worker = workers
    work = source_worker.work
    assert work is not None
    req = [list(c) for c in collect_classes(config)]
    register(source_worker, config, construct=True)
    if target_worker is not None:
        register(target_worker, config, construct=False)
    source_worker.send("probe", classes=req)
    if target_worker is not None:
        source_worker.send("predict", model=str(work.give(reference)),
                           batch=str(work.out / "batch.npz"), out=str(work.out / "source.npz"),
                           make_batch={"n": BATCH_SIZE, "seed": BATCH_SEED})
        target_worker.send("probe", classes=req, samples=collect_samples(config))
        target_worker.send("trial", objects=layer_objects(config))
    source_worker.asked = reference


def close_workers(workers: tuple[Worker, Worker | None]) -> None:
    for w in workers:
        if w is not None:
            w.close()
    if workers[0].work is not None:
        workers[0].work.close()


def answer(worker: Worker, op: str, **payload: Any) -> dict:
    """The reply to ``op``: sends it first when a payload is given (else it was sent). A
    pending "register" is read first: what it could not make available raises here."""
    settle(worker)
    try:
        if payload:
            return worker.call(op, **payload)
        return worker.result()
    except WorkerError as exc:
        raise SubkitError(f"{op} failed in the {worker.label} environment: {exc.message}",
                          hint="rerun with --debug for the worker's traceback") from None


# -- the submission's custom classes ------------------------------------------------------------
def settle(worker: Worker) -> dict | None:
    """Read the reply of a pending "register" (the first request sent): the classes made
    available, kept in ``worker.registered``; raises SubkitError naming the class, the file
    that defines it and what to change when one could not be made available."""
    if not worker.pending or worker.pending[0] != "register":
        return worker.registered
    try:
        got = worker.result()
    except WorkerError as exc:
        raise SubkitError(f"loading the submission's custom classes failed in the "
                          f"{worker.label} environment: {exc.message}",
                          hint="rerun with --debug for the worker's traceback") from None
    worker.registered = got
    if got.get("problems"):
        raise custom_failure(got["problems"][0], worker.code, where(worker),
                             [c.get("name") for c in got.get("classes", [])])
    return got


def where(worker: Worker) -> str:
    """The environment of a worker, in words: "the grader's environment (python 3.10.13,
    tensorflow 2.17.0, keras 3.4.1)"."""
    ready = worker.start()
    versions = ", ".join(f"{k} {ready[k]}" for k in ("python", "tensorflow", "keras")
                         if ready.get(k))
    name = {"grader": "the grader's environment", "current": "the current environment"}.get(
        worker.label, f"the {worker.label} environment")
    return f"{name} ({versions})" if versions else name


def _at(d: dict | None) -> str:
    if not d:
        return ""
    out = f"{d.get('file')}:{d.get('line')}"
    return out + (f" in {d['function']}()" if d.get("function") not in (None, "<module>")
                  else "")


def custom_failure(p: dict, code: SubmissionCode | None, env: str,
                   names: list[str | None]) -> CustomClassError:
    """The error for what the worker could not make available (``p``: one of op_register's
    problems), naming the class, the file that defines it and what to change."""
    from subkit.grader import hints

    entry = code.entry if code else "model.py"
    cls = p.get("name")
    kind = p["kind"]
    places = p.get("places") or []
    first = places[0] if places else {}
    needs = "the custom classes the weights need"
    if kind == "syntax":
        return CustomClassError(
            f"{p['file']} has a syntax error at line {p['line']}: {p['error']}"
            + (f" (`{p['code']}`)" if p.get("code") else "")
            + f"; met while importing {entry} for {needs}",
            hint=f"fix line {p['line']} of {p['file']} (`python -m py_compile {p['file']}` "
                 "shows it) and build again")
    if kind == "import":
        at = _at(p.get("frame"))
        msg = (f"importing {entry} in {env} failed: {p['error']}" + (f" (at {at})" if at else "")
               + f"; subkit imports it there to load {needs}, as the grader does")
        if p.get("etype") in ("ModuleNotFoundError", "ImportError") and p.get("module"):
            return CustomClassError(msg, hint=hints.missing_module_hint(
                p["module"], env, local_files=_local_py(code)))
        return CustomClassError(msg, hint=f"code at the top level of {entry} runs when it is "
                                     "imported: keep it to imports and definitions (load the "
                                     "weights in __init__)")
    if kind == "twice":
        spots = " and ".join(f"{d['file']}:{d['line']}" for d in places)
        return CustomClassError(
            f"custom class {cls} is defined twice ({spots}): the last definition replaces the "
            f"first when {entry} is imported, so which one the weights were saved with is not "
            "clear", hint=f"keep one definition of {cls} (the one the model was trained with) "
                          "and delete the other")
    if kind == "runtime":
        return CustomClassError(
            f"custom class {cls} is built at run time, inside {first.get('inside')}() "
            f"({first.get('file')}:{first.get('line')}): it exists only once that code runs, "
            f"so Keras cannot find it while loading the weights (layer {p.get('layer')!r})",
            hint=f"move `class {cls}` to the top level of {first.get('file')} (decorated with "
                 "@keras.saving.register_keras_serializable()), so that importing it defines "
                 "the class")
    if kind == "not-imported":
        stem = str(first.get("file", "")).removesuffix(".py").replace("/", ".")
        return CustomClassError(
            f"custom class {cls} is defined in {first.get('file')}, which {entry} does not "
            f"import: loading the weights (layer {p.get('layer')!r}) cannot find it",
            hint=f"import it at the top of {entry}: from {stem} import {cls}")
    if kind == "missing":
        return CustomClassError(
            f"no file of the submission defines custom class {cls} at its top level (layer "
            f"{p.get('layer')!r} of the weights needs it; a class made with type() or by a "
            f"function exists only at run time)",
            hint=f"define `class {cls}(keras.layers.Layer)` at the top level of {entry} "
                 "(decorated with @keras.saving.register_keras_serializable()), or put its "
                 "file in the zip with --include and import it")
    # "construct": the class does not rebuild from the config it saved
    where_ = f"{p.get('file')}:{p.get('line')}" if p.get("file") else entry
    err = p.get("error", "")
    from subkit.grader.hints import config_fix

    hint = config_fix(str(cls), err) or (
        f"make {cls}.from_config({cls}(...).get_config()) work in {entry}: its __init__ "
        "runs again on the saved config when the weights load")
    at = _at(p.get("frame"))
    return CustomClassError(
        f"custom class {cls} ({where_}) fails to construct from the config saved with the "
        f"weights (layer {p.get('layer')!r}), in {env}: {err}" + (f" (at {at})" if at else ""),
        hint=hint)


def _local_py(code: SubmissionCode | None) -> list[str]:
    """The .py files next to model.py on disk that are not in the submission."""
    if code is None or code.folder is None:
        return []
    try:
        return sorted(p.name for p in Path(code.folder).glob("*.py") if p.name not in code.files)
    except OSError:
        return []


def blame_custom(message: str, worker: Worker, target_version: str) -> SubkitError | None:
    """When the target refused the rewrite because of one of the submission's own classes
    (its code, which the rewrite leaves alone), the error naming it; else None."""
    for c in (worker.registered or {}).get("classes", []):
        name = c.get("name")
        if name and re.search(rf"\b{re.escape(name)}\b", message):
            at = f"{c['file']}:{c['line']}" if c.get("file") else "the submission"
            return CustomClassError(
                f"custom class {name} ({at}) does not load in keras {target_version}, the "
                f"grader's ({where(worker)}): {message.split(': ', 1)[-1]}",
                hint=f"{name} works in your Keras but not in keras {target_version}: make it "
                     f"use only what keras {target_version} has (`subkit check ZIP --env "
                     "grader` runs it there), or train with that version")
    return None
