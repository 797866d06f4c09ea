"""The grader's clock: how long a zip will run on the grader, from the ledger.

Every ``score-local`` row holds the local time of the run (``runtime_s``: the child's wall
time, import to the last prediction); a ``platform-time`` row (``subkit history time ZIP
--platform-s S``, or ``submit --wait`` from the platform's elapsed time) holds the
platform's time of the same zip. Each zip with both is a pair; the ratio platform / local
of the pairs says how much slower (or faster) the grader's machine is than this one on the
same code. A new run's grader time is its local time times the median ratio (in log
space), with a range::

    the grader's clock: about 410 s of the 1200 s cap (34%), from 3 submissions
    (grader / local 2.0x; 80% range 329-510 s)

and a warning above 80% of the cap. The cap is the lower of the profile's
``[evaluation] time_limit_s`` (the competition's limit) and ``time_cap_s`` (the platform's
own cap: codabench.org's public queue stops a run at 20 minutes, its maintainers in
codalab/codabench issue 1842).

The range is an 80% prediction interval (the log ratios' spread, Student's t); with fewer
than three pairs it assumes a spread of at least 15%.

Pairs whose local run used a test set of another size than this run's are used only when
no pair of the same size exists (the time of predict grows with the number of samples;
the line then says so).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from subkit.profile import Profile

WARN_FRACTION = 0.8
# the range is an 80% prediction interval of the log ratio: Student's t (0.9 quantile) by
# degrees of freedom 1..10, then the normal's; with fewer than 3 pairs the spread is at least
# PRIOR_SIGMA (a platform's run-to-run jitter: Codabench queues share machines)
_T90 = {2: 1.886, 3: 1.638, 4: 1.533, 5: 1.476, 6: 1.440, 7: 1.415, 8: 1.397, 9: 1.383,
        10: 1.372, 15: 1.341, 20: 1.325, 30: 1.310}
PRIOR_SIGMA = 0.15


@dataclass(frozen=True)
class Pair:
    zip_sha256: str
    local_s: float
    platform_s: float
    n: int | None  # the local test set's size

    @property
    def ratio(self) -> float:
        return self.platform_s / self.local_s


@dataclass(frozen=True)
class Estimate:
    seconds: float
    low: float
    high: float
    ratio: float
    n_pairs: int
    cap_s: float
    cap_word: str  # "cap" (the platform's) or "limit" (the competition's)
    other_sizes: bool  # pairs of other test-set sizes were used

    @property
    def fraction(self) -> float:
        return self.seconds / self.cap_s if self.cap_s else 0.0

    @property
    def warn(self) -> bool:
        """The estimate is above 80% of the cap."""
        return self.fraction > WARN_FRACTION

    @property
    def line(self) -> str:
        subs = "submission" if self.n_pairs == 1 else "submissions"
        text = (f"the grader's clock: about {self.seconds:.0f} s of the {self.cap_s:g} s "
                f"{self.cap_word} ({self.fraction:.0%}), from {self.n_pairs} {subs} "
                f"(grader / local {self.ratio:.1f}x; 80% range {self.low:.0f}-"
                f"{self.high:.0f} s)")
        if self.other_sizes:
            text += "; those ran on test sets of another size here"
        if self.warn:
            text += (f": above {WARN_FRACTION:.0%} of the {self.cap_word}, the grader may stop "
                     "it (make predict faster: fewer TTA views, a larger batch)")
        elif self.high > self.cap_s:
            text += f": the range reaches past the {self.cap_word}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "low": self.low, "high": self.high,
                "ratio": self.ratio, "pairs": self.n_pairs, "cap_s": self.cap_s,
                "fraction": self.fraction, "warn": self.warn, "line": self.line}


def _t90(df: int) -> float:
    """Student's t, 0.9 quantile (the table's value at the nearest df at or below)."""
    return _T90[max(d for d in _T90 if d <= df)] if df <= 30 else 1.282


def cap(prof: Profile) -> tuple[float, str]:
    """The seconds a run gets on the platform and the word for it."""
    limit = float(prof.time_limit_s)
    platform_cap = prof.data["evaluation"].get("time_cap_s")
    if platform_cap and float(platform_cap) < limit:
        return float(platform_cap), "cap"
    return limit, "limit"


def _positive(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


def pairs(records: list[dict]) -> list[Pair]:
    """One pair per zip with a platform time and an ok local run (the latest of each)."""
    local: dict[str, tuple[float, int | None]] = {}
    platform: dict[str, float] = {}
    for rec in records:
        sha = rec.get("zip_sha256")
        if not isinstance(sha, str) or not sha:
            continue
        if rec.get("kind") == "score-local" and rec.get("ok") and rec.get("env") != "bundle":
            s = _positive(rec.get("runtime_s"))
            if s is not None:
                n = rec.get("n")
                local[sha] = (s, int(n) if isinstance(n, int) else None)
        elif rec.get("kind") == "platform-time":
            s = _positive(rec.get("platform_s"))
            if s is not None:
                platform[sha] = s
    return [Pair(sha, local[sha][0], platform[sha], local[sha][1])
            for sha in platform if sha in local]


def estimate(ps: list[Pair], local_s: float, cap_s: float, cap_word: str = "limit",
             n: int | None = None, exclude: str | None = None) -> Estimate | None:
    """The grader's time of a run that took ``local_s`` here, or None without pairs."""
    ps = [p for p in ps if p.zip_sha256 != exclude]
    same = [p for p in ps if n is not None and p.n == n]
    use = same or ps
    if not use or not local_s or local_s <= 0:
        return None
    logs = [math.log(p.ratio) for p in use]
    center = statistics.median(logs)
    k = len(logs)
    spread = statistics.stdev(logs) if k >= 3 else max(statistics.pstdev(logs), PRIOR_SIGMA)
    t = _t90(k - 1) if k >= 3 else 1.282
    half = t * spread * math.sqrt(1 + 1 / k)
    r = math.exp(center)
    return Estimate(seconds=local_s * r, low=local_s * math.exp(center - half),
                    high=local_s * math.exp(center + half), ratio=r, n_pairs=k, cap_s=cap_s,
                    cap_word=cap_word, other_sizes=not same and n is not None)


