"""`subkit tta tune [ZIP]`: which test-time views are worth their forward pass on the shift
the leaderboard will apply, and how to merge them.

One sandboxed child, in the grader's versions, through the run lifecycle (a run folder,
run.json, a ledger row, like score-local): the zip's model runs through subkit's wrapper
(``subkit.tta.child_views``) on the local test set and on each set of the profile's
default shift suite, and returns every candidate view's class probabilities, one pass of
the model per view per image. The probabilities stay in the run folder (``output/``);
every subset of views and every merge is then scored from them (``subkit.tta.search``):
chosen on one half of the test images, reported on the other. Only images enter the
sandbox: the labels, the plan of the shifted sets and the halves stay with subkit.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from subkit import ui
from subkit.errors import InputError, SubkitError, UsageError
from subkit.grader import lifecycle, safezip
from subkit.grader.lifecycle import RunSpec
from subkit.tta import search, settings

if TYPE_CHECKING:
    from subkit.profile import Profile

WRAPPER = "_subkit_tta_views.py"
WRAPPER_CLASS = "TuneModel"
# the template's vocabulary (templates/model.py _VIEWS), in its order
VIEWS = ("identity", "flip_lr", "flip_ud", "rot90", "rot180", "rot270", "transpose",
         "transverse", "zoom", "contrast")
SHAPE_CHANGING = ("rot90", "rot270", "transpose", "transverse")  # on non-square images
DEFAULT_VIEWS = ("identity", "flip_lr", "flip_ud", "rot90", "rot270")  # the template's
DEFAULT_MERGE = "mean"
MAX_CANDIDATES = 10  # 1023 subsets x 4 merges: seconds of numpy


@dataclass(frozen=True)
class TuneOptions:
    zip: Path | None = None  # None: the newest zip of the workspace
    data: Path | None = None  # None: subkit.toml's local test set
    views: tuple[str, ...] | None = None  # None: every view of the template's vocabulary
    shift: str | None = None  # None: the profile's default suite
    seed: int = 0
    time_limit: float | None = None  # per candidate view, as the grader's; None: profile's
    env: str | None = None
    apply: bool = False
    isolate_network: bool = True
    progress: bool = True


@dataclass
class TuneRecord:
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


def _refuse_kind(prof: Profile) -> None:
    prof.kind_spec.refuse_tta_tune(prof)


def parse_views(views: tuple[str, ...] | None, square: bool) -> tuple[list[str], list[str]]:
    """(candidate views, warnings). Unknown or repeated names are the user's error."""
    notes: list[str] = []
    if not views:
        chosen = list(VIEWS)
        if not square:
            chosen = [v for v in chosen if v not in SHAPE_CHANGING]
            notes.append("the images are not square: the rotations and transposes are left "
                         "out (the template drops them too)")
        return chosen, notes
    names = [v.strip() for part in views for v in part.split(",") if v.strip()]
    unknown = [v for v in names if v not in VIEWS]
    if unknown:
        raise UsageError(f"unknown view(s) {', '.join(map(repr, unknown))}",
                         hint="views: " + ", ".join(VIEWS))
    if len(set(names)) != len(names):
        raise UsageError("a view is named twice in --views", hint="name each view once")
    if not square and any(v in SHAPE_CHANGING for v in names):
        raise UsageError("rotations by 90 degrees and transposes change a non-square image's "
                         "shape", hint="drop " + ", ".join(v for v in names
                                                             if v in SHAPE_CHANGING))
    if len(names) > MAX_CANDIDATES:
        raise UsageError(f"at most {MAX_CANDIDATES} candidate views", hint="name fewer")
    return names, notes


def _default_suite(prof: Profile) -> str:
    value = prof.data.get("shift")
    sh = value if isinstance(value, dict) else {}
    for key in ("default_suite", "suite", "default"):
        if isinstance(sh.get(key), str) and sh[key]:
            return sh[key]
    return "default"


def _wrapped(prof: Profile):
    """The profile with subkit's wrapper as the entry (everything else the profile's)."""
    sub = {**prof.data["submission"], "entry_file": WRAPPER, "class_name": WRAPPER_CLASS,
           "init_args": [], "predict_method": "predict"}
    sub.pop("predict_extra_inputs", None)
    return dataclasses.replace(prof, data={**prof.data, "submission": sub})


def _wrapper_env(prof: Profile, views: list[str]) -> dict[str, str]:
    cfg = {"module": Path(prof.entry_file).stem, "class_name": prof.class_name,
           "init_args": prof.init_args, "method": prof.predict_method, "views": views,
           "n_classes": prof.n_classes}
    return {"SUBKIT_TTA": "0", "SUBKIT_TTA_TUNE": json.dumps(cfg)}


