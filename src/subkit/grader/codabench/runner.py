"""Running a submission through a bundle's own programs, as Codabench's compute worker
does (codalab/codabench ``compute_worker/compute_worker.py``: ``Run._run_program_directory``,
``Run.start``; the site side in ``src/apps/competitions/tasks.py::_send_to_compute_worker``).
``score_with_bundle`` is the one entry; the worker's rules it follows are in ``rules.py``.

- Two runs, each under the phase's ``execution_time_limit`` (default 600 s): the
  *prediction* run, then the *scoring* run (what each container sees: ``rules.py``).
- In each run the two programs run concurrently. Exit codes are not checked, except the
  scoring program's (``_check_exit_code``); no scores file fails the submission.

Locally the ``/app/...`` paths are real folders of the run folder. Each program runs in
subkit's one sandbox (``sandbox.Sandbox``, the same as a plain ``score-local``'s): where
bubblewrap works it sees exactly its container's ``/app/...`` folders (writable, as the
worker mounts them), the system and the interpreter read-only, a private ``/tmp``, no
network, and the profile's limits; programs that hard-code ``/app/input_data``
(codalab/competition-examples ``codabench/wheat_seeds`` does) run unchanged. The
prediction run never sees the reference data (nor the bundle itself). Elsewhere the
``/app/...`` paths in the command are rewritten to the run folder's, which runs
placeholder-style bundles (``codabench/iris``'s ``$input $output``) but not code that
hard-codes ``/app``: that is refused with a message. A command that starts with
``python``/``python3`` runs with this machine's interpreter (the worker runs the
competition's docker image).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from subkit.errors import SubkitError
from subkit.grader import lifecycle, safezip, sandbox, untrusted
from subkit.grader.codabench.bundle import Bundle, Task, open_bundle, select
from subkit.grader.codabench.image import DEFAULT_IMAGE, image_note
from subkit.grader.codabench.leaderboard import (
    as_number,
    detailed_results,
    leaderboard_columns,
    read_scores,
)
from subkit.grader.codabench.rules import (
    DEFAULT_QUEUE_CAP,
    DEFAULT_TIME_LIMIT,
    LOG_NAMES,
    RunFailure,
    container_mounts,
    literal_app_uses,
    map_app_paths,
    program_command,
    replace_placeholders,
    split_command,
    submission_command,
    write_worker_metadata,
)
from subkit.grader.lifecycle import RunSpec
from subkit.grader.run import Failure, TimeBar

if TYPE_CHECKING:
    from subkit.profile import Profile

_PYTHON = re.compile(r"^python(\d+(\.\d+)*)?$")


@dataclass
class Container:
    """One program's container in one run, and how it ended."""

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
    isolation: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BundleRunResult:
    """What a bundle run found: the leaderboard's columns, or the failure Codabench would
    report; ``to_dict`` is ``run.json`` and the ``--json`` output."""

    ok: bool
    run_dir: Path
    zip: Path
    bundle: Path
    competition: str
    phase: dict[str, Any]
    task: dict[str, Any]
    time_limit_s: float
    sandbox: str  # "bubblewrap" | "none"
    sandbox_note: str
    isolation: dict[str, Any]
    network_isolated: bool
    docker_image: str
    interpreter: str
    env: dict[str, Any] = field(default_factory=dict)
    columns: list[dict[str, Any]] = field(default_factory=list)
    scores: dict[str, float | None] = field(default_factory=dict)
    raw_scores: dict[str, Any] = field(default_factory=dict)
    detailed_results: Path | None = None
    detailed_results_enabled: bool = False
    logs: dict[str, Path] = field(default_factory=dict)
    prediction: dict[str, Any] = field(default_factory=dict)
    scoring: dict[str, Any] = field(default_factory=dict)
    containers: list[dict[str, Any]] = field(default_factory=list)
    failure: Failure | None = None
    warnings: list[str] = field(default_factory=list)
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
    """The containers of one bundle run: their commands made as the worker makes them, run
    in subkit's sandbox two at a time, their logs in ``logs/``."""

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

    def run_pair(self, jobs: list[tuple[Container, Path, dict[str, Path]]], label: str) -> None:
        """Run the run's programs concurrently, as the worker's asyncio.gather does."""
        if not jobs:
            return
        bar = TimeBar(label, self.time_limit, enabled=self.progress)
        stop = threading.Event()
        ticker = threading.Thread(target=_follow, args=(bar, stop), daemon=True)
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


