"""What the leaderboard shows for a run: the scores file the scoring program wrote, the
competition's leaderboard columns, its detailed results.

From codalab/codabench: the worker reads ``scores.json``, else ``scores.txt`` as YAML, and
fails the submission without either (``compute_worker/compute_worker.py``,
``Run.push_scores``). The site keeps the leaderboard columns' keys and computes
``computation`` columns (avg, sum, min, max over ``computation_indexes``;
``src/apps/leaderboards/models.py``, ``Column``). ``detailed_results.html`` (else the first
``.html``) of the scoring output is the detailed result.
"""

from __future__ import annotations

import glob
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from subkit.grader import untrusted
from subkit.grader.codabench.rules import RunFailure
from subkit.grader.run import Failure

if TYPE_CHECKING:
    from subkit.grader.codabench.bundle import Bundle


_COMPUTATIONS: dict[str, Callable[[list[float]], float]] = {
    "avg": statistics.mean, "sum": sum, "min": min, "max": max}


def as_number(v: Any) -> float | None:
    """A score as the leaderboard keeps it: a float, or None when it is not a number."""
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(str(v).strip())
    except (TypeError, ValueError):
        return None


def leaderboard_columns(bundle: Bundle, raw: dict[str, Any]
                        ) -> tuple[list[dict[str, Any]], dict[str, float | None], list[str]]:
    """The columns the leaderboard shows for these raw scores: (columns, scores, warnings)."""
    warnings: list[str] = []
    columns: list[dict[str, Any]] = []
    for li, lb in enumerate(bundle.leaderboards()):
        columns.extend(_board_columns(lb, str(li), raw, warnings))
    scores = {row["key"]: row["value"] for row in columns}
    dropped = sorted(k for k in raw if k not in scores)
    if dropped and columns:
        warnings.append(f"scores not in the leaderboard, ignored as Codabench ignores them: "
                        f"{', '.join(dropped)}")
    if not columns:
        warnings.append("competition.yaml defines no leaderboard columns: no score is kept")
    return columns, scores, warnings


def _board_columns(lb: dict[str, Any], label: str, raw: dict[str, Any],
                   warnings: list[str]) -> list[dict[str, Any]]:
    """One leaderboard's columns, in their index order: the scores first, then the
    ``computation`` columns computed from them."""
    cols = [c for c in (lb.get("columns") or []) if isinstance(c, dict) and "key" in c]
    cols.sort(key=lambda c: c.get("index", 0) if isinstance(c.get("index", 0), int) else 0)
    rows: list[dict[str, Any]] = []
    by_index: dict[Any, dict[str, Any]] = {}
    for c in cols:
        key = str(c["key"])
        row = {"leaderboard": lb.get("title") or lb.get("key") or label, "key": key,
               "title": c.get("title") or key, "index": c.get("index"),
               "sorting": c.get("sorting") or "desc", "precision": c.get("precision", 2),
               "computation": c.get("computation"), "hidden": bool(c.get("hidden", False)),
               "value": None}
        if not row["computation"]:
            row["value"] = _score_of(key, raw, warnings)
        by_index[c.get("index")] = row
        rows.append(row)
    for c in cols:
        if c.get("computation"):
            _compute(by_index[c.get("index")], c, by_index, warnings)
    return rows


def _score_of(key: str, raw: dict[str, Any], warnings: list[str]) -> float | None:
    if key not in raw:
        warnings.append(f"the scoring program wrote no {key!r}, a column of the leaderboard")
        return None
    value = as_number(raw[key])
    if value is None:
        warnings.append(f"score {key!r} = {raw[key]!r} is not a number")
    return value


def _compute(row: dict[str, Any], column: dict[str, Any], by_index: dict[Any, dict[str, Any]],
             warnings: list[str]) -> None:
    """A ``computation`` column's value, from the columns its ``computation_indexes`` name."""
    comp = column["computation"]
    idx = column.get("computation_indexes") or []
    if isinstance(idx, str):
        idx = [x.strip() for x in idx.split(",") if x.strip()]
    vals = []
    for i in idx:
        src = by_index.get(int(i)) if str(i).lstrip("-").isdigit() else None
        vals.append(src["value"] if src else None)
    fn = _COMPUTATIONS.get(str(comp).lower())
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
        warnings.append(f"column {row['key']!r} ({comp}): none of its columns got a score")


def read_scores(output: Path) -> dict[str, Any]:
    """The scores the scoring program wrote into ``output``, as the worker reads them."""
    import yaml

    sj, st = output / "scores.json", output / "scores.txt"
    if sj.exists():
        try:
            data = untrusted.loads_json(_scores_text(sj))  # nesting bounded: no RecursionError
        except json.JSONDecodeError as exc:
            raise RunFailure(Failure("scores", "Could not decode scores json properly, it "
                                     f"contains an error.\n{exc.msg}",
                                     "write scores.json with json.dump")) from None
    elif st.exists():
        try:
            data = yaml.safe_load(_scores_text(st))
        except (yaml.YAMLError, RecursionError) as exc:  # PyYAML recurses once a level
            why = "nested too deep" if isinstance(exc, RecursionError) else exc
            raise RunFailure(Failure("scores", f"scores.txt is not valid YAML: {why}",
                                     "write one `key: value` a line")) from None
    else:
        raise RunFailure(Failure("scores", "Could not find scores file, did the scoring program "
                                 "output it?", "see the scoring program's log tail"))
    if not isinstance(data, dict):
        raise RunFailure(Failure("scores", f"{'scores.json' if sj.exists() else 'scores.txt'} "
                                 "does not hold a mapping of keys to scores",
                                 'write {"accuracy": 0.91, ...}'))
    return data


def _scores_text(path: Path) -> str:
    """A scores file the scoring program wrote (no link followed, at most 1 MiB)."""
    data = untrusted.read_untrusted(path, 1 << 20)
    if data is None:
        raise RunFailure(Failure("scores", f"{path.name} is not a plain file of at most 1 MiB",
                                 "write the scores with json.dump into $output/scores.json"))
    return data.decode("utf-8", "replace")


def detailed_results(output: Path) -> Path | None:
    """The scoring output's ``detailed_results.html``, else its first ``.html``."""
    html = output / "detailed_results.html"
    if html.exists():
        return html
    others = sorted(glob.glob(str(output / "*.html")))
    return Path(others[0]) if others else None
