"""`subkit history ...`: the ledger read back, one row per zip, and what the user adds to
it by hand (a note, a leaderboard score). The ledger itself is ``subkit.ledger``; the
table's rendering is the CLI's."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from subkit import ui
from subkit.errors import SubkitError, UsageError
from subkit.ledger import Ledger, leaderboard_record, note_record, resolve_zip

if TYPE_CHECKING:
    from subkit.profile import Profile


@dataclass(frozen=True)
class HistoryOptions:
    sort: str | None = None  # a column of COLUMNS, or leaderboard:PHASE
    reverse: bool = False


@dataclass(frozen=True)
class NoteOptions:
    zip: str  # a path, a zip's name, or a sha256 prefix
    text: str


@dataclass(frozen=True)
class ScoreOptions:
    zip: str
    score: float
    phase: str | None = None  # None: the profile's first phase


# column -> (sort key, numeric score?); the table shows them in this order
COLUMNS: dict[str, tuple[Callable[[dict], Any], bool]] = {
    "zip": (lambda r: r.get("zip_name") or "", False),
    "tag": (lambda r: r.get("tag"), False),
    "note": (lambda r: r.get("note"), False),
    "weights": (lambda r: r.get("weights_sha256"), False),
    "keras": (lambda r: r.get("keras_version"), False),
    "clean": (lambda r: r.get("clean_score"), True),
    "shifted": (lambda r: r.get("shifted_score"), True),
    "runtime": (lambda r: r.get("runtime_s"), False),
    "leaderboard": (lambda r: r.get("leaderboard_score"), True),
    "predicted": (lambda r: (r.get("predicted_leaderboard") or {}).get("score"), True),
    "submission": (lambda r: None if r.get("submission_id") is None
                   else str(r.get("submission_id")), False),
    "built": (lambda r: r.get("built") or r.get("first_seen"), False),
}


def history(opts: HistoryOptions, prof: Profile, ledger: Ledger) -> list[dict]:
    """The rows of the history table, in the order asked for."""
    from subkit.recovery import recover

    for note in recover(prof):  # a build or run a killed subkit left half-done
        ui.progress(f"note: {note}")
    rows = rows_with_predictions(ledger.records())
    if opts.sort:
        return sort_rows(rows, opts.sort, reverse=opts.reverse,
                         higher_is_better=prof.higher_is_better)
    return list(reversed(rows)) if opts.reverse else rows


def rows_with_predictions(records: list[dict]) -> list[dict]:
    """The history rows, each zip with a shift run given the leaderboard prediction the
    other zips' leaderboard scores make for it now (subkit.calibration)."""
    from subkit import calibration
    from subkit.ledger import build_table

    rows = build_table(records)
    predicted = calibration.for_history(records)
    for r in rows:
        r.pop("shift_scores", None)  # per-set scores: the run's report has them
        if r.get("tta_views"):  # `subkit tta tune`: its choice, in the note column too
            r["tta"] = (f"TTA {'+'.join(map(str, r['tta_views']))} {r.get('tta_merge')} "
                        f"{r.get('tta_shifted_score') or 0:.3f}")
            r["note"] = "; ".join(x for x in (r.get("note"), r["tta"]) if x)
        p = predicted.get(r["zip_sha256"])
        r["predicted_leaderboard"] = None if p is None else {
            k: p[k] for k in ("score", "low", "high", "calibrated_on", "loo_error", "phase")}
    return rows


def sort_rows(rows: list[dict], column: str, reverse: bool = False,
              higher_is_better: bool = True) -> list[dict]:
    """Sort by a history column; scores best first, everything else ascending; rows
    without a value last whatever the direction. ``leaderboard:PHASE`` sorts by one
    phase's score."""
    key_fn: Callable[[dict], Any]
    if column.startswith("leaderboard:"):
        phase = column.split(":", 1)[1]

        def key_fn(r: dict) -> Any:
            return (r.get("leaderboard") or {}).get(phase)
        numeric = True
    elif column in COLUMNS:
        key_fn, numeric = COLUMNS[column]
    else:
        raise UsageError(f"--sort: unknown column {column!r}",
                         hint="valid columns: " + ", ".join(COLUMNS)
                              + ", leaderboard:PHASE")
    descending = numeric and higher_is_better
    if reverse:
        descending = not descending
    present = [r for r in rows if key_fn(r) is not None]
    missing = [r for r in rows if key_fn(r) is None]

    def safe(r: dict) -> Any:
        v = key_fn(r)
        if isinstance(v, (int, float)):
            return (0, float(v), "")
        try:
            return (0, float(v), "")
        except (TypeError, ValueError):
            return (1, 0.0, str(v))

    return sorted(present, key=safe, reverse=descending) + missing


def note(opts: NoteOptions, ledger: Ledger) -> tuple[dict, str | None]:
    """The note record appended, and the zip's path when the ledger knows it."""
    sha, path = resolve_zip(ledger, opts.zip)
    return ledger.append(note_record(zip_sha256=sha, zip=path, text=opts.text)), path


def score_range(prof: Profile) -> tuple[float, float]:
    """The values the profile's metric can take: the scores that rise (accuracy, F1, mean
    IoU) are fractions in [0, 1]; the errors that fall (MSE, MAE, RMSE) are >= 0."""
    return (0.0, 1.0) if prof.higher_is_better else (0.0, math.inf)


def _range_words(low: float, high: float) -> str:
    return f"{low:g} to {high:g}" if math.isfinite(high) else f"{low:g} or more"


def score(opts: ScoreOptions, prof: Profile, ledger: Ledger) -> tuple[dict, str | None]:
    """The leaderboard record appended (a score entered by hand), and the zip's path."""
    if not math.isfinite(opts.score):
        raise UsageError(f"--leaderboard must be a number, got {opts.score}", hint="e.g. 0.76")
    low, high = score_range(prof)
    if not low <= opts.score <= high:
        raise UsageError(f"--leaderboard {opts.score:g} is outside the range of "
                         f"{prof.metric} ({_range_words(low, high)})",
                         hint="type the score the leaderboard shows, e.g. 0.76 (not a percent)")
    if opts.phase is not None and prof.phases:
        try:
            prof.phase(opts.phase)
        except SubkitError as exc:
            raise UsageError(f"--phase: {exc.message}", hint=exc.hint) from None
    sha, path = resolve_zip(ledger, opts.zip)
    phase = (str(prof.phase(opts.phase)) if prof.phases
             else opts.phase if opts.phase is not None else "default")
    rec = ledger.append(leaderboard_record(zip_sha256=sha, zip=path, leaderboard_score=opts.score,
                                           phase=phase, source="manual"))
    return rec, path
