"""Choke subkit on what it reads back: the grader's status writer is disabled and the status
file replaced by 32 MB of JSON that claims success, with values of the wrong types."""

import json

import numpy as np

import __main__


class Model:
    def predict(self, X):
        __main__.Status.write = lambda self: None  # the ingestion program runs as __main__
        junk = {"ok": True, "stage": ["done"], "timings": {"predict_s": "fast"},
                "extra": {"a": "b"}, "padding": "x" * (32 << 20)}
        with open("/app/output/ingestion.json", "w") as fh:
            json.dump(junk, fh)
        return np.zeros(len(X), dtype=np.int64)
