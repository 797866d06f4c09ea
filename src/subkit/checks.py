"""The checks of a submission, shared by `subkit build`, `subkit check` and `subkit
submit`: model.py and the files it names (check 1), the Keras that saved each weights file
against the grader's (check 3), and the smoke test (check 4: ``Model()`` then ``predict`` on
a small batch, in the sandbox, working directory a fresh unzip of the zip); and a Kaggle CSV
read back against the profile's layout.

Mechanics only: the verdicts go into a :class:`CheckReport`; the lines the user reads go
through ``subkit.ui``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from subkit import ui
from subkit.errors import CheckFailed, InputError
from subkit.modelcheck import (
    check_source,
    init_call,
    keras_major,
    predict_call,
    savedmodel_dirs,
)
from subkit.weights import WeightsInfo, inspect, is_weights_name, version_tuple

if TYPE_CHECKING:
    from subkit.profile import Profile

SMOKE_BATCH = 4


@dataclass
class CheckReport:
    zip: str
    checks: list[dict] = field(default_factory=list)  # {name, status: ok|note|warning|failed, ...}
    smoke: dict | None = None
    weights: list[dict] = field(default_factory=list)
    env: dict | None = None  # the versions that ran the smoke test (environment.select_env)
    savedmodels: list[str] = field(default_factory=list)  # SavedModel folders in the zip

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


# -- the checks of a zip ----------------------------------------------------------------------
def static_checks(root: Path, files: list[str], prof: Profile, rep: CheckReport) -> None:
    """Check 1: model.py and the weights files it names."""
    entry = prof.entry_file
    if entry not in files:
        nested = [f for f in files if f.endswith("/" + entry)]
        rep.add("layout", "failed",
                f"{entry} is not at the zip root" + (f" (found {nested[0]})" if nested else ""),
                "zip the files themselves, not their folder: "
                "`cd folder && zip ../sub.zip model.py weights.keras`"
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
        if f.contestable and f.level == "error":
            rep.checks[-1]["contestable"] = True  # the smoke test may prove it wrong
    rep.savedmodels = savedmodel_dirs(files)
    loads = mp.weights_names + [f"{d}/ (a TensorFlow SavedModel folder)" for d in mp.savedmodels]
    if not mp.errors:
        rep.add("model.py", "ok", f"{entry} defines {init_call(prof)} and "
                f"{predict_call(prof)}; loads "
                f"{', '.join(loads) or 'no named weights file'}"
                + (" (it lists a folder: the smoke test sees what it finds)"
                   if not loads and mp.lists_directory else ""))
    _savedmodel_versions(rep, prof)
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
                    f"{w['name']} needs custom class(es) {', '.join(missing)} "
                    f"that {entry} does not define",
                    f"copy their definitions into {entry} (decorated with "
                    "@keras.saving.register_keras_serializable()) "
                    "or pass custom_objects to load_model")


def _savedmodel_versions(rep: CheckReport, prof: Profile) -> None:
    """A SavedModel folder is Keras 2's format: a Keras 3 grader's load_model refuses it
    (keras.saving: "File format not supported"); model.py may still read it another way
    (tf.saved_model.load, TFSMLayer), so the smoke test decides."""
    keras = str(prof.grader.get("keras"))
    if not rep.savedmodels:
        return
    names = ", ".join(d + "/" for d in rep.savedmodels)
    if (keras_major(keras) or 0) >= 3:
        rep.add("keras version", "warning",
                f"{names}: a TensorFlow SavedModel folder (tf.keras, Keras 2: TensorFlow 2.15 "
                f"or older); the grader's keras {keras} cannot load it with load_model",
                "tensorflow<=2.15 (Keras 2) loads it (set [grader] tensorflow and keras to "
                "2.15.0 if that is the competition's grader); for Keras 3 re-save it as "
                ".keras, or read it with keras.layers.TFSMLayer; the smoke test decides")
    else:
        rep.add("keras version", "ok", f"{names}: a TensorFlow SavedModel folder, the format "
                f"of the grader's keras {keras} (tf.keras)")


def reconcile_with_smoke(rep: CheckReport) -> None:
    """A static finding that the smoke test in the grader's versions contradicts is a
    warning at most: model.py imported, made its model and predicted there, so what the
    static reading feared did not happen (the verdict is the run's)."""
    smoke = rep.smoke or {}
    env = smoke.get("env") or {}
    if not smoke.get("ok") or env.get("name") != "grader":
        return
    for c in rep.checks:
        if c["status"] == "failed" and c["name"] in ("model.py", "custom objects", "weights"):
            c["status"] = "warning"
            c["message"] += (" (static reading; the smoke test in the grader's versions "
                             "passed, so the run's verdict stands)")


def _required_files(files: list[str], prof: Profile, rep: CheckReport) -> None:
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


def newer_keras(saved: str | None, grader: str | None) -> bool | None:
    """Whether the saving Keras is newer than the grader's (another major counts as newer);
    None when a version is unknown."""
    v, gv = version_tuple(saved), version_tuple(grader)
    if v is None or gv is None:
        return None
    return v[:1] != gv[:1] or v > gv


def keras_versions(infos: list[WeightsInfo], prof: Profile, rep: CheckReport, *,
                   names: list[str] | None = None, zip_hint: str = "ZIP") -> None:
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
        newer = newer_keras(saved, grader)
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
            sv, gv = version_tuple(saved), version_tuple(grader)
            relation = ("an older major version than" if sv and gv and sv[0] < gv[0] else
                        "newer than" if newer else "compared with")
            rep.add("keras version", "warning",
                    f"{name}: saved by Keras {saved or '(unknown)'}, {relation} the grader's "
                    f"{grader}, and not loaded there ({where})",
                    f"`subkit check {zip_hint} --env grader` loads it in keras {grader}")


def smoke_test(zip_path: Path, prof: Profile, rep: CheckReport, *, env: str | None = None,
               time_limit: float | None = None,
               env_choice: tuple[str, dict] | None = None, phase: str | None = None) -> None:
    """Check 4: Model() and predict on a small batch, in the sandbox, working directory a
    fresh unzip; its output is validated as the profile's kind says (in ``phase``).

    ``env``: auto|grader|current (environment.select_env); ``env_choice``: an already
    selected (python, description)."""
    from subkit.fsutil import scratch_dir
    from subkit.grader import run as grader_run
    from subkit.grader import safezip, sandbox, scoring

    python, env_desc = env_choice or grader_run.python_for(prof, env)
    rep.env = env_desc
    if env_desc.get("warning"):
        rep.add("environment", "warning", env_desc["warning"])
    ui.echo("  smoke test: unzipping into a fresh folder, Model(), predict on "
            f"{SMOKE_BATCH} {prof.kind_spec.noun} in the sandbox "
            f"({grader_run.env_line(env_desc)}) ...")
    with scratch_dir("subkit-smoke-") as tmpd:
        sub = tmpd / "submission"
        max_bytes, max_members = safezip.bounds(prof)
        safezip.safe_extract(zip_path, sub, max_bytes=max_bytes, max_members=max_members)
        X = smoke_batch(prof)
        cr = grader_run.run_submission(sub, X, prof, run_dir=tmpd, python=python,
                                       time_limit=prof.time_limit(time_limit),
                                       isolate_network=prof.isolate_network(),
                                       progress=ui.live(), label="smoke test",
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
            if f.tail:
                ui.echo("  --- the submission's traceback/log tail ---")
                for line in f.tail.splitlines()[-12:]:
                    ui.echo("    " + line)
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


def _output_words(prof: Profile, values: np.ndarray, phase: str | None) -> str:
    return prof.kind_spec.output_words(values, prof, phase)


def smoke_inputs(prof: Profile) -> dict[str, np.ndarray]:
    """predict's other inputs for the smoke batch: the profile's values in turn."""
    out = {}
    for name in prof.extra_inputs:
        values = prof.extra_input_values(name) or [0]
        out[name] = np.asarray([values[i % len(values)] for i in range(SMOKE_BATCH)])
    return out


def smoke_batch(prof: Profile) -> np.ndarray:
    rng = np.random.default_rng(0)
    lo, hi = prof.input_range
    shape = (SMOKE_BATCH,) + prof.input_shape
    dtype = np.dtype(prof.input_dtype)
    if dtype.kind in "ui":
        return rng.integers(int(lo), int(hi) + 1, size=shape).astype(dtype)
    return rng.uniform(lo, hi, size=shape).astype(dtype)


def say_checks(rep: CheckReport, skip: dict | None = None) -> None:
    """The checks, one line each (``skip``: the one an error line is about to say)."""
    for c in rep.checks:
        if c is skip:
            continue
        mark = {"ok": "ok  ", "note": "note", "warning": "WARN", "failed": "FAIL"}[c["status"]]
        ui.echo(f"  [{mark}] {c['name']}: {c['message']}")
        if c["status"] != "ok" and c["hint"]:
            ui.echo(f"         hint: {c['hint']}")


# -- check: a zip or a CSV ---------------------------------------------------------------------
def is_junk(name: str) -> bool:
    """macOS Finder's metadata in a zip: ``__MACOSX/...``, ``.DS_Store``, ``._name``."""
    base = name.rstrip("/").split("/")[-1]
    return name.startswith("__MACOSX/") or base == ".DS_Store" or base.startswith("._")


def check_zip(zip_path: Path, prof: Profile, *, smoke: bool = True, env: str | None = None,
              phase: str | None = None) -> CheckReport:
    """Checks 1, 3 and 4 on any zip: PASSED / PASSED with warnings / FAILED.

    ``env``: which versions run the smoke test: "auto" (the grader's whenever the current
    ones differ; None: ``$SUBKIT_ENV`` or auto), "grader" or "current"."""
    from subkit.fsutil import scratch_dir
    from subkit.grader import safezip
    from subkit.recovery import recover

    zip_path = safezip.require_zip(zip_path)
    rep = CheckReport(zip=str(zip_path))
    for note in recover(prof):
        ui.echo(f"note: {note}")
    ui.echo(f"checking {zip_path}")
    with scratch_dir("subkit-check-") as tmp:
        root = tmp / "submission"
        max_bytes, max_members = safezip.bounds(prof)
        try:
            names = safezip.safe_extract(zip_path, root, max_bytes=max_bytes,
                                         max_members=max_members)
        except CheckFailed as exc:
            rep.add("zip", "failed", exc.message, exc.hint or "")
            _finish_check(rep)
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
            rep.add("size", "failed",
                    f"the zip is {size_mb:.1f} MB, over the competition's {limit:g} MB",
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
    if smoke and not any(c["status"] == "failed" and c["name"] in ("zip", "layout")
                         for c in rep.checks):
        smoke_test(zip_path, prof, rep, env=env, phase=phase)
        reconcile_with_smoke(rep)
    keras_versions(infos, prof, rep, zip_hint=str(zip_path))
    _finish_check(rep)
    return rep


def check_csv(path: Path, prof: Profile, *, data: Path | None = None) -> CheckReport:
    """A Kaggle CSV read back against the profile's layout (and the test set's ids)."""
    from subkit import kaggle_csv
    from subkit.data import io as data_io
    from subkit.submission_csv import check_csv as read_back

    path = Path(path)
    if not path.is_file():
        raise InputError(f"CSV not found: {path}", hint="give the path of the CSV to upload")
    rep = CheckReport(zip=str(path))
    ui.echo(f"checking {path} against the {prof.csv.layout} layout of {prof.name}")
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
                + (f", ids in the order of {Path(data).name}"
                   if ids is not None and data is not None else ""))  # ids come from data
        if ids is None and not prof.csv.rows:
            rep.add("rows", "warning", "the number of rows and the order of ids were not checked",
                    "pass --data TEST.npz (the test set the CSV predicts)")
    _finish_check(rep)
    return rep


def _finish_check(rep: CheckReport) -> None:
    from subkit.grader.run import env_line

    say_checks(rep)
    if rep.env:
        ui.echo(f"  {env_line(rep.env)}")
    color = {"PASSED": "green", "PASSED with warnings": "yellow", "FAILED": "red"}[rep.status]
    ui.echo(rep.status, bold=True, fg=color)


def stop_unless_the_run_decides(rep: CheckReport, smoke: bool) -> None:
    """Before the smoke test: stop on a failure the smoke test cannot contradict; a
    contestable one (a weights name model.py may never load) waits for the run's verdict."""
    if smoke and all(c.get("contestable") for c in rep.checks if c["status"] == "failed"):
        return
    stop_if_failed(rep)


def stop_if_failed(rep: CheckReport) -> None:
    """A FAILED report stops a build: the other checks are said, the failure once, as the
    error and its hint."""
    if rep.status == "FAILED":
        f = rep.first_failure()
        assert f is not None  # FAILED: some check has the status "failed"
        say_checks(rep, skip=f)
        raise CheckFailed(f"{f['name']}: {f['message']}", hint=f["hint"] or "see the checks above")
