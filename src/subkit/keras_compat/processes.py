"""The Keras workers of a retarget: one process per environment (the current one, the
grader's), each running ``worker.py`` in subkit's sandbox, driven by JSON lines."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from subkit.errors import SubkitError
from subkit.fsutil import hold_lock
from subkit.keras_compat.config import (
    collect_classes,
    collect_samples,
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


class WorkFolder:
    """The folder a retarget's workers and subkit exchange files through: ``in_`` holds what
    subkit gives them (the model, linked or copied in; the rewrite), read-only for them;
    ``out`` what they write. Locked while in use: a killed subkit's is swept later."""

    def __init__(self, prefix: str = "subkit-retarget-"):
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self._lock = hold_lock(self.root)
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
                 work: WorkFolder | None = None):
        from subkit.grader import sandbox

        self.label = label
        self.timeout = timeout
        self.work = work
        self._box = sandbox.Sandbox(sandbox.Limits(), python=python)
        if work is not None:
            self._box.bind(work.in_)
            self._box.bind(work.out, writable=True)
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
        self.ready: dict | None = None
        # requests go out in order through a thread of their own: a request bigger than the
        # pipe (a model's layer configs) would otherwise block subkit until the worker has
        # imported TensorFlow and starts reading, seconds it can spend stripping the weights
        self._outbox: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_requests, daemon=True)
        self._writer.start()

    def _stderr_tail(self, n: int = 6) -> str:
        self._stderr.seek(0)
        lines = [ln for ln in self._stderr.read().splitlines()
                 if ln.strip() and not ln.startswith(("WARNING: All log", "I0000", "W0000"))]
        return " | ".join(lines[-n:])

    def send(self, op: str, **payload: Any) -> None:
        """Queue a request; it is written after every earlier one, without waiting."""
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
                  reference: Path | None = None,
                  target_version: str | None = None) -> tuple[Worker, Worker | None]:
    """The two Keras workers of a ``retarget``, started now: importing TensorFlow takes
    seconds in each, which a caller can spend on other work (build strips the optimizer
    state meanwhile). ``retarget(..., workers=...)`` uses and closes them.

    With ``reference`` (the file as the user saved it) and a ``target_version`` older than
    its Keras, the workers are also asked at once what needs only its config: both probes,
    the target's trial of its layers, and the reference predictions (the current Keras
    loads ``reference`` while the caller strips it). The proof is then against the user's
    own file, not the stripped copy."""
    work = WorkFolder()
    source = Worker(source_python or sys.executable, "current", work=work)
    workers = source, (Worker(env_python, "grader", work=work) if env_python else None)
    if reference is not None and target_version is not None:
        config, metadata, _names = read_keras_zip(Path(reference))
        saved = metadata.get("keras_version")
        if saved and version_tuple(saved) > version_tuple(target_version):
            ask(workers, Path(reference), config)
    return workers


def ask(workers: tuple[Worker, Worker | None], reference: Path, config: dict) -> None:
    """Send a retarget's first questions: the probes of ``config``'s classes, the target's
    trial of its original layers, and (when there is a target to compare with) the
    current Keras' predictions of ``reference`` on the fixed batch."""
    source_worker, target_worker = workers
    work = source_worker.work
    assert work is not None
    req = [list(c) for c in collect_classes(config)]
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
    """The reply to ``op``: sends it first when a payload is given (else it was sent)."""
    try:
        if payload:
            return worker.call(op, **payload)
        return worker.result()
    except WorkerError as exc:
        raise SubkitError(f"{op} failed in the {worker.label} environment: {exc.message}",
                          hint="rerun with --debug for the worker's traceback") from None
