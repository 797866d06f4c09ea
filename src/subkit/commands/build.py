"""`subkit build` and `subkit check`: a zip the grader accepts the first time.

Build: inspect the weights, check model.py statically, strip the optimizer state (and
rewrite a model saved by a newer Keras for the grader's), write the candidate zip under a
temporary name, smoke-test it, and only then give it its final name, next to a manifest
and with its ledger row (``subkit.publish``: all three appear, or none). Check: the same
checks on any existing zip, or a Kaggle CSV read back. The checks are ``subkit.checks``,
the zip's content ``subkit.packaging``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from subkit import __version__, ui
from subkit.checks import (
    CheckReport,
    check_csv,
    check_zip,
    reconcile_with_smoke,
    say_checks,
    smoke_test,
    static_checks,
    stop_if_failed,
    stop_unless_the_run_decides,
)
from subkit.errors import CheckFailed, InputError, SubkitError, UsageError
from subkit.ledger import build_record, sha256_file
from subkit.packaging import (
    existing_grader_python,
    free_name,
    members,
    needs_load_proof,
    prepare_weights,
    resolve_model_py,
    submission_code,
    weights_verdict,
    write_zip,
    zip_names,
)
from subkit.weights import WeightsInfo, inspect, version_tuple

if TYPE_CHECKING:
    from subkit.profile import Profile


@dataclass(frozen=True)
class BuildOptions:
    weights: list[Path]
    model_py: Path | None = None  # None: ./model.py, else the template
    includes: list[Path] = field(default_factory=list)
    tag: str = "submission"
    out_dir: Path | None = None  # None: the workspace's submissions/
    keep_optimizer: bool = False
    smoke: bool = True
    env: str | None = None  # auto | grader | current; None: $SUBKIT_ENV or auto
    target_keras: str | None = None  # None: the grader's, when the weights are newer
    phase: str | None = None
    quiet: bool = False  # --json: no progress lines


@dataclass(frozen=True)
class CheckOptions:
    path: Path  # a zip, or a Kaggle CSV
    smoke: bool = True
    env: str | None = None
    data: Path | None = None  # with a CSV: the test set it predicts
    phase: str | None = None
    quiet: bool = False


def _reporting(quiet: bool):
    return ui.quiet() if quiet else contextlib.nullcontext()


def check(opts: CheckOptions, prof: Profile) -> CheckReport:
    """Check a zip (or a Kaggle CSV); returns the CheckReport (PASSED / FAILED)."""
    with _reporting(opts.quiet):
        if opts.path.name.lower().endswith(".csv"):
            return check_csv(opts.path, prof, data=opts.data)
        return check_zip(opts.path, prof, smoke=opts.smoke, env=opts.env, phase=opts.phase)


def build(opts: BuildOptions, prof: Profile) -> dict:
    """Build the zip; returns its manifest. ``opts.env`` picks the versions of the smoke
    test and where rewritten weights are proven to load."""
    with _reporting(opts.quiet):
        return _build(opts, prof)


# -- before anything is written ------------------------------------------------------------
def _inputs(opts: BuildOptions, prof: Profile) -> tuple[list[WeightsInfo], str, str, list[str]]:
    """The weights' infos, model.py's text and where it came from, the weights' names in
    the zip; every bad argument refused here."""
    if not re.fullmatch(r"[A-Za-z0-9._+-]{1,80}", opts.tag):
        raise UsageError(f"tag {opts.tag!r} is not a safe file name part",
                         hint="use letters, digits, '.', '_', '+', '-' (e.g. --tag v2m-tta)")
    if not opts.weights:
        raise UsageError("no weights given", hint="pass --weights FILE (repeat for an ensemble)")
    infos = [_inspect_weights(w, prof) for w in opts.weights]
    for inc in opts.includes:
        if not inc.is_file():
            raise InputError(f"--include file not found: {inc}", hint="give an existing file")
    source, source_from = resolve_model_py(opts.model_py, opts.weights, prof)
    znames = zip_names(source, opts.weights, prof, [i.name for i in opts.includes])
    names = [prof.entry_file] + znames + [i.name for i in opts.includes]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UsageError(f"two files would have the same name at the zip root: {', '.join(dup)}",
                         hint="rename one of them; the zip has no folders, so names must differ")
    return infos, source, source_from, znames


def savedmodel_info(folder: Path) -> WeightsInfo:
    """A TensorFlow SavedModel folder as weights: kind "savedmodel", its size, and the Keras
    that wrote it when its ``keras_metadata.pb`` says (tf.keras 2 writes its version there)."""
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())
    version = None
    meta = folder / "keras_metadata.pb"
    if meta.is_file():
        m = re.search(rb'"keras_version":\s*"([0-9][0-9.]*)"', meta.read_bytes()[:1_000_000])
        version = m.group(1).decode() if m else None
    return WeightsInfo(path=folder, kind="savedmodel", size=size, keras_version=version)


def _inspect_weights(w: Path, prof: Profile) -> WeightsInfo:
    """``inspect``, and a SavedModel folder where the grader runs Keras 2 (tf.keras loads
    it); in front of a Keras 3 grader such a folder is refused with the versions that load
    it."""
    if w.is_dir() and (w / "saved_model.pb").is_file():
        keras = str(prof.grader.get("keras"))
        if (version_tuple(keras) or (3,))[0] >= 3:
            raise InputError(f"{w} is a TensorFlow SavedModel folder (tf.keras, Keras 2), "
                             f"which the grader's keras {keras} cannot load with load_model",
                             hint="load it in tensorflow<=2.15 and save it again with "
                                  "model.save('weights.keras') under Keras 3 (or .h5), or set "
                                  "[grader] tensorflow and keras to 2.15.0 if that is the "
                                  "competition's grader")
        return savedmodel_info(w)
    return inspect(w)


def _out_dir(opts: BuildOptions, prof: Profile) -> Path:
    out = Path(opts.out_dir) if opts.out_dir else prof.submissions_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder {out}: {exc.strerror}",
                         hint="choose a folder you can write to with --out-dir") from None
    if not os.access(out, os.W_OK):
        raise InputError(f"the output folder {out} is not writable",
                         hint="choose a folder you can write to with --out-dir")
    return out


def _member_names(weights: list[Path], znames: list[str]) -> list[str]:
    """The zip's names of the weights: a file's own, a SavedModel folder's files under it."""
    out = []
    for w, zn in zip(weights, znames):
        if w.is_dir():
            out += [f"{zn}/{f.relative_to(w).as_posix()}" for f in sorted(w.rglob("*"))
                    if f.is_file() and not f.is_symlink()]
        else:
            out.append(zn)
    return out


