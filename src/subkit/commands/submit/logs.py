"""The platform's logs of a Codabench submission, fetched after ``submit --wait``.

What a participant reads in the submission's "Logs" tab (stdout, stderr, ingestion stdout
and ingestion stderr of the prediction and the scoring step) is read through the same API
the web page uses (``subkit.remote.codabench.CodabenchClient.submission_details``, then
each log's signed URL), kept in one file next to the ledger (``submissions/``, never
overwritten; the ledger row names it), and, when the platform's run failed, its failing
lines are shown with the command that reruns the zip here.

The logs are the grader's words about untrusted code (a submission prints what it likes):
every line shown goes through ``grader.untrusted.printable``; the file keeps them as sent.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from subkit.errors import SubkitError
from subkit.fsutil import temp_sibling
from subkit.grader.untrusted import printable
from subkit.remote import codabench as cb
from subkit.remote.http import Http

MAX_LOG_BYTES = 2 * 1024 * 1024  # per log: a submission may print megabytes
MAX_OUTPUT_BYTES = 64 * 1024 * 1024  # the scoring output zip (scores, detailed results)
TAIL_LINES = 20
# competitions/models.py SubmissionDetails.DETAILED_OUTPUT_NAMES_PREDICTION / _SCORING
LOG_NAMES = ("prediction_stdout", "prediction_stderr", "prediction_ingestion_stdout",
             "prediction_ingestion_stderr", "scoring_stdout", "scoring_stderr",
             "scoring_ingestion_stdout", "scoring_ingestion_stderr")
# where a failure shows first: the errors of the prediction step, then of the scoring step,
# then what they printed
FAILURE_ORDER = ("prediction_stderr", "prediction_ingestion_stderr", "scoring_stderr",
                 "scoring_ingestion_stderr", "prediction_ingestion_stdout",
                 "prediction_stdout", "scoring_stdout", "scoring_ingestion_stdout")


@dataclass
class Log:
    submission_id: Any
    name: str
    text: str | None  # None: listed, but storage has no such file
    truncated: bool = False

    @property
    def state(self) -> str:
        if self.text is None:
            return "missing"
        return "empty" if not self.text.strip() else "ok"


@dataclass
class PlatformLogs:
    logs: list[Log] = field(default_factory=list)
    hidden: list[Any] = field(default_factory=list)  # submissions whose phase hides output
    error: str | None = None  # why the logs could not be read
    path: Path | None = None  # the file they were kept in
    # the scoring step's output folder (a zip: scores, detailed results) per submission
    outputs: dict[Any, bytes] = field(default_factory=dict)
    output_paths: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"file": str(self.path) if self.path else None,
                "logs": {f"{lg.submission_id}/{lg.name}": lg.state for lg in self.logs},
                "scoring_output": [str(p) for p in self.output_paths],
                "hidden": self.hidden, "error": self.error}


def fetch(client: cb.CodabenchClient, sub: dict, http: Http) -> PlatformLogs:
    """The logs of a submission and of its children (one per task); never raises for a
    log that cannot be read: the submission is over, its ledger row must still be
    written."""
    out = PlatformLogs()
    ids: list[Any] = [sub.get("id")]  # the server's JSON, as it sent them
    if sub.get("has_children"):
        ids += [c.get("id") if isinstance(c, dict) else c for c in sub.get("children") or []]
    try:
        for sub_id in ids:
            details = client.submission_details(sub_id)
            if details is None:
                out.hidden.append(sub_id)
                continue
            items = [i for i in details.get("logs") or [] if isinstance(i, dict)]
            items.sort(key=lambda i: (LOG_NAMES.index(i["name"]) if i.get("name") in LOG_NAMES
                                      else len(LOG_NAMES)))
            for item in items:
                name, url = str(item.get("name") or "log"), item.get("data_file")
                text, truncated = (None, False) if not url else http.download_text(
                    str(url), what=f"reading {name} of submission {sub_id}",
                    max_bytes=MAX_LOG_BYTES)
                out.logs.append(Log(sub_id, name, text, truncated))
            # SubmissionFilesSerializer.get_scoring_result: the scoring step's output, a
            # signed URL once the worker uploaded it (None when the phase hides it)
            if details.get("scoring_result"):
                data, cut = http.download(str(details["scoring_result"]),
                                          what=f"reading the scoring output of {sub_id}",
                                          max_bytes=MAX_OUTPUT_BYTES)
                if data is not None and cut:
                    out.notes.append(f"the scoring output of submission {sub_id} is over "
                                     f"{MAX_OUTPUT_BYTES // 2**20} MB: not kept")
                elif data:
                    out.outputs[sub_id] = data
    except SubkitError as exc:
        out.error = exc.message
    return out


def keep(found: PlatformLogs, folder: Path, zip_name: str, sub_id: Any,
         server: str) -> Path | None:
    """Write the logs to ``folder/<zip stem>.codabench-<id>.log``, and each scoring output
    to ``...codabench-<id>.scoring.zip`` (``-2``, ``-3``... when taken: never overwritten)."""
    stem = Path(zip_name).stem
    for out_id, data in found.outputs.items():
        found.output_paths.append(_write_new(folder, f"{stem}.codabench-{out_id}", ".scoring.zip",
                                             data))
    if not found.logs:
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [f"# Codabench logs of submission {sub_id} on {server}, fetched {stamp} by "
             "`subkit submit --wait` (the submission's Logs tab, as the platform sent it)"]
    for lg in found.logs:
        extra = {"missing": " (missing: listed, but storage has no such file)",
                 "empty": " (empty)"}.get(lg.state, "")
        lines.append(f"===== submission {lg.submission_id}: {lg.name}{extra} =====")
        if lg.state == "ok" and lg.text is not None:
            lines.append(lg.text.rstrip("\n"))
            if lg.truncated:
                lines.append(f"[... cut at {MAX_LOG_BYTES // 1024} KB ...]")
    text = "\n".join(lines) + "\n"
    found.path = _write_new(folder, f"{stem}.codabench-{sub_id}", ".log", text.encode())
    return found.path


def _write_new(folder: Path, stem: str, suffix: str, data: bytes) -> Path:
    """``data`` under a name not taken yet (written to a temporary name, then hard-linked
    into place: a taken name fails the link, so nothing is ever overwritten)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(folder / f"{stem}{suffix}")
    tmp.write_bytes(data)
    try:
        for n in range(1, 10_000):
            target = folder / (f"{stem}{suffix}" if n == 1 else f"{stem}-{n}{suffix}")
            try:
                os.link(tmp, target)
            except FileExistsError:
                continue
            return target
        raise SubkitError(f"no free name for {stem}{suffix} in {folder}",
                          hint="move old platform logs out of the submissions folder")
    finally:
        tmp.unlink(missing_ok=True)


