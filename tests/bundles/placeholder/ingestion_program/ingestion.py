"""Test ingestion program (placeholder style): every path comes from the command line."""
import os
import sys
import time

import numpy as np

t0 = time.time()
input_dir, output_dir, program_dir, submission_dir = sys.argv[1:5]
for d in (input_dir, output_dir, program_dir, submission_dir):
    assert d.startswith("/") and os.path.isdir(d), d
print("ingestion: input=%s output=%s program=%s submission=%s" % tuple(sys.argv[1:5]))
sys.path.append(program_dir)
sys.path.append(submission_dir)

from model import Model  # noqa: E402

X = np.loadtxt(os.path.join(input_dir, "X.txt"), ndmin=2)
m = Model()
y = np.asarray(m.predict(X))
np.savetxt(os.path.join(output_dir, "prediction.txt"), y, fmt="%d")
with open(os.path.join(output_dir, "ingestion_window.txt"), "w") as fh:
    fh.write("%r %r\n" % (t0, time.time()))
print("ingestion: %d predictions" % len(y))
