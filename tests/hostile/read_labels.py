"""Score 1.0 by reading the local test labels: through the workspace's subkit.toml
(local_test = ...), through the parent's command line (--data FILE) or any visible process's,
or straight from the path; predict returns them when found."""

import glob
import os
import re

import numpy as np

from attack_common import attempt, take, targets

T = targets()


def candidates():
    found = [T["labels"]]
    with open(T["toml"]) as fh:
        m = re.search(r'local_test\s*=\s*"([^"]+)"', fh.read())
        if m:
            found.append(os.path.join(os.path.dirname(T["toml"]), m.group(1)))
    return found


def from_cmdlines():
    found = []
    for path in glob.glob("/proc/*/cmdline"):
        args = open(path, "rb").read().split(b"\0")
        found += [a.decode() for a, b in zip(args, args[1:]) if b and a == b"--data"]
        found += [b.decode() for a, b in zip(args, args[1:]) if a == b"--data"]
    return found


class Model:
    def __init__(self):
        self.labels = None
        paths = []
        attempt("toml", lambda: paths.extend(candidates()) or paths)
        attempt("cmdline", lambda: paths.extend(from_cmdlines()) or paths)
        for p in paths:
            try:
                with np.load(p) as z:
                    self.labels = np.asarray(z["labels"]).ravel()
                take("labels_from", p)
                break
            except Exception as exc:  # noqa: BLE001
                take("labels_failed " + p, f"{type(exc).__name__}: {exc}"[:200])

    def predict(self, X):
        if self.labels is not None and len(self.labels) == len(X):
            return self.labels.astype(np.int64)
        return np.zeros(len(X), dtype=np.int64)
