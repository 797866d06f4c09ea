"""Codabench competition bundles: run any bundle's own programs locally, export one of ours.

Running a bundle (``subkit score-local ZIP --bundle BUNDLE``) reproduces what Codabench's
compute worker does with a code submission, from its source (codalab/codabench
``compute_worker/compute_worker.py``: ``replace_legacy_metadata_command``,
``Run._run_program_directory``, ``Run.start``, ``Run.push_scores``, ``Run.push_output``;
the site side in ``src/apps/competitions/tasks.py::_send_to_compute_worker``; the bundle
format in ``src/apps/competitions/unpackers/v2.py`` and the version switch in
``unpack_competition``; leaderboard computations in ``leaderboards/models.py::Column``):

- Two runs, each under the phase's ``execution_time_limit`` (default 600 s):
  the *prediction* run (the submission as ``/app/program`` of its own container and as
  ``/app/ingested_program`` of the ingestion program's, input data at ``/app/input_data``,
  output at ``/app/output``) and the *scoring* run (the scoring program at ``/app/program``,
  reference data at ``/app/input/ref``, the prediction output at ``/app/input/res``,
  ``/app/shared``, output at ``/app/output``). A task with ``ingestion_only_during_scoring``
  runs its ingestion program in the scoring run instead, next to the scoring program, with
  the submission (the prediction output) as ``/app/ingested_program``.
- In each run the two programs run concurrently. A program folder's ``metadata.yaml`` (or
  ``metadata``) gives ``command:``; a submission without one is copied into the output; a
  submission whose metadata has no command runs nothing.
- The command's placeholders are replaced in the worker's order, by plain string
  replacement: ``$input`` (``/app/input_data`` for ingestion, ``/app/input`` otherwise),
  ``$output``, ``$program`` (``/app/ingestion_program`` in the scoring run of an
  ingestion-during-scoring task, a folder the worker does not mount, else ``/app/program``),
  ``$ingestion_program`` (``/app/program``), ``$hidden``, ``$shared``,
  ``$submission_program``, ``$tmp``, ``$predictions``. The string goes to the container
  engine, which splits it like a shell (docker-py's ``split_command`` is ``shlex.split``)
  and runs it without a shell, working directory ``/app/program``.
- After each run the worker writes ``metadata`` into the output: YAML of ``exitCode``,
  ``elapsedTime``, ``ingestionExitCode``, ``ingestionElapsedTime``; an output that already
  holds ``metadata`` fails the submission. Exit codes are not checked otherwise.
- Scores: ``scores.json``, else ``scores.txt`` read as YAML; no file fails the submission.
  The site keeps the leaderboard columns' keys and computes ``computation`` columns (avg,
  sum, min, max over ``computation_indexes``). ``detailed_results.html`` (else the first
  ``.html``) of the scoring output is the detailed result.
- Logs: ``prediction_stdout``, ``prediction_stderr``, ``prediction_ingestion_stdout``,
  ``prediction_ingestion_stderr`` and the same four with ``scoring_``.

Locally the ``/app/...`` paths are real folders of the run folder. Each program runs in
subkit's one sandbox (``sandbox.Sandbox``, the same as a plain ``score-local``'s): where
bubblewrap works it sees exactly its container's ``/app/...`` folders (writable, as the
worker mounts them), the system and the interpreter read-only, a private ``/tmp``, no
network, and the profile's limits; programs that hard-code ``/app/input_data``
(codalab/competition-examples ``codabench/wheat_seeds`` does) run unchanged. The
prediction run never sees the reference data (nor the bundle itself). Elsewhere the
``/app/...`` paths in the command are rewritten to the run folder's, which runs
placeholder-style bundles (``codabench/iris``'s ``$input $output``) but not code that
hard-codes ``/app``: that is refused with a message. A command that starts with ``python``/``python3`` runs
with this machine's interpreter (the worker runs the competition's docker image).

Exporting (``subkit bundle export``) writes a v2 bundle whose ingestion program is
``grader/ingestion.py`` and whose scoring program is ``grader/scoring.py`` (copied, byte
for byte, plus a small ``score.py``), so that Codabench and ``score-local`` score with the
same code.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import statistics
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from subkit.errors import InputError, SubkitError, UsageError
from subkit.grader import safezip, sandbox, untrusted
from subkit.grader.codabench.image import DEFAULT_IMAGE, image_note
from subkit.grader.run import Failure
from subkit.grader.runfolder import RunFolder

DEFAULT_TIME_LIMIT = 600  # Codabench's default execution_time_limit (seconds)
DEFAULT_QUEUE_CAP = 600  # MAX_EXECUTION_TIME_LIMIT of the public default queue
LOG_NAMES = ("prediction_stdout", "prediction_stderr", "prediction_ingestion_stdout",
             "prediction_ingestion_stderr", "scoring_stdout", "scoring_stderr",
             "scoring_ingestion_stdout", "scoring_ingestion_stderr")
METADATA_EXISTS = ("Error, the output directory already contains a metadata file. This file is "
                   "used to store exitCode and other data, do not write to this file manually.")
_PYTHON = re.compile(r"^python(\d+(\.\d+)*)?$")
_APP_NAMES = ("ingested_program", "ingestion_program", "input_data", "program", "output",
              "shared", "input", "data")
_LITERAL_APP = re.compile(r"/app/(?:%s)(?![A-Za-z0-9_])" % "|".join(_APP_NAMES))
_SCAN_SUFFIXES = {".py", ".sh", ".bash", ".r", ".jl", ".m", ".pl", ".rb", ".js", ".ipynb",
                  ".cfg", ".ini", ".json", ".yaml", ".yml", ".toml", ""}


# -- the worker's rules, as functions ----------------------------------------------------------
def replace_placeholders(command: str, kind: str, is_scoring: bool,
                         ingestion_only_during_scoring: bool = False) -> str:
    """The worker's ``replace_legacy_metadata_command``: same pairs, same order."""
    pairs = [
        ("$input", "/app/input_data" if kind == "ingestion" else "/app/input"),
        ("$output", "/app/output"),
        ("$program", "/app/ingestion_program"
         if ingestion_only_during_scoring and is_scoring else "/app/program"),
        ("$ingestion_program", "/app/program"),
        ("$hidden", "/app/input/ref"),
        ("$shared", "/app/shared"),
        ("$submission_program", "/app/ingested_program"),
        ("$tmp", "/app/output"),
        ("$predictions", "/app/input/res" if is_scoring else "/app/output"),
    ]
    for old, new in pairs:
        command = command.replace(old, new)
    return command