def _refuse_oversized(infos: list[WeightsInfo], prof: Profile, keep_optimizer: bool) -> None:
    limit = prof.zip_size_limit_mb
    for info in infos:
        if limit and (info.size / 1e6
                      > limit * (1.0 if keep_optimizer or not info.has_optimizer else 3.0)):
            raise InputError(f"{info.path.name} is {info.size / 1e6:.1f} MB, "
                             f"over the competition's {limit:g} MB limit",
                             hint="use a smaller model or fewer ensemble members")


# -- the build ---------------------------------------------------------------------------------
def _build(opts: BuildOptions, prof: Profile) -> dict:
    from subkit import publish
    from subkit.grader.run import env_line, python_for
    from subkit.recovery import recover

    infos, source, source_from, znames = _inputs(opts, prof)
    out = _out_dir(opts, prof)
    for note in recover(prof, out):
        ui.echo(f"note: {note}")
    _refuse_oversized(infos, prof, opts.keep_optimizer)
    ui.echo(f"building a submission for {prof.name} (model.py: {source_from})")
    for w, zn in zip(opts.weights, znames):
        if zn != w.name:
            ui.echo(f"  {w.name} is stored in the zip as {zn}: the name {prof.entry_file} loads")

    rep = CheckReport(zip="")
    for info, zn in zip(infos, znames):
        rep.weights.append(dict(info.to_dict(), name=zn))
    target = opts.target_keras or prof.grader.get("keras")
    explicit = opts.target_keras is not None
    proofs = [needs_load_proof(i, target, explicit) for i in infos]
    env_choice = python_for(prof, opts.env) if (opts.smoke or any(proofs)) else None
    env_python = env_choice[0] if env_choice and env_choice[1].get("name") == "grader" else \
        (existing_grader_python(prof) if any(proofs) else None)
    with publish.staging(out) as stage:
        # check 1 first: a broken model.py fails before any weights are rewritten
        (stage / prof.entry_file).write_text(source, "utf-8")
        required = {name: text for name, text in prof.required_files.items()
                    if name not in {i.name for i in opts.includes}}
        for name, text in required.items():
            (stage / name).write_text(text, "utf-8")
        staged_files = [prof.entry_file] + _member_names(opts.weights, znames) \
            + [i.name for i in opts.includes] + list(required)
        static_checks(stage, staged_files, prof, rep)
        stop_unless_the_run_decides(rep, opts.smoke)
        staged: dict[str, Path] = {}
        weights_manifest = []
        for w, zn, info, proof in zip(opts.weights, znames, infos, proofs):
            path, entry = prepare_weights(w, zn, info, stage, keep_optimizer=opts.keep_optimizer,
                                          target=target if proof else None, explicit=explicit,
                                          env_python=env_python, code=submission_code(
                                              stage, prof, list(opts.includes), source_from))
            staged[zn] = path
            weights_manifest.append(entry)
        # write the candidate zip, then smoke-test it
        final = free_name(out, f"{opts.tag}-{datetime.now().strftime('%y%m%d_%H%M%S')}")
        zip_path = out / f"{final}.zip"
        cand = stage / publish.CANDIDATE
        write_zip(cand, stage, prof, list(required), staged, list(opts.includes))
        size = cand.stat().st_size
        limit = prof.zip_size_limit_mb
        if limit and size / 1e6 > limit:
            raise CheckFailed(f"the zip is {size / 1e6:.1f} MB, "
                              f"over the competition's {limit:g} MB limit",
                              hint="use a smaller model or fewer ensemble members")
        if opts.smoke:
            smoke_test(cand, prof, rep, env_choice=env_choice, phase=opts.phase)
            reconcile_with_smoke(rep)
        else:
            rep.add("smoke test", "warning", "skipped (--no-smoke)")
        files = [zn for zn in znames if not staged[zn].is_dir()]  # a SavedModel: the smoke test
        weights_verdict([e for e, zn in zip(weights_manifest, znames) if zn in files],
                        [inspect(staged[zn]) for zn in files], files, prof, rep,
                        zip_hint=str(zip_path))
        stop_if_failed(rep)
        say_checks(rep)
        manifest = _manifest(opts, prof, rep, cand, zip_path, size, source_from, weights_manifest)
        (stage / publish.MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        if zip_path.exists() or (out / f"{final}.json").exists():  # never overwrite
            raise SubkitError(f"{zip_path} appeared while building; nothing was overwritten",
                              hint="build again (the name has the time in it)")
        # the commit point: the ledger row, the zip and its manifest all appear, even if
        # subkit is killed in between (the next command finishes the job)
        publish.commit(stage, out, zip_path.name, f"{final}.json", prof.submissions_dir,
                       _ledger_row(manifest))
    ui.echo(f"wrote {zip_path} ({size / 1e6:.1f} MB) and {final}.json")
    if rep.env:
        ui.echo(f"smoke test {env_line(rep.env)}")
    return manifest


def _manifest(opts: BuildOptions, prof: Profile, rep: CheckReport, cand: Path, zip_path: Path,
              size: int, source_from: str, weights: list[dict]) -> dict:
    """The manifest next to the zip: what is in it, where it came from, what the checks
    said, and the versions that checked it."""
    return {
        "zip": zip_path.name, "path": str(zip_path), "sha256": sha256_file(cand), "size": size,
        "tag": opts.tag, "profile": prof.name, "model_py": source_from,
        "members": members(cand), "weights": weights,
        "grader": {k: v for k, v in prof.grader.items() if k != "extras"},
        "checks": rep.checks, "smoke": rep.smoke, "env": rep.env, "status": rep.status,
        "subkit_version": __version__, "python": sys.version.split()[0],
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _ledger_row(manifest: dict) -> dict:
    shas = {m["name"]: m["sha256"] for m in manifest["members"]}
    weights = manifest["weights"]
    return build_record(
        zip=manifest["zip"], zip_sha256=manifest["sha256"], tag=manifest["tag"],
        weights=[{"name": w["name"], "sha256": shas.get(w["name"]),
                  "keras_version": w.get("keras_version")} for w in weights],
        profile=manifest["profile"], size=manifest["size"],
        keras_version=weights[0].get("keras_version") if weights else None)
