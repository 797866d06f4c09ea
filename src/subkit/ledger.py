"""The submission ledger: every build, local score, submission and leaderboard score.

Where and what
--------------
One file, ``<workspace>/submissions/ledger.jsonl``: JSON Lines, one record a line,
append-only. Records link by the zip's sha256 (``zip_sha256``), so a zip that is renamed,
moved or deleted keeps its history. Record kinds (``record["kind"]``)::

    build        zip, zip_sha256, tag, weights: [{name, sha256, keras_version}], profile, size
    score-local  zip, zip_sha256, run_dir, metric, clean_score, shifted_score, runtime_s, env, ok
                 (with --shift: data_sha256, shift_suite, shift_seed, shift_scores {set: score},
                 read back by subkit.calibration)
    submit       zip_sha256, platform, competition, phase, submission_id, status
    leaderboard  zip_sha256, leaderboard_score, phase, source ("manual"|"codabench"|"kaggle")
    note         zip_sha256, text
    platform-time  zip_sha256, platform_s, phase, source ("manual"|"codabench"): the
                 platform's elapsed time of the zip's run (subkit.clock pairs it with the
                 zip's local runtime_s)
    tta-tune     zip_sha256, tta_run_dir, tta_views, tta_merge, tta_shifted_score (report half),
                 tta_cost (forward passes per image), tta_metric

``append`` adds ``time`` (ISO 8601, UTC), ``id`` (unique) and ``subkit_version``. Fields a
kind does not list are kept as they are: the ledger never drops what a caller wrote.

Why an append-only JSON Lines file and not SQLite
-------------------------------------------------
- Appending is the only write: no record is ever rewritten, so there is nothing to
  corrupt but the record being written. A crash mid-write leaves at most one torn line;
  readers skip it with a warning and every other record stays readable.
- Concurrent writers (two ``score-local`` runs finishing at once, a ``submit --wait`` in
  another terminal) are serialised by ``fcntl.flock`` on the ledger itself, and each
  record goes to the file in a single ``os.write`` of one full line on an ``O_APPEND``
  descriptor. A writer that finds the file not ending in a newline (the torn tail of a
  crashed writer) starts its record on a new line, so the crash never swallows the next
  record. A process that dies holding the lock releases it with its file descriptors.
- It is readable and diffable with any tool (``tail``, ``jq``, a spreadsheet via
  ``subkit history --csv``), survives copying between machines, and needs no schema
  migration when a new field appears. SQLite would give the same safety but a binary
  file, a schema to migrate, and trouble on network file systems where its locking is
  unreliable; the ledger holds hundreds of records, not millions, so reading it whole is
  instantaneous.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import uuid
import warnings
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from subkit.errors import InputError

LEDGER_NAME = "ledger.jsonl"
LEADERBOARD_SOURCES = ("manual", "codabench", "kaggle")

# fields every record gets from append(); never copied into a history row as data
_META = ("kind", "id", "time", "subkit_version")


class LedgerWarning(UserWarning):
    """A ledger line that could not be read (a torn write) and was skipped."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _jsonable(value: Any) -> Any:
    """Make a caller's value JSON-safe without losing it: Paths become strings, numpy
    scalars become Python numbers, NaN/inf become null (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    item = getattr(value, "item", None)  # numpy scalars, 0-d arrays
    if callable(item):
        try:
            return _jsonable(item())
        except (TypeError, ValueError):
            pass
    tolist = getattr(value, "tolist", None)  # numpy arrays
    if callable(tolist):
        return _jsonable(tolist())
    return str(value)


# -- one constructor per record kind (the fields the module docstring lists, then the
# caller's extras, kept as they are) -----------------------------------------------------------
def build_record(*, zip: str, zip_sha256: str, tag: str, weights: list, profile: str,
                 size: int, **extra: Any) -> dict:
    return {"kind": "build", "zip": zip, "zip_sha256": zip_sha256, "tag": tag,
            "weights": weights, "profile": profile, "size": size, **extra}


def score_local_record(*, zip: str, zip_sha256: str, run_dir: str, metric: str | None,
                       clean_score: float | None, runtime_s: float | None, env: str | None,
                       ok: bool, **extra: Any) -> dict:
    return {"kind": "score-local", "zip": zip, "zip_sha256": zip_sha256, "run_dir": run_dir,
            "metric": metric, "clean_score": clean_score, "runtime_s": runtime_s, "env": env,
            "ok": ok, **extra}


def submit_record(*, zip: str, zip_sha256: str, platform: str, competition: Any,
                  phase: str | None, submission_id: Any, status: str | None,
                  **extra: Any) -> dict:
    return {"kind": "submit", "zip": zip, "zip_sha256": zip_sha256, "platform": platform,
            "competition": competition, "phase": phase, "submission_id": submission_id,
            "status": status, **extra}


def leaderboard_record(*, zip: str | None, zip_sha256: str, leaderboard_score: float | None,
                       phase: str | None, source: str, **extra: Any) -> dict:
    if source not in LEADERBOARD_SOURCES:
        raise ValueError(f"leaderboard source {source!r}: one of {LEADERBOARD_SOURCES}")
    return {"kind": "leaderboard", "zip": zip, "zip_sha256": zip_sha256,
            "leaderboard_score": leaderboard_score, "phase": phase, "source": source, **extra}


def platform_time_record(*, zip: str | None, zip_sha256: str, platform_s: float,
                         phase: str | None, source: str, **extra: Any) -> dict:
    """The platform's elapsed time of one zip's run (``submit --wait``, or by hand)."""
    return {"kind": "platform-time", "zip": zip, "zip_sha256": zip_sha256,
            "platform_s": float(platform_s), "phase": phase, "source": source, **extra}


def tta_tune_record(*, zip: str, zip_sha256: str, run_dir: str, metric: str, views: list,
                    merge: str, shifted_score: float | None, cost: int, **extra: Any) -> dict:
    """``subkit tta tune``: the chosen views and merge, the shifted score on the report half,
    the cost in forward passes per image. Its fields are prefixed (``tta_``) so that the
    history row's own scores stay those of score-local."""
    return {"kind": "tta-tune", "zip": zip, "zip_sha256": zip_sha256, "tta_run_dir": run_dir,
            "tta_metric": metric, "tta_views": list(views), "tta_merge": merge,
            "tta_shifted_score": shifted_score, "tta_cost": cost,
            **{k if k.startswith("tta_") else f"tta_{k}": v for k, v in extra.items()}}


