"""`subkit probe`, `subkit probe import FILE`, `subkit probe diff FILE`: measure the grader
instead of guessing it.

The probe (``templates/probe_model.py``) is a submission that passes the grader with dummy
predictions of the profile's output and prints a fingerprint of the machine that ran it as
one delimited block on stdout::

    =====SUBKIT-PROBE-BEGIN===== profile=NAME format=1
    SUBKIT-PROBE|0000|<160 characters of the canonical JSON>|
    ...
    =====SUBKIT-PROBE-END===== sha256=<of the JSON> lines=N

Codabench shows a submission's stdout to its participant (the "Logs" tab of the
submission's row): codalab/codabench ``compute_worker/compute_worker.py``, where
``Run._run_program_directory`` starts the ingestion program and the submission's program,
and the stdout and stderr of each are uploaded with ``Run._put_file``; CodaLab shows the
prediction step's stdout too ("View the output"; its worker keeps the same files for each
step). The reader tolerates what a log viewer adds in front of a line (a time stamp) and
Kaggle's notebook log (a JSON list of ``{"data": ...}``); a missing, reordered or cut line
or an edited value is refused (numbered lines, each closed by "|", the sha256).

``import`` writes into subkit.toml, through tomli_w, the measured ``[grader]`` pins
(python, tensorflow, keras, numpy, the extras worth pinning), the network policy and the
machine (``[probe]``), with the date and the source, after checking that the pins can be
installed here (``environment.check_pins_available``); the whole fingerprint is kept in
``submissions/probes/`` so that ``diff`` can name what changed since.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from subkit.errors import InputError, ProfileError, SubkitError, UsageError

if TYPE_CHECKING:
    from subkit.profile import Profile

BEGIN = "=====SUBKIT-PROBE-BEGIN====="
END = "=====SUBKIT-PROBE-END====="
LINE = "SUBKIT-PROBE|"
FORMAT = 1
FILE_NAME = "subkit_probe.txt"  # what the probe writes into its output folder
PROBES_DIR = "probes"  # under submissions/: every imported fingerprint, whole
MAIN = ("tensorflow", "keras", "numpy")
# distributions a participant's model.py imports often enough to pin when the grader has
# them (scikit-learn scalers, scipy, OpenCV, ...); the profile's own extras are kept too
WORTH_PINNING = (
    "scikit-learn", "scipy", "pandas", "pillow", "opencv-python", "opencv-python-headless",
    "scikit-image", "tf-keras", "keras-cv", "keras-hub", "keras-nlp",
    "tensorflow-addons", "tensorflow-hub", "tensorflow-probability", "torch", "torchvision",
    "timm", "transformers", "xgboost", "lightgbm", "joblib", "statsmodels", "albumentations",
    "segmentation-models", "imageio", "matplotlib",
)
# how many bytes of a log file are read (a log is text; a fingerprint is ~20 kB)
READ_CAP = 64 << 20


@dataclass(frozen=True)
class ProbeOptions:
    phase: str | None = None  # the phase whose output the dummy predictions have
    out_dir: Path | None = None  # default: the workspace's submissions/


@dataclass(frozen=True)
class ImportOptions:
    file: Path
    check_index: bool = True  # ask the package index whether the pins can be installed


@dataclass(frozen=True)
class DiffOptions:
    file: Path


# -- building the probe ------------------------------------------------------------------------
def probe_text(prof: Profile, phase: str | None = None, probe_id: str = "") -> str:
    """The probe's model.py for this profile: its class name, its constructor, and the
    output its dummy predictions have."""
    from subkit.profile import SUBMISSION_PLACEHOLDER
    from subkit.workspace import template_text

    spec = prof.task_spec(phase)
    settings = {"format": FORMAT, "profile": prof.name, "platform": prof.platform,
                "kind": prof.output_kind, "n_classes": prof.n_classes,
                "horizon": int(spec.horizon or 0), "mask_shape": list(spec.mask_shape),
                "phase": spec.phase, "probe_id": probe_id}
    text = template_text("probe_model.py")
    text = re.sub(r"^PROBE = \{.*?\}\n", lambda m: "PROBE = " + json.dumps(settings) + "\n",
                  text, count=1, flags=re.M | re.S)
    text = re.sub(r"^class Model:", f"class {prof.class_name}:", text, count=1, flags=re.M)
    if prof.init_args == [SUBMISSION_PLACEHOLDER]:
        text = text.replace("def __init__(self, path=None):", "def __init__(self, path):", 1)
    return text


def build_probe(opts: ProbeOptions, prof: Profile) -> dict:
    """The probe zip (Codabench, CodaLab) with its ledger row, or a script and a notebook
    for a Kaggle notebook (a Kaggle CSV competition runs no code of the participant's)."""
    out = Path(opts.out_dir) if opts.out_dir else prof.submissions_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {out}: {exc.strerror}",
                         hint="choose a folder you can write to (--out-dir)") from None
    stamp = time.strftime("%y%m%d_%H%M%S")
    probe_id = f"{prof.name}-{stamp}-{os.urandom(3).hex()}"
    text = probe_text(prof, opts.phase, probe_id)
    if prof.platform == "kaggle":
        return _kaggle_probe(prof, out, stamp, probe_id, text)
    return _zip_probe(prof, out, stamp, probe_id, text)


