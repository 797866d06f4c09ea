"""Which versions run a submission (``--env auto|grader|current``) and how a run record
describes them."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from subkit.errors import SubkitError, UsageError
from subkit.grader.environment import store
from subkit.grader.environment.pinset import pins

if TYPE_CHECKING:
    from subkit.profile import Profile

ENV_NAMES = ("current", "grader")
ENV_CHOICES = ("auto", "grader", "current")
FAILED_RETRY_S = 3600  # after a failed automatic creation, `auto` waits this long to retry


# -- for the run record ------------------------------------------------------------------------
def _dist_version(*names: str) -> str | None:
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def current_description() -> dict:
    """The current interpreter's versions, from package metadata (no TensorFlow import)."""
    return {
        "name": "current",
        "python_version": "%d.%d.%d" % sys.version_info[:3],
        "tensorflow": _dist_version("tensorflow", "tensorflow-cpu", "tensorflow-intel",
                                    "tensorflow-macos", "tf-nightly"),
        "keras": _dist_version("keras", "keras-nightly"),
        "numpy": _dist_version("numpy"),
        "path": sys.executable,
    }


def resolve_python(profile: Profile, env: str, *,
                   create: bool = True, progress: bool | None = None) -> tuple[str, dict]:
    """The python to run a submission's child with, and a description for the run record.

    ``env`` is "current" (``sys.executable``) or "grader" (the profile's pinned environment,
    created on demand unless ``create=False``). The description is ``{name,
    python_version, tensorflow, keras, numpy, path}`` (+ ``pins``, ``note`` for grader).
    """
    if env == "current":
        return sys.executable, current_description()
    if env != "grader":
        raise UsageError(f"unknown environment {env!r}",
                         hint=f"use one of: {', '.join(ENV_NAMES)}")
    python = store.ensure_env(profile, create=create, progress=progress)
    marker = store.read_marker(python.parent.parent) or {}
    versions = marker.get("versions") or {}
    return str(python), {
        "name": "grader",
        "python_version": versions.get("python_version"),
        "tensorflow": versions.get("tensorflow"),
        "keras": versions.get("keras"),
        "numpy": versions.get("numpy"),
        "path": str(python.parent.parent),
        "pins": marker.get("pins"),
        "note": marker.get("note"),
    }


# -- which versions run the submission: --env auto|grader|current --------------------------------
def default_env() -> str:
    """``$SUBKIT_ENV`` when set (auto, grader or current), else "auto"."""
    value = os.environ.get("SUBKIT_ENV", "").strip().lower() or "auto"
    if value not in ENV_CHOICES:
        raise UsageError(f"SUBKIT_ENV={value!r} is not one of {', '.join(ENV_CHOICES)}",
                         hint="unset SUBKIT_ENV, or set it to auto, grader or current")
    return value


def _same_version(have: str | None, pin: str) -> bool:
    """Whether an installed version satisfies an exact pin ("3.10" matches 3.10.13); a pin
    that is a range (">=1.2") is not compared here."""
    if not pin[:1].isdigit():
        return True
    if have is None:
        return False
    want = pin.split(".")
    return have.split(".")[:len(want)] == want


def differences(pin_set: dict) -> list[str]:
    """How the current interpreter's versions differ from ``pin_set``, in words:
    ``["python 3.11.7 (grader 3.10)", "keras 3.15.1 (grader 3.4.1)", ...]``."""
    cur = current_description()
    have = {"python": cur["python_version"], "tensorflow": cur["tensorflow"],
            "keras": cur["keras"], "numpy": cur["numpy"]}
    out = []
    for name, pin in pin_set.items():
        version = have[name] if name in have else _dist_version(name)
        if not _same_version(version, pin):
            out.append(f"{name} {version or 'not installed'} (grader {pin})")
    return out


