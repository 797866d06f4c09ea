"""The child side of `subkit tta tune`: every candidate view of every image, one pass each.

Copied into the run's working copy of the submission as ``_subkit_tta_views.py`` and run by
the grader's ingestion program as the entry (``--entry _subkit_tta_views.py --class-name
TuneModel``), in the sandbox, in the grader's versions. Standalone like ingestion.py:
numpy, and TensorFlow only for the views that need it (zoom, contrast).

Why a wrapper model.py and not one extra input per view: the ingestion program calls
``predict`` once on X and once on each shifted set, and each call here returns the class
probabilities of every candidate view, stacked ``(views, n, classes)``. So the model is
loaded once, every view of every set is one pass of the model, and the views are applied
from outside the participant's code, the same way for the template and for any other
model.py (which has no views of its own to switch). With the template, subkit sets
``SUBKIT_TTA=0``: its own TTA is off and each view is exactly one forward pass; its views
here are the template's own transforms (the same TensorFlow ops or exact numpy
permutations), so that the merged probabilities equal what the template would compute
with those views (exactly for ``mean``; with several weights files the template merges
the views per model, then averages the models).

Only images reach this file: X, and the shifted copies the ingestion program loads. What
to run comes in ``SUBKIT_TTA_TUNE`` (JSON: the submission's module, class, init arguments,
predict method, the views), never a path of the host. A model without ``predict_proba``
is measured by its labels (one-hot rows: the merges become votes).
"""

import importlib
import json
import os

import numpy as np

CHUNK = 512  # images transformed at once (the model batches them as it likes)


def _tf():
    import tensorflow as tf

    return tf


def _zoom(x):
    tf = _tf()
    return tf.image.resize(tf.image.central_crop(tf.constant(x), 0.875),
                           x.shape[1:3]).numpy()


def _contrast(x):
    tf = _tf()
    return tf.image.adjust_contrast(tf.constant(x), 1.25).numpy()


# the template's views (templates/model.py _VIEWS), on float32 NHWC batches
VIEWS = {
    "identity": lambda x: x,
    "flip_lr": lambda x: x[:, :, ::-1],
    "flip_ud": lambda x: x[:, ::-1],
    "rot90": lambda x: np.rot90(x, 1, axes=(1, 2)),
    "rot180": lambda x: np.rot90(x, 2, axes=(1, 2)),
    "rot270": lambda x: np.rot90(x, 3, axes=(1, 2)),
    "transpose": lambda x: np.transpose(x, (0, 2, 1, 3)),
    "transverse": lambda x: np.rot90(np.transpose(x, (0, 2, 1, 3)), 2, axes=(1, 2)),
    "zoom": _zoom,
    "contrast": _contrast,
}
TF_VIEWS = ("zoom", "contrast")


class TuneModel:
    def __init__(self):
        cfg = json.loads(os.environ["SUBKIT_TTA_TUNE"])
        here = os.path.dirname(os.path.abspath(__file__))
        module = importlib.import_module(cfg["module"])
        args = [here if a == "{submission}" else a for a in cfg.get("init_args", [])]
        self.model = getattr(module, cfg["class_name"])(*args)
        self.method = cfg.get("method", "predict")
        self.views = list(cfg["views"])
        self.n_classes = int(cfg.get("n_classes") or 0)

    def _one(self, x):
        fn = getattr(self.model, "predict_proba", None)
        if fn is not None:
            return np.asarray(fn(x), np.float32)
        labels = np.asarray(getattr(self.model, self.method)(x)).reshape(-1).astype(np.int64)
        k = max(self.n_classes, int(labels.max()) + 1 if labels.size else 1)
        out = np.zeros((len(labels), k), np.float32)
        ok = (labels >= 0) & (labels < k)
        out[np.arange(len(labels))[ok], labels[ok]] = 1.0
        return out

    def predict(self, X):
        X = np.asarray(X)
        if X.ndim == 3:  # grayscale without a channel axis
            X = X[..., None]
            squeeze = True
        else:
            squeeze = False
        per_view = []
        for name in self.views:
            parts = []
            for start in range(0, len(X), CHUNK):
                x = X[start:start + CHUNK]
                if name in TF_VIEWS:  # computed in float32, as the template does
                    x = x.astype(np.float32)
                v = np.ascontiguousarray(VIEWS[name](x))  # geometric: the input's dtype
                parts.append(self._one(v[..., 0] if squeeze else v))
            per_view.append(np.concatenate(parts))
        return np.stack(per_view).astype(np.float32)  # (views, n, classes)