def _zip_probe(prof: Profile, out: Path, stamp: str, probe_id: str, text: str) -> dict:
    from subkit import publish
    from subkit.ledger import build_record, sha256_file

    name = f"probe-{stamp}.zip"
    members = {prof.entry_file: text, **prof.required_files}
    with publish.staging(out) as stage:
        cand = stage / publish.CANDIDATE
        with zipfile.ZipFile(cand, "w", zipfile.ZIP_DEFLATED) as zf:
            for member, content in members.items():
                zf.writestr(member, content)
        sha = sha256_file(cand)
        manifest = {"kind": "probe", "zip": name, "zip_sha256": sha, "probe_id": probe_id,
                    "profile": prof.name, "platform": prof.platform,
                    "members": sorted(members), "output": prof.output_kind}
        (stage / publish.MANIFEST).write_text(json.dumps(manifest, indent=2), "utf-8")
        row = build_record(zip=str(out / name), zip_sha256=sha, tag="probe", weights=[],
                           profile=prof.name, size=cand.stat().st_size, probe_id=probe_id)
        publish.commit(stage, out, name, name[:-4] + ".json", prof.submissions_dir, row)
    return {"kind": "zip", "path": str(out / name), "zip_sha256": sha, "probe_id": probe_id,
            "profile": prof.name, "platform": prof.platform, "members": sorted(members)}


def _kaggle_probe(prof: Profile, out: Path, stamp: str, probe_id: str, text: str) -> dict:
    """A script (and the same as a one-cell notebook) that prints the fingerprint of the
    Kaggle notebook it runs in and writes a dummy submission.csv there."""
    from subkit import kaggle_csv
    from subkit.fsutil import write_text_atomic

    lay = prof.csv
    cols = kaggle_csv.header(prof)
    csv = {"header": cols if lay.layout != "pixels" else cols[:1] + [f"0..{len(cols) - 2}"],
           "layout": lay.layout, "id_width": lay.id_width, "rows": lay.rows,
           "value": (prof.class_names[0] if lay.label_values == "names" else "0")}
    script = text + _KAGGLE_MAIN.replace("CSV_SPEC", json.dumps(csv))
    py = out / f"probe-{stamp}.py"
    nb = out / f"probe-{stamp}.ipynb"
    write_text_atomic(py, script)
    notebook = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {},
                           "outputs": [], "source": script.splitlines(keepends=True)}],
                "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                            "name": "python3"}},
                "nbformat": 4, "nbformat_minor": 5}
    write_text_atomic(nb, json.dumps(notebook, indent=1))
    return {"kind": "kaggle-notebook", "path": str(py), "notebook": str(nb),
            "probe_id": probe_id, "profile": prof.name, "platform": prof.platform,
            "reason": ("Kaggle scores the CSV you upload and runs no code of yours for this "
                       "competition: there is no grader machine to measure. The probe measures "
                       "the Kaggle notebook that makes your CSV (paste the script into a "
                       "notebook cell, or upload the .ipynb) and writes a dummy "
                       "submission.csv there")}


