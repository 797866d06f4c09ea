"""`subkit bundle export`: a Codabench v2 bundle whose grader is subkit's own code
(grader/ingestion.py, grader/scoring.py and score.py next to this file)."""

from __future__ import annotations

import json
import shlex
import time
import zipfile
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from subkit.errors import InputError, UsageError
from subkit.fsutil import atomic_open
from subkit.grader.codabench.image import default_image, dockerfile, image_note

if TYPE_CHECKING:
    from subkit.profile import Profile

_LOGO = (  # a 1x1 PNG: the v2 unpacker requires `image:`
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
    b"\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef"
    b"\x00\x00\x00\x00IEND\xaeB`\x82")


_METRIC_TITLES = {"accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy",
                  "macro_f1": "Macro F1"}


def export_bundle(prof: Profile, reference: Path, out: Path, *, force: bool = False,
                  docker_image: str | None = None) -> dict:
    """Write a Codabench v2 bundle for ``prof`` with ``reference`` as the test set."""
    import numpy as np
    import yaml

    from subkit.data import io as data_io
    from subkit.grader.run import prepare_input
    from subkit.workspace import template_text

    out = Path(out)
    prof.kind_spec.refuse_export(prof)
    if out.suffix.lower() != ".zip":
        raise UsageError(f"--out {out} should end in .zip", hint="e.g. --out bundle.zip")
    if out.exists() and not force:
        raise InputError(f"{out} exists; refusing to overwrite",
                         hint="pass --force or choose another --out")
    if not out.parent.is_dir() if str(out.parent) else False:
        raise InputError(f"folder {out.parent} does not exist", hint="create it first")
    ds = data_io.load(reference, prof, require_labels=True)
    X, warns = prepare_input(ds.images, prof)
    y = np.asarray(ds.labels, dtype=np.int64)
    here = Path(__file__).parents[1]  # grader/: ingestion.py, scoring.py
    ingestion_src = (here / "ingestion.py").read_bytes()
    scoring_src = (here / "scoring.py").read_bytes()
    metric = prof.metric
    columns = [metric] + [k for k in ("accuracy", "balanced_accuracy", "macro_f1") if k != metric]
    higher = prof.higher_is_better
    limit = int(round(prof.time_limit_s))
    phase_names = prof.phases or ["development"]
    image = docker_image or default_image(prof)
    note = image_note(image, prof)
    init = "".join(f" --init-arg {shlex.quote(str(a))}" for a in prof.init_args)
    ingestion_cmd = (f"python3 $ingestion_program/ingestion.py --submission $submission_program "
                     f"--input $input/X.npy --output $output "
                     f"--entry {shlex.quote(prof.entry_file)} "
                     f"--class-name {shlex.quote(prof.class_name)} "
                     f"--method {shlex.quote(prof.predict_method)}{init}")
    scoring_cmd = "python3 $program/score.py $input $output"
    today = date.today()
    phases = []
    for i, name in enumerate(phase_names):
        p = {"index": i, "name": str(name).capitalize(),
             "description": f"{name} phase: the submission's predictions on the test set of "
                            f"task {i}.",
             "start": today + timedelta(days=60 * i),
             "execution_time_limit": limit,
             "max_submissions_per_day": prof.max_submissions_per_day or 5,
             "tasks": [i]}
        if i < len(phase_names) - 1:
            p["end"] = today + timedelta(days=60 * (i + 1))
        if i == 0:
            p["starting_kit"] = "starting_kit"
        phases.append(p)
    tasks = [{"index": i, "name": f"{prof.title} ({name})",
              "description": f"{len(X)} test images; the ingestion program is subkit's grader",
              "input_data": "input_data", "reference_data": "reference_data",
              "ingestion_program": "ingestion_program", "scoring_program": "scoring_program"}
             for i, name in enumerate(phase_names)]
    comp = {
        "version": 2,
        "title": prof.title,
        "description": f"Exported by subkit from profile {prof.name}.",
        "image": "logo.png",
        "registration_auto_approve": False,
        "docker_image": image,
        "enable_detailed_results": True,
        "terms": "pages/terms.md",
        "pages": [{"title": "Overview", "file": "pages/overview.md"},
                  {"title": "Evaluation", "file": "pages/evaluation.md"}],
        "tasks": tasks,
        "phases": phases,
        "leaderboards": [{"index": 0, "title": "Results", "key": "main", "columns": [
            {"title": _METRIC_TITLES.get(k, k), "key": k, "index": i,
             "sorting": "desc" if higher else "asc", "precision": 4}
            for i, k in enumerate(columns)]}],
    }
    header = (f"# Codabench v2 bundle exported by subkit from profile {prof.name}.\n"
              "# The ingestion program is subkit's grader/ingestion.py and the scoring\n"
              "# program its grader/scoring.py: `subkit score-local ZIP --bundle THIS.zip`\n"
              "# runs the same code.\n"
              f"# Every task uses the same test set; give the later phases' tasks their own\n"
              f"# input_data/reference_data folders before publishing. docker_image must hold the\n"
              f"# grader's versions (python {prof.grader.get('python')}, tensorflow "
              f"{prof.grader.get('tensorflow')}, keras {prof.grader.get('keras')}, numpy "
              f"{prof.grader.get('numpy')}).\n")
    settings = {"class_names": prof.class_names, "metric": metric, "columns": columns,
                "profile": prof.name}
    overview = (f"# {comp['title']}\n\nSubmit a zip with `{prof.entry_file}` and its weights at "
                f"the zip root. The grader runs "
                f"`from {prof.entry_file[:-3]} import {prof.class_name}`, "
                f"`{prof.class_name}()` and one `{prof.predict_method}(X)` on all test images, X "
                f"of shape (n, {', '.join(map(str, prof.input_shape))}) and dtype "
                f"{prof.input_dtype}; "
                f"it must return n integer labels 0..{prof.n_classes - 1}.\n\nClasses: "
                + ", ".join(f"{i} {n}" for i, n in enumerate(prof.class_names)) + ".\n")
    evaluation = (f"# Evaluation\n\nLeaderboard: {', '.join(columns)} (first: {metric}). Time "
                  f"limit {limit} s per run. The scoring program is the one `subkit "
                  "score-local` uses.\n")
    kit_readme = (f"# Starting kit\n\n`model.py` is subkit's template for {prof.name}. Train, save "
                  f"the weights next to it, zip both at the zip root:\n\n    zip submission.zip "
                  f"model.py weights.keras\n\nor `subkit build --weights weights.keras`. Check it "
                  f"locally with `subkit score-local submission.zip --bundle <this bundle>`.\n")
    files: dict[str, bytes] = {
        "competition.yaml": (header + yaml.safe_dump(comp, sort_keys=False)).encode(),
        "logo.png": _LOGO,
        "pages/overview.md": overview.encode(),
        "pages/evaluation.md": evaluation.encode(),
        "pages/terms.md": b"# Terms\n\nThe organizers' terms go here.\n",
        "ingestion_program/metadata.yaml":
            yaml.safe_dump({"command": ingestion_cmd}, width=10000).encode(),
        "ingestion_program/ingestion.py": ingestion_src,
        "scoring_program/metadata.yaml":
            yaml.safe_dump({"command": scoring_cmd}, width=10000).encode(),
        "scoring_program/score.py": (Path(__file__).with_name("score.py")).read_bytes(),
        "scoring_program/scoring.py": scoring_src,
        "scoring_program/settings.json": json.dumps(settings, indent=2).encode(),
        "starting_kit/model.py": template_text("model.py").encode(),
        "docker/Dockerfile": dockerfile(prof).encode(),
        "starting_kit/README.md": kit_readme.encode(),
    }
    import io

    def npy(a: np.ndarray) -> bytes:
        buf = io.BytesIO()
        np.save(buf, a, allow_pickle=False)
        return buf.getvalue()

    files["input_data/X.npy"] = npy(X)
    files["reference_data/y.npy"] = npy(y)
    with atomic_open(out, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
            info.compress_type = (zipfile.ZIP_STORED if name.endswith(".npy")
                                  else zipfile.ZIP_DEFLATED)
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return {"out": str(out), "profile": prof.name, "n": int(len(X)), "phases": phase_names,
            "time_limit_s": limit, "metric": metric, "columns": columns, "docker_image": image,
            "files": sorted(files), "warnings": warns + ([note] if note else [])}
