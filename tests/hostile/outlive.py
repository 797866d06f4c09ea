"""Outlive the run: a double-forked setsid grandchild, a plain child and a thread that go on
after predict returns (or after the time limit, with hang=true); each process carries the
test's token in its command line."""

import os
import threading
import time

import numpy as np

from attack_common import targets

T = targets()


def spawn(detach):
    if os.fork() == 0:
        if detach:
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
        os.execv("/bin/sleep", ["sleep", "600", T["token"]])


class Model:
    def __init__(self):
        spawn(detach=True)
        spawn(detach=False)
        threading.Thread(target=time.sleep, args=(600,), daemon=False).start()

    def predict(self, X):
        if T.get("hang"):
            time.sleep(600)
        return np.zeros(len(X), dtype=np.int64)
