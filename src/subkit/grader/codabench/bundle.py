"""A Codabench competition bundle, read: ``competition.yaml`` (version 2) at the root of a
folder or zip, its phases, tasks and leaderboards, and the phase and task a run uses.

The format is the site's v2 unpacker (codalab/codabench
``src/apps/competitions/unpackers/v2.py``; ``unpack_competition`` picks the unpacker by
``version``, v1 and 1.5 being CodaLab's). A task names its ``scoring_program``,
``ingestion_program``, ``input_data`` and ``reference_data``: folders or zips inside the
bundle.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from subkit.errors import InputError, UsageError
from subkit.grader import safezip


@dataclass
class Task:
    """One task of the bundle: its programs and data, as paths inside the bundle."""

    index: Any
    name: str
    scoring_program: Path
    ingestion_program: Path | None
    input_data: Path | None
    reference_data: Path | None
    iods: bool


@dataclass
class Bundle:
    """An opened bundle: ``data`` is its competition.yaml; ``extracted``: ``root`` is a copy
    unzipped into the run folder (removed after the run)."""

    source: Path
    root: Path
    data: dict[str, Any]
    extracted: bool

    @property
    def title(self) -> str:
        return str(self.data.get("title") or self.source.name)

    def phases(self) -> list[dict[str, Any]]:
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

    def tasks(self) -> dict[Any, dict[str, Any]]:
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

    def leaderboards(self) -> list[dict[str, Any]]:
        lbs = self.data.get("leaderboards", self.data.get("leaderboard"))
        if isinstance(lbs, dict):
            lbs = [lbs]
        return [lb for lb in (lbs or []) if isinstance(lb, dict)]


def open_bundle(path: Path, workdir: Path) -> Bundle:
    """A folder or zip holding ``competition.yaml`` (version 2) at its root."""
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
    return Bundle(source=path, root=root, data=_read_competition(yml, path), extracted=extracted)


def _read_competition(yml: Path, path: Path) -> dict[str, Any]:
    """``competition.yaml``, refused unless it is a version 2 mapping."""
    import yaml

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
    return data


def _describe_phases(phases: list[dict]) -> str:
    return ", ".join(f"{p.get('index', i)} {p.get('name', '')!r}".strip()
                     for i, p in enumerate(phases))


def select(bundle: Bundle, phase: str | None, task: int | None
           ) -> tuple[dict[str, Any], Task, list[str]]:
    """The phase (by name, case-insensitive, or index) and task to run; notes for the user."""
    phases = bundle.phases()
    tasks = bundle.tasks()
    notes: list[str] = []
    chosen = None
    if phase is not None:
        want = str(phase).strip().lower()
        for p in phases:
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

    scoring = part("scoring_program")
    assert scoring is not None  # a task without one was refused above
    return Task(index=t["index"], name=str(t.get("name", "")),
                scoring_program=scoring,
                ingestion_program=part("ingestion_program"), input_data=part("input_data"),
                reference_data=part("reference_data"),
                iods=bool(t.get("ingestion_only_during_scoring", False)))

