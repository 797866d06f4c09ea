"""Running the shift families of the kinds that are not image classification.

``score-local --shift`` on a series, forecasting or segmentation profile scores the local
test set again under each family at three severities, through the same child (one
``predict`` per shifted set, after the clean run the grader times):

============ ===================================================== ====== ====== ======
family       what it does                                          sev 1  sev 2  sev 3
============ ===================================================== ====== ====== ======
series (forecasting, series classification; X (n, steps[, features]))
-----------------------------------------------------------------------------------------
noise        Gaussian noise, σ = s x the sample's std per feature   s .05  s .10  s .20
scaling      gain exp(±U(0, a)) and offset ±U(0, b) x std, drawn    a .10  a .25  a .50
             per sample and feature; a forecast's truth y gets the  b .05  b .10  b .25
             same gain and offset (the whole series moved)
missing      runs of time steps set to 0 (what a pipeline fills      .05    .15    .30
             gaps with), this share of the steps
segmentation (images and masks alike)
-----------------------------------------------------------------------------------------
brightness_contrast, blur, noise: subkit.shift's image shifts on the images; masks kept
flip         mirrored images AND masks: left-right, up-down, both   lr     ud     both
translate    images and masks moved by up to d pixels each way;     d 4    d 8    d 16
             the uncovered border is 0 in the image and the first
             ignored class (else class 0) in the mask
============ ===================================================== ====== ====== ======

The families themselves are the kinds' (``subkit.kinds.series``,
``subkit.kinds.segmentation``: ``Kind.shift_families``, ``Kind.apply_shift``); this module
generates the sets, runs them through the child and scores them. Random draws are seeded
by ``(seed, crc32(name))``, shared by the severities of a family.
The result has the shape of ``subkit.shift.collect``'s (the terminal prints it the same
way); for a metric where lower is better (MSE) the "drop" is negative when it worsens.
"""

from __future__ import annotations

import shutil
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from subkit.profile import Profile

class KindSuiteError(ValueError):
    pass


def families(prof: Profile) -> dict:
    """The shift families of the profile's kind (``subkit.kinds``)."""
    return prof.kind_spec.shift_families


def parse(prof: Profile, spec: str | None) -> list[tuple[str, int]]:
    """(family, severity) pairs: ``default`` (all, 1-3), ``quick`` (all at 2), or a list."""
    fams = families(prof)
    spec = (spec or "default").strip()
    if spec in ("default", "quick"):
        sevs = (1, 2, 3) if spec == "default" else (2,)
        return [(f, s) for f in fams for s in sevs]
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, sev = part.partition(":")
        if name not in fams:
            raise KindSuiteError(f"unknown shift {name!r} for a {prof.kind} profile; "
                                 f"its shifts: {', '.join(fams)}; suites: default, quick")
        if sev and sev not in ("1", "2", "3"):
            raise KindSuiteError(f"severity of {name} must be 1, 2 or 3, not {sev!r}")
        out += [(name, int(sev))] if sev else [(name, s) for s in (1, 2, 3)]
    if not out:
        raise KindSuiteError("empty shift suite")
    return out


def apply(prof: Profile, name: str, sev: int, X: np.ndarray, truth: np.ndarray | None, *,
          seed: int = 0):
    """(X, truth) under family ``name`` at ``sev``; the truth changes where the shift
    moves it (flips, translations, a forecast's scaling)."""
    from subkit import shift

    rng = np.random.default_rng([int(seed), zlib.crc32(name.encode())])
    return prof.kind_spec.apply_shift(name, sev, X, truth, rng, prof, seed, shift.apply)


# -- running and scoring -------------------------------------------------------------------
@dataclass
class KindPlan:
    """The shifted sets on disk, generated up front (``subkit.shift.run_with_plan`` runs
    them through the child like its own plans)."""

    suite: str
    seed: int
    folder: Path
    entries: list[dict] = field(default_factory=list)  # {key, name, severity, path, truth}
    generate_s: float = 0.0
    generated: bool = True

    def __len__(self) -> int:
        return len(self.entries)

    def child_args(self) -> list[str]:
        return [a for e in self.entries for a in ("--extra-input", f"{e['key']}={e['path']}")]

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def make_plan(prof: Profile, X, truth, spec: str | None, seed: int, folder: Path) -> KindPlan:
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    plan = KindPlan(suite=spec or "default", seed=int(seed), folder=folder)
    for name, sev in parse(prof, spec):
        Xs, ts = apply(prof, name, sev, X, truth, seed=seed)
        path = (folder / f"{name}-{sev}.npy").resolve()
        np.save(path, np.ascontiguousarray(Xs), allow_pickle=False)
        plan.entries.append({"key": f"{name}-{sev}", "name": name, "severity": sev,
                             "path": str(path), "truth": ts})
    plan.generate_s = time.perf_counter() - t0
    return plan


def collect(plan: KindPlan, status: dict, output_dir: Path, prof: Profile, phase, clean) -> dict:
    """The shift dict of a run (``subkit.shift.collect``'s shape)."""
    from subkit.grader import scoring

    extra = status.get("extra", {}) or {}
    rows: dict[str, dict] = {}
    scores, failures, predict_s = [], [], 0.0
    titles = prof.kind_spec.shift_titles
    for e in plan.entries:
        row = rows.setdefault(e["name"], {"name": e["name"], "title": titles[e["name"]],
                                          "severity": [], "scores": [], "predict_s": []})
        info, value, err = extra.get(e["key"], {}), None, None
        if not info.get("ok"):
            err = f"{info.get('error_type', 'not predicted')}: {info.get('error', '')}"[:300]
        else:
            try:
                pred = np.load(Path(output_dir) / f"predictions_{e['key']}.npy", allow_pickle=False)
                value = float(scoring.evaluate(prof.task_spec(phase), pred,
                                               e["truth"]).scores[prof.metric])
            except scoring.PredictionError as exc:
                err = exc.message
        row["severity"].append(e["severity"])
        row["scores"].append(value)
        row["predict_s"].append(info.get("predict_s"))
        predict_s += info.get("predict_s") or 0.0
        if value is not None:
            scores.append(value)
        if err:
            failures.append({"key": e["key"], "error": err})
    for row in rows.values():
        ok = [s for s in row["scores"] if s is not None]
        row["mean"] = float(np.mean(ok)) if ok else None
        row["drop"] = clean - row["mean"] if ok and clean is not None else None
    shifted = float(np.mean(scores)) if scores else None
    worst = sorted((r for r in rows.values() if r["mean"] is not None), key=lambda r: r["mean"],
                   reverse=not prof.higher_is_better)
    return {"suite": plan.suite, "seed": plan.seed, "metric": prof.metric, "kind": prof.kind,
            "higher_is_better": prof.higher_is_better, "n": int(len(plan.entries[0]["truth"]))
            if plan.entries else 0, "clean_score": clean, "shifted_score": shifted,
            "drop": clean - shifted if shifted is not None and clean is not None else None,
            "n_shifted_sets": len(plan.entries), "n_scored": len(scores),
            "shifts": list(rows.values()), "worst": [r["name"] for r in worst[:3]],
            "skipped": [], "failures": failures,
            "timings": {"generate_s": plan.generate_s, "predict_s": predict_s}}
