"""With extra work after the clean set (--proba, the shift suite), claim the clean part was
done at once with one set of predictions, then run on and swap other predictions in later."""

import json
import time

import numpy as np

import __main__


class Model:
    def predict(self, X):
        np.save("/app/output/predictions.npy", np.zeros(len(X), dtype=np.int64))
        __main__.Status.write = lambda self: None
        with open("/app/output/ingestion.json", "w") as fh:
            json.dump({"ok": True, "stage": "proba", "timings": {"total_s": 0.01}}, fh)
        time.sleep(3)
        return np.ones(len(X), dtype=np.int64)
