"""`subkit init` and finding things in a workspace."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from subkit.errors import InputError, SubkitError


def template_text(name: str) -> str:
    """A file of the packaged templates (works from a wheel, not only a checkout)."""
    return (resources.files("subkit") / "templates" / name).read_text("utf-8")


def init_workspace(directory: Path, profile_name: str | None, *, force: bool = False) -> list[Path]:
    from subkit import profile

    prof_name = profile_name or profile.DEFAULT_PROFILE
    prof = profile.load(prof_name, workspace=False)  # validates the name
    files = {
        directory / "model.py": template_text("model.py"),
        directory / "train.py": template_text("train.py"),
        directory / "subkit.toml": _workspace_toml(prof.name),
        directory / "submissions" / ".gitignore": "*.zip\nruns/\n",
    }
    existing = [p for p in files if p.exists()]
    if existing and not force:
        raise InputError(f"{existing[0]} exists; refusing to overwrite",
                         hint="pass --force to overwrite, or init another folder")
    try:
        (directory / "submissions").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {directory}: {exc.strerror}",
                         hint="choose a folder you can write to") from None
    for p, text in files.items():
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_text(text, "utf-8")
        tmp.replace(p)
    return list(files)


def _workspace_toml(profile_name: str) -> str:
    return f'''# subkit workspace. The profile says what the competition's grader expects;
# repeat any of its tables here to override a field (`subkit profile show` prints the
# effective profile), e.g.
#   [grader]
#   keras = "3.5.0"
profile = "{profile_name}"

[workspace]
submissions = "submissions"
# the local test set that score-local uses by default (subkit data split --set-default)
# local_test = "data/local_test.npz"
'''


def newest_zip(prof) -> Path:
    folder = prof.submissions_dir
    zips = sorted(folder.glob("*.zip"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    if not zips:
        raise SubkitError(f"no zip given and none in {folder}",
                          hint="pass the zip, or build one with `subkit build --weights FILE`")
    return zips[-1]