def split_command(command: str, where: str) -> list[str]:
    """Split like a shell, without a shell (the container engine's shlex.split)."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise InputError(f"{where}: the command cannot be split into words ({exc}): {command!r}",
                         hint="balance the quotes of command: in metadata.yaml") from None
    if not argv:
        raise InputError(f"{where}: the command is empty", hint="write command: python3 ...")
    return argv


def write_worker_metadata(output_dir: Path, status: dict) -> None:
    """The worker's ``push_output``: refuse an existing ``metadata``, else write the YAML."""
    import yaml

    path = output_dir / "metadata"
    if path.exists():
        raise _RunFailure(Failure("metadata", METADATA_EXISTS,
                                  "a program wrote a file called `metadata` into /app/output; "
                                  "name it something else (the worker owns that name)"))
    output_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.dump(status, default_flow_style=False))


def container_mounts(kind: str, is_scoring: bool, iods: bool, root: Path,
                     has_input_data: bool) -> dict[str, Path]:
    """What the worker binds into one container (``_run_program_directory``)."""
    own = root / ("ingestion_program" if kind == "ingestion" else "program")
    mounts = {"/app/program": own, "/app/output": root / "output"}
    if kind == "ingestion":
        mounts["/app/ingested_program"] = (root / "input" / "res") if (iods and is_scoring) \
            else root / "program"
    if is_scoring:
        mounts["/app/shared"] = root / "shared"
        mounts["/app/input"] = root / "input"
    if has_input_data:
        mounts["/app/input_data"] = root / "input_data"
    return mounts


def map_app_paths(token: str, mounts: dict[str, Path]) -> str:
    """Without a sandbox: the /app/... paths of one argument, as the run folder's paths."""
    names = sorted((m[len("/app/"):] for m in mounts), key=len, reverse=True)
    if not names:
        return token
    pat = re.compile(r"/app/(%s)(?![A-Za-z0-9_])" % "|".join(re.escape(n) for n in names))
    return pat.sub(lambda m: str(mounts["/app/" + m.group(1)]), token)


# -- the bundle ----------------------------------------------------------------------------------
@dataclass
class Task:
    index: Any
    name: str
    scoring_program: Path
    ingestion_program: Path | None
    input_data: Path | None
    reference_data: Path | None
    iods: bool


@dataclass
class Bundle:
    source: Path
    root: Path
    data: dict
    extracted: bool

    @property
    def title(self) -> str:
        return str(self.data.get("title") or self.source.name)

    def phases(self) -> list[dict]:
        phases = self.data.get("phases")
        if not isinstance(phases, list) or not phases:
            raise InputError(f"{self.source}: competition.yaml lists no phases",
                             hint="add phases: with at least one phase and its tasks")
        bad = [p for p in phases if not isinstance(p, dict)]
        if bad:
            raise InputError(f"{self.source}: a phase of competition.yaml is not a mapping",
                             hint="each phase is `- index: 0\\n  name: ...\\n  tasks: [0]`")
        return sorted(phases, key=lambda p: p.get("index", 0)
                      if isinstance(p.get("index", 0), int) else 0)

    def tasks(self) -> dict:
        tasks = self.data.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise InputError(f"{self.source}: competition.yaml lists no tasks",
                             hint="add tasks: with a scoring_program each")
        out = {}
        for t in tasks:
            if not isinstance(t, dict) or "index" not in t:
                raise InputError(f"{self.source}: a task of competition.yaml has no index",
                                 hint="each task needs `index:` (the phases refer to it)")
            out[t["index"]] = t
        return out

    def leaderboards(self) -> list[dict]:
        lbs = self.data.get("leaderboards", self.data.get("leaderboard"))
        if isinstance(lbs, dict):
            lbs = [lbs]
        return [lb for lb in (lbs or []) if isinstance(lb, dict)]