_KAGGLE_MAIN = r"""

KAGGLE_CSV = CSV_SPEC


def _dummy_csv(spec, folder):
    import glob

    samples = sorted(glob.glob("/kaggle/input/**/*sample*submission*.csv", recursive=True))
    path = os.path.join(folder, "submission.csv")
    if samples:  # the competition's own ids and columns, one dummy value each
        with open(samples[0]) as src, open(path, "w") as dst:
            head = src.readline().rstrip("\n")
            dst.write(head + "\n")
            width = len(head.split(","))
            for line in src:
                ident = line.split(",", 1)[0].strip()
                if ident:
                    dst.write(ident + ("," + spec["value"]) * (width - 1) + "\n")
        return path
    if not spec["rows"]:
        print("subkit probe: no sample submission under /kaggle/input and the profile does not "
              "know the test rows: no submission.csv written")
        return None
    with open(path, "w") as dst:
        if spec["layout"] == "pixels":
            n = int(spec["header"][1].split("..")[1]) + 1
            dst.write(spec["header"][0] + "," + ",".join(str(i) for i in range(n)) + "\n")
            cells = ("," + spec["value"]) * n
        else:
            dst.write(",".join(spec["header"]) + "\n")
            cells = "," + spec["value"]
        for i in range(spec["rows"]):
            dst.write(str(i).zfill(spec["id_width"]) + cells + "\n")
    return path


if __name__ == "__main__":
    _fp = report(os.getcwd())
    _csv = _try(_dummy_csv, KAGGLE_CSV, "/kaggle/working" if os.path.isdir("/kaggle/working")
                else os.getcwd())
    print("subkit probe: dummy submission: %s" % (_csv,))
"""


# -- reading a fingerprint back ----------------------------------------------------------------
@dataclass(frozen=True)
class Fingerprint:
    data: dict
    sha256: str
    source: str  # the file it was read from

    @property
    def profile(self) -> str | None:
        return (self.data.get("probe") or {}).get("profile")


class _Bad(Exception):
    """A block that is there but not whole (the reason, in words)."""


def _log_lines(raw: bytes) -> list[str]:
    text = raw.decode("utf-8", errors="replace")
    stripped = text.lstrip()
    if stripped.startswith("["):  # a Kaggle notebook log: [{"stream_name", "time", "data"}]
        try:
            items = json.loads(stripped)
            if isinstance(items, list) and all(isinstance(i, dict) for i in items):
                text = "".join(str(i.get("data", "")) for i in items)
        except ValueError:
            pass
    return [ln.rstrip("\r") for ln in text.split("\n")]


def _parse(lines: list[str]) -> list[tuple[dict | None, str, str | None]]:
    """Every block of a log: (data, sha256, None) when whole, (None, "", reason) when not."""
    found: list[tuple[dict | None, str, str | None]] = []
    i = 0
    while i < len(lines):
        at = lines[i].find(BEGIN)
        if at < 0:
            i += 1
            continue
        chunks: list[str] = []
        j = i + 1
        try:
            while True:
                if j >= len(lines):
                    raise _Bad("the block has no end line (the log was cut off?)")
                line = lines[j]
                if BEGIN in line:
                    raise _Bad("the block has no end line before the next block starts")
                end_at = line.find(END)
                if end_at >= 0:
                    m = re.match(r"\s*sha256=([0-9a-f]{64})\s+lines=(\d+)\s*$",
                                 line[end_at + len(END):])
                    if not m:
                        raise _Bad("its end line is damaged")
                    if int(m.group(2)) != len(chunks):
                        raise _Bad(f"it holds {len(chunks)} of its {m.group(2)} lines "
                                   "(lines lost from the log?)")
                    text = "".join(chunks)
                    if hashlib.sha256(text.encode("utf-8")).hexdigest() != m.group(1):
                        raise _Bad("its content does not match its sha256 (edited, or "
                                   "characters lost)")
                    try:
                        data = json.loads(text)
                    except ValueError:
                        raise _Bad("its content is not the JSON the probe wrote") from None
                    if not isinstance(data, dict) or "probe" not in data:
                        raise _Bad("its content is not a probe's fingerprint")
                    found.append((data, m.group(1), None))
                    break
                at_line = line.find(LINE)
                if at_line >= 0:
                    m2 = re.match(r"(\d{4})\|(.*)\|$", line[at_line + len(LINE):], re.S)
                    if not m2:
                        raise _Bad(f"its line {len(chunks)} is cut or damaged")
                    if int(m2.group(1)) != len(chunks):
                        raise _Bad(f"its line {len(chunks)} is missing or out of order (lines lost "
                                   "from the log?)")
                    chunks.append(m2.group(2))
                j += 1
        except _Bad as exc:
            found.append((None, "", str(exc)))
        i = j + 1
    return found


