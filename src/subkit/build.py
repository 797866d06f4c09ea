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
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from subkit import __version__, ui
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
    checks: list[dict] = field(default_factory=list)  # {name, status: ok|note|warning|failed, ...}
    smoke: dict | None = None
    weights: list[dict] = field(default_factory=list)
    env: dict | None = None  # the versions that ran the smoke test (environment.select_env)

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
                "weights": self.weights, "env": self.env}


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


def _newer(saved: str | None, grader: str | None) -> bool | None:
    """Whether the saving Keras is newer than the grader's (another major counts as newer);
    None when a version is unknown."""
    v, gv = version_tuple(saved), version_tuple(grader)
    if v is None or gv is None:
        return None
    return v[:1] != gv[:1] or v > gv


def keras_versions(infos: list[WeightsInfo], prof, rep: CheckReport, *, names: list[str] | None = None,
                   zip_hint: str = "ZIP") -> None:
    """Check 3, after the smoke test: the Keras that saved each weights file against the
    grader's. The verdict on loading comes from loading (the smoke test in the grader's
    versions, or build's verified rewrite), never from the version numbers: a file saved
    by a newer Keras that loads there is fine, and one that was not loaded there is a
    warning with the command that loads it."""
    grader = prof.grader.get("keras")
    smoke = rep.smoke or {}
    smoke_keras = (smoke.get("env") or {}).get("keras")
    loaded_there = bool(smoke.get("ok")) and version_tuple(smoke_keras) == version_tuple(grader)
    for i, info in enumerate(infos):
        name = (names or [])[i] if names else info.path.name
        saved = info.keras_version
        if info.kind == "h5-weights":
            rep.add("keras version", "ok" if loaded_there else "note",
                    f"{name}: weights only (model.py builds the model)"
                    + (f"; they load in keras {grader} (smoke test)" if loaded_there else ""))
            continue
        newer = _newer(saved, grader)
        if newer is False:
            rep.add("keras version", "ok", f"{name}: saved by Keras {saved} (grader {grader})")
        elif loaded_there:
            rep.add("keras version", "ok",
                    f"{name}: saved by Keras {saved or '(unknown)'}, and it loads in the "
                    f"grader's keras {grader} (the smoke test ran there)")
        elif smoke and not smoke.get("ok") and smoke.get("env"):
            rep.add("keras version", "note", f"{name}: saved by Keras {saved or '(unknown)'} "
                                             f"(grader {grader})")
        else:
            where = f"the smoke test ran in keras {smoke_keras}" if smoke_keras else \
                "the smoke test was skipped"
            rep.add("keras version", "warning",
                    f"{name}: saved by Keras {saved or '(unknown)'}, "
                    + ("newer than" if newer else "compared with")
                    + f" the grader's {grader}, and not loaded there ({where})",
                    f"`subkit check {zip_hint} --env grader` loads it in keras {grader}")