def _follow(bar: TimeBar, stop: threading.Event) -> None:
    """Tick ``bar`` with the seconds since now until ``stop`` is set."""
    t0 = time.monotonic()
    while not stop.wait(0.5):
        bar.tick(time.monotonic() - t0)


def _place(src: Path, dest: Path, *, link: bool) -> None:
    """A bundle part (folder or zip) into ``dest``, as the worker unpacks it."""
    dest.mkdir(parents=True, exist_ok=True)
    if src.is_file():
        if zipfile.is_zipfile(src):
            safezip.safe_extract(src, dest, max_bytes=1 << 50, max_members=1_000_000)
        else:  # a single data file: the worker would fail to unzip it; keep it usable
            shutil.copy2(src, dest / src.name)
        return

    def copy(s: str, d: str) -> object:
        if link:
            try:
                os.link(s, d)
                return d
            except OSError:
                pass
        return shutil.copy2(s, d)

    shutil.copytree(src, dest, dirs_exist_ok=True, copy_function=copy, symlinks=False)


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


@dataclass
class _Plan:
    """What the bundle and the zip ask for, checked before anything runs."""
    bundle: Bundle
    phase: dict[str, Any]
    task: Task
    scoring_cmd: str
    ingestion_cmd: str | None
    notes: list[str]


def score_with_bundle(zip_path: Path, bundle_path: Path, prof: Profile, phase: str | None = None,
                      task: int | None = None, *, time_limit: float | None = None,
                      isolate_network: bool = True, sandbox_mode: str = "auto",
                      python: str | None = None, progress: bool = False,
                      ledger_row: Callable[[BundleRunResult], dict[str, Any]] | None = None,
                      env: str | None = None,
                      notes: list[str] | tuple[str, ...] = ()) -> BundleRunResult:
    """Run ``zip_path`` through the bundle's own ingestion and scoring programs.
    ``notes``: what the command has to say first (what recovery finished or removed);
    ``ledger_row``: the run's ledger row, made from the result (None: no row).

    Commands that start with ``python``/``python3`` run with ``python``, else with the
    interpreter ``env`` selects (auto|grader|current: environment.select_env), which the
    result names next to the bundle's docker image."""
    from subkit.grader.environment import current_description
    from subkit.grader.run import python_for

    zip_path = safezip.require_zip(zip_path)
    mode, note, why_none = choose_sandbox(sandbox_mode)
    if python:
        env_desc = dict(current_description(), name="given", path=python)
    else:
        python, env_desc = python_for(prof, env, progress=progress)
    # the limit is the phase's, read from the bundle once it is open in the run folder
    spec = RunSpec(prof=prof, zip=zip_path, command="score-local",
                   stem=zip_path.stem + "-bundle", time_limit=float(time_limit or 0),
                   python=python, env=env_desc, isolate_network=isolate_network,
                   progress=progress, unzip=False, what={"bundle": str(bundle_path)})
    t_start = time.monotonic()
    with lifecycle.conduct(spec) as run:
        # everything a user can get wrong, before anything runs (the folder is removed)
        plan = _plan(zip_path, Path(bundle_path), prof, phase, task, run.path,
                     why_none if mode == "none" else None)
        res = _new_result(plan, zip_path, Path(bundle_path), prof, run.path, time_limit,
                          mode, note, isolate_network, python, env_desc, list(notes))
        runner = _Runner(run.path, time_limit=res.time_limit_s, mode=mode,
                         isolate_network=isolate_network, python=python, progress=progress,
                         limits=sandbox.Limits.of(prof))
        run.began()  # from here an interruption leaves the folder incomplete, never ok
        try:
            _prediction_run(runner, plan.bundle, plan.task, plan.ingestion_cmd, res)
            _scoring_run(runner, plan.bundle, plan.task, plan.scoring_cmd, plan.ingestion_cmd,
                         res)
            res.ok = res.failure is None
        except RunFailure as exc:
            res.failure = exc.failure
        finally:
            _close(runner, plan.bundle, res, time.monotonic() - t_start)
        if res.ok and not any(c.get("value") is not None for c in res.columns):
            res.warnings.append("no leaderboard column got a score")
        run.done(res, ledger_row(res) if ledger_row else None)
    if run.warning:
        res.warnings.append(run.warning)
    return res