def _candidates(path: Path) -> list[Path]:
    """The files to search: the file itself, or in a folder (a run folder of score-local, a
    folder of downloaded logs) the probe's own file, the logs, then any text file."""
    if path.is_file():
        return [path]
    first = [path / "output" / FILE_NAME, path / FILE_NAME, path / "logs" / "stdout.txt"]
    rest = sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink()
                  and p.suffix.lower() in (".txt", ".log", ".json", ".out", "")
                  and p.stat().st_size <= READ_CAP)
    return [p for p in first if p.is_file()] + [p for p in rest if p not in first][:200]


def read_fingerprint(path: Path) -> Fingerprint:
    """The last whole fingerprint in a log file or folder; an error naming what is wrong."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path} does not exist",
                         hint="give the log you downloaded (the submission's stdout), or the "
                              "run folder of `subkit score-local` on the probe zip")
    bad: list[str] = []
    for cand in _candidates(path):
        try:
            with open(cand, "rb") as fh:
                raw = fh.read(READ_CAP)
        except OSError as exc:
            bad.append(f"{cand}: {exc.strerror}")
            continue
        if BEGIN.encode() not in raw:
            continue
        blocks = _parse(_log_lines(raw))
        whole = [(d, sha) for d, sha, reason in blocks if d is not None]
        if whole:
            data, sha = whole[-1]
            return Fingerprint(data=data, sha256=sha, source=str(cand.resolve()))
        bad += [f"{cand}: {reason}" for _, _, reason in blocks if reason]
    if bad:
        raise InputError(f"the probe's fingerprint in {bad[0]}",
                         hint="download the whole log again (the submission's stdout), without "
                              "editing it; or run the probe again: `subkit probe`")
    raise InputError(f"no probe fingerprint in {path} (no line {BEGIN})",
                     hint="give the stdout log of a submission made with `subkit probe` (on "
                          "Codabench: the submission's row, Logs, stdout), or its run folder")


# -- what the fingerprint means for subkit.toml ------------------------------------------------
def _section(d: dict, key: str) -> dict:
    """d[key] when it is a table (a dict), else an empty one: a fingerprint is untrusted."""
    value = d.get(key)
    return value if isinstance(value, dict) else {}


def _xy(version: str) -> str:
    return ".".join(str(version).split(".")[:2])


def measured(fp: Fingerprint, prof: Profile) -> dict:
    """What import writes: pins, extras, network, machine; and notes on what it left."""
    d = fp.data
    dists = _section(d, "distributions")
    fw = _section(d, "frameworks")
    notes: list[str] = []
    grader: dict[str, Any] = {"python": _xy(d["python"]["version"])}
    for name in MAIN:
        version = dists.get(name) or fw.get(name)
        if not version and name == "keras" and dists.get("tensorflow"):
            version = dists["tensorflow"]  # TF < 2.6 had no keras distribution: tf.keras
            notes.append("the grader has no keras distribution: keras pinned to tensorflow's "
                         "version (its tf.keras)")
        if not version:
            version = prof.grader[name]
            notes.append(f"{name} is not installed on the grader; [grader] {name} keeps "
                         f"{version} (a submission that imports it fails there)")
        grader[name] = str(version)
    extras: dict[str, str] = {}
    for name in sorted(set(WORTH_PINNING) | set(prof.grader.get("extras") or {})):
        if name in MAIN:
            continue
        if name in dists:
            extras[name] = str(dists[name])
        elif name in (prof.grader.get("extras") or {}):
            notes.append(f"{name} (in [grader] extras) is not installed on the grader: dropped")
    grader["extras"] = extras
    net = _section(d, "network")
    network = "on" if net.get("answers") else "off"
    cpu = _section(d, "cpu")
    mem = _section(d, "memory")
    listed = fw.get("gpus")
    gpus = listed if isinstance(listed, list) else []
    smi = _section(d, "gpus").get("nvidia_smi")
    disk = _section(d, "disk_free_mb")
    limit = mem.get("cgroup_limit_mb")
    machine = {"python": str(d["python"]["version"]), "cpu": str(cpu.get("model") or "?"),
               "cpus": int(cpu.get("usable") or cpu.get("count") or 0),
               "memory_mb": int(limit if isinstance(limit, int) else
                                mem.get("memtotal_mb") or 0),
               "gpus": [str(g) for g in (smi if isinstance(smi, list) and smi else gpus)],
               "cuda": str(fw.get("cuda") or ""), "cudnn": str(fw.get("cudnn") or ""),
               "disk_free_mb": int(max([v for v in disk.values() if isinstance(v, int)],
                                       default=0)),
               "uid": int((d.get("user") or {}).get("uid") or 0),
               "system": str((d.get("platform") or {}).get("platform") or "")}
    return {"grader": grader, "network": network, "machine": machine, "notes": notes}


def _require_workspace(prof: Profile) -> Path:
    if prof.workspace is None:
        raise UsageError("no workspace: no subkit.toml here or above, so there is nothing to "
                         "import into", hint="cd into your workspace (or `subkit init DIR`), "
                                             "then rerun `subkit probe import FILE`")
    return Path(prof.workspace)


def _require_same_profile(fp: Fingerprint, prof: Profile) -> None:
    if fp.profile != prof.name:
        raise InputError(
            f"the fingerprint in {fp.source} is of profile {fp.profile!r}, this workspace's "
            f"is {prof.name!r}", hint=f"import it in a workspace of {fp.profile} (its "
                                      f"subkit.toml: profile = \"{fp.profile}\"), or submit "
                                      "this workspace's own probe: `subkit probe`")


index_runner = None  # tests replace it: environment.check_pins_available's pip runner


def _check_index(grader: dict) -> None:
    """Every pin installable here (the environment module's check: the index's versions)."""
    from subkit.grader import environment

    pin_set = {"python": grader["python"], **{k: grader[k] for k in MAIN},
               **grader["extras"]}
    interp = environment.find_interpreter(grader["python"])
    kwargs: dict[str, Any] = {"runner": index_runner} if index_runner is not None else {}
    try:
        environment.check_pins_available(interp["path"], pin_set, interp["version"], **kwargs)
    except SubkitError as exc:
        raise InputError(f"the grader's versions cannot be installed here: {exc.message}",
                         hint="the grader's platform has wheels this one lacks (another OS, "
                              "CPU or Python); subkit.toml is unchanged. Set the nearest "
                              "installable versions in [grader] by hand, or import on a "
                              "machine like the grader's") from None


def probe_import(opts: ImportOptions, prof: Profile) -> dict:
    """Write the fingerprint's pins, network and machine into subkit.toml."""
    ws = _require_workspace(prof)
    fp = read_fingerprint(opts.file)
    _require_same_profile(fp, prof)
    try:
        m = measured(fp, prof)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"the fingerprint in {fp.source} lacks what the probe measures "
                         f"({type(exc).__name__}: {exc})",
                         hint="run the probe `subkit probe` builds, unchanged, and import its "
                              "log") from None
    if opts.check_index:
        _check_index(m["grader"])
    saved = _fingerprint_path(prof, fp)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    probe_table = {"date": now, "measured": str(fp.data.get("started_utc") or ""),
                   "source": fp.source, "sha256": fp.sha256, "profile": prof.name,
                   "file": os.path.relpath(saved, ws), "network": m["network"],
                   "machine": m["machine"]}
    toml_path, applied_network = _write_workspace(
        ws, m["grader"], m["network"], probe_table, lambda: _save_fingerprint(saved, fp))
    if not applied_network:
        m["notes"].append(f"the network policy ({m['network']}) is kept in [probe] network: "
                          "this subkit has no [sandbox] network setting")
    return {"toml": str(toml_path), "grader": m["grader"], "network": m["network"],
            "machine": m["machine"], "source": fp.source, "sha256": fp.sha256,
            "fingerprint_file": str(saved), "notes": m["notes"], "date": now}