def smoke_test(zip_path: Path, prof, rep: CheckReport, *, echo: Echo, env: str | None = None,
               time_limit: float | None = None,
               env_choice: tuple[str, dict] | None = None, phase: str | None = None) -> None:
    """Check 4: Model() and predict on a small batch, in the sandbox, working directory a
    fresh unzip; its output is validated as the profile's kind says (in ``phase``).

    ``env``: auto|grader|current (environment.select_env); ``env_choice``: an already
    selected (python, description)."""
    from subkit.fsutil import scratch_dir
    from subkit.grader import run as grader_run
    from subkit.grader import safezip, sandbox, scoring

    python, env_desc = env_choice or grader_run.python_for(prof, env, echo=echo)
    rep.env = env_desc
    if env_desc.get("warning"):
        rep.add("environment", "warning", env_desc["warning"])
    _say(echo, "  smoke test: unzipping into a fresh folder, Model(), predict on "
               f"{SMOKE_BATCH} images in the sandbox "
               f"({grader_run.env_line(env_desc)}) ...")
    with scratch_dir("subkit-smoke-") as tmpd:
        sub = tmpd / "submission"
        max_bytes, max_members = safezip.bounds(prof)
        safezip.safe_extract(zip_path, sub, max_bytes=max_bytes, max_members=max_members)
        X = smoke_batch(prof)
        cr = grader_run.run_submission(sub, X, prof, run_dir=tmpd, python=python,
                                       time_limit=prof.time_limit(time_limit),
                                       progress=bool(echo), label="smoke test",
                                       inputs=smoke_inputs(prof))
        timings = cr.status.get("timings", {})
        rep.smoke = {"ok": cr.ok, "batch": SMOKE_BATCH, "timings": timings, "env": env_desc,
                     "peak_rss_mb": cr.child.peak_rss_mb, "versions": cr.status.get("versions", {}),
                     "sandbox": cr.child.sandbox}
        if not cr.child.sandbox.get("isolated"):
            rep.add("sandbox", "warning", "the smoke test ran WITHOUT a sandbox "
                    f"({cr.child.sandbox.get('why')}): model.py could reach your files",
                    sandbox.INSTALL_HINT)
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
                f"{_output_words(prof, values, phase)}{note} in keras {env_desc.get('keras')}, "
                f"tensorflow {env_desc.get('tensorflow')}")


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


def _print_report(rep: CheckReport, echo: Echo, skip: dict | None = None) -> None:
    """The checks, one line each (``skip``: the one an error line is about to say)."""
    if not echo:
        return
    for c in rep.checks:
        if c is skip:
            continue
        mark = {"ok": "ok  ", "note": "note", "warning": "WARN", "failed": "FAIL"}[c["status"]]
        echo(f"  [{mark}] {c['name']}: {c['message']}")
        if c["status"] != "ok" and c["hint"]:
            echo(f"         hint: {c['hint']}")


# -- check -------------------------------------------------------------------------------------
def is_junk(name: str) -> bool:
    """macOS Finder's metadata in a zip: ``__MACOSX/...``, ``.DS_Store``, ``._name``."""
    base = name.rstrip("/").split("/")[-1]
    return name.startswith("__MACOSX/") or base == ".DS_Store" or base.startswith("._")


def check_zip(zip_path: Path, prof, *, smoke: bool = True, echo: Echo = None,
              env: str | None = None, phase: str | None = None) -> CheckReport:
    """Checks 1, 3 and 4 on any zip: PASSED / PASSED with warnings / FAILED.

    ``env``: which versions run the smoke test: "auto" (the grader's whenever the current
    ones differ; None: ``$SUBKIT_ENV`` or auto), "grader" or "current"."""
    from subkit.fsutil import scratch_dir
    from subkit.grader import safezip
    from subkit.recovery import recover

    zip_path = safezip.require_zip(zip_path)
    rep = CheckReport(zip=str(zip_path))
    for note in recover(prof):
        _say(echo, f"note: {note}")
    _say(echo, f"checking {zip_path}")
    with scratch_dir("subkit-check-") as tmp:
        root = tmp / "submission"
        max_bytes, max_members = safezip.bounds(prof)
        try:
            names = safezip.safe_extract(zip_path, root, max_bytes=max_bytes,
                                         max_members=max_members)
        except CheckFailed as exc:
            rep.add("zip", "failed", exc.message, exc.hint or "")
            _finish_check(rep, echo)
            return rep
        files = [n for n in names if not n.endswith("/")]
        junk = [f for f in files if is_junk(f)]
        files = [f for f in files if not is_junk(f)]
        if junk:
            rep.add("zip", "note", f"ignored {len(junk)} macOS metadata entr"
                    f"{'y' if len(junk) == 1 else 'ies'} ({', '.join(junk[:3])}"
                    f"{', ...' if len(junk) > 3 else ''}): the grader unzips them but nothing "
                    "loads them")
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
    if smoke and not any(c["status"] == "failed" and c["name"] in ("zip", "layout") for c in rep.checks):
        smoke_test(zip_path, prof, rep, echo=echo, env=env, phase=phase)
    keras_versions(infos, prof, rep, zip_hint=str(zip_path))
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
    from subkit.grader.run import env_line

    _print_report(rep, echo)
    if echo:
        if rep.env:
            echo(f"  {env_line(rep.env)}")
        color = {"PASSED": "green", "PASSED with warnings": "yellow", "FAILED": "red"}[rep.status]
        ui.reporter().info(rep.status, bold=True, fg=color)


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


