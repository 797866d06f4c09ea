"""`subkit build` and `subkit check`: a zip the grader accepts the first time.

Build: inspect the weights, strip the optimizer state, check model.py statically, compare
the Keras version that saved the weights with the grader's, write the candidate zip under
a temporary name, smoke-test it in a child process whose working directory is a fresh
unzip of it (``Model()`` then ``predict`` on a small batch shaped as the profile says),
and only then give it its final name, next to a manifest. Check: the same checks on any
existing zip.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from subkit import __version__
from subkit.errors import CheckFailed, InputError, SubkitError, UsageError
from subkit.modelcheck import check_source, init_call, predict_call
from subkit.weights import WeightsInfo, inspect, is_weights_name, strip_optimizer, version_tuple

Echo = Callable[[str], None] | None
SMOKE_BATCH = 4


def _say(echo: Echo, text: str) -> None:
    if echo:
        echo(text)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class CheckReport:
    zip: str
    checks: list[dict] = field(default_factory=list)  # {name, status: ok|warning|failed, message, hint}
    smoke: dict | None = None
    weights: list[dict] = field(default_factory=list)

    def add(self, name: str, status: str, message: str, hint: str = "") -> None:
        self.checks.append({"name": name, "status": status, "message": message, "hint": hint})

    @property
    def status(self) -> str:
        if any(c["status"] == "failed" for c in self.checks):
            return "FAILED"
        if any(c["status"] == "warning" for c in self.checks):
            return "PASSED with warnings"
        return "PASSED"

    def first_failure(self) -> dict | None:
        return next((c for c in self.checks if c["status"] == "failed"), None)

    def to_dict(self) -> dict[str, Any]:
        return {"zip": self.zip, "status": self.status, "checks": self.checks, "smoke": self.smoke,
                "weights": self.weights}


# -- the checks, shared by build and check ----------------------------------------------------
def static_checks(root: Path, files: list[str], prof, rep: CheckReport) -> None:
    """Check 1: model.py and the weights files it names."""
    entry = prof.entry_file
    if entry not in files:
        nested = [f for f in files if f.endswith("/" + entry)]
        rep.add("layout", "failed",
                f"{entry} is not at the zip root" + (f" (found {nested[0]})" if nested else ""),
                "zip the files themselves, not their folder: `cd folder && zip ../sub.zip model.py weights.keras`"
                if nested else f"the grader imports {entry} from the zip root")
        return
    try:
        source = (root / entry).read_text("utf-8")
    except UnicodeDecodeError:
        rep.add("model.py", "failed", f"{entry} is not UTF-8 text", "save it as UTF-8")
        return
    _required_files(files, prof, rep)
    extras = set((prof.grader.get("extras") or {}).keys())
    mp = check_source(source, prof, files=files, extra_modules=extras, filename=entry)
    for f in mp.findings:
        rep.add("model.py", "failed" if f.level == "error" else "warning", f.message, f.hint)
    if not mp.errors:
        rep.add("model.py", "ok", f"{entry} defines {init_call(prof)} and "
                f"{predict_call(prof)}; loads {', '.join(mp.weights_names) or 'no named weights file'}")
    unused = [f for f in files if is_weights_name(f) and f not in mp.weights_names
              and f.split("/")[-1] not in mp.weights_names]
    if unused and not mp.lists_directory:
        rep.add("weights", "warning", f"{', '.join(unused)} in the zip but never named in {entry}",
                "remove unused weights (they cost upload size) or load them")
    # custom objects the weights need
    for w in rep.weights:
        missing = [c for c in w.get("custom_classes", [])
                   if c.split(">")[-1] not in mp.defined_names and c.split(">")[-1] not in source]
        if missing:
            rep.add("custom objects", "failed",
                    f"{w['name']} needs custom class(es) {', '.join(missing)} that {entry} does not define",
                    f"copy their definitions into {entry} (decorated with "
                    "@keras.saving.register_keras_serializable()) or pass custom_objects to load_model")


def _required_files(files: list[str], prof, rep: CheckReport) -> None:
    """Files the platform needs besides the entry file (CodaLab's ``metadata``)."""
    for name, text in prof.required_files.items():
        if name in files:
            rep.add("required files", "ok", f"{name} is at the zip root")
            continue
        nested = [f for f in files if f.endswith("/" + name)]
        marks = " (it marks a CodaLab code submission)" if prof.platform == "codalab" else ""
        rep.add("required files", "failed",
                f"the zip has no {name!r} file at its root{marks}"
                + (f"; found {nested[0]}" if nested else ""),
                f"add a file named {name} holding {text.strip()!r} at the zip root "
                "(subkit build adds it)")


def version_check(infos: list[WeightsInfo], prof, rep: CheckReport) -> None:
    """Check 3: the Keras that saved the weights against the grader's."""
    grader = prof.grader.get("keras")
    gv = version_tuple(grader)
    for info in infos:
        v = version_tuple(info.keras_version)
        if v is None or gv is None:
            if info.kind != "h5-weights":
                rep.add("keras version", "warning", f"{info.path.name}: the saving Keras version is unknown",
                        "save with a Keras 3 model.save('weights.keras')")
            continue
        if v[:1] != gv[:1]:
            rep.add("keras version", "failed",
                    f"{info.path.name} was saved by Keras {info.keras_version}; the grader has Keras {grader}",
                    "save with the grader's major version of Keras")
        elif v > gv:
            rep.add("keras version", "warning",
                    f"{info.path.name} was saved by Keras {info.keras_version}, NEWER than the grader's "
                    f"{grader}: the grader will likely fail to load it (new config keys it does not know)",
                    f"rebuild with `subkit build --target-keras {grader}`, check with "
                    f"`subkit check --env grader`, or save it from keras=={grader}")
        else:
            rep.add("keras version", "ok", f"{info.path.name}: saved by Keras {info.keras_version} "
                                           f"(grader {grader})")


def smoke_test(zip_path: Path, prof, rep: CheckReport, *, echo: Echo, env: str = "current",
               time_limit: float | None = None, phase: str | None = None) -> None:
    """Check 4: Model() and predict on a small batch, in a child whose cwd is a fresh unzip;
    its output is validated as the profile's kind says (in ``phase``)."""
    from subkit.grader import run as grader_run
    from subkit.grader import sandbox, scoring

    _say(echo, "  smoke test: unzipping into a fresh folder, Model(), predict on "
               f"{SMOKE_BATCH} images in a child process ...")
    with tempfile.TemporaryDirectory(prefix="subkit-smoke-") as tmp:
        tmpd = Path(tmp)
        sub = tmpd / "submission"
        sandbox.safe_extract(zip_path, sub)
        X = smoke_batch(prof)
        python, env_desc = grader_run.python_for(prof, env)
        cr = grader_run.run_submission(sub, X, prof, run_dir=tmpd, python=python,
                                       time_limit=float(time_limit or prof.time_limit_s),
                                       progress=bool(echo), label="smoke test",
                                       inputs=smoke_inputs(prof))
        timings = cr.status.get("timings", {})
        rep.smoke = {"ok": cr.ok, "batch": SMOKE_BATCH, "timings": timings, "env": env_desc,
                     "peak_rss_mb": cr.child.peak_rss_mb, "versions": cr.status.get("versions", {})}
        if cr.failure:
            f = cr.failure
            rep.smoke["failure"] = f.to_dict()
            rep.add("smoke test", "failed", f.message, f.hint)
            if f.tail and echo:
                echo("  --- the submission's traceback/log tail ---")
                for line in f.tail.splitlines()[-12:]:
                    echo("    " + line)
            return
        try:
            values, warns = scoring.validate(prof.task_spec(phase), cr.predictions, SMOKE_BATCH)
        except scoring.PredictionError as exc:
            rep.smoke["ok"] = False
            rep.add("smoke test", "failed", exc.message, exc.hint)
            return
        for w in warns:
            rep.add("smoke test", "warning", w)
        if cr.status.get("output", {}).get("converted"):
            note = "; the TF tensor it returned converts to numpy"
            if not prof.returns_tensor:
                rep.add("smoke test", "warning", "predict returned a tensor (converted here with "
                        ".numpy()); the profile does not say its grader accepts tensors",
                        "return a numpy array: tensor.numpy()")
        else:
            note = ""
        rep.add("smoke test", "ok", f"{init_call(prof)} {timings.get('init_s', 0):.1f} s, "
                f"predict({SMOKE_BATCH}) {timings.get('predict_s', 0):.2f} s -> "
                f"{_output_words(prof, values, phase)}{note}")


def _output_words(prof, values: np.ndarray, phase: str | None) -> str:
    if prof.output_kind == "forecasts":
        return (f"forecasts of shape {tuple(values.shape)} (horizon {prof.horizon(phase)}"
                + (f" in the {prof.phase(phase)} phase)" if prof.phases else ")"))
    if prof.output_kind == "masks":
        return f"masks of shape {tuple(values.shape)}, classes {np.unique(values).tolist()}"
    return f"labels {values.tolist()}"


def smoke_inputs(prof) -> dict[str, np.ndarray]:
    """predict's other inputs for the smoke batch: the profile's values in turn."""
    out = {}
    for name in prof.extra_inputs:
        values = prof.extra_input_values(name) or [0]
        out[name] = np.asarray([values[i % len(values)] for i in range(SMOKE_BATCH)])
    return out


def smoke_batch(prof) -> np.ndarray:
    rng = np.random.default_rng(0)
    lo, hi = prof.input_range
    shape = (SMOKE_BATCH,) + prof.input_shape
    dtype = np.dtype(prof.input_dtype)
    if dtype.kind in "ui":
        return rng.integers(int(lo), int(hi) + 1, size=shape).astype(dtype)
    return rng.uniform(lo, hi, size=shape).astype(dtype)


def _print_report(rep: CheckReport, echo: Echo) -> None:
    if not echo:
        return
    for c in rep.checks:
        mark = {"ok": "ok  ", "warning": "WARN", "failed": "FAIL"}[c["status"]]
        echo(f"  [{mark}] {c['name']}: {c['message']}")
        if c["status"] != "ok" and c["hint"]:
            echo(f"         hint: {c['hint']}")


# -- check -------------------------------------------------------------------------------------
def check_zip(zip_path: Path, prof, *, smoke: bool = True, echo: Echo = None, env: str = "current",
              phase: str | None = None) -> CheckReport:
    from subkit.grader import sandbox

    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise InputError(f"zip not found: {zip_path}", hint="give the path of the submission zip")
    rep = CheckReport(zip=str(zip_path))
    _say(echo, f"checking {zip_path}")
    with tempfile.TemporaryDirectory(prefix="subkit-check-") as tmp:
        root = Path(tmp) / "submission"
        try:
            names = sandbox.safe_extract(zip_path, root)
        except CheckFailed as exc:
            rep.add("zip", "failed", exc.message, exc.hint or "")
            _finish_check(rep, echo)
            return rep
        files = [n for n in names if not n.endswith("/")]
        size_mb = zip_path.stat().st_size / 1e6
        limit = prof.zip_size_limit_mb
        if limit and size_mb > limit:
            rep.add("size", "failed", f"the zip is {size_mb:.1f} MB, over the competition's {limit:g} MB",
                    "strip the optimizer state (subkit build does) or use a smaller model")
        infos = []
        for f in files:
            if is_weights_name(f):
                try:
                    info = inspect(root / f)
                except InputError as exc:
                    rep.add("weights", "failed", exc.message, exc.hint or "")
                    continue
                infos.append(info)
                rep.weights.append(info.to_dict())
        static_checks(root, files, prof, rep)
        version_check(infos, prof, rep)
    if smoke and not any(c["status"] == "failed" and c["name"] in ("zip", "layout") for c in rep.checks):
        smoke_test(zip_path, prof, rep, echo=echo, env=env, phase=phase)
    _finish_check(rep, echo)
    return rep


def check_csv(path: Path, prof, *, data: Path | None = None, echo: Echo = None) -> CheckReport:
    """A Kaggle CSV read back against the profile's layout (and the test set's ids)."""
    from subkit import kaggle_csv
    from subkit.data import io as data_io
    from subkit.submission_csv import check_csv as read_back

    path = Path(path)
    if not path.is_file():
        raise InputError(f"CSV not found: {path}", hint="give the path of the CSV to upload")
    rep = CheckReport(zip=str(path))
    _say(echo, f"checking {path} against the {prof.csv.layout} layout of {prof.name}")
    ids = None
    if data is not None:
        ds = data_io.load(data, prof, require_labels=False)
        ids = kaggle_csv.test_ids(Path(data), prof, len(ds))
    rows, problems = read_back(path, prof, ids=ids)
    for problem in problems:
        rep.add("csv", "failed", problem, "write it with `subkit predict` (the profile's layout, "
                "the test set's order), or fix what the message names")
    if not problems:
        rep.add("csv", "ok", f"{rows} rows in the {prof.csv.layout} layout"
                + (f", ids in the order of {Path(data).name}" if ids is not None else ""))
        if ids is None and not prof.csv.rows:
            rep.add("rows", "warning", "the number of rows and the order of ids were not checked",
                    "pass --data TEST.npz (the test set the CSV predicts)")
    _finish_check(rep, echo)
    return rep


def _finish_check(rep: CheckReport, echo: Echo) -> None:
    _print_report(rep, echo)
    if echo:
        import click

        color = {"PASSED": "green", "PASSED with warnings": "yellow", "FAILED": "red"}[rep.status]
        click.secho(rep.status, fg=color, bold=True)


# -- build -------------------------------------------------------------------------------------
def _resolve_model_py(model_py: Path | None, weights: list[Path], prof) -> tuple[str, str]:
    """(source text, where it came from). Without --model: ./model.py, else the template."""
    from subkit.workspace import model_template

    if model_py is None:
        candidates = [Path.cwd() / prof.entry_file]
        if prof.workspace:
            candidates.insert(0, prof.workspace / prof.entry_file)
        for c in candidates:
            if c.is_file():
                model_py = c
                break
    if model_py is not None:
        if not model_py.is_file():
            raise InputError(f"model file not found: {model_py}", hint="give the path of your model.py")
        try:
            return model_py.read_text("utf-8"), str(model_py)
        except UnicodeDecodeError:
            raise InputError(f"{model_py} is not UTF-8 text", hint="save it as UTF-8") from None
    text = model_template(prof)
    names = [w.name for w in weights]
    text = re.sub(r"^WEIGHTS = \[.*?\]$", "WEIGHTS = " + json.dumps(names), text, count=1, flags=re.M)
    return text, "subkit template"


def build_submission(*, weights: list[Path], model_py: Path | None, includes: list[Path], tag: str,
                     out_dir: Path | None, profile, keep_optimizer: bool = False, smoke: bool = True,
                     echo: Echo = None, env: str = "current", target_keras: str | None = None,
                     record: bool = True, phase: str | None = None) -> dict:
    prof = profile
    if not re.fullmatch(r"[A-Za-z0-9._+-]{1,80}", tag):
        raise UsageError(f"tag {tag!r} is not a safe file name part",
                         hint="use letters, digits, '.', '_', '+', '-' (e.g. --tag v2m-tta)")
    if not weights:
        raise UsageError("no weights given", hint="pass --weights FILE (repeat for an ensemble)")
    infos = [inspect(w) for w in weights]
    for inc in includes:
        if not inc.is_file():
            raise InputError(f"--include file not found: {inc}", hint="give an existing file")
    names = [prof.entry_file] + [w.name for w in weights] + [i.name for i in includes]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UsageError(f"two files would have the same name at the zip root: {', '.join(dup)}",
                         hint="rename one of them; the zip has no folders, so names must differ")
    source, source_from = _resolve_model_py(model_py, weights, prof)
    out = Path(out_dir) if out_dir else prof.submissions_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder {out}: {exc.strerror}",
                         hint="choose a folder you can write to with --out-dir") from None
    if not os.access(out, os.W_OK):
        raise InputError(f"the output folder {out} is not writable",
                         hint="choose a folder you can write to with --out-dir")
    limit = prof.zip_size_limit_mb
    for info in infos:
        if limit and info.size / 1e6 > limit * (1.0 if keep_optimizer or not info.has_optimizer else 3.0):
            raise InputError(f"{info.path.name} is {info.size / 1e6:.1f} MB, over the competition's "
                             f"{limit:g} MB limit", hint="use a smaller model or fewer ensemble members")
    _say(echo, f"building a submission for {prof.name} (model.py: {source_from})")

    rep = CheckReport(zip="")
    for info in infos:
        rep.weights.append(info.to_dict())
    with tempfile.TemporaryDirectory(dir=out, prefix=".subkit-build-") as tmp:
        stage = Path(tmp)
        # check 1 first: a broken model.py fails before any weights are rewritten
        (stage / prof.entry_file).write_text(source, "utf-8")
        required = {name: text for name, text in prof.required_files.items()
                    if name not in {i.name for i in includes}}
        for name, text in required.items():
            (stage / name).write_text(text, "utf-8")
        staged_files = ([prof.entry_file] + [w.name for w in weights] + [i.name for i in includes]
                        + list(required))
        static_checks(stage, staged_files, prof, rep)
        if rep.status == "FAILED":
            _print_report(rep, echo)
            f = rep.first_failure()
            raise CheckFailed(f"{f['name']}: {f['message']}", hint=f["hint"] or "see the checks above")
        staged: dict[str, Path] = {}
        weights_manifest = []
        for w, info in zip(weights, infos):
            entry: dict[str, Any] = info.to_dict()
            if info.kind == "keras" and info.has_optimizer and not keep_optimizer:
                dst = stage / w.name
                strip_optimizer(w, dst)
                entry.update(stripped_optimizer=True, size_before=info.size, size=dst.stat().st_size)
                _say(echo, f"  {w.name}: optimizer state stripped, {info.size / 1e6:.1f} MB -> "
                           f"{dst.stat().st_size / 1e6:.1f} MB")
                staged[w.name] = dst
            else:
                staged[w.name] = w
                entry["stripped_optimizer"] = False
                if info.kind == "keras":
                    _say(echo, f"  {w.name}: {info.size / 1e6:.1f} MB"
                               + (" (optimizer kept: --keep-optimizer)" if info.has_optimizer else ""))
            retarget = _maybe_retarget(staged[w.name], stage, info, prof, target_keras, echo, env)
            if retarget:
                entry["retarget"] = retarget
                if retarget.get("path"):
                    staged[w.name] = Path(retarget.pop("path"))
                    entry["size"] = staged[w.name].stat().st_size
                _say(echo, f"  {w.name}: " + _retarget_line(retarget))
            weights_manifest.append(entry)
        staged_infos = [inspect(staged[w.name]) for w in weights]
        version_check([i for i in staged_infos], prof, rep)
        if rep.status == "FAILED":
            _print_report(rep, echo)
            f = rep.first_failure()
            raise CheckFailed(f"{f['name']}: {f['message']}", hint=f["hint"] or "see the checks above")
        # write the candidate zip, then smoke-test it
        stamp = datetime.now().strftime("%y%m%d_%H%M%S")
        final = _free_name(out, f"{tag}-{stamp}")
        cand = stage / "candidate.zip"
        with zipfile.ZipFile(cand, "w") as zf:
            zf.write(stage / prof.entry_file, prof.entry_file, compress_type=zipfile.ZIP_DEFLATED)
            for name in required:  # e.g. CodaLab's metadata, from the profile
                zf.write(stage / name, name, compress_type=zipfile.ZIP_DEFLATED)
            for name, path in staged.items():
                # a .keras is already a zip: store it, do not deflate it again
                zf.write(path, name, compress_type=zipfile.ZIP_STORED)
            for inc in includes:
                ctype = zipfile.ZIP_STORED if is_weights_name(inc.name) or inc.suffix in (".zip", ".npz") \
                    else zipfile.ZIP_DEFLATED
                zf.write(inc, inc.name, compress_type=ctype)
        size = cand.stat().st_size
        if limit and size / 1e6 > limit:
            raise CheckFailed(f"the zip is {size / 1e6:.1f} MB, over the competition's {limit:g} MB limit",
                              hint="use a smaller model or fewer ensemble members")
        if smoke:
            smoke_test(cand, prof, rep, echo=echo, env=env, phase=phase)
        else:
            rep.add("smoke test", "warning", "skipped (--no-smoke)")
        _print_report(rep, echo)
        if rep.status == "FAILED":
            f = rep.first_failure()
            raise CheckFailed(f"{f['name']}: {f['message']}", hint=f["hint"] or "see the checks above")
        zip_path = out / f"{final}.zip"
        manifest = {
            "zip": zip_path.name, "path": str(zip_path), "sha256": _sha256(cand), "size": size,
            "tag": tag, "profile": prof.name, "model_py": source_from,
            "members": _members(cand), "weights": weights_manifest,
            "grader": {k: v for k, v in prof.grader.items() if k != "extras"},
            "checks": rep.checks, "smoke": rep.smoke, "status": rep.status,
            "subkit_version": __version__, "python": sys.version.split()[0],
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        man_tmp = stage / "manifest.json"
        man_tmp.write_text(json.dumps(manifest, indent=2, default=str))
        # never overwrite: link() fails if the name exists
        try:
            os.link(cand, zip_path)
        except FileExistsError:
            raise SubkitError(f"{zip_path} appeared while building; nothing was overwritten",
                              hint="build again (the name has the time in it)") from None
        try:
            os.link(man_tmp, out / f"{final}.json")
        except BaseException:
            zip_path.unlink(missing_ok=True)
            raise
    _say(echo, f"wrote {zip_path} ({size / 1e6:.1f} MB) and {final}.json")
    if record:
        _record_build(manifest, prof, echo)
    return manifest


def _maybe_retarget(path: Path, stage: Path, info: WeightsInfo, prof, target: str | None,
                    echo: Echo, env: str) -> dict | None:
    """Issue 6: rewrite a .keras for an older grader Keras, when that module is present."""
    if info.kind != "keras":
        return None
    tgt = target or prof.grader.get("keras")
    sv, tv = version_tuple(info.keras_version), version_tuple(tgt)
    if target is None and (sv is None or tv is None or sv <= tv):
        return None
    try:
        from subkit import keras_compat
        from subkit.grader import environment
    except ImportError:
        return None
    env_python = None
    try:
        env_python = str(environment.ensure_env(prof, create=False, echo=echo or (lambda s: None)))
    except SubkitError:
        env_python = None
    dst = stage / ("retargeted-" + path.name)
    try:
        rep = keras_compat.retarget(path, dst, tgt, env_python=env_python, echo=echo or (lambda s: None))
    except SubkitError as exc:
        if env_python is not None or target is not None:
            raise  # a layer the target cannot express, or a failed verification: stop
        # no grader environment and nothing cached about that Keras: keep the file, say so
        return {"status": "skipped", "source_version": info.keras_version, "target_version": tgt,
                "skipped_reason": exc.message, "verified": None}
    if rep.get("status") in ("rewritten", "unchanged") and dst.exists():
        # keep the file's own name inside the zip
        final = stage / "rt" / path.name
        final.parent.mkdir(exist_ok=True)
        shutil.move(str(dst), final)
        rep["path"] = str(final)
    return rep


def _retarget_line(rt: dict) -> str:
    st = rt.get("status")
    src, tgt = rt.get("source_version"), rt.get("target_version")
    if st == "rewritten":
        n = len(rt.get("changed_keys") or [])
        ver = rt.get("verified")
        how = ("verified in the grader environment, max |diff| "
               f"{rt.get('max_abs_diff'):.1e}" if ver else
               f"NOT verified: {rt.get('skipped_reason') or 'no grader environment'} (subkit env create)")
        return f"rewritten for Keras {tgt} (saved by {src}; {n} config keys adapted; {how})"
    if st == "unchanged":
        return f"loads in Keras {tgt} as it is (saved by {src}; metadata updated)"
    if st == "skipped":
        return (f"NOT rewritten for Keras {tgt}: {rt.get('skipped_reason')}; "
                "run `subkit env create` and build again")
    return f"no rewrite needed for Keras {tgt} (saved by {src})"


def _free_name(folder: Path, base: str) -> str:
    name, i = base, 1
    while (folder / f"{name}.zip").exists() or (folder / f"{name}.json").exists():
        name = f"{base}-{i}"
        i += 1
    return name


def _members(zip_path: Path) -> list[dict]:
    out = []
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            h = hashlib.sha256()
            with zf.open(info) as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            out.append({"name": info.filename, "size": info.file_size, "sha256": h.hexdigest(),
                        "stored": info.compress_type == zipfile.ZIP_STORED})
    return out


def _record_build(manifest: dict, prof, echo: Echo) -> None:
    from subkit.ledger import Ledger

    shas = {m["name"]: m["sha256"] for m in manifest["members"]}
    try:
        Ledger(prof.submissions_dir).append({
            "kind": "build", "zip": manifest["zip"], "zip_sha256": manifest["sha256"], "tag": manifest["tag"],
            "weights": [{"name": w["name"], "sha256": shas.get(w["name"]), "keras_version": w.get("keras_version")}
                        for w in manifest["weights"]],
            "profile": manifest["profile"], "size": manifest["size"],
            "keras_version": (manifest["weights"][0].get("keras_version") if manifest["weights"] else None),
        })
    except SubkitError as exc:
        _say(echo, f"  warning: the ledger was not updated ({exc.message})")