def note_record(*, zip: str | None, zip_sha256: str, text: str) -> dict:
    return {"kind": "note", "zip_sha256": zip_sha256, "zip": zip, "text": text}


class Ledger:
    """The ledger of one workspace's ``submissions/`` folder."""

    def __init__(self, submissions_dir: Path,
                 on_warning: Callable[[str], None] | None = None, fsync: bool = True):
        self.dir = Path(submissions_dir)
        self.path = self.dir / LEDGER_NAME
        self.on_warning = on_warning
        self.fsync = fsync
        self.warnings: list[str] = []

    # -- writing ------------------------------------------------------------------------
    def append(self, record: dict) -> dict:
        """Append one record; returns it as stored (with ``time``, ``id``,
        ``subkit_version``)."""
        from subkit import __version__

        if not isinstance(record, dict):
            raise TypeError("a ledger record is a dict")
        kind = record.get("kind")
        if not isinstance(kind, str) or not kind:
            raise ValueError("a ledger record needs a 'kind' (build, score-local, submit, "
                             "leaderboard, note)")
        stored = _jsonable(dict(record))
        if not isinstance(stored.get("time"), str):
            stored["time"] = _now_iso()
        stored["id"] = uuid.uuid4().hex
        stored["subkit_version"] = __version__
        line = (json.dumps(stored, ensure_ascii=False, separators=(",", ":"),
                           allow_nan=False) + "\n").encode("utf-8")
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    # the torn tail of a writer that crashed: start on a fresh line so
                    # that this record stays readable
                    line = b"\n" + line
                self._write_all(fd, line)
                if self.fsync:
                    os.fsync(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return stored

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        # one os.write writes the whole line on a regular file; the loop only guards
        # against a short write (a full disk raises instead)
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]

    # -- reading ------------------------------------------------------------------------
    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        if self.on_warning is not None:
            self.on_warning(message)
        else:
            warnings.warn(message, LedgerWarning, stacklevel=3)

    def records(self) -> list[dict]:
        """Every readable record, oldest first. Torn or foreign lines are skipped with a
        warning, never an error."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return []
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
            except OSError as exc:  # some network file systems refuse flock
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
            with os.fdopen(os.dup(fd), "rb") as fh:
                data = fh.read()
        finally:
            os.close(fd)
        out: list[dict] = []
        lines = data.split(b"\n")
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                last = number == len(lines)
                self._warn(
                    f"{self.path}: line {number} is not a complete record "
                    f"({'the last line: ' if last else ''}a write interrupted by a crash?); "
                    "skipped")
                continue
            if not isinstance(rec, dict) or not isinstance(rec.get("kind"), str):
                self._warn(f"{self.path}: line {number} is not a ledger record; skipped")
                continue
            out.append(rec)
        return out

    def table(self) -> list[dict]:
        """One row per ``zip_sha256`` with its latest values, oldest zip first."""
        return build_table(self.records())


# -- the history table ---------------------------------------------------------------------
def _short(sha: Any, n: int = 12) -> str | None:
    return sha[:n] if isinstance(sha, str) and sha else None


def _set(row: dict, key: str, value: Any) -> None:
    """A later record updates a field; a field it leaves out or sets to null keeps its
    earlier value (a run that did not compute the shifted score does not erase one)."""
    if value is not None:
        row[key] = value


def _new_row(sha: str) -> dict:
    return {
        "zip_sha256": sha, "zip": None, "zip_name": None, "tag": None, "note": None,
        "weights_sha256": None, "keras_version": None, "profile": None, "size": None,
        "metric": None, "clean_score": None, "shifted_score": None, "runtime_s": None,
        "local_ok": None, "failed_run": None, "shifted_suite": None, "leaderboard": {},
        "leaderboard_score": None,
        "leaderboard_phase": None, "platform": None, "competition": None,
        "submission_id": None, "submit_phase": None, "status": None, "built": None,
        "first_seen": None, "updated": None, "records": 0,
    }


_COLUMNS = frozenset(_new_row(""))


def build_table(records: Iterable[dict]) -> list[dict]:
    rows: dict[str, dict] = {}
    for rec in records:
        sha = rec.get("zip_sha256")
        if not isinstance(sha, str) or not sha:
            continue
        row = rows.get(sha)
        if row is None:
            row = rows[sha] = _new_row(sha)
            row["first_seen"] = rec.get("time")
        row["records"] += 1
        _set(row, "updated", rec.get("time"))
        kind = rec.get("kind")
        zp = rec.get("zip") or rec.get("file")
        if isinstance(zp, str) and zp:
            row["zip"] = zp
            row["zip_name"] = os.path.basename(zp)
        handled: set[str] = {"zip_sha256", "zip", "file", *_META}
        if kind == "build":
            _set(row, "tag", rec.get("tag"))
            _set(row, "profile", rec.get("profile"))
            _set(row, "size", rec.get("size"))
            row["built"] = rec.get("time")
            weights = rec.get("weights")
            if isinstance(weights, list) and weights:
                shas = [_short(w.get("sha256"), 8) for w in weights if isinstance(w, dict)]
                versions = sorted({str(w.get("keras_version")) for w in weights
                                   if isinstance(w, dict) and w.get("keras_version")})
                _set(row, "weights_sha256", ",".join(s for s in shas if s) or None)
                _set(row, "keras_version", ",".join(versions) or None)
            handled |= {"tag", "profile", "size", "weights"}
        elif kind == "score-local":
            if rec.get("ok") is False:  # the scores and runtime stay the last good run's
                row["local_ok"] = False
                row["failed_run"] = rec.get("time")
            else:
                for key in ("metric", "clean_score", "runtime_s"):
                    _set(row, key, rec.get(key))
                if rec.get("shifted_score") is not None:  # with the suite that gave it
                    row["shifted_score"] = rec.get("shifted_score")
                    row["shifted_suite"] = rec.get("shift_suite")
                row["local_ok"] = True if rec.get("ok") else row["local_ok"]
            handled |= {"metric", "clean_score", "shifted_score", "runtime_s", "ok",
                        "run_dir", "env", "shift_suite"}
        elif kind == "submit":
            for key in ("platform", "competition", "submission_id", "status"):
                _set(row, key, rec.get(key))
            _set(row, "submit_phase", rec.get("phase"))
            handled |= {"platform", "competition", "submission_id", "status", "phase"}
        elif kind == "leaderboard":
            score = rec.get("leaderboard_score")
            phase = rec.get("phase") or "default"
            if score is not None:
                row["leaderboard"][str(phase)] = score
                row["leaderboard_score"] = score
                row["leaderboard_phase"] = phase
            _set(row, "status", rec.get("status"))
            _set(row, "submission_id", rec.get("submission_id"))
            handled |= {"leaderboard_score", "phase", "status", "submission_id", "source",
                        "scores"}
        elif kind == "note":
            _set(row, "note", rec.get("text"))
            handled |= {"text"}
        # unknown extra fields: kept, the latest non-null value wins; they never
        # overwrite one of the known columns
        for key, value in rec.items():
            if key not in handled and key not in _COLUMNS:
                _set(row, key, value)
    return list(rows.values())


def resolve_zip(ledger: Ledger, ref: str) -> tuple[str, str | None]:
    """``(zip_sha256, zip path or None)`` for a ZIP argument: an existing file, a zip
    name or path the ledger knows, or a sha256 prefix (at least 6 hex digits)."""
    p = Path(ref).expanduser()
    if p.is_file():
        return sha256_file(p), str(p)
    rows = ledger.table()
    matches = [r for r in rows if r.get("zip") == ref or r.get("zip_name") == ref
               or r.get("zip_name") == os.path.basename(ref)]
    if not matches and len(ref) >= 6 and all(c in "0123456789abcdefABCDEF" for c in ref):
        matches = [r for r in rows if r["zip_sha256"].startswith(ref.lower())]
    if len(matches) == 1:
        return matches[0]["zip_sha256"], matches[0].get("zip")
    if not matches:
        raise InputError(
            f"no zip {ref!r}: not a file, and the ledger knows no zip by that name or "
            "sha256 prefix",
            hint="give the zip's path, its file name as `subkit history` shows it, or the "
                 "first 6+ characters of its sha256 (`subkit history --json`)")
    names = ", ".join(f"{r.get('zip_name')} ({r['zip_sha256'][:12]})" for r in matches[:6])
    raise InputError(f"{ref!r} matches {len(matches)} zips: {names}",
                     hint="give a longer sha256 prefix or the zip's path")
