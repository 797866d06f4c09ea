"""Test scoring program (placeholder style): writes scores.txt (YAML), like CodaLab's."""
import os
import sys

import numpy as np

input_dir, output_dir = sys.argv[1:3]
ref = np.loadtxt(os.path.join(input_dir, "ref", "y.txt"), dtype=int, ndmin=1)
res = os.path.join(input_dir, "res")
with open(os.path.join(res, "metadata")) as fh:  # the worker's file from the prediction run
    print("prediction metadata:\n" + fh.read())
pred = np.loadtxt(os.path.join(res, "prediction.txt"), dtype=int, ndmin=1)
acc = float(np.mean(pred == ref))
recall0 = float(np.mean(pred[ref == 0] == 0))
with open(os.path.join(output_dir, "scores.txt"), "w") as fh:
    fh.write("accuracy: %r\nrecall_0: %r\nnot_a_column: 3\n" % (acc, recall0))
with open(os.path.join(output_dir, "detailed_results.html"), "w") as fh:
    fh.write("<html><body><p>accuracy %.3f</p></body></html>" % acc)
print("scored", acc)
