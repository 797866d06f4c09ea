"""Reading the training set for train.py, and its time budget.

`subkit init` writes this file beside train.py (it is not part of the submission: only
model.py and the weights are). It needs numpy only. Every mistake in the training file is
one `error:` line and one `hint:` line with exit code 2, never a traceback: a missing
file, a file that is not an .npz, a missing array, labels in a layout train.py cannot use.
Labels are read in the layouts participants store them: (n,), (n, 1), one-hot (n, classes),
class names (with the profile's class list); masks as (n, H, W), (n, H, W, 1) or one-hot
(n, H, W, classes).
"""

import os
import sys
import time

import numpy as np


def fail(message, hint):
    """One error line, one hint line, exit code 2."""
    sys.stderr.write(f"error: {message}\nhint: {hint}\n")
    raise SystemExit(2)


def load(path, keys, optional=()):
    """The arrays ``keys`` (and those of ``optional`` that exist) of the .npz at ``path``."""
    if os.path.isdir(path):
        fail(f"{path} is a folder, not a training file",
             "pass --data FILE.npz (subkit data split writes train.npz)")
    if not os.path.isfile(path):
        fail(f"{path} not found", "pass --data FILE.npz: the training set (subkit data split "
                                  "writes train.npz)")
    try:
        d = np.load(path, allow_pickle=True)  # your own file: some store strings
    except Exception as exc:  # numpy's many ways to say "not mine" (pickle, zip, format)
        fail(f"{path} is not a readable .npz file ({type(exc).__name__}: {exc})"[:300],
             "save it with numpy.savez(path, images=..., labels=...)")
    if not hasattr(d, "files"):
        fail(f"{path} is a single array, not an .npz of named arrays",
             "save it with numpy.savez(path, images=..., labels=...)")
    with d:
        have = list(d.files)
        missing = [k for k in keys if k not in have]
        if missing:
            fail(f"{path} has no array {missing[0]!r} (it has {', '.join(have) or 'none'})",
                 "pass the key with train.py's key options (python train.py --help), or set "
                 "DATA at the top of train.py")
        try:
            return {k: d[k] for k in list(keys) + [k for k in optional if k in have]}
        except Exception as exc:  # a damaged member, a pickled object that will not load
            fail(f"{path}: an array could not be read ({type(exc).__name__}: {exc})"[:300],
                 "save the file again with numpy.savez")


def _one_hot(y, axis=-1):
    """Whether ``y`` holds one-hot rows along ``axis`` (0/1 values, one 1 a row)."""
    return (y.dtype.kind in "biuf" and y.shape[axis] > 1 and bool(np.all((y == 0) | (y == 1)))
            and bool(np.all(y.sum(axis=axis) == 1)))


def class_ids(labels, class_names, n):
    """The labels of ``n`` samples as class ids (n,): from (n,), (n, 1), one-hot (n, k)
    or class names."""
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    elif y.ndim == 2 and len(y) == n and _one_hot(y):
        print(f"note: one-hot labels ({y.shape[1]} columns) read as class ids")
        y = y.argmax(axis=1)
    if y.ndim != 1 or len(y) != n:
        fail(f"labels shaped {tuple(np.shape(labels))} do not fit {n} samples",
             "store one label per sample: (n,), (n, 1) or one-hot (n, classes)")
    if y.dtype.kind in "iub":
        ids = y.astype(np.int64)
    elif y.dtype.kind == "f":
        if not np.all(y == np.round(y)):
            fail("labels are fractional numbers (soft labels?)",
                 "store class ids (integers) or one-hot rows of 0 and 1")
        ids = y.astype(np.int64)
    else:
        lookup = {name: i for i, name in enumerate(class_names)}
        unknown = sorted(set(map(str, y.tolist())) - set(lookup))
        if unknown:
            fail(f"labels {unknown[:5]} are not among the classes {list(class_names)}",
                 "store class ids, or the class names of the competition's profile")
        ids = np.array([lookup[str(v)] for v in y.tolist()], np.int64)
    if len(ids) and ids.min() < 0:
        fail(f"a label is negative ({int(ids.min())})", "class ids start at 0")
    if class_names and len(ids) and ids.max() >= len(class_names):
        fail(f"label {int(ids.max())} is not a class id of the profile's {len(class_names)} "
             "classes", f"class ids run from 0 to {len(class_names) - 1}")
    return ids


def masks(y, n, n_classes):
    """The masks of ``n`` images as class ids (n, H, W): from (n, H, W), (n, H, W, 1) or
    one-hot (n, H, W, k)."""
    m = np.asarray(y)
    if m.ndim == 4 and m.shape[-1] == 1:
        m = m[..., 0]
    elif m.ndim == 4 and _one_hot(m):
        print(f"note: one-hot masks ({m.shape[-1]} channels) read as class ids")
        m = m.argmax(axis=-1)
    if m.ndim != 3 or len(m) != n:
        fail(f"masks shaped {tuple(np.shape(y))} do not fit {n} images",
             "store one mask per image: (n, H, W) class ids, (n, H, W, 1) or one-hot")
    if m.dtype.kind == "f" and not np.all(m == np.round(m)):
        fail("masks hold fractional values", "store class ids (integers) per pixel")
    m = m.astype(np.int64)
    if m.size and (m.min() < 0 or m.max() >= n_classes):
        fail(f"mask values {int(m.min())}..{int(m.max())} are not class ids 0..{n_classes - 1}",
             "store the class id of each pixel")
    return m


def targets(y, n, steps):
    """The forecast targets of ``n`` windows: (n, >= steps) numbers, the first ``steps``."""
    t = np.asarray(y)
    if t.ndim == 3 and t.shape[-1] == 1:
        t = t[..., 0]
    if t.ndim != 2 or len(t) != n or t.shape[1] < steps or t.dtype.kind not in "biuf":
        fail(f"targets shaped {tuple(np.shape(y))} ({t.dtype}) do not fit {n} windows of "
             f"{steps} steps", f"store the next values of each window: (n, {steps}) numbers")
    return t[:, :steps].astype(np.float32)


def check_inputs(x, n_min=2, what="samples"):
    if len(x) < n_min:
        fail(f"the training file holds {len(x)} {what}", f"train on at least {n_min}")
    if np.asarray(x).dtype.kind not in "biuf":
        fail(f"the inputs are {np.asarray(x).dtype}, not numbers", "store numeric arrays")


def time_budget(keras, seconds):
    """A callback that ends training once ``seconds`` have passed (after the current
    batch; the epoch's validation still runs, EarlyStopping restores the best weights)."""

    class TimeBudget(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.end = time.monotonic() + seconds
            self.hit = False

        def on_train_batch_end(self, batch, logs=None):
            if time.monotonic() > self.end:
                self.hit = True
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            if self.hit:
                print(f"note: the time budget of {seconds:g} s ended training "
                      "(--time-budget 0 trains every epoch)")

    return TimeBudget()
