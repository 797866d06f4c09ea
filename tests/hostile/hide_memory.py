"""Hold memory where a per-process limit does not count it, as targets.json says: in memfds,
in /dev/shm, in a child's memfd while the parent stays small, after lowering its own OOM
priority (oom_score_adj 0) so that the kernel would take the user's programs first.
Each holds up to ``T["mb"]`` MB and reports how far it got; the run must end on the
memory limit, whatever the attack did to its OOM score."""

import os

import numpy as np

from attack_common import take, targets

T = targets()
MiB = 1 << 20


def lower_oom_priority():
    try:
        with open("/proc/self/oom_score_adj", "w") as fh:
            fh.write("0")
        take("oom_adj_write", "ok")
    except OSError as exc:
        take("oom_adj_write", f"failed: {exc}")
    with open("/proc/self/oom_score_adj") as fh:
        take("oom_score_adj", fh.read().strip())


def fill(fd, mb):
    block = b"m" * MiB
    for i in range(mb):
        os.write(fd, block)
        if i % 64 == 0:
            take("held_mb", i)
    take("held_mb", mb)


def memfd():
    fill(os.memfd_create("hidden"), T["mb"])


def dev_shm():
    fill(os.open("/dev/shm/hidden", os.O_CREAT | os.O_WRONLY, 0o600), T["mb"])


def oom_adj_memfd():
    lower_oom_priority()
    memfd()


def child_memfd():
    """A child holds it: the parent's own memory stays that of a bare python."""
    pid = os.fork()
    if pid == 0:
        lower_oom_priority()
        memfd()
        os._exit(0)
    os.waitpid(pid, 0)


ATTACKS = {"memfd": memfd, "dev_shm": dev_shm, "oom_adj_memfd": oom_adj_memfd,
           "child_memfd": child_memfd}


class Model:
    def predict(self, X):
        ATTACKS[T["attack"]]()
        take("survived", True)
        return np.zeros(len(X), dtype=np.int64)