def _load(path: Path, cap: int) -> np.ndarray | None:
    from subkit.grader import untrusted

    data = untrusted.read_untrusted(path, cap)
    if data is None:
        return None
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception:  # whatever the child wrote, it is not an array
        return None


def _check_probs(p: Any, n_views: int, n: int, n_classes: int, what: str) -> np.ndarray:
    if not isinstance(p, np.ndarray) or p.dtype.kind not in "fiu" or p.ndim != 3:
        raise SubkitError(f"the model's class probabilities on {what} are not an array of "
                          "(views, images, classes)",
                          hint="predict_proba(X) must return (n, n_classes) probabilities")
    if p.shape[:2] != (n_views, n) or p.shape[2] != n_classes:
        raise SubkitError(f"predict_proba on {what} returned {p.shape[1:]} per view, expected "
                          f"({n}, {n_classes})",
                          hint="predict_proba(X) must return one row of n_classes per image")
    p = p.astype(np.float32)
    if not np.isfinite(p).all():
        raise SubkitError(f"predict_proba returned NaN/inf on {what}",
                          hint="check the model's input scaling and the weights")
    return p


def tune(opts: TuneOptions, prof: Profile) -> dict:
    """Tune; returns the record (run.json's), with ``applied`` when ``--apply`` was asked."""
    from subkit import shift as shiftmod
    from subkit.commands.score_local import local_test, zip_or_newest
    from subkit.data import io as data_io
    from subkit.grader.run import env_warnings, prepare_input, python_for
    from subkit.recovery import recover

    _refuse_kind(prof)
    parse_views(opts.views, True)  # the names first: a typo is told before anything else
    zip_path = safezip.require_zip(zip_or_newest(prof, opts.zip))
    suite = opts.shift or _default_suite(prof)
    try:
        shiftmod.parse_suite(suite)
    except shiftmod.SuiteError as exc:
        raise InputError(str(exc), hint="e.g. --shift default, quick, blur:3,noise") from None
    model_py = (prof.workspace or Path.cwd()) / prof.entry_file
    notes = recover(prof)
    data_path = local_test(prof, opts.data)
    ds = data_io.load(data_path, prof, require_labels=True)
    X, warns = prepare_input(ds.images, prof)
    if X.ndim not in (3, 4):
        raise InputError(f"tta tune needs a test set of images (n, h, w[, c]); this one is "
                         f"shaped {X.shape}", hint="tta tune is for image classification")
    views, vnotes = parse_views(opts.views, X.shape[1] == X.shape[2])
    y = np.asarray(ds.labels).reshape(-1).astype(np.int64)
    try:
        half = search.stratified_halves(y, opts.seed)
    except search.SplitError as exc:
        short = ", ".join(f"{prof.class_names[c] if c < prof.n_classes else c} ({k})"
                          for c, k in exc.args[0][:6])
        raise InputError(f"the test set is too small to split into a choose half and a report "
                         f"half: each class needs at least 2 images in each half, and {short} "
                         "have fewer than 4", hint="tune on a larger local test set (`subkit "
                         "data split --test-size ...`) or pass --data FILE") from None
    limit = prof.time_limit(opts.time_limit)
    python, env_desc = python_for(prof, opts.env, progress=opts.progress)
    warns = env_warnings(env_desc) + notes + warns + vnotes
    spec = RunSpec(prof=_wrapped(prof), zip=zip_path, command="tta-tune",
                   stem=zip_path.stem + "-tta", time_limit=limit * len(views), python=python,
                   env=env_desc, data=Path(data_path), isolate_network=opts.isolate_network,
                   progress=opts.progress, what={"views": views, "suite": suite})
    t0 = time.monotonic()
    with lifecycle.conduct(spec) as run:
        record = _run(run, prof, X, y, half, views, suite, opts.seed, limit, warns)
        record.update(zip=str(zip_path), data=str(data_path), env=env_desc,
                      total_s=time.monotonic() - t0)
        run.done(TuneRecord(record), _ledger_row(record))
        if not record["ok"]:
            raise SubkitError(record["failure"]["message"], hint=record["failure"]["hint"])
        try:
            from subkit.report.tta import write_report

            write_report(run.path, record)
        except Exception as exc:  # the report must never cost the tuning
            record["warnings"].append(f"report.html could not be written: "
                                      f"{type(exc).__name__}: {exc}")
    if run.warning:
        record["warnings"].append(run.warning)
    if opts.apply:
        record["applied"] = _apply(model_py, record, zip_path, prof)
    return record