def open_bundle(path: Path, workdir: Path) -> Bundle:
    """A folder or zip holding ``competition.yaml`` (version 2) at its root."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise InputError(f"bundle not found: {path}",
                         hint="give the competition's bundle: a folder or zip with "
                              "competition.yaml")
    extracted = False
    if path.is_file() and path.name in ("competition.yaml", "competition.yml"):
        path = path.parent
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise InputError(f"{path} is neither a folder nor a zip",
                             hint="give the bundle's folder or its .zip")
        root = workdir / "bundle"
        # a bundle carries the competition's data: bounded by the free disk, not a submission's size
        safezip.safe_extract(path, root, max_bytes=1 << 50, max_members=1_000_000)
        extracted = True
    else:
        root = path
    yml = root / "competition.yaml"
    if not yml.is_file():
        nested = sorted(p.relative_to(root) for p in root.glob("*/competition.yaml"))
        where = "zip" if extracted else "folder"
        hint = (f"it is in {nested[0].parent}/: competition.yaml must be at the root of the "
                f"{where} (zip the folder's contents, not the folder)" if nested else
                "a Codabench bundle has competition.yaml at its root")
        raise InputError(f"{path} has no competition.yaml at its root", hint=hint)
    try:
        data = yaml.safe_load(yml.read_text("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{yml.name} of {path} is not valid YAML: {exc}",
                         hint="fix the line it names") from None
    if not isinstance(data, dict):
        raise InputError(f"{yml.name} of {path} is not a YAML mapping",
                         hint="competition.yaml holds keys like version: 2, tasks:, phases:")
    version = str(data.get("version", "1"))
    if version in ("1", "1.0", "1.5"):
        raise InputError(f"{path} is a v1 (CodaLab) bundle (competition.yaml version {version}"
                         f"{'' if 'version' in data else ', the default when none is given'})",
                         hint="subkit runs Codabench v2 bundles (version: 2, tasks with "
                              "scoring_program/ingestion_program, metadata.yaml command:); "
                              "convert it as Codabench's docs describe")
    if version not in ("2", "2.0"):
        raise InputError(f"{path}: competition.yaml has version {version!r}",
                         hint="Codabench knows versions 1, 1.5 and 2; subkit runs version 2")
    return Bundle(source=path, root=root, data=data, extracted=extracted)


def _describe_phases(phases: list[dict]) -> str:
    return ", ".join(f"{p.get('index', i)} {p.get('name', '')!r}".strip()
                     for i, p in enumerate(phases))


def select(bundle: Bundle, phase: str | None, task: int | None) -> tuple[dict, Task, list[str]]:
    """The phase (by name, case-insensitive, or index) and task to run; notes for the user."""
    phases = bundle.phases()
    tasks = bundle.tasks()
    notes: list[str] = []
    chosen = None
    if phase is not None:
        want = str(phase).strip().lower()
        for i, p in enumerate(phases):
            if str(p.get("name", "")).strip().lower() == want:
                chosen = p
                break
        if chosen is None:
            for i, p in enumerate(phases):
                if str(p.get("index", i)) == want:
                    chosen = p
                    break
        if chosen is None:
            raise UsageError(f"{bundle.source} has no phase {phase!r}",
                             hint=f"its phases: {_describe_phases(phases)} (--phase NAME or index)")
    if task is not None:
        if task not in tasks:
            raise UsageError(f"{bundle.source} has no task {task}",
                             hint=f"its tasks: {_describe_tasks(tasks)}")
        if chosen is None:
            chosen = next((p for p in phases if task in (p.get("tasks") or [])), phases[0])
        elif task not in (chosen.get("tasks") or []):
            raise UsageError(f"phase {chosen.get('name')!r} has no task {task}",
                             hint=f"its tasks: {_describe_tasks(tasks, chosen.get('tasks') or [])}")
    if chosen is None:
        chosen = phases[0]
    ptasks = chosen.get("tasks") or []
    if not isinstance(ptasks, list) or not ptasks:
        raise InputError(f"phase {chosen.get('name')!r} of {bundle.source} lists no tasks",
                         hint="a phase needs tasks: [index, ...]")
    if task is None:
        task = ptasks[0]
        if len(ptasks) > 1:
            notes.append(f"phase {chosen.get('name')!r} has tasks {', '.join(map(str, ptasks))}; "
                         f"ran task {task} (--task N for another)")
    if task not in tasks:
        raise InputError(f"phase {chosen.get('name')!r} refers to task {task}, which "
                         "competition.yaml does not define",
                         hint=f"its tasks: {_describe_tasks(tasks)}")
    return chosen, _resolve_task(bundle, tasks[task]), notes


def _describe_tasks(tasks: dict, only: list | None = None) -> str:
    keys = [k for k in tasks if only is None or k in only]
    return ", ".join(f"{k} {tasks[k].get('name', '')!r}".strip() for k in keys) or "none"


def _resolve_task(bundle: Bundle, t: dict) -> Task:
    label = f"task {t['index']} ({t.get('name', 'unnamed')})"
    if "key" in t:
        raise InputError(f"{label} of {bundle.source} refers to a task on the server (key: "
                         f"{t['key']}), not to files in the bundle",
                         hint="run a bundle whose task lists its scoring_program and data")
    if not t.get("scoring_program"):
        raise InputError(f"{label} of {bundle.source} has no scoring program",
                         hint="Codabench refuses such a bundle too: add scoring_program: FOLDER")

    def part(name: str) -> Path | None:
        value = t.get(name)
        if not value:
            return None
        p = (bundle.root / str(value)).resolve()
        root = bundle.root.resolve()
        if p != root and root not in p.parents:
            raise InputError(f"{label}: {name} {value!r} points outside the bundle",
                             hint="paths in competition.yaml are relative to the bundle's root")
        if not p.exists():
            here = ", ".join(sorted(x.name for x in bundle.root.iterdir())[:15])
            raise InputError(f"{label}: {name} {value!r} is not in the bundle",
                             hint=f"files at the bundle's root: {here}")
        return p

    return Task(index=t["index"], name=str(t.get("name", "")),
                scoring_program=part("scoring_program"),
                ingestion_program=part("ingestion_program"), input_data=part("input_data"),
                reference_data=part("reference_data"),
                iods=bool(t.get("ingestion_only_during_scoring", False)))


def read_command(program_dir: Path, role: str) -> str | None:
    """``command:`` of a program folder's metadata.yaml (or metadata); None when the folder
    has no metadata file. A program (not a submission) without a command is bad input."""
    import yaml

    for name in ("metadata.yaml", "metadata"):
        p = program_dir / name
        if p.is_file():
            break
    else:
        if role == "submission":
            return None
        raise InputError(f"the {role} has no metadata.yaml (or metadata) file",
                         hint="put metadata.yaml with `command: python3 $program/...` in the "
                              f"{role}'s folder (Codabench needs it too)")
    try:
        meta = yaml.safe_load(p.read_text("utf-8", errors="replace"))
    except yaml.YAMLError:
        meta = None
    command = meta.get("command") if isinstance(meta, dict) else None
    if role == "submission":
        return command if isinstance(command, str) and command.strip() else ""
    if not command:
        raise InputError(f"the {role}'s {name} has no command:",
                         hint="write `command: python3 $program/score.py $input $output` "
                              "(the worker runs nothing else)")
    if not isinstance(command, str):
        raise InputError(f"the {role}'s command: is not one line of text "
                         f"({type(command).__name__})",
                         hint="write it as one string: command: python3 $program/x.py $input "
                              "$output")
    return command


def literal_app_uses(folder: Path, limit: int = 5) -> list[str]:
    """Where the code of a program folder names /app/... itself (``file:line: text``)."""
    hits: list[str] = []
    if not folder.is_dir():
        return hits
    for i, p in enumerate(sorted(folder.rglob("*"))):
        if i > 2000 or len(hits) >= limit:
            break
        if not p.is_file() or p.name in ("metadata", "metadata.yaml"):
            continue
        if p.suffix.lower() not in _SCAN_SUFFIXES:
            continue
        try:
            if p.stat().st_size > 2 * 1024**2:
                continue
            text = p.read_text("utf-8", errors="replace")
        except OSError:
            continue
        if "/app/" not in text:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if _LITERAL_APP.search(line):
                hits.append(f"{p.relative_to(folder)}:{n}: {line.strip()[:100]}")
                if len(hits) >= limit:
                    break
    return hits


# -- running ------------------------------------------------------------------------------------
class _RunFailure(Exception):
    def __init__(self, failure: Failure):
        super().__init__(failure.message)
        self.failure = failure


@dataclass
class Container:
    kind: str  # "program" | "ingestion"
    run: str  # "prediction" | "scoring"
    command: str  # as written in metadata.yaml
    worker_command: str  # after the worker's placeholder replacement
    argv: list[str]  # what ran here
    returncode: int | None = None
    signal: int | None = None
    elapsed_s: float | None = None
    timed_out: bool = False
    stdout: str = ""
    stderr: str = ""
    isolation: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BundleRunResult:
    ok: bool
    run_dir: Path
    zip: Path
    bundle: Path
    competition: str
    phase: dict
    task: dict
    time_limit_s: float
    sandbox: str  # "bubblewrap" | "none"
    sandbox_note: str
    isolation: dict
    network_isolated: bool
    docker_image: str
    interpreter: str
    env: dict = field(default_factory=dict)
    columns: list = field(default_factory=list)
    scores: dict = field(default_factory=dict)
    raw_scores: dict = field(default_factory=dict)
    detailed_results: Path | None = None
    detailed_results_enabled: bool = False
    logs: dict = field(default_factory=dict)
    prediction: dict = field(default_factory=dict)
    scoring: dict = field(default_factory=dict)
    containers: list = field(default_factory=list)
    failure: Failure | None = None
    warnings: list = field(default_factory=list)
    zip_sha256: str = ""
    elapsed_s: float = 0.0

    @property
    def score(self) -> float | None:
        """The first leaderboard column's value (the leaderboard's main score)."""
        for c in self.columns:
            if not c.get("hidden"):
                return c.get("value")
        return None

    @property
    def metric(self) -> str | None:
        for c in self.columns:
            if not c.get("hidden"):
                return c.get("key")
        return None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("run_dir", "zip", "bundle", "detailed_results"):
            d[k] = str(d[k]) if d[k] is not None else None
        d["logs"] = {k: str(v) for k, v in self.logs.items()}
        d["failure"] = self.failure.to_dict() if self.failure else None
        d["score"], d["metric"] = self.score, self.metric
        return d


class _Runner:
    def __init__(self, run_dir: Path, *, time_limit: float, mode: str, isolate_network: bool,
                 python: str, progress: bool, limits: sandbox.Limits):
        self.run_dir, self.time_limit, self.mode, self.limits = run_dir, time_limit, mode, limits
        self.isolate_network, self.python, self.progress = isolate_network, python, progress
        self.log_dir = run_dir / "logs"
        self.containers: list[Container] = []

    def _argv(self, worker_command: str, mounts: dict[str, Path], where: str) -> list[str]:
        argv = split_command(worker_command, where)
        if _PYTHON.match(os.path.basename(argv[0])):
            argv[0] = self.python
        if self.mode == "none":
            argv = [map_app_paths(a, mounts) for a in argv]
        return argv

    def container(self, kind: str, run: str, command: str, root: Path, *, is_scoring: bool,
                  iods: bool, has_input_data: bool) -> Container:
        worker_cmd = replace_placeholders(command, kind, is_scoring, iods)
        mounts = container_mounts(kind, is_scoring, iods, root, has_input_data)
        for m in mounts.values():
            m.mkdir(parents=True, exist_ok=True)
        role = "ingestion program" if kind == "ingestion" else \
            ("scoring program" if is_scoring else "submission")
        argv = self._argv(worker_cmd, mounts, f"the {role}'s command")
        c = Container(kind=kind, run=run, command=command, worker_command=worker_cmd, argv=argv)
        self.containers.append(c)
        return c

    def _execute(self, c: Container, cwd: Path, mounts: dict[str, Path]) -> None:
        prefix = "" if c.kind == "program" else "ingestion_"
        log_prefix = f"{c.run}_{prefix}"
        box = sandbox.Sandbox(self.limits, python=self.python, network=not self.isolate_network,
                              mode=self.mode)
        for inside, host in mounts.items():  # the worker mounts them all writable
            box.bind(host, inside, writable=True)
        try:
            child = box.run(c.argv, cwd=cwd, log_dir=self.log_dir, time_limit=self.time_limit,
                            log_prefix=log_prefix)
            c.isolation = child.sandbox
        except OSError as exc:  # the command's program does not exist here
            out = self.log_dir / f"{log_prefix}stdout.txt"
            err = self.log_dir / f"{log_prefix}stderr.txt"
            out.write_text("")
            err.write_text(f"subkit: cannot run {c.argv[0]!r}: {exc.strerror or exc}\n")
            c.returncode, c.elapsed_s = 127, 0.0
            c.stdout, c.stderr = str(out), str(err)
            return
        finally:
            box.close()
        c.returncode, c.signal, c.timed_out = child.returncode, child.signal, child.timed_out
        c.elapsed_s = child.elapsed_s
        c.stdout, c.stderr = str(child.stdout_path), str(child.stderr_path)
        if child.signal is not None and c.returncode is None and not child.timed_out:
            c.returncode = -child.signal  # what a container engine reports for a killed process

    def run_pair(self, jobs: list[tuple[Container, Path, dict]], label: str) -> None:
        """Run the run's programs concurrently, as the worker's asyncio.gather does."""
        if not jobs:
            return
        bar = _Bar(label, self.time_limit, self.progress)
        stop = threading.Event()
        ticker = threading.Thread(target=bar.follow, args=(stop,), daemon=True)
        ticker.start()
        try:
            with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
                futures = [pool.submit(self._execute, c, cwd, mounts) for c, cwd, mounts in jobs]
                for f in futures:
                    f.result()
        finally:
            stop.set()
            ticker.join(timeout=2)
            bar.close()


class _Bar:
    def __init__(self, label: str, limit: float, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.limit = limit
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=round(limit), desc=label, unit="s", leave=False,
                            bar_format="{desc}: {n:.0f}/{total:.0f} s of the time limit |{bar}|")

    def follow(self, stop: threading.Event) -> None:
        t0 = time.monotonic()
        while not stop.wait(0.5):
            if self.enabled:
                self.bar.n = min(time.monotonic() - t0, self.bar.total)
                self.bar.refresh()

    def close(self) -> None:
        if self.enabled:
            self.bar.close()


def _place(src: Path, dest: Path, *, link: bool) -> None:
    """A bundle part (folder or zip) into ``dest``, as the worker unpacks it."""
    dest.mkdir(parents=True, exist_ok=True)
    if src.is_file():
        if zipfile.is_zipfile(src):
            safezip.safe_extract(src, dest, max_bytes=1 << 50, max_members=1_000_000)
        else:  # a single data file: the worker would fail to unzip it; keep it usable
            shutil.copy2(src, dest / src.name)
        return

    def copy(s, d):
        if link:
            try:
                os.link(s, d)
                return d
            except OSError:
                pass
        return shutil.copy2(s, d)

    shutil.copytree(src, dest, dirs_exist_ok=True, copy_function=copy, symlinks=False)


def _float(v) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(str(v).strip())
    except (TypeError, ValueError):
        return None


def leaderboard_columns(bundle: Bundle, raw: dict) -> tuple[list[dict], dict, list[str]]:
    """The columns the leaderboard shows for these raw scores: (columns, scores, warnings)."""
    warnings: list[str] = []
    columns: list[dict] = []
    scores: dict = {}
    keys: set[str] = set()
    for li, lb in enumerate(bundle.leaderboards()):
        cols = [c for c in (lb.get("columns") or []) if isinstance(c, dict) and "key" in c]
        cols.sort(key=lambda c: c.get("index", 0) if isinstance(c.get("index", 0), int) else 0)
        by_index = {}
        for c in cols:
            key = str(c["key"])
            keys.add(key)
            row = {"leaderboard": lb.get("title") or lb.get("key") or str(li), "key": key,
                   "title": c.get("title") or key, "index": c.get("index"),
                   "sorting": c.get("sorting") or "desc", "precision": c.get("precision", 2),
                   "computation": c.get("computation"), "hidden": bool(c.get("hidden", False)),
                   "value": None}
            if not row["computation"]:
                if key in raw:
                    row["value"] = _float(raw[key])
                    if row["value"] is None:
                        warnings.append(f"score {key!r} = {raw[key]!r} is not a number")
                else:
                    warnings.append(f"the scoring program wrote no {key!r}, a column of the "
                                    "leaderboard")
            by_index[c.get("index")] = row
            columns.append(row)
        for c in cols:
            comp = c.get("computation")
            if not comp:
                continue
            row = by_index[c.get("index")]
            idx = c.get("computation_indexes") or []
            if isinstance(idx, str):
                idx = [x.strip() for x in idx.split(",") if x.strip()]
            vals = []
            for i in idx:
                src = by_index.get(int(i)) if str(i).lstrip("-").isdigit() else None
                vals.append(src["value"] if src else None)
            fn = {"avg": statistics.mean, "sum": sum, "min": min, "max": max}.get(str(comp).lower())
            have = [v for v in vals if v is not None]
            if fn is None:
                warnings.append(f"column {row['key']!r}: unknown computation {comp!r}")
            elif have:
                # the site computes a column from the scores that exist
                # (src/apps/competitions/models.py, Submission.calculate_scores:
                # `if scores.exists(): score = column.compute(scores)`)
                row["value"] = float(fn(have))
                if len(have) < len(vals):
                    warnings.append(f"column {row['key']!r} ({comp}) is computed from "
                                    f"{len(have)} of its {len(vals)} columns: the others got "
                                    "no score (Codabench does the same)")
            else:
                warnings.append(f"column {row['key']!r} ({comp}): none of its columns got a "
                                "score")
    for row in columns:
        scores[row["key"]] = row["value"]
    dropped = sorted(k for k in raw if k not in keys)
    if dropped and columns:
        warnings.append(f"scores not in the leaderboard, ignored as Codabench ignores them: "
                        f"{', '.join(dropped)}")
    if not columns:
        warnings.append("competition.yaml defines no leaderboard columns: no score is kept")
    return columns, scores, warnings


def _read_scores(output: Path) -> dict:
    import yaml

    sj, st = output / "scores.json", output / "scores.txt"
    if sj.exists():
        try:
            data = json.loads(_scores_text(sj))
        except json.JSONDecodeError as exc:
            raise _RunFailure(Failure("scores", "Could not decode scores json properly, it "
                                      f"contains an error.\n{exc.msg}",
                                      "write scores.json with json.dump"))
    elif st.exists():
        try:
            data = yaml.safe_load(_scores_text(st))
        except yaml.YAMLError as exc:
            raise _RunFailure(Failure("scores", f"scores.txt is not valid YAML: {exc}",
                                      "write one `key: value` a line"))
    else:
        raise _RunFailure(Failure("scores", "Could not find scores file, did the scoring program "
                                  "output it?", "see the scoring program's log tail"))
    if not isinstance(data, dict):
        raise _RunFailure(Failure("scores", f"{'scores.json' if sj.exists() else 'scores.txt'} "
                                  "does not hold a mapping of keys to scores",
                                  'write {"accuracy": 0.91, ...}'))
    return data


def _scores_text(path: Path) -> str:
    """A scores file the scoring program wrote (no link followed, at most 1 MiB)."""
    data = untrusted.read_untrusted(path, 1 << 20)
    if data is None:
        raise _RunFailure(Failure("scores", f"{path.name} is not a plain file of at most 1 MiB",
                                  "write the scores with json.dump into $output/scores.json"))
    return data.decode("utf-8", "replace")


def _tail(path: str | Path, lines: int = 15) -> str:
    try:
        text = Path(path).read_bytes()[-16384:].decode("utf-8", "replace")
    except OSError:
        return ""
    return untrusted.printable("\n".join(text.strip().splitlines()[-lines:]))


def _status(program: Container | None, ingestion: Container | None) -> dict:
    """The worker's prog_status (v1.5 compatibility)."""
    p_code = program.returncode if program else None
    p_time = program.elapsed_s if program else None
    i_code = ingestion.returncode if ingestion else None
    i_time = ingestion.elapsed_s if ingestion else None
    return {"exitCode": p_code, "elapsedTime": p_time or i_time,
            "ingestionExitCode": i_code, "ingestionElapsedTime": i_time}


