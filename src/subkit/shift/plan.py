"""Running a submission on a shift suite: the plan of shifted sets, the generator process
that writes them while the child predicts, the child's run, and the scores per set."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from subkit.fsutil import atomic_open
from subkit.shift.families import FAMILIES, SuiteError, describe, hypothesis, key, parse_suite

if TYPE_CHECKING:
    from subkit.profile import Profile

SAMPLES = 3  # images per shifted set kept for the report
Array = np.ndarray


def _read_json(p: Path) -> dict:
    try:
        return json.loads(Path(p).read_text())
    except (OSError, ValueError):
        return {}


def _worker_env() -> dict:
    """The generator's environment: this interpreter's subkit first on the path, Keras on
    TensorFlow, on the CPU (GPU kernels are not all deterministic), quiet."""
    import subkit

    env = dict(os.environ)
    src = str(Path(subkit.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="3")
    return env


# What a child reads in place of a set that could not be made; the reason stays private.
NOT_MADE = "the shifted set could not be made"


@dataclass
class Plan:
    """The (family, severity) sets of a suite and where their .npy files go.

    ``generate`` runs the generator process, which writes them one by one (each to a
    temporary name, then renamed), so a child started at the same time predicts the first
    while the next are written. A set that could not be made gets ``PATH.failed``.

    Two folders: ``folder`` holds the shifted images and nothing else (it is bound into the
    sandbox, read-only); ``work`` holds what only subkit reads: the source images, the
    labels, the new labels of the families that mix images, the plan, the generator's log
    and record, the reason a set failed. ``work`` is never inside a folder bound into a run.
    """

    suite: str
    seed: int
    entries: list[dict]  # {key, name, severity, path, labels_path, why_path}
    folder: Path
    work: Path
    value_range: tuple[float, float]
    n_classes: int
    skipped: list[str] = field(default_factory=list)
    generate_s: float = 0.0
    generated: bool = False
    error: str | None = None
    versions: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.entries)

    def child_args(self) -> list[str]:
        args: list[str] = []
        for e in self.entries:
            args += ["--extra-input", f"{e['key']}={e['path']}"]
        return args

    def _write_inputs(self, X: Array, labels: Array | None) -> Path:
        np.save(self.work / "source.npy", np.ascontiguousarray(X), allow_pickle=False)
        spec = {"seed": self.seed, "value_range": list(self.value_range),
                "n_classes": self.n_classes, "source": str(self.work / "source.npy"),
                "labels": None, "entries": self.entries}
        if labels is not None:
            np.save(self.work / "labels.npy", np.asarray(labels).reshape(-1).astype(np.int64))
            spec["labels"] = str(self.work / "labels.npy")
        p = self.work / "plan.json"
        p.write_text(json.dumps(spec))
        return p

    def generate(self, X: Array, labels: Array | None,
                 stop: threading.Event | None = None) -> None:
        """Run the generator process to the end (or until ``stop`` is set: it is killed and
        the sets it did not write are marked failed)."""
        if self.generated:
            return
        t0 = time.perf_counter()
        log = self.work / "generate.log"
        try:
            plan_json = self._write_inputs(X, labels)
            with open(log, "wb") as err:
                proc = subprocess.Popen([sys.executable, "-m", "subkit.shift.generate",
                                         str(plan_json)], env=_worker_env(),
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=err, start_new_session=True)
            while True:
                try:
                    proc.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    if stop is not None and stop.is_set() and not self._all_written():
                        proc.kill()
                        proc.wait()
                        self._fail_missing("stopped: the child ended")
                        return
            record = _read_json(self.work / "generate.json")
            self.versions = record.get("versions") or {}
            if proc.returncode != 0 or not record:
                tail = log.read_text("utf-8", errors="replace").strip().splitlines()[-3:]
                self.error = (f"the generator process ended with exit code {proc.returncode}"
                              + (f": {' '.join(tail)[:400]}" if tail else ""))
                self._fail_missing(self.error)
            elif len(record.get("errors") or {}) == len(self.entries) and self.entries:
                self.error = next(iter(record["errors"].values()))
            self.generated = True
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self._fail_missing(self.error)
        finally:
            self.generate_s += time.perf_counter() - t0

    def _all_written(self) -> bool:
        """Every set is written or marked failed: the generator only has its record left to
        write."""
        return all(Path(e["path"]).exists() or Path(e["path"] + ".failed").exists()
                   for e in self.entries)

    def _fail_missing(self, why: str) -> None:
        for e in self.entries:
            if not Path(e["path"]).exists() and not Path(e["path"] + ".failed").exists():
                mark_failed(e, why)

    def failure(self, e: dict) -> str | None:
        """Why set ``e`` could not be made (subkit's own words), or None."""
        try:
            return Path(e["why_path"]).read_text("utf-8", errors="replace")
        except OSError:
            return None

    def labels_for(self, e: dict, y_true: Array) -> Array:
        """The labels of a shifted set: its own when the family mixes images."""
        p = Path(e["labels_path"])
        return np.load(p, allow_pickle=False) if p.is_file() else y_true

    def samples(self, index: Array | None = None) -> dict:
        """The first few images of every set written, for the report."""
        out = {}
        for e in self.entries:
            p = Path(e["path"])
            if p.is_file():
                mm = np.load(p, mmap_mode="r", allow_pickle=False)
                idx = np.arange(min(SAMPLES, len(mm))) if index is None else index
                out[e["key"]] = np.array(mm[idx])
        return out

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)


