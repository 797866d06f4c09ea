"""Series classification (Pirate pain, the 2022 time-series homework): a series in, one
class label out; split and deduplicated like the images (by exact and near copies)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from subkit.kinds import series
from subkit.kinds.base import DemoData
from subkit.kinds.labels import LabelsKind

if TYPE_CHECKING:
    from subkit.profile import Profile


class SeriesClassification(LabelsKind):
    name = "series-classification"
    title = "series classification"
    noun = "series"
    input_kind = "series"
    templates = ("model_series.py", "train_series.py")
    shift_families = series.SERIES
    shift_titles = series.TITLES
    shift_example = "noise:3,scaling"

    def apply_shift(self, name: str, sev: int, X: np.ndarray, truth: np.ndarray | None,
                    rng: np.random.Generator, prof: Profile, seed: int,
                    image_shift: Any) -> tuple[np.ndarray, np.ndarray | None]:
        return series.shift_series(name, sev, X, None, rng)[0], truth

    def synthetic(self, prof: Profile, n: int, *, seed: int = 0,
                  **kwargs: Any) -> dict[str, np.ndarray]:
        from subkit.data import synthetic

        steps, features = prof.input_shape
        d = synthetic.multivariate(n, seed=seed, steps=steps, features=features,
                                   n_classes=prof.n_classes,
                                   class_weights=[float(c) for c in prof.reference_counts] or None,
                                   **kwargs)
        return {prof.images_key: d["X"], prof.labels_key: d["labels"]}

    def demo_data(self, prof: Profile, n: int, seed: int) -> DemoData:
        from subkit.data import synthetic

        d = synthetic.for_profile(prof, n, seed=seed)
        raw = {k: v for k, v in d.items() if k != "is_duplicate"}
        return DemoData(raw, raw, None, f"{len(d[prof.labels_key])} samples")


KIND = SeriesClassification()