def zip_names(source: str, weights: list[Path], prof, files: list[str]) -> list[str]:
    """The names the weights get in the zip: their own, except that a single weights file
    whose name model.py does not load is stored under the one weights name model.py surely
    loads, when both are the same kind of file (``subkit build --weights model.keras`` with
    the template, which loads ``weights.keras``)."""
    names = [w.name for w in weights]
    if len(weights) != 1:
        return names
    extras = set((prof.grader.get("extras") or {}).keys())
    mp = check_source(source, prof, files=[prof.entry_file] + names + files,
                      extra_modules=extras, filename=prof.entry_file)
    wanted = sorted(set(mp.missing_weights))
    if len(wanted) == 1 and not mp.weights_names and _kind_of(wanted[0]) == _kind_of(names[0]) \
            and "/" not in wanted[0].removeprefix("./"):
        return [wanted[0].removeprefix("./")]
    return names


def _kind_of(name: str) -> str:
    low = name.lower()
    return next(s for s in (".weights.h5", ".keras", ".h5", ".hdf5", "") if low.endswith(s))


def _needs_load_proof(info: WeightsInfo, target: str | None, explicit: bool) -> bool:
    """A model file (not bare weights) saved by a Keras newer than the target, or any model
    file when the target was asked for explicitly."""
    return info.kind in ("keras", "h5-model") and (explicit or bool(_newer(info.keras_version,
                                                                           target)))


def _existing_grader_python(prof) -> str | None:
    from subkit.grader import environment

    try:
        return str(environment.ensure_env(prof, create=False, echo=lambda s: None))
    except SubkitError:
        return None