def _fingerprint_path(prof: Profile, fp: Fingerprint) -> Path:
    stamp = re.sub(r"[^0-9]", "", str(fp.data.get("started_utc") or ""))[:14] or "unknown"
    return prof.submissions_dir / PROBES_DIR / f"{stamp}-{fp.sha256[:12]}.json"


def _save_fingerprint(path: Path, fp: Fingerprint) -> Path | None:
    """The whole fingerprint kept for `probe diff`; the path when this call created it."""
    from subkit.fsutil import write_json_atomic

    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"source": fp.source, "sha256": fp.sha256, "fingerprint": fp.data})
    return path


_TABLES = ("grader", "probe", "sandbox")
_HEADER_LINES = ("# measured by `subkit probe import` on ", "# (the whole fingerprint: ")


def _drop_tables(text: str, names: tuple[str, ...]) -> str:
    """``text`` without the tables ``[name]`` and ``[name.sub]`` (their comments above the
    next table stay with it); other tables, comments and layout are kept."""
    out, skip = [], False
    for line in text.splitlines():
        if line.startswith(_HEADER_LINES):  # the comment of the last import
            continue
        m = re.match(r"^\s*\[\s*([A-Za-z0-9_.\-\"]+)\s*\]\s*(#.*)?$", line)
        if m:
            skip = m.group(1).split(".")[0].strip('"') in names
        if not skip:
            out.append(line)
    return "\n".join(out).rstrip("\n") + "\n"