def choose_sandbox(mode: str) -> tuple[str, str, str]:
    """("bubblewrap"|"none", note for the user, why there is no sandbox)."""
    mode, why = sandbox.choose_mode(mode)
    if mode == "bubblewrap":
        return mode, "bubblewrap sandbox: the programs saw the worker's /app/... paths", ""
    return "none", (f"NOT ISOLATED ({why}): the programs ran as you, with your files; /app/... "
                    "paths in commands mapped to the run folder (placeholder-style bundles "
                    f"only); {sandbox.INSTALL_HINT}"), why


def score_with_bundle(zip_path: Path, bundle_path: Path, prof, phase: str | None = None,
                      task: int | None = None, *, time_limit: float | None = None,
                      isolate_network: bool = True, sandbox_mode: str = "auto",
                      python: str | None = None, progress: bool = False,
                      record: bool = True, env: str | None = None,
                      notes: list[str] | tuple[str, ...] = ()) -> BundleRunResult:
    """Run ``zip_path`` through the bundle's own ingestion and scoring programs.
    ``notes``: what the command has to say first (what recovery finished or removed).

    Commands that start with ``python``/``python3`` run with ``python``, else with the
    interpreter ``env`` selects (auto|grader|current: environment.select_env), which the
    result names next to the bundle's docker image."""
    from subkit.grader.environment import current_description
    from subkit.grader.run import env_warnings, python_for
    from subkit.ledger import sha256_file

    zip_path = safezip.require_zip(zip_path)
    mode, note, why_none = choose_sandbox(sandbox_mode)
    notes = list(notes)
    folder = RunFolder(prof.submissions_dir / "runs", zip_path.stem + "-bundle",
                       {"kind": "score-local", "zip": str(zip_path), "bundle": str(bundle_path)})
    run_dir = folder.path
    t_start = time.monotonic()
    try:  # everything a user can get wrong, before anything runs
        bundle = open_bundle(Path(bundle_path), run_dir)
        ph, tk, bundle_notes = select(bundle, phase, task)
        scoring_cmd = read_command(_program_folder(tk.scoring_program, run_dir), "scoring program")
        split_command(scoring_cmd, "the scoring program's command")
        ingestion_cmd = None
        if tk.ingestion_program:
            ingestion_cmd = read_command(_program_folder(tk.ingestion_program, run_dir),
                                         "ingestion program")
            split_command(ingestion_cmd, "the ingestion program's command")
        sub_dir = run_dir / "prediction" / "program"
        max_bytes, max_members = safezip.bounds(prof)
        safezip.safe_extract(zip_path, sub_dir, max_bytes=max_bytes, max_members=max_members)
        sub_cmd = read_command(sub_dir, "submission")
        if sub_cmd:
            split_command(sub_cmd, "the submission's command (metadata.yaml in the zip)")
        if mode == "none":
            _refuse_literal_paths(tk, run_dir, why_none)
    except BaseException:
        folder.discard()
        raise
    try:
        if python:
            env_desc = dict(current_description(), name="given", path=python)
        else:
            python, env_desc = python_for(prof, env, progress=progress)
    except BaseException:
        folder.discard()
        raise
    image = str(bundle.data.get("docker_image") or DEFAULT_IMAGE)
    warnings = env_warnings(env_desc) + notes + list(bundle_notes)
    image_warning = image_note(image, prof)
    if image_warning:
        warnings.append(image_warning)
    limit_raw = ph.get("execution_time_limit", ph.get("execution_time_limit_ms"))
    limit = float(_float(limit_raw) or DEFAULT_TIME_LIMIT)
    if time_limit:
        warnings.append(f"time limit {time_limit:g} s from the command line, not the phase's "
                        f"{limit:g} s")
        limit = float(time_limit)
    elif limit > DEFAULT_QUEUE_CAP:
        warnings.append(f"the phase asks for {limit:g} s; Codabench's default queue caps runs at "
                        f"{DEFAULT_QUEUE_CAP} s (a competition with its own queue gets the full "
                        "limit)")
    res = BundleRunResult(
        ok=False, run_dir=run_dir, zip=zip_path, bundle=Path(bundle_path), competition=bundle.title,
        phase={"index": ph.get("index"), "name": ph.get("name")},
        task={"index": tk.index, "name": tk.name, "ingestion_only_during_scoring": tk.iods},
        time_limit_s=limit, sandbox=mode, sandbox_note=note,
        isolation=sandbox.Sandbox(sandbox.Limits.of(prof), network=not isolate_network,
                                  mode=mode).describe(),
        network_isolated=isolate_network and mode == "bubblewrap",
        docker_image=image, interpreter=python, env=env_desc,
        detailed_results_enabled=bool(bundle.data.get("enable_detailed_results", False)),
        warnings=warnings, zip_sha256=sha256_file(zip_path))
    runner = _Runner(run_dir, time_limit=limit, mode=mode, isolate_network=isolate_network,
                     python=python, progress=progress, limits=sandbox.Limits.of(prof))
    try:
        _prediction_run(runner, bundle, tk, ingestion_cmd, res)
        _scoring_run(runner, bundle, tk, scoring_cmd, ingestion_cmd, res)
        res.ok = res.failure is None
    except _RunFailure as exc:
        res.failure = exc.failure
    except BaseException as exc:  # Ctrl-C: the run is incomplete, never ok
        folder.abandon(f"interrupted: {type(exc).__name__}: {exc}"[:300])
        raise
    finally:
        for name in LOG_NAMES:
            p = runner.log_dir / f"{name}.txt"
            if not p.exists():
                runner.log_dir.mkdir(parents=True, exist_ok=True)
                p.write_text("")
            res.logs[name] = p
        res.containers = [c.to_dict() for c in runner.containers]
        res.elapsed_s = time.monotonic() - t_start
        if bundle.extracted:
            shutil.rmtree(bundle.root, ignore_errors=True)
        shutil.rmtree(run_dir / "parts", ignore_errors=True)
        res.isolation = next((c.isolation for c in runner.containers if c.isolation),
                             res.isolation)
    if res.ok and not any(c.get("value") is not None for c in res.columns):
        res.warnings.append("no leaderboard column got a score")
    warning = folder.finish(res.to_dict(), prof.submissions_dir,
                            _ledger_row(res) if record else None)
    if warning:
        res.warnings.append(warning)
    return res


