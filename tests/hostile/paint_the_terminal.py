"""Write on the user's terminal through every text of the run subkit shows: an ANSI
clear-screen, a green fake "accuracy 1.0000 ... PASSED" headline and a fake hint, each
behind a newline, in the exception's message and type name, the status file's stage and
fields, a weights file's name (the hint names it), the log tail, the predictions' field
names and a folder where subkit writes later. targets.json's "attack" picks the field."""

import os
import sys

import numpy as np

import __main__
from attack_common import targets

T = targets()
ATTACK = T["attack"]
CLEAR = "\x1b[2J\x1b[H"
PAINT = (f"{CLEAR}\nFAKE-HEADLINE \x1b[1;32maccuracy 1.0000   PASSED\x1b[0m\n"
         "hint: FAKE-HINT all is well\r\n\u202eFAKE-BIDI")


class Model:
    def __init__(self):
        if ATTACK == "weights":  # the hint of a failed load names the one .keras file
            with open(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                   PAINT.replace("\n", "\n ") + ".keras"), "wb") as fh:
                fh.write(b"")
            raise TypeError("Unrecognized keyword arguments passed to Dense: "
                            "{'quantization_config': None}" + PAINT)
        if ATTACK == "status":  # the status file's stage and fields, as the child writes it
            fail = __main__.Status.fail

            def forged(self, stage, exc, tb):
                fail(self, PAINT, exc, tb)
                self.data.update(python=PAINT, executable=PAINT, versions={PAINT: PAINT})
                self.write()

            __main__.Status.fail = forged

    def predict(self, X):
        if ATTACK == "exception":
            raise type("Error" + PAINT, (Exception,), {})("message" + PAINT)
        if ATTACK == "status":
            raise ValueError("status" + PAINT)
        if ATTACK == "tail":
            for i in range(40):
                print(f"line {i}{PAINT}", file=sys.stderr)
            sys.stderr.flush()
            os._exit(1)  # no exception: the summary shows the stderr tail
        if ATTACK == "fields":
            return np.zeros(len(X), dtype=[(PAINT, "i4"), ("b" + PAINT, "f8")])
        if ATTACK == "labels_folder":
            os.mkdir("/app/output/labels.npy")
        if ATTACK == "predictions_folder":
            os.mkdir("/app/output/predictions.npy")
        return np.zeros(len(X), dtype=np.int64)