def for_run(prof: Profile, result) -> Estimate | None:
    """The estimate for a score-local result (``RunResult``), from the workspace's ledger;
    None when the run failed or the ledger has no pair."""
    from subkit.ledger import Ledger

    local_s = _positive((getattr(result, "timings", None) or {}).get("child_s"))
    if not getattr(result, "ok", False) or local_s is None:
        return None
    try:
        records = Ledger(prof.submissions_dir, on_warning=lambda m: None).records()
    except OSError:
        return None
    seconds, word = cap(prof)
    return estimate(pairs(records), local_s, seconds, word, n=getattr(result, "n", None))


def run_line(prof: Profile, result) -> str | None:
    """The line score-local's summary shows (None: nothing to say)."""
    est = for_run(prof, result)
    return est.line if est is not None else None


def leave_one_out(ps: list[Pair]) -> list[tuple[Pair, float]]:
    """Each pair predicted from the others: (pair, predicted platform seconds)."""
    out = []
    for p in ps:
        est = estimate(ps, p.local_s, 1.0, n=p.n, exclude=p.zip_sha256)
        if est is not None:
            out.append((p, est.seconds))
    return out


# -- recording a platform's time by hand ---------------------------------------------------
@dataclass(frozen=True)
class TimeOptions:
    zip: str  # a path, a zip's name, or a sha256 prefix
    seconds: float
    phase: str | None = None


def record_platform_time(opts: TimeOptions, prof: Profile, ledger) -> tuple[dict, str | None]:
    """The platform-time record appended, and what the clock now says of that zip."""
    from subkit.errors import UsageError
    from subkit.ledger import platform_time_record, resolve_zip

    if not math.isfinite(opts.seconds) or opts.seconds <= 0:
        raise UsageError(f"--platform-s must be a positive number of seconds, got "
                         f"{opts.seconds:g}", hint="e.g. --platform-s 412 (the platform's "
                                                   "elapsed time of the run)")
    sha, path = resolve_zip(ledger, opts.zip)
    rec = ledger.append(platform_time_record(zip=path, zip_sha256=sha, platform_s=opts.seconds,
                                             phase=opts.phase, source="manual"))
    ps = pairs(ledger.records())
    mine = next((p for p in ps if p.zip_sha256 == sha), None)
    if mine is None:
        return rec, ("no ok score-local run of this zip in the ledger: the pair needs one "
                     "(`subkit score-local ZIP`)")
    return rec, (f"the grader took {mine.ratio:.2f}x its local time ({mine.local_s:.1f} s "
                 f"here); {len(ps)} pair{'s' if len(ps) != 1 else ''} in the ledger")