def _write_workspace(ws: Path, grader: dict, network: str, probe_table: dict,
                     save: Callable[[], Path | None]) -> tuple[Path, bool]:
    """subkit.toml with the new tables, checked by loading the profile through it, then
    renamed into place; nothing changes when any step fails."""
    import tomli_w

    from subkit import profile as profmod
    from subkit.fsutil import temp_sibling

    toml_path = ws / profmod.WORKSPACE_FILE
    text = toml_path.read_text("utf-8")
    try:
        data = profmod.tomllib.loads(text)
    except profmod.tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{toml_path} is not valid TOML: {exc}",
                           hint="fix it, then rerun `subkit probe import`") from None
    has_network = "network" in profmod.SCHEMA.get("sandbox", {})
    tables: dict[str, Any] = {"grader": grader}
    if has_network:
        sandbox = dict(data.get("sandbox") or {}) if isinstance(data.get("sandbox"), dict) else {}
        sandbox["network"] = network
        tables["sandbox"] = sandbox
    tables["probe"] = probe_table
    header = (f"\n# measured by `subkit probe import` on {probe_table['date']} from "
              f"{probe_table['source']}\n# (the whole fingerprint: {probe_table['file']})\n")
    new_text = _drop_tables(text, _TABLES) + header + tomli_w.dumps(tables)
    try:
        parsed = profmod.tomllib.loads(new_text)
        ok = all(parsed.get(k) == v for k, v in tables.items())
    except profmod.tomllib.TOMLDecodeError:
        ok = False
    if not ok:  # dotted keys or inline tables: rewrite the data (comments are lost)
        data.update(tables)
        new_text = tomli_w.dumps(data)
    import shutil
    import tempfile

    check = Path(tempfile.mkdtemp(prefix=".subkit-probe-", dir=ws))
    try:  # the new file must load as a profile before it replaces the old one
        (check / profmod.WORKSPACE_FILE).write_text(new_text, "utf-8")
        profmod.load(None, workspace=check)
    finally:
        shutil.rmtree(check, ignore_errors=True)
    created = save()
    tmp = temp_sibling(toml_path, ".tmp")
    try:
        tmp.write_text(new_text, "utf-8")
        os.replace(tmp, toml_path)
    except BaseException:
        if created is not None:
            created.unlink(missing_ok=True)
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return toml_path, has_network


