"""What goes into a submission zip: the model.py (the participant's, else the template),
the names the weights get, each weights file prepared for the grader (optimizer state
stripped; a model saved by a newer Keras rewritten for the grader's and proven to load
there), and the zip itself. Mechanics only: `subkit build` (``subkit.commands.build``)
decides the order and writes the manifest and the ledger row; progress goes through
``subkit.ui``.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from subkit import ui
from subkit.checks import CheckReport, keras_versions, newer_keras
from subkit.errors import CheckFailed, InputError, SubkitError
from subkit.keras_compat.processes import CustomClassError, SubmissionCode
from subkit.ledger import sha256_file as _sha256
from subkit.modelcheck import check_source
from subkit.weights import WeightsInfo, is_weights_name, strip_optimizer, version_tuple

if TYPE_CHECKING:
    from subkit.profile import Profile


# -- model.py and the names in the zip ------------------------------------------------------
def resolve_model_py(model_py: Path | None, weights: list[Path], prof: Profile) -> tuple[str, str]:
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
            raise InputError(f"model file not found: {model_py}",
                             hint="give the path of your model.py")
        try:
            return model_py.read_text("utf-8"), str(model_py)
        except UnicodeDecodeError:
            raise InputError(f"{model_py} is not UTF-8 text", hint="save it as UTF-8") from None
    text = model_template(prof)
    names = [w.name for w in weights]
    text = re.sub(r"^WEIGHTS = \[.*?\]$", "WEIGHTS = " + json.dumps(names), text,
                  count=1, flags=re.M)
    return text, "subkit template"


def zip_names(source: str, weights: list[Path], prof: Profile, files: list[str]) -> list[str]:
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


def needs_load_proof(info: WeightsInfo, target: str | None, explicit: bool) -> bool:
    """A model file (not bare weights) saved by a Keras newer than the target, or any model
    file when the target was asked for explicitly."""
    if (version_tuple(target) or (3,))[0] < 3:
        return False  # a Keras 2 grader: the rewrite's rules are Keras 3's; the smoke test loads
    return info.kind in ("keras", "h5-model") and (explicit or bool(newer_keras(info.keras_version,
                                                                           target)))


def existing_grader_python(prof: Profile) -> str | None:
    from subkit.grader import environment

    try:
        return str(environment.ensure_env(prof, create=False))
    except SubkitError:
        return None


# -- the weights, prepared for the grader -----------------------------------------------------
def submission_code(stage: Path, prof: Profile, includes: list[Path],
                    model_py: str | None = None) -> SubmissionCode:
    """The submission's code for the Keras workers of a rewrite, when its weights need
    custom classes: the staged entry file, the profile's required files and every
    ``--include`` that is a .py file or a small one (the helper modules model.py imports), with
    the profile's sandbox limits. ``model_py``: where model.py came from (its folder: the
    .py files beside it, for the hint on a helper left out of the zip)."""
    from subkit.grader.sandbox import Limits

    files = {prof.entry_file: stage / prof.entry_file}
    files.update({name: stage / name for name in prof.required_files
                  if (stage / name).is_file()})
    # the helper modules, and the small files their import may read (a big data file is
    # not copied twice into the workers' working copies for nothing)
    files.update({inc.name: inc for inc in includes if not is_weights_name(inc.name)
                  and (inc.suffix == ".py" or inc.stat().st_size <= 16 * 1024**2)})
    folder = Path(model_py).parent if model_py and Path(model_py).is_file() else None
    return SubmissionCode(files=files, entry=prof.entry_file, limits=Limits.of(prof),
                          origin=model_py or "", folder=folder)


def _code_digest(code: SubmissionCode) -> str:
    h = hashlib.sha256()
    for name in sorted(code.files):
        h.update(name.encode() + b"\0" + Path(code.files[name]).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def prepare_weights(src: Path, name: str, info: WeightsInfo, stage: Path, *,
                    keep_optimizer: bool, target: str | None, explicit: bool,
                    env_python: str | None,
                    code: SubmissionCode | None = None) -> tuple[Path, dict]:
    """One weights file for the zip: optimizer state stripped, and, when ``target`` is
    given, rewritten for that Keras (``.keras``) or loaded there as it is (a legacy ``.h5``
    model), proven by loading in ``env_python``. A verified rewrite is cached by the
    file's sha256: building the same weights again skips the work.

    ``code`` (``submission_code``): weights whose custom classes the submission defines
    are loaded by workers that import it first; the cache key then covers its code too
    (the proof ran that code)."""
    from subkit import keras_compat

    entry: dict[str, Any] = dict(info.to_dict(), name=name)
    if name != src.name:
        entry["source_name"] = src.name
    strip = info.kind == "keras" and info.has_optimizer and not keep_optimizer
    code = code if info.custom_classes else None
    key = None
    rt: dict | None  # the retarget report; None: the file was not retargeted
    if target and info.kind == "keras":
        key = f"{_sha256(src)[:32]}-{'stripped' if strip else 'as-is'}-keras{target}"
        if code is not None:
            key += f"-code{_code_digest(code)}"
        hit = keras_compat.cached_retarget(key)
        if hit:
            path, rt = hit
            entry.update(stripped_optimizer=strip, size_before=info.size, size=path.stat().st_size,
                         retarget=dict(rt, cached=True))
            ui.echo(f"  {name}: " + retarget_line(rt) + " [cached: same weights as an "
                    "earlier build]")
            return path, entry
    # the Keras workers import TensorFlow (seconds each), and the current one loads the
    # user's file for the reference predictions, while the optimizer state is stripped
    workers = (keras_compat.start_workers(env_python, reference=src, target_version=target,
                                          code=code)
               if key else None)
    try:
        path, rt = _strip_and_prove(src, name, info, entry, stage, strip=strip, target=target,
                                    explicit=explicit, env_python=env_python, workers=workers,
                                    code=code)
    finally:
        if workers:
            keras_compat.close_workers(workers)
    if rt is None:
        return path, entry
    if key and rt.get("verified"):
        keras_compat.store_retarget(key, path, rt)
    entry["retarget"] = rt
    ui.echo(f"  {name}: " + retarget_line(rt))
    return path, entry


def _strip_and_prove(src: Path, name: str, info: WeightsInfo, entry: dict, stage: Path, *,
                     strip: bool, target: str | None, explicit: bool, env_python: str | None,
                     workers, code: SubmissionCode | None = None) -> tuple[Path, dict | None]:
    path = src
    if strip:
        path = stage / "stripped" / name
        path.parent.mkdir(exist_ok=True)
        strip_optimizer(src, path)
        entry.update(stripped_optimizer=True, size_before=info.size, size=path.stat().st_size)
        ui.echo(f"  {name}: optimizer state stripped, {info.size / 1e6:.1f} MB -> "
                f"{path.stat().st_size / 1e6:.1f} MB")
    else:
        entry["stripped_optimizer"] = False
        if info.kind == "keras":
            ui.echo(f"  {name}: {info.size / 1e6:.1f} MB"
                    + (" (optimizer kept: --keep-optimizer)" if info.has_optimizer else ""))
    if target is None:
        if explicit and info.kind == "h5-weights":
            ui.echo(f"  {name}: weights only, nothing to rewrite for Keras "
                    f"(model.py builds the model; the smoke test loads them)")
        return path, None
    if info.kind == "h5-model":
        return path, _prove_h5(path, name, info, target, env_python, code)
    rt = _retarget(path, stage, info, target, explicit, env_python, workers, code)
    if rt.get("path"):
        path = Path(rt.pop("path"))
        entry["size"] = path.stat().st_size
    return path, rt


def _prove_h5(path: Path, name: str, info: WeightsInfo, target: str,
              env_python: str | None, code: SubmissionCode | None = None) -> dict:
    """A legacy HDF5 model saved by a newer Keras: subkit does not rewrite .h5 files, so it
    loads it in the target as it is; refused, with the conversion, when that fails."""
    from subkit import keras_compat

    base = {"source_version": info.keras_version, "target_version": target}
    if env_python is None:
        return dict(base, status="skipped", verified=None,
                    skipped_reason="no grader environment to load it in")
    try:
        return dict(base, **keras_compat.verify_load(path, target, env_python=env_python,
                                                     code=code, custom=info.custom_classes))
    except CustomClassError:
        raise  # the class's own words: saving as .keras would not help
    except SubkitError as exc:
        stem = name.rsplit(".", 1)[0]
        raise CheckFailed(
            f"{name} is a legacy HDF5 model saved by Keras {info.keras_version}, and "
            f"{exc.message}; subkit rewrites only .keras files for an older Keras",
            hint=f"save it as .keras (keras.models.load_model('{name}').save('{stem}.keras')), "
                 f"load '{stem}.keras' in model.py, and build with --weights {stem}.keras"
        ) from None


def _retarget(path: Path, stage: Path, info: WeightsInfo, target: str, explicit: bool,
              env_python: str | None, workers=None,
              code: SubmissionCode | None = None) -> dict:
    """Rewrite a .keras for an older grader Keras (keras_compat.retarget), verified in
    ``env_python`` when there is one; without it, a cached probe of that Keras (unverified)
    or, failing that, the file is kept and the report says why."""
    from subkit import keras_compat

    dst = stage / "retargeted" / path.name
    dst.parent.mkdir(exist_ok=True)
    try:
        rep = keras_compat.retarget(path, dst, target, env_python=env_python,
                                    workers=workers, code=code)
    except SubkitError as exc:
        if env_python is not None or explicit:
            raise  # a layer the target cannot express, or a failed verification: stop
        return {"status": "skipped", "source_version": info.keras_version,
                "target_version": target, "skipped_reason": exc.message, "verified": None}
    if rep.get("status") in ("rewritten", "unchanged") and dst.exists():
        rep["path"] = str(dst)
    return rep


def weights_verdict(manifest: list[dict], infos: list[WeightsInfo], names: list[str], prof: Profile,
                     rep: CheckReport, zip_hint: str) -> None:
    """Check 3 for build: a rewrite proven by loading in the grader's Keras is the verdict;
    otherwise the smoke test's (keras_versions)."""
    rest_infos, rest_names = [], []
    for entry, info, name in zip(manifest, infos, names):
        rt = entry.get("retarget") or {}
        if rt.get("verified"):
            rep.add("keras version", "ok", f"{name}: " + retarget_line(rt))
        else:
            rest_infos.append(info)
            rest_names.append(name)
    keras_versions(rest_infos, prof, rep, names=rest_names, zip_hint=zip_hint)