def _plan(zip_path: Path, bundle_path: Path, prof: Profile, phase: str | None,
          task: int | None, run_dir: Path, why_none: str | None) -> _Plan:
    """Open the bundle, choose its phase and task, read every command and unzip the
    submission into the prediction run; ``why_none``: why there is no sandbox, if none."""
    bundle = open_bundle(bundle_path, run_dir)
    ph, tk, notes = select(bundle, phase, task)
    scoring_cmd = program_command(_program_folder(tk.scoring_program, run_dir),
                                  "scoring program")
    split_command(scoring_cmd, "the scoring program's command")
    ingestion_cmd = None
    if tk.ingestion_program:
        ingestion_cmd = program_command(_program_folder(tk.ingestion_program, run_dir),
                                        "ingestion program")
        split_command(ingestion_cmd, "the ingestion program's command")
    sub_dir = run_dir / "prediction" / "program"
    max_bytes, max_members = safezip.bounds(prof)
    safezip.safe_extract(zip_path, sub_dir, max_bytes=max_bytes, max_members=max_members)
    sub_cmd = submission_command(sub_dir)
    if sub_cmd:
        split_command(sub_cmd, "the submission's command (metadata.yaml in the zip)")
    if why_none is not None:
        _refuse_literal_paths(tk, run_dir, why_none)
    return _Plan(bundle, ph, tk, scoring_cmd, ingestion_cmd, notes)


def _new_result(plan: _Plan, zip_path: Path, bundle_path: Path, prof: Profile, run_dir: Path,
                time_limit: float | None, mode: str, note: str, isolate_network: bool,
                python: str, env_desc: dict[str, Any], notes: list[str]) -> BundleRunResult:
    """The result before the runs: what runs where, under which limit, and the notes."""
    from subkit.grader.run import env_warnings
    from subkit.ledger import sha256_file

    image = str(plan.bundle.data.get("docker_image") or DEFAULT_IMAGE)
    warnings = env_warnings(env_desc) + notes + list(plan.notes)
    image_warning = image_note(image, prof)
    if image_warning:
        warnings.append(image_warning)
    limit = _time_limit(plan.phase, time_limit, warnings)
    ph, tk = plan.phase, plan.task
    return BundleRunResult(
        ok=False, run_dir=run_dir, zip=zip_path, bundle=bundle_path,
        competition=plan.bundle.title,
        phase={"index": ph.get("index"), "name": ph.get("name")},
        task={"index": tk.index, "name": tk.name, "ingestion_only_during_scoring": tk.iods},
        time_limit_s=limit, sandbox=mode, sandbox_note=note,
        isolation=sandbox.Sandbox(sandbox.Limits.of(prof), network=not isolate_network,
                                  mode=mode).describe(),
        network_isolated=isolate_network and mode == "bubblewrap",
        docker_image=image, interpreter=python, env=env_desc,
        detailed_results_enabled=bool(plan.bundle.data.get("enable_detailed_results", False)),
        warnings=warnings, zip_sha256=sha256_file(zip_path))