# -- diff --------------------------------------------------------------------------------------
def _last_import(prof: Profile) -> tuple[dict, str]:
    """The fingerprint of the last import (subkit.toml's [probe] file) and its date."""
    table = prof.data.get("probe") or {}
    rel = table.get("file")
    path = (Path(prof.workspace) / rel) if rel and prof.workspace else None
    if path is None or not path.is_file():
        raise InputError("nothing imported yet: subkit.toml has no [probe] table with the file "
                         "of an imported fingerprint" if not rel else
                         f"the last imported fingerprint ({path}) is gone",
                         hint="import one first: `subkit probe import FILE`")
    try:
        saved = json.loads(path.read_text("utf-8"))
        return saved["fingerprint"], str(table.get("date") or "")
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{path} is not a fingerprint subkit saved",
                         hint="import the log again: `subkit probe import FILE`") from None


def _flat(fp: dict) -> dict[str, Any]:
    """The values worth comparing, by a name a user reads."""
    fw = _section(fp, "frameworks")
    cpu = _section(fp, "cpu")
    mem = _section(fp, "memory")
    net = _section(fp, "network")
    out: dict[str, Any] = {
        "python": (fp.get("python") or {}).get("version"),
        "tensorflow": fw.get("tensorflow"), "keras": fw.get("keras"), "numpy": fw.get("numpy"),
        "tf.keras": fw.get("tf_keras"), "CUDA": fw.get("cuda"), "cuDNN": fw.get("cudnn"),
        "GPUs": fw.get("gpus") if isinstance(fw.get("gpus"), list) else None,
        "CPU model": cpu.get("model"), "CPUs": cpu.get("usable") or cpu.get("count"),
        "memory MB": mem.get("memtotal_mb"), "memory limit MB": mem.get("cgroup_limit_mb"),
        "network": "answers" if net.get("answers") else "silent",
        "uid": (fp.get("user") or {}).get("uid"), "working directory": fp.get("cwd"),
        "system": (fp.get("platform") or {}).get("platform"),
    }
    return out


def probe_diff(opts: DiffOptions, prof: Profile) -> dict:
    """What changed between the last imported fingerprint and FILE's."""
    _require_workspace(prof)
    old, date = _last_import(prof)
    new = read_fingerprint(opts.file)
    _require_same_profile(new, prof)
    changes: list[dict] = []
    a, b = _flat(old), _flat(new.data)
    for key in a:
        if a[key] != b.get(key):
            changes.append({"what": key, "before": a[key], "after": b.get(key)})
    da = _section(old, "distributions")
    db = _section(new.data, "distributions")
    for name in sorted(set(da) | set(db)):
        if da.get(name) != db.get(name) and name not in MAIN:
            changes.append({"what": f"distribution {name}", "before": da.get(name),
                            "after": db.get(name)})
    ea, eb = set(old.get("env_names") or []), set(new.data.get("env_names") or [])
    for name in sorted(ea ^ eb):
        changes.append({"what": f"environment variable {name}",
                        "before": "set" if name in ea else None,
                        "after": "set" if name in eb else None})
    return {"since": date, "source": new.source, "sha256": new.sha256, "changes": changes,
            "same": not changes}


def describe_change(c: dict) -> str:
    if c["before"] is None:
        return f"{c['what']}: new ({c['after']})"
    if c["after"] is None:
        return f"{c['what']}: gone (was {c['before']})"
    return f"{c['what']}: {c['before']} -> {c['after']}"