def _refuse_literal_paths(tk: Task, run_dir: Path, why_none: str) -> None:
    for label, folder in (("ingestion program", tk.ingestion_program),
                          ("scoring program", tk.scoring_program)):
        hits = literal_app_uses(_program_folder(folder, run_dir)) if folder else []
        if hits:
            raise SubkitError(
                f"the bundle's {label} uses the worker's literal /app/... paths ({hits[0]}): "
                f"it runs only in a sandbox where they exist, and {why_none}; only "
                "placeholder-style bundles ($input, $output, $program, ...) run without it",
                hint="install bubblewrap (apt-get install bubblewrap) on a machine that allows "
                     "namespaces (as root, or unprivileged user namespaces enabled)")


def _program_folder(p: Path, run_dir: Path) -> Path:
    """A program given as a zip inside the bundle, unpacked once to read its metadata."""
    if p.is_dir():
        return p
    dest = run_dir / "parts" / p.name
    if not dest.exists():
        _place(p, dest, link=False)
    return dest


def _prediction_run(runner: _Runner, bundle: Bundle, tk: Task, ingestion_cmd: str | None,
                    res: BundleRunResult) -> None:
    root = runner.run_dir / "prediction"
    for d in ("program", "output"):  # the submission is unzipped in program/ already
        (root / d).mkdir(parents=True, exist_ok=True)
    has_input = tk.input_data is not None
    if has_input:
        _place(tk.input_data, root / "input_data", link=bundle.extracted)
    run_ingestion = tk.ingestion_program is not None and not tk.iods
    if run_ingestion:
        _place(tk.ingestion_program, root / "ingestion_program", link=bundle.extracted)
    jobs = []
    program = ingestion = None
    sub_cmd = read_command(root / "program", "submission")
    if sub_cmd is None:
        # the worker: "Program directory missing metadata, assuming it's going to be
        # handled by ingestion" -> the submission is copied into the output
        shutil.copytree(root / "program", root / "output", dirs_exist_ok=True)
        res.prediction["submission"] = "no metadata: copied into the output (as the worker does)"
    elif not sub_cmd:
        res.prediction["submission"] = "metadata without command: nothing run (as the worker does)"
    else:
        program = runner.container("program", "prediction", sub_cmd, root, is_scoring=False,
                                   iods=tk.iods, has_input_data=has_input)
        jobs.append((program, root / "program",
                     container_mounts("program", False, tk.iods, root, has_input)))
        res.prediction["submission"] = "ran its own command"
    if run_ingestion:
        ingestion = runner.container("ingestion", "prediction", ingestion_cmd, root,
                                     is_scoring=False, iods=tk.iods, has_input_data=has_input)
        jobs.append((ingestion, root / "ingestion_program",
                     container_mounts("ingestion", False, tk.iods, root, has_input)))
    runner.run_pair(jobs, "prediction run")
    status = _status(program, ingestion)
    res.prediction.update(output=str(root / "output"), metadata=status)
    _check_timeout(runner, [c for c, _, _ in jobs], "prediction", res)
    for c in (c for c, _, _ in jobs if c.returncode not in (0, None)):
        res.warnings.append(f"the {_role(c)} exited with {c.returncode} in the prediction run; "
                            "Codabench does not fail a submission for that (its worker checks "
                            "only the scoring program's exit code), so the scoring run decides")
    write_worker_metadata(root / "output", status)


