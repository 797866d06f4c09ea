"""Test ingestion program with the worker's literal paths (as wheat_seeds' does)."""
import json
import os
import sys
import time

import numpy as np

input_dir = '/app/input_data/'
output_dir = '/app/output/'
program_dir = '/app/program'
submission_dir = '/app/ingested_program'

sys.path.append(program_dir)
sys.path.append(submission_dir)


def main():
    from model import Model
    print("cwd", os.getcwd())
    X = np.genfromtxt(os.path.join(input_dir, 'X.txt'))
    start = time.time()
    m = Model()
    prediction = m.predict(X)
    duration = time.time() - start
    np.savetxt(os.path.join(output_dir, 'prediction'), prediction)
    with open(os.path.join(output_dir, 'metadata.json'), 'w+') as f:
        json.dump({'duration': duration}, f)
    print('Ingestion Program finished. Moving on to scoring')


if __name__ == '__main__':
    main()