def retarget_line(rt: dict) -> str:
    st = rt.get("status")
    src, tgt = rt.get("source_version"), rt.get("target_version")
    proof = (f"proven by loading it in keras {tgt}, max |diff| {rt.get('max_abs_diff'):.1e}"
             if rt.get("verified") else
             f"NOT proven to load in keras {tgt}: "
             f"{rt.get('skipped_reason') or 'it predicted differently'}")
    if st == "rewritten":
        n = len(rt.get("changed_keys") or [])
        return f"saved by Keras {src}, rewritten for Keras {tgt} ({n} config keys adapted; {proof})"
    if st in ("unchanged", "loads"):
        return f"saved by Keras {src}, loads in Keras {tgt} as it is ({proof})"
    if st == "skipped":
        return f"saved by Keras {src}, NOT rewritten for Keras {tgt}: {rt.get('skipped_reason')}"
    return f"saved by Keras {src}: no rewrite needed for Keras {tgt}"


def free_name(folder: Path, base: str) -> str:
    name, i = base, 1
    while (folder / f"{name}.zip").exists() or (folder / f"{name}.json").exists():
        name = f"{base}-{i}"
        i += 1
    return name


def members(zip_path: Path) -> list[dict]:
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


# -- the zip -------------------------------------------------------------------------------------
def write_zip(path: Path, stage: Path, prof: Profile, required: list[str], weights: dict[str, Path],
              includes: list[Path]) -> None:
    """The zip, every file at its root: the entry file and the profile's ``required`` files
    (written in ``stage``), the prepared ``weights`` (name in the zip -> file), the
    ``includes``."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(stage / prof.entry_file, prof.entry_file, compress_type=zipfile.ZIP_DEFLATED)
        for name in required:  # e.g. CodaLab's metadata, from the profile
            zf.write(stage / name, name, compress_type=zipfile.ZIP_DEFLATED)
        for name, src in weights.items():
            if src.is_dir():  # a TensorFlow SavedModel folder (a Keras 2 grader): its files
                for f in sorted(p for p in src.rglob("*") if p.is_file() and not p.is_symlink()):
                    zf.write(f, f"{name}/{f.relative_to(src).as_posix()}",
                             compress_type=zipfile.ZIP_DEFLATED)
                continue
            # a .keras is already a zip: store it, do not deflate it again
            zf.write(src, name, compress_type=zipfile.ZIP_STORED)
        for inc in includes:
            ctype = (zipfile.ZIP_STORED
                     if is_weights_name(inc.name) or inc.suffix in (".zip", ".npz")
                     else zipfile.ZIP_DEFLATED)
            zf.write(inc, inc.name, compress_type=ctype)
