"""Test ingestion program run during scoring: predictions go to the shared folder."""
import os
import sys

import numpy as np

input_dir, submission_dir, shared_dir = sys.argv[1:4]
sys.path.insert(0, submission_dir)
from model import Model  # noqa: E402

X = np.loadtxt(os.path.join(input_dir, "X.txt"), ndmin=2)
y = np.asarray(Model().predict(X))
tmp = os.path.join(shared_dir, "prediction.tmp")
np.savetxt(tmp, y, fmt="%d")
os.replace(tmp, os.path.join(shared_dir, "prediction.txt"))
print("ingestion wrote", len(y), "predictions")