_SLOW_HINTS = {
    "submission": "the limit is the phase's execution_time_limit; predict in batches, use a "
                  "smaller model or fewer TTA views",
    "ingestion program": "the ingestion program runs the submission: predict in batches, use a "
                         "smaller model or fewer TTA views (the limit is the phase's "
                         "execution_time_limit)",
    "scoring program": "the scoring program itself is slow (the organiser's code, not the "
                       "submission): make it faster or raise the phase's execution_time_limit",
}


def _role(c: Container) -> str:
    if c.kind == "ingestion":
        return "ingestion program"
    return "submission" if c.run == "prediction" else "scoring program"


def _check_timeout(runner: _Runner, containers: list[Container], run: str,
                   res: BundleRunResult) -> None:
    late = [c for c in containers if c.timed_out]
    if late:
        who = " and ".join(f"the {_role(c)}" for c in late)
        raise _RunFailure(Failure(
            run, f"Execution Time Limit exceeded. Limit was {runner.time_limit:g} seconds "
                 f"({who} of the {run} run still running; the worker kills both)",
            _SLOW_HINTS[_role(late[0])], _tail(late[0].stderr)))


def _check_exit_code(program: Container, res: BundleRunResult) -> None:
    """The worker fails the submission when the scoring program exits non-zero, even after
    writing its scores (codalab/codabench compute_worker/compute_worker.py, Run.start:
    "Child task failed or non-zero return code"; since commit f9104263, for the scoring
    program only since 6e19ba27, both in release v1.24). The prediction run's exit codes
    are not checked there: a non-zero one is a warning here."""
    if program.returncode in (0, None):
        return
    raise _RunFailure(Failure(
        "scoring", "Child task failed or non-zero return code (the scoring program exited "
                   f"with {program.returncode}; Codabench ignores whatever scores it wrote)",
        _no_scores_hint(res, program)))


