"""The compute worker's rules, as functions: what a container sees, how a command is
made, what the worker writes after a run. From its source (codalab/codabench
``compute_worker/compute_worker.py``: ``replace_legacy_metadata_command``,
``Run._run_program_directory``, ``Run.start``, ``Run.push_output``):

- Each run (prediction, scoring) gives each of its programs a container. The *prediction*
  run: the submission as ``/app/program`` of its own container and as
  ``/app/ingested_program`` of the ingestion program's, input data at ``/app/input_data``,
  output at ``/app/output``. The *scoring* run: the scoring program at ``/app/program``,
  reference data at ``/app/input/ref``, the prediction output at ``/app/input/res``,
  ``/app/shared``, output at ``/app/output``. A task with ``ingestion_only_during_scoring``
  runs its ingestion program in the scoring run, with the submission (the prediction
  output) as ``/app/ingested_program``.
- A program folder's ``metadata.yaml`` (or ``metadata``) gives ``command:``; a submission
  without one is copied into the output; a submission whose metadata has no command runs
  nothing.
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
  holds ``metadata`` fails the submission.
- Logs: ``prediction_stdout``, ``prediction_stderr``, ``prediction_ingestion_stdout``,
  ``prediction_ingestion_stderr`` and the same four with ``scoring_``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from subkit.errors import InputError
from subkit.grader.run import Failure

DEFAULT_TIME_LIMIT = 600  # Codabench's default execution_time_limit (seconds)
DEFAULT_QUEUE_CAP = 600  # MAX_EXECUTION_TIME_LIMIT of the public default queue
LOG_NAMES = ("prediction_stdout", "prediction_stderr", "prediction_ingestion_stdout",
             "prediction_ingestion_stderr", "scoring_stdout", "scoring_stderr",
             "scoring_ingestion_stdout", "scoring_ingestion_stderr")
METADATA_EXISTS = ("Error, the output directory already contains a metadata file. This file is "
                   "used to store exitCode and other data, do not write to this file manually.")
_APP_NAMES = ("ingested_program", "ingestion_program", "input_data", "program", "output",
              "shared", "input", "data")
_LITERAL_APP = re.compile(r"/app/(?:%s)(?![A-Za-z0-9_])" % "|".join(_APP_NAMES))
_SCAN_SUFFIXES = {".py", ".sh", ".bash", ".r", ".jl", ".m", ".pl", ".rb", ".js", ".ipynb",
                  ".cfg", ".ini", ".json", ".yaml", ".yml", ".toml", ""}


class RunFailure(Exception):
    """The submission fails, as the worker would fail it (the run stops here)."""

    def __init__(self, failure: Failure):
        super().__init__(failure.message)
        self.failure = failure


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


def write_worker_metadata(output_dir: Path, status: dict[str, Any]) -> None:
    """The worker's ``push_output``: refuse an existing ``metadata``, else write the YAML."""
    import yaml

    path = output_dir / "metadata"
    if path.exists():
        raise RunFailure(Failure("metadata", METADATA_EXISTS,
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


def submission_command(program_dir: Path) -> str | None:
    """``command:`` of a submission's metadata.yaml (or metadata): None without a metadata
    file (the worker copies the submission into the output), "" without a command (the
    worker runs nothing)."""
    meta = _metadata_file(program_dir)
    if meta is None:
        return None
    command = _command_of(meta)
    return command if isinstance(command, str) and command.strip() else ""


def program_command(program_dir: Path, role: str) -> str:
    """``command:`` of a bundle program's metadata.yaml (or metadata); a program without
    one is bad input."""
    meta = _metadata_file(program_dir)
    if meta is None:
        raise InputError(f"the {role} has no metadata.yaml (or metadata) file",
                         hint="put metadata.yaml with `command: python3 $program/...` in the "
                              f"{role}'s folder (Codabench needs it too)")
    command = _command_of(meta)
    if not command:
        raise InputError(f"the {role}'s {meta.name} has no command:",
                         hint="write `command: python3 $program/score.py $input $output` "
                              "(the worker runs nothing else)")
    if not isinstance(command, str):
        raise InputError(f"the {role}'s command: is not one line of text "
                         f"({type(command).__name__})",
                         hint="write it as one string: command: python3 $program/x.py $input "
                              "$output")
    return command


def _metadata_file(program_dir: Path) -> Path | None:
    for name in ("metadata.yaml", "metadata"):
        p = program_dir / name
        if p.is_file():
            return p
    return None


def _command_of(meta: Path) -> Any:
    """The ``command:`` value as written (any YAML type), None when there is none."""
    import yaml

    try:
        data = yaml.safe_load(meta.read_text("utf-8", errors="replace"))
    except yaml.YAMLError:
        data = None
    return data.get("command") if isinstance(data, dict) else None


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
