"""`subkit init` and finding things in a workspace."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from subkit.errors import InputError, SubkitError
from subkit.fsutil import write_text_atomic

if TYPE_CHECKING:
    from subkit.profile import Profile


def template_text(name: str) -> str:
    """A file of the packaged templates (works from a wheel, not only a checkout)."""
    return (resources.files("subkit") / "templates" / name).read_text("utf-8")


def model_template(prof: Profile) -> str:
    """The template model.py of the profile's kind, written for its grader: the class
    name (``model`` on CodaLab), ``__init__(self, path)`` where the grader passes the
    submission's folder, the first phase's forecast horizon."""
    from subkit.profile import SUBMISSION_PLACEHOLDER

    kind = prof.kind_spec
    text = template_text(kind.templates[0])
    text = re.sub(r"^class Model:", f"class {prof.class_name}:", text, count=1, flags=re.M)
    if prof.init_args == [SUBMISSION_PLACEHOLDER]:
        text = text.replace("def __init__(self, path=None):", "def __init__(self, path):", 1)
    return kind.edit_model_template(text, prof)


def train_template(prof: Profile) -> str:
    """The reference train.py of the profile's kind, its DATA line set from the profile."""
    kind = prof.kind_spec
    data = {"images_key": prof.images_key, "labels_key": prof.labels_key,
            **kind.template_data(prof)}
    text = template_text(kind.templates[1])
    return re.sub(r"^DATA = \{.*?\}$", "DATA = " + json.dumps(data), text, count=1,
                  flags=re.M | re.S)


def init_workspace(directory: Path, profile_name: str | None, *, force: bool = False) -> list[Path]:
    from subkit import profile

    prof_name = profile_name or profile.DEFAULT_PROFILE
    prof = profile.load(prof_name, workspace=False)  # validates the name
    files = {
        directory / "model.py": model_template(prof),
        directory / "train.py": train_template(prof),
        directory / "train_data.py": template_text("train_data.py"),  # train.py imports it
        directory / "subkit.toml": _workspace_toml(prof.name),
        directory / "submissions" / ".gitignore": "*.zip\nruns/\n",
    }
    for name, text in prof.required_files.items():  # CodaLab's metadata, for zips by hand
        files[directory / name] = text
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
        write_text_atomic(p, text)
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


def newest_zip(prof: Profile) -> Path:
    folder = prof.submissions_dir
    zips = sorted(folder.glob("*.zip"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    if not zips:
        raise SubkitError(f"no zip given and none in {folder}",
                          hint="pass the zip, or build one with `subkit build --weights FILE`")
    return zips[-1]