def _scoring_run(runner: _Runner, bundle: Bundle, tk: Task, scoring_cmd: str,
                 ingestion_cmd: str | None, res: BundleRunResult) -> None:
    pred = runner.run_dir / "prediction"
    root = runner.run_dir / "scoring"
    for d in ("program", "output", "shared", "input/ref", "input/res"):
        (root / d).mkdir(parents=True, exist_ok=True)
    _place(tk.scoring_program, root / "program", link=bundle.extracted)
    if tk.reference_data is not None:
        _place(tk.reference_data, root / "input" / "ref", link=bundle.extracted)
    shutil.copytree(pred / "output", root / "input" / "res", dirs_exist_ok=True)
    has_input = tk.iods and tk.input_data is not None
    if has_input:
        _place(tk.input_data, root / "input_data", link=bundle.extracted)
    jobs = []
    program = runner.container("program", "scoring", scoring_cmd, root, is_scoring=True,
                               iods=tk.iods, has_input_data=has_input)
    jobs.append((program, root / "program",
                 container_mounts("program", True, tk.iods, root, has_input)))
    ingestion = None
    if tk.iods and tk.ingestion_program is not None:
        _place(tk.ingestion_program, root / "ingestion_program", link=bundle.extracted)
        ingestion = runner.container("ingestion", "scoring", ingestion_cmd, root, is_scoring=True,
                                     iods=True, has_input_data=has_input)
        jobs.append((ingestion, root / "ingestion_program",
                     container_mounts("ingestion", True, True, root, has_input)))
    if tk.iods and any("$program" in c.command for c, _, _ in jobs):
        res.warnings.append("in an ingestion-during-scoring task the worker replaces $program by "
                            "/app/ingestion_program, a folder its containers do not have: use "
                            "$ingestion_program or /app/program in command:")
    runner.run_pair(jobs, "scoring run")
    status = _status(program, ingestion)
    res.scoring.update(output=str(root / "output"), metadata=status)
    _check_timeout(runner, [c for c, _, _ in jobs], "scoring", res)
    out = root / "output"
    try:
        _check_exit_code(program, res)
        raw = _read_scores(out)
    except _RunFailure as exc:
        exc.failure.stage = "scoring"
        exc.failure.tail = _failure_tail(runner, program, res)
        if exc.failure.hint == "see the scoring program's log tail":
            exc.failure.hint = _no_scores_hint(res, program)
        raise
    res.raw_scores = {str(k): v for k, v in raw.items()}
    res.columns, res.scores, w = leaderboard_columns(bundle, raw)
    res.warnings.extend(w)
    html = out / "detailed_results.html"
    if not html.exists():
        others = sorted(glob.glob(str(out / "*.html")))
        html = Path(others[0]) if others else None
    res.detailed_results = html
    write_worker_metadata(out, status)


