"""Freeze subkit's time-limit loop: SIGSTOP the parent and every process it can signal,
then run far past the limit (leaving a heartbeat file with the time, so that the test can
see when it was killed)."""

import os
import signal
import time

import numpy as np

from attack_common import attempt, targets

T = targets()


class Model:
    def __init__(self):
        attempt("stop parent", lambda: os.kill(os.getppid(), signal.SIGSTOP))
        for pid in T.get("pids", []) + [1]:
            attempt(f"stop {pid}", lambda p=pid: os.kill(p, signal.SIGSTOP))
        attempt("stop all", lambda: os.kill(-1, signal.SIGSTOP))

    def predict(self, X):
        end = time.monotonic() + T.get("run_s", 20)
        while time.monotonic() < end:
            with open("heartbeat", "w") as fh:
                fh.write(repr(time.monotonic()))
            time.sleep(0.2)
        return np.zeros(len(X), dtype=np.int64)
