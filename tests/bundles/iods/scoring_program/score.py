"""Test scoring program of an ingestion-during-scoring task: waits for the predictions."""
import json
import os
import sys
import time

import numpy as np

ref_dir, shared_dir, output_dir = sys.argv[1:4]
path = os.path.join(shared_dir, "prediction.txt")
deadline = time.time() + 50
while not os.path.exists(path):
    if time.time() > deadline:
        sys.exit("no predictions in the shared folder")
    time.sleep(0.05)
pred = np.loadtxt(path, dtype=int, ndmin=1)
ref = np.loadtxt(os.path.join(ref_dir, "y.txt"), dtype=int, ndmin=1)
with open(os.path.join(output_dir, "scores.json"), "w") as fh:
    json.dump({"accuracy": float(np.mean(pred == ref))}, fh)