def mark_failed(e: dict, why: str) -> None:
    """Set ``e`` could not be made: the child's folder gets a marker that says only that
    (it stops waiting for the set), the reason goes to the private work folder."""
    Path(e["why_path"]).write_text(why)
    Path(e["path"] + ".failed").write_text(NOT_MADE)


def make_plan(X: Array, spec: str | None, seed: int, folder: Path, *,
              work: Path | None = None, value_range: tuple[float, float] = (0, 255),
              n_classes: int = 0) -> Plan:
    """The suite's sets for ``X`` (colour-only families are skipped on other images).

    ``folder``: where the shifted images go (the child reads them); ``work``: subkit's
    private folder for the rest (a new temporary folder when not given), which must not
    be inside any folder a run binds into its sandbox."""
    if X.ndim not in (3, 4):
        raise SuiteError(f"the shift suite needs images (n, h, w[, c]), not shape {X.shape}")
    pairs = parse_suite(spec)
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if work is None:
        work = Path(tempfile.mkdtemp(prefix="subkit-shift-"))
    work = Path(work).resolve()
    if work == folder or folder in work.parents:
        raise ValueError(f"the plan's private folder {work} is inside its images' {folder}")
    work.mkdir(parents=True, exist_ok=True)
    channels = 1 if X.ndim == 3 else X.shape[-1]
    entries, skipped = [], []
    for name, sev in pairs:
        k = key(name, sev)
        if FAMILIES[name].rgb_only and channels != 3:
            skipped.append(k)
            continue
        entries.append({"key": k, "name": name, "severity": sev,
                        "path": str(folder / f"{k}.npy"),
                        "labels_path": str(work / f"{k}.labels.npy"),
                        "why_path": str(work / f"{k}.failed")})
    return Plan(suite=spec or "default", seed=int(seed), entries=entries, folder=folder,
                work=work,
                value_range=(float(value_range[0]), float(value_range[1])),
                n_classes=int(n_classes), skipped=skipped)


def prepare(X: Array, labels: Array | None, spec: str | None, seed: int, folder: Path, *,
            work: Path | None = None, value_range: tuple[float, float] = (0, 255),
            n_classes: int = 0) -> Plan:
    """``make_plan`` and generate every set now (benchmarks and tests)."""
    plan = make_plan(X, spec, seed, folder, work=work, value_range=value_range,
                     n_classes=n_classes)
    plan.generate(X, labels)
    if plan.error:
        raise RuntimeError(f"generating the shifted sets failed: {plan.error}")
    return plan