def versions_text(desc: dict) -> str:
    """"python 3.10.13, tensorflow 2.17.0, keras 3.4.1, numpy 1.26.4" of an env description."""
    return ", ".join(f"{k} {desc.get(v) or '-'}" for k, v in (
        ("python", "python_version"), ("tensorflow", "tensorflow"), ("keras", "keras"),
        ("numpy", "numpy")))


def _failed_marker(profile: Profile) -> Path:
    folder = store.env_dir(profile)
    return folder.parent / f"{folder.name}.failed.json"


def _recent_failure(profile: Profile) -> dict | None:
    """The reason an automatic creation failed less than FAILED_RETRY_S ago, if one did."""
    try:
        info = json.loads(_failed_marker(profile).read_text("utf-8"))
        if time.time() - float(info["time"]) < FAILED_RETRY_S:
            return info
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _note_failure(profile: Profile, message: str) -> None:
    path = _failed_marker(profile)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"time": time.time(), "reason": message}), "utf-8")


def clear_failure(profile: Profile) -> None:
    with contextlib.suppress(OSError):
        _failed_marker(profile).unlink()


def select_env(profile: Profile, env: str | None = None, *,
               progress: bool | None = None, create: bool = True) -> tuple[str, dict]:
    """The python that runs a submission, and the description every summary shows.

    ``env``: "current" (this interpreter), "grader" (the profile's pinned environment,
    created on demand; an error when it cannot be), or "auto" (the default, or
    ``$SUBKIT_ENV``): the grader environment whenever this interpreter's versions differ
    from the pins, else this interpreter. When ``auto`` cannot create the environment
    (offline, no wheel for this platform or Python, ...), the current versions run the
    submission and the description carries ``warning`` (loud: a pass then proves less);
    a failed automatic creation is not retried for an hour (``subkit env create`` retries
    at once).

    The description: ``{name: "grader"|"current", requested, reason, python_version,
    tensorflow, keras, numpy, path, pins, differences, matches_grader, warning?, note?}``.
    """
    env = env or default_env()
    if env not in ENV_CHOICES:
        raise UsageError(f"unknown environment {env!r}",
                         hint=f"use one of: {', '.join(ENV_CHOICES)}")
    pin_set = pins(profile)
    diff = differences(pin_set)
    grader_text = ", ".join(f"{k} {v}" for k, v in pin_set.items())
    if env == "current" or (env == "auto" and not diff):
        desc = current_description()
        desc.update(requested=env, pins=pin_set, differences=diff, matches_grader=not diff,
                    reason=("they are the grader's pinned versions" if not diff else
                            "--env current: NOT the grader's versions (" + "; ".join(diff)
                            + ")"))
        return sys.executable, desc
    failed = _recent_failure(profile) if env == "auto" else None
    try:
        if failed:
            raise SubkitError(f"{failed['reason']} (an automatic attempt "
                              f"{(time.time() - failed['time']) / 60:.0f} min ago)")
        python, desc = resolve_python(profile, "grader", create=create,
                                      progress=progress)
    except SubkitError as exc:
        if env == "grader":
            raise
        if not failed and create:
            _note_failure(profile, exc.message)
        desc = current_description()
        desc.update(requested=env, pins=pin_set, differences=diff, matches_grader=False,
                    fallback=True, reason="the grader environment could not be set up",
                    warning=(f"NOT the grader's versions: the grader environment ({grader_text}"
                             f") could not be set up ({exc.message}), so the submission ran "
                             f"in the current ones ({versions_text(desc)}); a pass here does "
                             "not prove that the grader accepts it. `subkit env create` "
                             "retries and shows why"))
        return sys.executable, desc
    clear_failure(profile)
    desc.update(requested=env, differences=diff,
                matches_grader=_same_version(desc.get("python_version"), pin_set["python"]),
                reason=("--env grader" if env == "grader" else
                        "the current versions differ from the grader's (" + "; ".join(diff)
                        + ")"))
    return python, desc
