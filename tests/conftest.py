"""Shared fixtures: the CLI driven in-process or as a process, workspaces, tiny Keras models,
zips written by hand."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
SRC = Path(__file__).resolve().parents[1] / "src"  # for tests that run `subkit` as a process


def alive_with(token: str) -> list[int]:
    """Processes whose command line holds ``token`` (a submission's marker)."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if token.encode() in Path(f"/proc/{name}/cmdline").read_bytes():
                    pids.append(int(name))
            except OSError:
                continue
    return pids


@pytest.fixture(autouse=True)
def _current_versions_unless_asked(monkeypatch):
    """Tests run the submission's child in the current versions (SUBKIT_ENV=current), so
    that no test creates a 650 MB environment by surprise; the tests of `--env auto` and
    the grader's versions delete it or pass --env (and are marked grader_env)."""
    monkeypatch.setenv("SUBKIT_ENV", "current")


class CliResult(NamedTuple):
    """What one `subkit` command left: its exit code, its stdout and its stderr."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def run_cli(*args, cwd: Path | None = None) -> CliResult:
    """`subkit ARGS` in this interpreter, through the real entry point (``error:`` and
    ``hint:`` lines, exit codes), in ``cwd`` when given (the current folder is restored)."""
    from subkit.__main__ import run

    out, err = io.StringIO(), io.StringIO()
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run([str(a) for a in args])
    finally:
        os.chdir(old)
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def cli():
    """The one in-process driver of the CLI: ``cli(*args, cwd=None) -> CliResult``."""
    return run_cli


def subkit_env(**extra: str) -> dict[str, str]:
    """The environment of a `subkit` process a test starts: this tree's ``src`` first."""
    return {**os.environ, "PYTHONPATH": str(SRC), **extra}


def subkit_argv(*args) -> list[str]:
    return [sys.executable, "-m", "subkit", *(str(a) for a in args)]


def subkit_process(*args, cwd: Path | None = None, env: dict[str, str] | None = None,
                   timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m subkit ARGS` in a fresh interpreter, for what in-process cannot show
    (a kill, a fresh import); ``env`` adds to :func:`subkit_env`."""
    return subprocess.run(subkit_argv(*args), cwd=cwd, env=subkit_env(**(env or {})),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """An initialised workspace as the current directory."""
    from subkit.workspace import init_workspace

    ws = tmp_path / "ws"
    init_workspace(ws, None)
    monkeypatch.chdir(ws)
    monkeypatch.delenv("SUBKIT_WORKSPACE", raising=False)
    return ws


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """The test's tmp_path as the current directory, outside any workspace."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SUBKIT_WORKSPACE", raising=False)
    return tmp_path


def tiny_model(n_classes: int = 8, seed: int = 0, optimizer: bool = True):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((96, 96, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    if optimizer:
        model.compile(optimizer=keras.optimizers.AdamW(1e-3),
                      loss="sparse_categorical_crossentropy")
        x0 = np.random.default_rng(seed).integers(0, 255, (8, 96, 96, 3)).astype("float32")
        model.fit(x0, np.arange(8) % n_classes, epochs=1, verbose=0)
    return model


@pytest.fixture(scope="session")
def keras_weights(tmp_path_factory) -> Path:
    """A tiny trained .keras file with AdamW state (saved by the current Keras)."""
    path = tmp_path_factory.mktemp("weights") / "weights.keras"
    tiny_model().save(path)
    return path


@pytest.fixture(scope="session")
def test_npz(tmp_path_factory) -> Path:
    from subkit.data.synthetic import generate

    d = generate(48, seed=3)
    path = tmp_path_factory.mktemp("data") / "local_test.npz"
    np.savez(path, images=d["images"], labels=d["labels"])
    return path


def make_zip(path: Path, files: dict[str, str | bytes | Path]) -> Path:
    """A zip with the given members (text, bytes, or a file to copy)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in files.items():
            if isinstance(content, Path):
                zf.write(content, name)
            elif isinstance(content, bytes):
                zf.writestr(name, content)
            else:
                zf.writestr(name, textwrap.dedent(content))
    return path


@pytest.fixture(scope="session")
def grader_python() -> str:
    """The python of the real grader environment (keras 3.4.1 + tensorflow 2.17.0) that
    `.ci/run` creates; the test is skipped without it, unless SUBKIT_REQUIRE_GRADER_ENV."""
    from subkit import profile
    from subkit.errors import SubkitError
    from subkit.grader import environment

    prof = profile.load("an2dl-2024-blood-cells", workspace=False)
    try:
        return str(environment.ensure_env(prof, create=False))
    except SubkitError as exc:
        if os.environ.get("SUBKIT_REQUIRE_GRADER_ENV"):
            pytest.fail(f"SUBKIT_REQUIRE_GRADER_ENV is set but: {exc.message}")
        pytest.skip("needs the grader environment (keras 3.4.1 + tensorflow 2.17.0): run "
                    "`subkit env create`; SUBKIT_REQUIRE_GRADER_ENV=1 makes this a failure")


class RecordingBar:
    """A live display that keeps what it was told: (n, description) of each set, the
    advances, restarts, and whether it was closed."""

    def __init__(self, label: str, total: float, unit: str):
        self.label, self.total, self.unit = label, total, unit
        self.sets: list[tuple[float, str | None]] = []
        self.advanced: list[float] = []
        self.restarts = 0
        self.closed = False

    def set(self, n: float, description: str | None = None) -> None:
        self.sets.append((n, description))

    def advance(self, n: float) -> None:
        self.advanced.append(n)

    def restart(self) -> None:
        self.restarts += 1

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def recording_bars():
    """Report through a live reporter whose bars record (``subkit.ui.bar``); yields them."""
    from subkit import ui

    bars: list[RecordingBar] = []

    class Live(ui.Reporter):
        live = True

        def bar(self, label, total, unit):
            bars.append(RecordingBar(label, total, unit))
            return bars[-1]

    with ui.use(Live()):
        yield bars