def failing_lines(found: PlatformLogs, failed_ids: list[Any] | None = None) -> tuple[str | None,
                                                                                  list[str]]:
    """``(which log, its failing lines)``: the first non-empty log in FAILURE_ORDER (of the
    failed child submissions first): its last traceback's frames and error, else its last
    lines; made safe to print."""
    def rank(lg: Log) -> tuple[int, int]:
        child = 0 if failed_ids and lg.submission_id in failed_ids else 1
        order = FAILURE_ORDER.index(lg.name) if lg.name in FAILURE_ORDER else len(FAILURE_ORDER)
        return child, order

    for lg in sorted((lg for lg in found.logs if lg.state == "ok"), key=rank):
        lines = [line.rstrip() for line in (lg.text or "").splitlines()]
        while lines and not lines[-1].strip():
            lines.pop()
        starts = [i for i, line in enumerate(lines)
                  if line.startswith("Traceback (most recent call last)")]
        # the traceback's frames and error, without its header (the heading names it)
        tail = lines[starts[-1] + 1:] if starts else lines
        what = "its traceback" if starts else "its last lines"
        return (f"submission {lg.submission_id} {lg.name}, {what}",
                [printable(line) for line in tail[-TAIL_LINES:]])
    return None, []


def rerun_command(zip_path: str) -> str:
    """The command that runs the same zip the way the grader does, here."""
    return f"subkit score-local {shlex.quote(zip_path)}"