def _failure_tail(runner: _Runner, program: Container, res: BundleRunResult) -> str:
    parts = []
    meta = res.prediction.get("metadata", {})
    for name in ("prediction_ingestion_stderr", "prediction_stderr"):
        t = _tail(runner.log_dir / f"{name}.txt", 10)
        code = meta.get("ingestionExitCode" if "ingestion" in name else "exitCode")
        if t and code not in (0, None):
            parts.append(f"[{name}]\n{t}")
    t = _tail(program.stderr, 12)
    if t:
        parts.append(f"[scoring_stderr]\n{t}")
    return "\n".join(parts)


def _no_scores_hint(res: BundleRunResult, program: Container) -> str:
    """The one place to look, for the program that failed."""
    meta = res.prediction.get("metadata", {})
    if meta.get("ingestionExitCode") not in (0, None):
        return (f"the ingestion program exited with {meta['ingestionExitCode']} in the prediction "
                "run, so there was nothing to score: see prediction_ingestion_stderr.txt")
    if meta.get("exitCode") not in (0, None):
        return (f"the submission's own command exited with {meta['exitCode']}: see "
                "prediction_stderr.txt")
    missing = re.search(r"No module named '([\w.]+)'", _tail(program.stderr, 40))
    if missing:
        return (f"the scoring program imports {missing.group(1)!r}, which the python that ran "
                f"it lacks ({res.interpreter}): run with `--env current` if this machine has "
                f"it (Codabench runs it in {res.docker_image}, which must have it too)")
    if program.returncode not in (0, None):
        return (f"the scoring program exited with {program.returncode}: see scoring_stderr.txt "
                "(it is the organiser's code: a crash after writing scores fails the "
                "submission on Codabench too)")
    return ("the scoring program exited with 0 without writing scores.json to its output: "
            "see scoring_stderr.txt")


def _ledger_row(res: BundleRunResult) -> dict:
    return {"kind": "score-local", "zip": res.zip.name, "zip_sha256": res.zip_sha256,
            "run_dir": str(res.run_dir), "metric": res.metric, "clean_score": res.score,
            "runtime_s": res.elapsed_s, "env": "bundle", "ok": res.ok,
            "bundle": str(res.bundle), "phase": res.phase.get("name"),
            "task": res.task.get("index"), "scores": res.scores,
            "isolated": bool(res.isolation.get("isolated"))}


def summary_lines(res: BundleRunResult) -> list[tuple[str, dict]]:
    """The terminal summary: (text, click.style kwargs) lines."""
    out: list[tuple[str, dict]] = []
    iods = " (ingestion during scoring)" if res.task.get("ingestion_only_during_scoring") else ""
    where = (f"{res.competition}: phase {res.phase.get('name')!r}, "
             f"task {res.task.get('index')}{iods}")
    if res.ok:
        out.append((f"PASSED  {res.zip.name} through the bundle's own programs",
                    {"fg": "green", "bold": True}))
    else:
        out.append((f"FAILED  {res.zip.name}: Codabench would fail it the same way",
                    {"fg": "red", "bold": True}))
    out.append((f"  {where}; time limit {res.time_limit_s:g} s", {}))
    if res.columns:
        width = max(len(str(c["title"])) for c in res.columns) + 2
        board = None
        for c in res.columns:
            if c["leaderboard"] != board:
                board = c["leaderboard"]
                out.append((f"  leaderboard {board!r}:", {}))
            v = c["value"]
            prec = c["precision"] if isinstance(c["precision"], int) else 2
            shown = "-" if v is None else f"{v:.{max(prec, 4)}f}"
            extra = f"  ({c['computation']})" if c["computation"] else ""
            extra += "  hidden" if c["hidden"] else ""
            title = str(c["title"])
            out.append((f"    {title:<{width}} {shown:>10}  [{c['key']}, {c['sorting']}]{extra}",
                        {}))
    if res.failure:
        f = res.failure
        if f.tail:
            out.append(("  --- log tail ---", {}))
            out.extend(("    " + ln, {}) for ln in f.tail.splitlines()[-20:])
        out.append((f"error: {f.message}", {"fg": "red", "err": True}))
        out.append((f"hint: {f.hint}", {"err": True}))
    for w in res.warnings:
        out.append((f"  note: {w}", {"fg": "yellow"}))
    out.append((f"  {res.sandbox_note}", {}))
    from subkit.grader.run import env_line

    out.append((f"  the programs {env_line(res.env)} ({res.interpreter}); on Codabench they "
                f"run in the bundle's docker image {res.docker_image}", {"bold": True}))
    if res.detailed_results:
        state = "" if res.detailed_results_enabled else \
            " (the competition does not show it to participants)"
        out.append((f"  detailed results: {res.detailed_results}{state}", {}))
    out.append((f"  logs: {res.run_dir / 'logs'} (prediction_*, scoring_*: the worker's eight "
                "logs)", {}))
    out.append((f"  run folder: {res.run_dir}", {}))
    return out


# the export and the docker image, re-exported: `codabench.export_bundle`, `codabench.image_note`
from subkit.grader.codabench.export import export_bundle  # noqa: E402

__all__ = ["export_bundle", "image_note"]