def collect(plan: Plan, status: dict, output_dir: Path, y_true: Array, prof: Profile,
            clean_score: float | None) -> dict:
    """The shift dict of a run: metric per (family, severity), mean, drop, timings."""
    from subkit.grader import scoring

    extra = status.get("extra", {}) or {}
    rows: dict[str, dict] = {}
    by_key: dict[str, float | None] = {}
    failures = []
    predict_s = 0.0
    for e in plan.entries:
        info = extra.get(e["key"], {})
        row = rows.setdefault(e["name"], {**describe(e["name"]), "severity": [], "scores": [],
                                          "predict_s": []})
        value, err = None, None
        if not info:
            err = "not predicted (the child stopped before this shift)"
        elif not info.get("ok"):
            why = plan.failure(e) if info.get("error_type") == "MissingInput" else None
            err = (f"not made: {why}" if why else
                   f"{info.get('error_type', 'error')}: {info.get('error', '')}")[:300]
        else:
            p = Path(output_dir) / f"predictions_{e['key']}.npy"
            y = plan.labels_for(e, y_true)
            try:
                labels, _ = scoring.validate_predictions(np.load(p, allow_pickle=False),
                                                         len(y), prof.n_classes)
                value = float(scoring.metrics(y, labels, prof.class_names)[prof.metric])
            except scoring.PredictionError as exc:
                err = exc.message
            except (OSError, ValueError) as exc:
                err = f"predictions unreadable: {exc}"
        row["severity"].append(e["severity"])
        row["scores"].append(value)
        row["predict_s"].append(info.get("predict_s"))
        predict_s += info.get("predict_s") or 0.0
        by_key[e["key"]] = value
        if err:
            failures.append({"key": e["key"], "error": err})
    for row in rows.values():
        ok = [s for s in row["scores"] if s is not None]
        row["mean"] = float(np.mean(ok)) if ok else None
        row["drop"] = (clean_score - row["mean"]) if (ok and clean_score is not None) else None
    scores = [v for v in by_key.values() if v is not None]
    shifted = float(np.mean(scores)) if scores else None
    ranked = sorted((r for r in rows.values() if r["mean"] is not None), key=lambda r: r["mean"])
    return {
        "suite": plan.suite, "hypothesis": hypothesis(plan.suite), "seed": plan.seed,
        "metric": prof.metric, "n": int(len(y_true)),
        "clean_score": clean_score, "shifted_score": shifted,
        "drop": (clean_score - shifted if shifted is not None and clean_score is not None
                 else None),
        "n_shifted_sets": len(plan.entries), "n_scored": len(scores),
        "shifts": list(rows.values()), "scores": by_key,
        "worst": [r["name"] for r in ranked[:3]],
        "skipped": plan.skipped, "failures": failures,
        "generator": plan.versions,
        "timings": {"generate_s": plan.generate_s, "predict_s": predict_s},
    }


def tta_available(submission_dir: Path, prof: Profile) -> tuple[bool, str]:
    """Whether the submission's model.py has the template's SUBKIT_TTA switch, TTA on."""
    p = Path(submission_dir) / prof.entry_file
    try:
        text = p.read_text("utf-8", errors="replace")
    except OSError:
        return False, f"{prof.entry_file} not readable"
    if "SUBKIT_TTA" not in text:
        return False, (f"{prof.entry_file} has no SUBKIT_TTA switch (subkit's template has one): "
                       "TTA comparison is not available")
    m = re.search(r"^TTA\s*=\s*(True|False)\b", text, re.M)
    if m and m.group(1) == "False":
        return False, f"TTA is off in {prof.entry_file} (TTA = False): nothing to compare"
    return True, ""


def tta_compare(submission_dir: Path, y_true: Array, prof: Profile, plan: Plan | None, *,
                with_tta: dict, run_child: Callable[[], Any], output_dir: Path) -> dict:
    """Run the submission again with SUBKIT_TTA=0 and compare with the run ``with_tta``.

    ``with_tta``: {"clean": score, "shift": shift dict or None, "predict_s": seconds};
    ``run_child``: runs the second child (the run's lifecycle gives it the same sandbox,
    interpreter and limits, SUBKIT_TTA=0 and a folder of its own) and returns its ChildRun;
    ``output_dir``: that child's output folder.
    """
    from subkit.grader import scoring

    ok, why = tta_available(submission_dir, prof)
    if not ok:
        return {"available": False, "reason": why}
    cr = run_child()
    if cr.failure is not None:
        return {"available": True, "ok": False,
                "reason": f"the run without TTA failed: {cr.failure.message}"}
    try:
        labels, _ = scoring.validate_predictions(cr.predictions, len(y_true), prof.n_classes)
    except scoring.PredictionError as exc:
        return {"available": True, "ok": False,
                "reason": f"the run without TTA failed: {exc.message}"}
    clean_off = float(scoring.metrics(y_true, labels, prof.class_names)[prof.metric])
    out: dict[str, Any] = {
        "available": True, "ok": True, "metric": prof.metric,
        "clean": {"tta": with_tta.get("clean"), "no_tta": clean_off},
        "predict_s": {"tta": with_tta.get("predict_s"),
                      "no_tta": (cr.status.get("timings") or {}).get("predict_s")},
        "shifted": None, "shifts": []}
    if plan is not None and with_tta.get("shift"):
        off = collect(plan, cr.status, Path(output_dir), y_true, prof, clean_off)
        on = with_tta["shift"]
        out["shifted"] = {"tta": on.get("shifted_score"), "no_tta": off.get("shifted_score")}
        off_rows = {r["name"]: r for r in off["shifts"]}
        for r in on["shifts"]:
            o = off_rows.get(r["name"], {})
            out["shifts"].append({"name": r["name"], "tta": r.get("mean"), "no_tta": o.get("mean")})
    return out


def save_samples(plan: Plan, path: Path) -> None:
    samples = plan.samples()
    if samples:
        with atomic_open(path, "wb") as fh:
            np.savez_compressed(fh, **samples)
