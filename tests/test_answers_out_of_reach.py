"""Only the inputs enter the sandbox, for every kind of competition: tests/hostile/
find_answers.py walks every file the child can open at each predict call, under
`score-local --shift` (each kind's shifts, those that move the truth too) and `subkit
predict` on the Kaggle profiles, and keeps the sha256 of every array with as many rows as
the input; none may be the truth's (labels, class ids of string labels, masks, forecasts),
and no file may name the workspace or the home folder."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_hostile import _walks

from subkit import profile
from subkit.data import io, synthetic
from subkit.grader import sandbox

from conftest import subkit_process

HOSTILE = Path(__file__).parent / "hostile"
needs_bwrap = pytest.mark.skipif(not sandbox.bwrap_available()[0],
                                 reason="bubblewrap sandbox unavailable")

# (profile, a small shift suite of its kind: one that moves the truth where the kind has one)
KINDS = {
    "an2dl-2023-plants": "blur:1",
    "an2dl-2023-forecasting": "scaling:1",
    "an2dl-2022-ts-classification": "noise:1",
    "an2dl-2024-mars-terrain": "flip:1",
    "an2dl-2025-pirate-pain": "noise:1",
}


def _forms(a: np.ndarray) -> set[str]:
    """The canonical forms find_answers hashes, of the truth as subkit could store it."""
    out = set()
    a = np.ascontiguousarray(a)
    cands = [a, a.reshape(-1)] if a.ndim and a.size == len(a) else [a]
    for c in cands:
        forms = [c]
        if c.dtype.kind in "uifb":
            forms += [c.astype(np.int64), c.astype(np.float64)]
        out |= {hashlib.sha256(np.ascontiguousarray(f).tobytes()).hexdigest() for f in forms}
    return out


def _truths(prof, data: dict) -> set[str]:
    got = set()
    for key in {prof.labels_key, "labels", "masks", "y"}:
        if key in data:
            y = np.asarray(data[key])
            got |= _forms(y)
            if y.dtype.kind in "US":  # string labels as the class ids subkit scores with
                ids = np.array([prof.class_names.index(str(v)) for v in y.reshape(-1)])
                got |= _forms(ids)
            if prof.kind == "forecasting":  # the phase's horizon of the targets
                got |= _forms(y[:, : prof.horizon(None)])
    return got


def _out_spec(prof) -> dict:
    if prof.kind == "segmentation":
        return {"tail": list(prof.input_shape[:2]), "dtype": "int64"}
    if prof.kind == "forecasting":
        return {"tail": [int(prof.horizon(None))], "dtype": "float32"}
    return {"tail": [], "dtype": "int64"}


@needs_bwrap
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(KINDS))
def test_no_truth_in_reach_for_any_kind(name, tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    r = subkit_process("init", str(ws), "--profile", name, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    prof = profile.load(name, workspace=False)
    data = synthetic.for_profile(prof, 24, seed=5)
    test = ws / "local_test.npz"
    io.save_npz(test, **data)
    targets = {"workspace": str(ws), "runs_root": str(ws / "submissions" / "runs"),
               "home": str(tmp_path / "home"), "out": _out_spec(prof)}
    z = ws / "find.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("model.py", (HOSTILE / "find_answers.py").read_text())
        zf.writestr("attack_common.py", (HOSTILE / "attack_common.py").read_text())
        zf.writestr("targets.json", json.dumps(targets))
        for member, text in prof.required_files.items():  # CodaLab's metadata
            zf.writestr(member, text)
    env = {"HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    r = subkit_process("score-local", str(z), "--data", str(test), "--shift", KINDS[name],
                       "--json", cwd=ws, env=env, timeout=400)
    res = json.loads(r.stdout)
    assert r.returncode == 0 and res["ok"], (res.get("failure"), r.stderr[-2000:])
    runs = [Path(res["run_dir"])]
    if prof.platform == "kaggle":
        r = subkit_process("predict", str(z), "--data", str(test), "--out",
                           str(ws / "out.csv"), "--json", cwd=ws, env=env, timeout=400)
        assert r.returncode == 0, r.stderr[-2000:]
        runs.append(Path(json.loads(r.stdout)["run_dir"]))
    truth = _truths(prof, data)
    assert truth  # the test knows what it looks for
    walks = [w for run in runs for w in _walks(run)]
    assert len(walks) == 1 + res["shift"]["n_shifted_sets"] + (prof.platform == "kaggle")
    for w in walks:
        assert w["files_seen"] > 50 and w["cwd"] == "/app/ingested_program", w
        assert w["host_paths"] == [], w
        assert not truth & set(w["hashes"]), "an array of the truth was in reach"
    # the inputs were there and hashed: the check sees an array when there is one
    assert all(w["hashes"] for w in walks)