def build_submission(*, weights: list[Path], model_py: Path | None, includes: list[Path], tag: str,
                     out_dir: Path | None, profile, keep_optimizer: bool = False, smoke: bool = True,
                     echo: Echo = None, env: str | None = None, target_keras: str | None = None,
                     record: bool = True, phase: str | None = None) -> dict:
    """Build the zip. ``env`` (auto|grader|current, None: ``$SUBKIT_ENV`` or auto) picks the
    versions of the smoke test and where rewritten weights are proven to load;
    ``target_keras`` the Keras to rewrite for (default: the grader's, when the weights were
    saved by a newer one)."""
    from subkit import publish
    from subkit.grader.run import env_line, python_for
    from subkit.recovery import recover

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
    source, source_from = _resolve_model_py(model_py, weights, prof)
    znames = zip_names(source, weights, prof, [i.name for i in includes])
    names = [prof.entry_file] + znames + [i.name for i in includes]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UsageError(f"two files would have the same name at the zip root: {', '.join(dup)}",
                         hint="rename one of them; the zip has no folders, so names must differ")
    out = Path(out_dir) if out_dir else prof.submissions_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder {out}: {exc.strerror}",
                         hint="choose a folder you can write to with --out-dir") from None
    if not os.access(out, os.W_OK):
        raise InputError(f"the output folder {out} is not writable",
                         hint="choose a folder you can write to with --out-dir")
    for note in recover(prof, out):
        _say(echo, f"note: {note}")
    limit = prof.zip_size_limit_mb
    for info in infos:
        if limit and info.size / 1e6 > limit * (1.0 if keep_optimizer or not info.has_optimizer else 3.0):
            raise InputError(f"{info.path.name} is {info.size / 1e6:.1f} MB, over the competition's "
                             f"{limit:g} MB limit", hint="use a smaller model or fewer ensemble members")
    _say(echo, f"building a submission for {prof.name} (model.py: {source_from})")
    for w, zn in zip(weights, znames):
        if zn != w.name:
            _say(echo, f"  {w.name} is stored in the zip as {zn}: the name {prof.entry_file} "
                       "loads")

    rep = CheckReport(zip="")
    for info, zn in zip(infos, znames):
        rep.weights.append(dict(info.to_dict(), name=zn))
    target = target_keras or prof.grader.get("keras")
    proofs = [_needs_load_proof(i, target, target_keras is not None) for i in infos]
    env_choice = python_for(prof, env, echo=echo) if (smoke or any(proofs)) else None
    env_python = env_choice[0] if env_choice and env_choice[1].get("name") == "grader" else \
        (_existing_grader_python(prof) if any(proofs) else None)
    with publish.staging(out) as stage:
        # check 1 first: a broken model.py fails before any weights are rewritten
        (stage / prof.entry_file).write_text(source, "utf-8")
        required = {name: text for name, text in prof.required_files.items()
                    if name not in {i.name for i in includes}}
        for name, text in required.items():
            (stage / name).write_text(text, "utf-8")
        staged_files = [prof.entry_file] + znames + [i.name for i in includes] + list(required)
        static_checks(stage, staged_files, prof, rep)
        _stop_if_failed(rep, echo)
        staged: dict[str, Path] = {}
        weights_manifest = []
        for w, zn, info, proof in zip(weights, znames, infos, proofs):
            path, entry = _prepare_weights(w, zn, info, stage, keep_optimizer=keep_optimizer,
                                           target=target if proof else None,
                                           explicit=target_keras is not None,
                                           env_python=env_python, echo=echo)
            staged[zn] = path
            weights_manifest.append(entry)
        # write the candidate zip, then smoke-test it
        stamp = datetime.now().strftime("%y%m%d_%H%M%S")
        final = _free_name(out, f"{tag}-{stamp}")
        cand = stage / publish.CANDIDATE
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
            smoke_test(cand, prof, rep, echo=echo, env_choice=env_choice, phase=phase)
        else:
            rep.add("smoke test", "warning", "skipped (--no-smoke)")
        _weights_verdict(weights_manifest, [inspect(staged[zn]) for zn in znames], znames, prof,
                         rep, zip_hint=str(out / f"{final}.zip"))
        _stop_if_failed(rep, echo)
        _print_report(rep, echo)
        zip_path = out / f"{final}.zip"
        manifest = {
            "zip": zip_path.name, "path": str(zip_path), "sha256": _sha256(cand), "size": size,
            "tag": tag, "profile": prof.name, "model_py": source_from,
            "members": _members(cand), "weights": weights_manifest,
            "grader": {k: v for k, v in prof.grader.items() if k != "extras"},
            "checks": rep.checks, "smoke": rep.smoke, "env": rep.env, "status": rep.status,
            "subkit_version": __version__, "python": sys.version.split()[0],
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (stage / publish.MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        if zip_path.exists() or (out / f"{final}.json").exists():  # never overwrite
            raise SubkitError(f"{zip_path} appeared while building; nothing was overwritten",
                              hint="build again (the name has the time in it)")
        # the commit point: the ledger row, the zip and its manifest all appear, even if
        # subkit is killed in between (the next command finishes the job)
        publish.commit(stage, out, zip_path.name, f"{final}.json", prof.submissions_dir,
                       _build_row(manifest) if record else None)
    _say(echo, f"wrote {zip_path} ({size / 1e6:.1f} MB) and {final}.json")
    if rep.env:
        _say(echo, f"smoke test {env_line(rep.env)}")
    return manifest


def _stop_if_failed(rep: CheckReport, echo: Echo) -> None:
    if rep.status == "FAILED":  # the failure is said once, as the error and its hint
        f = rep.first_failure()
        _print_report(rep, echo, skip=f)
        raise CheckFailed(f"{f['name']}: {f['message']}", hint=f["hint"] or "see the checks above")


def _prepare_weights(src: Path, name: str, info: WeightsInfo, stage: Path, *,
                     keep_optimizer: bool, target: str | None, explicit: bool,
                     env_python: str | None, echo: Echo) -> tuple[Path, dict]:
    """One weights file for the zip: optimizer state stripped, and, when ``target`` is
    given, rewritten for that Keras (``.keras``) or loaded there as it is (a legacy ``.h5``
    model), proven by loading in ``env_python``. A verified rewrite is cached by the
    file's sha256: building the same weights again skips the work."""
    from subkit import keras_compat

    entry: dict[str, Any] = dict(info.to_dict(), name=name)
    if name != src.name:
        entry["source_name"] = src.name
    strip = info.kind == "keras" and info.has_optimizer and not keep_optimizer
    key = None
    if target and info.kind == "keras":
        key = f"{_sha256(src)[:32]}-{'stripped' if strip else 'as-is'}-keras{target}"
        hit = keras_compat.cached_retarget(key)
        if hit:
            path, rt = hit
            entry.update(stripped_optimizer=strip, size_before=info.size, size=path.stat().st_size,
                         retarget=dict(rt, cached=True))
            _say(echo, f"  {name}: " + _retarget_line(rt) + " [cached: same weights as an "
                       "earlier build]")
            return path, entry
    # the Keras workers import TensorFlow (seconds each), and the current one loads the
    # user's file for the reference predictions, while the optimizer state is stripped
    workers = (keras_compat.start_workers(env_python, reference=src, target_version=target)
               if key else None)
    try:
        path, rt = _strip_and_prove(src, name, info, entry, stage, strip=strip, target=target,
                                    explicit=explicit, env_python=env_python, workers=workers,
                                    echo=echo)
    finally:
        if workers:
            keras_compat.close_workers(workers)
    if rt is None:
        return path, entry
    if key and rt.get("verified"):
        keras_compat.store_retarget(key, path, rt)
    entry["retarget"] = rt
    _say(echo, f"  {name}: " + _retarget_line(rt))
    return path, entry


def _strip_and_prove(src: Path, name: str, info: WeightsInfo, entry: dict, stage: Path, *,
                     strip: bool, target: str | None, explicit: bool, env_python: str | None,
                     workers, echo: Echo) -> tuple[Path, dict | None]:
    path = src
    if strip:
        path = stage / "stripped" / name
        path.parent.mkdir(exist_ok=True)
        strip_optimizer(src, path)
        entry.update(stripped_optimizer=True, size_before=info.size, size=path.stat().st_size)
        _say(echo, f"  {name}: optimizer state stripped, {info.size / 1e6:.1f} MB -> "
                   f"{path.stat().st_size / 1e6:.1f} MB")
    else:
        entry["stripped_optimizer"] = False
        if info.kind == "keras":
            _say(echo, f"  {name}: {info.size / 1e6:.1f} MB"
                       + (" (optimizer kept: --keep-optimizer)" if info.has_optimizer else ""))
    if target is None:
        if explicit and info.kind == "h5-weights":
            _say(echo, f"  {name}: weights only, nothing to rewrite for Keras "
                       f"(model.py builds the model; the smoke test loads them)")
        return path, None
    if info.kind == "h5-model":
        return path, _prove_h5(path, name, info, target, env_python, echo)
    rt = _retarget(path, stage, info, target, explicit, env_python, echo, workers)
    if rt.get("path"):
        path = Path(rt.pop("path"))
        entry["size"] = path.stat().st_size
    return path, rt


def _prove_h5(path: Path, name: str, info: WeightsInfo, target: str, env_python: str | None,
              echo: Echo) -> dict:
    """A legacy HDF5 model saved by a newer Keras: subkit does not rewrite .h5 files, so it
    loads it in the target as it is; refused, with the conversion, when that fails."""
    from subkit import keras_compat

    base = {"source_version": info.keras_version, "target_version": target}
    if env_python is None:
        return dict(base, status="skipped", verified=None,
                    skipped_reason="no grader environment to load it in")
    try:
        return dict(base, **keras_compat.verify_load(path, target, env_python=env_python,
                                                     echo=echo or (lambda s: None)))
    except SubkitError as exc:
        stem = name.rsplit(".", 1)[0]
        raise CheckFailed(
            f"{name} is a legacy HDF5 model saved by Keras {info.keras_version}, and "
            f"{exc.message}; subkit rewrites only .keras files for an older Keras",
            hint=f"save it as .keras (keras.models.load_model('{name}').save('{stem}.keras')), "
                 f"load '{stem}.keras' in model.py, and build with --weights {stem}.keras"
        ) from None


def _retarget(path: Path, stage: Path, info: WeightsInfo, target: str, explicit: bool,
              env_python: str | None, echo: Echo, workers=None) -> dict:
    """Rewrite a .keras for an older grader Keras (keras_compat.retarget), verified in
    ``env_python`` when there is one; without it, a cached probe of that Keras (unverified)
    or, failing that, the file is kept and the report says why."""
    from subkit import keras_compat

    dst = stage / "retargeted" / path.name
    dst.parent.mkdir(exist_ok=True)
    try:
        rep = keras_compat.retarget(path, dst, target, env_python=env_python,
                                    echo=echo or (lambda s: None), workers=workers)
    except SubkitError as exc:
        if env_python is not None or explicit:
            raise  # a layer the target cannot express, or a failed verification: stop
        return {"status": "skipped", "source_version": info.keras_version,
                "target_version": target, "skipped_reason": exc.message, "verified": None}
    if rep.get("status") in ("rewritten", "unchanged") and dst.exists():
        rep["path"] = str(dst)
    return rep


def _weights_verdict(manifest: list[dict], infos: list[WeightsInfo], names: list[str], prof,
                     rep: CheckReport, zip_hint: str) -> None:
    """Check 3 for build: a rewrite proven by loading in the grader's Keras is the verdict;
    otherwise the smoke test's (keras_versions)."""
    rest_infos, rest_names = [], []
    for entry, info, name in zip(manifest, infos, names):
        rt = entry.get("retarget") or {}
        if rt.get("verified"):
            rep.add("keras version", "ok", f"{name}: " + _retarget_line(rt))
        else:
            rest_infos.append(info)
            rest_names.append(name)
    keras_versions(rest_infos, prof, rep, names=rest_names, zip_hint=zip_hint)


def _retarget_line(rt: dict) -> str:
    st = rt.get("status")
    src, tgt = rt.get("source_version"), rt.get("target_version")
    proof = (f"proven by loading it in keras {tgt}, max |diff| {rt.get('max_abs_diff'):.1e}"
             if rt.get("verified") else
             f"NOT proven to load in keras {tgt}: {rt.get('skipped_reason') or 'it predicted differently'}")
    if st == "rewritten":
        n = len(rt.get("changed_keys") or [])
        return f"saved by Keras {src}, rewritten for Keras {tgt} ({n} config keys adapted; {proof})"
    if st in ("unchanged", "loads"):
        return f"saved by Keras {src}, loads in Keras {tgt} as it is ({proof})"
    if st == "skipped":
        return f"saved by Keras {src}, NOT rewritten for Keras {tgt}: {rt.get('skipped_reason')}"
    return f"saved by Keras {src}: no rewrite needed for Keras {tgt}"


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


def _build_row(manifest: dict) -> dict:
    shas = {m["name"]: m["sha256"] for m in manifest["members"]}
    return {
        "kind": "build", "zip": manifest["zip"], "zip_sha256": manifest["sha256"], "tag": manifest["tag"],
        "weights": [{"name": w["name"], "sha256": shas.get(w["name"]), "keras_version": w.get("keras_version")}
                    for w in manifest["weights"]],
        "profile": manifest["profile"], "size": manifest["size"],
        "keras_version": (manifest["weights"][0].get("keras_version") if manifest["weights"] else None),
    }