def _apply(model_py: Path, record: dict, zip_path: Path, prof: Profile) -> dict:
    """--apply: the chosen views and merge into the workspace's model.py, or why not (the
    CLI turns a refusal into the error, after the table)."""
    point = record["chosen"]
    try:
        done = settings.apply(model_py, point["views"], point["merge"])
    except SubkitError as exc:
        return {"ok": False, "path": str(model_py), "error": exc.message, "hint": exc.hint}
    done["ok"] = True
    zipped = _zip_model_text(zip_path, prof.entry_file)
    if zipped is not None and settings.read(zipped) is None:
        done["warning"] = (f"the zip's {prof.entry_file} has no TTA settings: the workspace's "
                           f"{model_py.name} is not the model that was tuned")
    return done


def _zip_model_text(zip_path: Path, name: str) -> str | None:
    import zipfile

    try:
        with zipfile.ZipFile(zip_path) as z:
            info = z.getinfo(name)
            if info.file_size > 1 << 20:
                return None
            return z.read(info).decode("utf-8", errors="replace")
    except (KeyError, OSError, zipfile.BadZipFile):
        return None


def _run(run: lifecycle.Run, prof: Profile, X: np.ndarray, y: np.ndarray, half: np.ndarray,
         views: list[str], suite: str, seed: int, limit: float, warns: list[str]) -> dict:
    """The child, its probabilities, the search: the record."""
    from subkit import shift as shiftmod
    from subkit.grader.run import _predictions_cap
    from subkit.ledger import sha256_file

    original = (run.submission / prof.entry_file)
    model_text = original.read_text("utf-8", errors="replace") if original.is_file() else ""
    current = settings.read(model_text)
    if "SUBKIT_TTA" not in model_text:
        warns.append(f"the zip's {prof.entry_file} has no SUBKIT_TTA switch: each view's pass "
                     "also runs whatever test-time augmentation the model does itself")
    wrapper = Path(__file__).resolve().parent.parent / "tta" / "child_views.py"
    (run.submission / WRAPPER).write_text(wrapper.read_text("utf-8"), "utf-8")
    plan = shiftmod.make_plan(X, suite, seed, run.path / "input_data" / "shifts",
                              work=run.path / "shift_work", value_range=prof.input_range,
                              n_classes=prof.n_classes)
    base = {"kind": "tta-tune", "ok": False, "metric": prof.metric, "suite": suite,
            "hypothesis": shiftmod.hypothesis(suite), "seed": seed, "n": int(len(y)),
            "zip_sha256": sha256_file(run.spec.zip), "run_dir": str(run.path),
            "candidates": views, "time_limit_s": limit, "warnings": warns}
    try:
        cr = run.child(X, plan=plan, labels=y, extra_env=_wrapper_env(prof, views),
                       label=f"{len(views)} views x (clean + {len(plan)} shifted sets)")
        fail = _child_failure(cr, limit, len(views))
        if fail is not None:
            return {**base, "failure": fail, "sandbox": cr.child.sandbox}
        cap = _predictions_cap(X) * max(1, len(views))
        probs = [_check_probs(cr.predictions, len(views), len(y), prof.n_classes,
                              "the clean test set")]
        sets: list[str] = ["clean"]
        labels = [y]
        extra = cr.status.get("extra") or {}
        skipped = []
        for e in plan.entries:
            info = extra.get(e["key"]) or {}
            p = _load(run.path / "output" / f"predictions_{e['key']}.npy", cap) \
                if info.get("ok") else None
            if p is None:
                why = plan.failure(e) or info.get("error") or "not predicted"
                skipped.append({"key": e["key"], "error": str(why)[:300]})
                continue
            probs.append(_check_probs(p, len(views), len(y), prof.n_classes, e["key"]))
            sets.append(e["key"])
            labels.append(np.asarray(plan.labels_for(e, y)).reshape(-1).astype(np.int64))
    finally:
        plan.cleanup()
    if len(sets) == 1:
        return {**base, "sandbox": cr.child.sandbox, "failure": {
            "stage": "shift", "message": "no shifted set was predicted"
            + (f" (first: {skipped[0]['key']}: {skipped[0]['error']})" if skipped else ""),
            "hint": "see the run's logs; try --shift quick"}}
    if skipped:
        warns.append(f"{len(skipped)} of {len(plan)} shifted sets were not scored (first: "
                     f"{skipped[0]['key']}: {skipped[0]['error']})")
    t_search = time.monotonic()
    out = _search(np.concatenate(probs, axis=1), labels, half, views, prof, seed, current)
    timings = cr.status.get("timings") or {}
    extra_s = sum(float((i or {}).get("predict_s") or 0.0) for i in extra.values())
    predict_s = float(timings.get("predict_s") or 0.0)
    out["timings"] = {"child_s": cr.child.elapsed_s if hasattr(cr.child, "elapsed_s") else None,
                      "clean_s": cr.clean_s, "predict_s": predict_s, "shift_predict_s": extra_s,
                      "per_view_s": (predict_s + extra_s) / len(views),
                      "one_view_clean_s": _one_view_s(cr, len(views)),
                      "generate_s": plan.generate_s, "search_s": time.monotonic() - t_search}
    return {**base, **out, "ok": True, "sets": sets, "skipped": skipped,
            "model_settings": current, "sandbox": cr.child.sandbox,
            "versions": cr.status.get("versions")}