def _time_limit(ph: dict[str, Any], override: float | None, warnings: list[str]) -> float:
    """The phase's execution_time_limit (Codabench's default without one), or ``override``."""
    limit_raw = ph.get("execution_time_limit", ph.get("execution_time_limit_ms"))
    limit = float(as_number(limit_raw) or DEFAULT_TIME_LIMIT)
    if override:
        warnings.append(f"time limit {override:g} s from the command line, not the phase's "
                        f"{limit:g} s")
        return float(override)
    if limit > DEFAULT_QUEUE_CAP:
        warnings.append(f"the phase asks for {limit:g} s; Codabench's default queue caps runs at "
                        f"{DEFAULT_QUEUE_CAP} s (a competition with its own queue gets the full "
                        "limit)")
    return limit


def _close(runner: _Runner, bundle: Bundle, res: BundleRunResult, elapsed_s: float) -> None:
    """After the runs, whatever happened: the eight logs exist, the copies of the bundle
    are gone, the result names the containers and the sandbox they ran in."""
    for name in LOG_NAMES:
        p = runner.log_dir / f"{name}.txt"
        if not p.exists():
            runner.log_dir.mkdir(parents=True, exist_ok=True)
            p.write_text("")
        res.logs[name] = p
    res.containers = [c.to_dict() for c in runner.containers]
    res.elapsed_s = elapsed_s
    if bundle.extracted:
        shutil.rmtree(bundle.root, ignore_errors=True)
    shutil.rmtree(runner.run_dir / "parts", ignore_errors=True)
    res.isolation = next((c.isolation for c in runner.containers if c.isolation),
                         res.isolation)


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
    if tk.input_data is not None:
        _place(tk.input_data, root / "input_data", link=bundle.extracted)
    run_ingestion = tk.ingestion_program is not None and not tk.iods
    if tk.ingestion_program is not None and not tk.iods:
        _place(tk.ingestion_program, root / "ingestion_program", link=bundle.extracted)
    jobs = []
    program = ingestion = None
    sub_cmd = submission_command(root / "program")
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
        assert ingestion_cmd is not None  # _plan reads the command of every ingestion program
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
        raise RunFailure(Failure(
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
    raise RunFailure(Failure(
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
    if tk.iods and tk.input_data is not None:
        _place(tk.input_data, root / "input_data", link=bundle.extracted)
    jobs = []
    program = runner.container("program", "scoring", scoring_cmd, root, is_scoring=True,
                               iods=tk.iods, has_input_data=has_input)
    jobs.append((program, root / "program",
                 container_mounts("program", True, tk.iods, root, has_input)))
    ingestion = None
    if tk.iods and tk.ingestion_program is not None:
        _place(tk.ingestion_program, root / "ingestion_program", link=bundle.extracted)
        assert ingestion_cmd is not None  # _plan reads the command of every ingestion program
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
    _collect_scores(runner, bundle, program, root / "output", res)
    write_worker_metadata(root / "output", status)


def _collect_scores(runner: _Runner, bundle: Bundle, program: Container, out: Path,
                    res: BundleRunResult) -> None:
    """The scoring program's exit code checked, its scores read into the leaderboard's
    columns, its detailed results found; a failure gets the log tail and the hint."""
    try:
        _check_exit_code(program, res)
        raw = {untrusted.printable(k, 200, one_line=True) if isinstance(k, str) else k: v
               for k, v in read_scores(out).items()}  # its keys reach the summary's notes
    except RunFailure as exc:
        exc.failure.stage = "scoring"
        exc.failure.tail = _failure_tail(runner, program, res)
        if exc.failure.hint == "see the scoring program's log tail":
            exc.failure.hint = _no_scores_hint(res, program)
        raise
    res.raw_scores = {str(k): v for k, v in raw.items()}
    res.columns, res.scores, w = leaderboard_columns(bundle, raw)
    res.warnings.extend(w)
    res.detailed_results = detailed_results(out)


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


