"""Test scoring program with the worker's literal paths."""
import json
import os

import numpy as np

reference_dir = '/app/input/ref'
prediction_dir = '/app/input/res'
score_dir = '/app/output'

truth = np.genfromtxt(os.path.join(reference_dir, 'y.txt'))
prediction = np.genfromtxt(os.path.join(prediction_dir, 'prediction'))
with open(os.path.join(prediction_dir, 'metadata.json')) as f:
    duration = json.load(f).get('duration', -1)
scores = {'accuracy': float(np.mean(truth == prediction)), 'duration': duration,
          'cwd_is_program': os.getcwd() == '/app/program'}
with open(os.path.join(score_dir, 'scores.json'), 'w') as f:
    json.dump(scores, f)
print(scores)