def _one_view_s(cr, n_views: int) -> float | None:
    """What the grader's clock would read for one view: the child's start (import, load)
    plus one view's share of the clean predict."""
    t = cr.status.get("timings") or {}
    if cr.clean_s is None or t.get("predict_s") is None:
        return None
    predict_s = float(t["predict_s"])
    return max(0.0, float(cr.clean_s) - predict_s) + predict_s / n_views


def _child_failure(cr, limit: float, n_views: int) -> dict | None:
    one = _one_view_s(cr, n_views)
    over = one is not None and one > limit
    if cr.child.timed_out or over or (cr.failure is not None and "time limit"
                                      in cr.failure.message):
        seen = f" (one view: {one:.1f} s)" if one is not None else ""
        return {"stage": "predict", "message": f"one candidate view does not meet the time "
                f"limit of {limit:g} s on the clean test set{seen}: there is no view to choose",
                "hint": "use a smaller or faster model, or --time-limit S if the grader's "
                        "limit is larger"}
    if cr.failure is not None:
        if cr.failure.tail:
            ui.progress("--- the submission's traceback/log tail ---")
            ui.progress("\n".join("    " + line for line in cr.failure.tail.splitlines()[-12:]))
        return {"stage": cr.failure.stage, "message": cr.failure.message,
                "hint": cr.failure.hint}
    return None


def _point(p: dict, views: list[str], noise: float | None = None) -> dict:
    names = [views[i] for i in p["views"]]
    d = {"n_views": len(names), "views": names, "merge": p["merge"],
         "choose": {"clean": p["clean"][0], "shifted": p["shifted"][0]},
         "report": {"clean": p["clean"][1], "shifted": p["shifted"][1]}}
    if noise is not None:
        d["noise"] = noise
    return d


def _search(probs: np.ndarray, labels: list[np.ndarray], half: np.ndarray, views: list[str],
            prof: Profile, seed: int, current: dict | None) -> dict:
    n = len(half)
    y = np.concatenate(labels)
    sets = len(labels)
    image = np.tile(np.arange(n), sets)
    group = np.repeat(np.arange(sets), n) * 2 + half[image]
    scorer = search.Scorer(labels=y, group=group, n_sets=sets, n_classes=prof.n_classes,
                           metric=prof.metric, image=image, half=half)
    points = search.search(probs, scorer)
    hib = prof.higher_is_better
    fr = search.front(points, hib)
    preds = [search.labels_of(probs, p["views"], p["merge"]) for p in fr]
    boot = scorer.bootstrap(preds, seed)
    chosen, best, noise = search.choose(fr, boot, hib)
    sd = boot.std(0)
    front = [{**_point(p, views, noise[i]), "sd": float(sd[i])} for i, p in enumerate(fr)]
    index = {p["views"] + (p["merge"],): p for p in points}

    def ref(names: list[str], merge: str) -> dict | None:
        if not names or any(v not in views for v in names):
            return None
        sub = tuple(sorted(views.index(v) for v in names))
        p = index.get(sub + ((merge if len(sub) > 1 else "mean"),))
        return None if p is None else {**_point(p, views), "views": list(names)}

    refs = {"no_tta": ref(["identity"], "mean"),
            "template_default": ref(list(DEFAULT_VIEWS), DEFAULT_MERGE)}
    if current is not None:
        refs["model_py"] = ref(current["views"] if current["tta"] else ["identity"],
                               current["merge"])
    per_view = [_point(p, views) for p in points if len(p["views"]) == 1]
    return {"front": front, "chosen": front[chosen], "chosen_index": chosen, "best_index": best,
            "references": refs, "per_view": per_view, "n_candidates_scored": len(points),
            "n_choose": int((half == 0).sum()), "n_report": int((half == 1).sum()),
            "cost": {"views": front[chosen]["n_views"],
                     "passes_per_image": front[chosen]["n_views"]}}


def _ledger_row(record: dict) -> dict | None:
    from subkit.ledger import tta_tune_record

    if not record.get("ok"):
        return None
    c = record["chosen"]
    return tta_tune_record(zip=Path(record["zip"]).name, zip_sha256=record["zip_sha256"],
                           run_dir=record["run_dir"], metric=record["metric"],
                           views=c["views"], merge=c["merge"],
                           shifted_score=c["report"]["shifted"],
                           clean_score=c["report"]["clean"], cost=c["n_views"],
                           suite=record["suite"], seed=record["seed"],
                           candidates=record["candidates"])
