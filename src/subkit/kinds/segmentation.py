"""Segmentation (Mars terrain): an image in, a class per pixel out; mean IoU over the
classes not ignored. Split and deduplicated by duplicate images; images sharing one mask
(Mars' "alien" images) are outliers.

Shift families (images and masks alike): brightness_contrast, blur, noise are subkit.shift's
image shifts on the images, masks kept; ``flip`` mirrors images AND masks (lr, ud, both);
``translate`` moves both by up to 4, 8, 16 pixels (the uncovered border 0 in the image
and the first ignored class, else 0, in the mask)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from subkit.kinds.base import DemoData, Kind, ReportArrays
from subkit.kinds.labels import confusion_lines

if TYPE_CHECKING:
    from pathlib import Path

    from subkit.profile import Profile

# the photometric ones are subkit.shift's families (the same severity of each, in turn)
PHOTOMETRIC = {"brightness_contrast": ("brightness_down", "contrast_down"), "blur": ("blur",),
               "noise": ("noise",)}
SEGMENTATION: dict[str, Any] = {"brightness_contrast": None, "blur": None, "noise": None,
                                "flip": ("lr", "ud", "both"), "translate": (4, 8, 16)}
TITLES = {"brightness_contrast": "brightness and contrast", "blur": "Gaussian blur",
          "noise": "Gaussian noise", "flip": "flips (images and masks)",
          "translate": "translation (images and masks)"}


class Segmentation(Kind):
    name = "segmentation"
    title = "segmentation"
    tta = "untuned"  # the template flips views and their masks back; tta tune: not yet
    task = "segmentation"
    metrics = ("mean_iou", "pixel_accuracy")
    noun = "images"
    target_noun = "masks"
    output = "masks"
    templates = ("model_segmentation.py", "train_segmentation.py")
    shift_families = SEGMENTATION
    shift_titles = TITLES
    shift_example = "blur:3,flip"

    def targets(self, raw: np.ndarray, path: Path, prof: Profile, phase: str | None,
                n: int) -> np.ndarray:
        from subkit.data import io

        return io.mask_targets(raw, path, prof, n)

    def inspect(self, path: Path, prof: Profile, *, near: int | None,
                min_similarity: float) -> dict | None:
        from subkit.data import io, kinds

        return kinds.inspect(io.load(path, prof, require_labels=False), prof,
                             near=near, min_similarity=min_similarity)

    def inspect_text(self, report: dict) -> str | None:
        from subkit.data import kinds

        return kinds.to_text(report)

    def dedupe(self, path: Path, prof: Profile, *, drop_shared_masks: bool,
               **kwargs: Any) -> dict:
        from subkit.data import kinds

        return kinds.dedupe_file(path, prof, drop_shared_masks=drop_shared_masks, **kwargs)

    def dedupe_lines(self, summary: dict) -> list[str] | None:
        return [f"{summary['n_input']:,} -> {summary['n_output']:,} images: removed "
                f"{summary['n_removed']:,} ({summary['drop']}; {summary['n_groups']} groups "
                f"of duplicate images, {summary['n_removed_shared_masks']} images sharing "
                f"a mask)", f"wrote {summary['output']} and {summary['record']}"]

    def split(self, path: Path, prof: Profile, **kwargs: Any) -> dict:
        from subkit.data import kinds

        return kinds.split_file(path, prof, **kwargs)

    def split_rows(self, ds: Any, arrays: dict, test_size: float, seed: int, near: int,
                   min_similarity: float) -> tuple[np.ndarray, np.ndarray, dict]:
        from subkit.data import kinds

        return kinds.split_by_duplicates(ds, arrays, test_size, seed, near, min_similarity)

    def output_words(self, values: np.ndarray, prof: Profile, phase: str | None) -> str:
        return f"masks of shape {tuple(values.shape)}, classes {np.unique(values).tolist()}"

    def apply_shift(self, name: str, sev: int, X: np.ndarray, truth: np.ndarray | None,
                    rng: np.random.Generator, prof: Profile, seed: int,
                    image_shift: Any) -> tuple[np.ndarray, np.ndarray | None]:
        masks = truth
        assert masks is not None
        if SEGMENTATION[name] is None:  # photometric: subkit.shift's image families
            for family in PHOTOMETRIC[name]:
                X = image_shift(X, family, sev, seed=seed, value_range=prof.input_range)[0]
            return X, masks
        if name == "flip":
            axes = {"lr": (2,), "ud": (1,), "both": (1, 2)}[SEGMENTATION["flip"][sev - 1]]
            return np.flip(X, axes).copy(), np.flip(masks, axes).copy()
        d = SEGMENTATION["translate"][sev - 1]
        fill = prof.ignore_classes[0] if prof.ignore_classes else 0
        units = rng.uniform(-1, 1, (len(X), 2))
        Xs, Ms = np.zeros_like(X), np.full_like(masks, fill)
        h, w = X.shape[1], X.shape[2]
        for i, (u, v) in enumerate(np.rint(units * d).astype(int)):
            src = (slice(max(0, -u), h - max(0, u)), slice(max(0, -v), w - max(0, v)))
            dst = (slice(max(0, u), h - max(0, -u)), slice(max(0, v), w - max(0, -v)))
            Xs[i][dst], Ms[i][dst] = X[i][src], masks[i][src]
        return Xs, Ms

    def summary_lines(self, result: Any) -> list[str]:
        width = max(len(n) for n in result.class_names) + 2
        out = [f"  {'class':<{width}}    IoU  pixels (true)"]
        for row in result.per_class:
            iou = ("ignored" if row["ignored"]
                   else ("     -" if row["iou"] is None else f"{row['iou']:.3f}"))
            out.append(f"  {row['name']:<{width}} {iou:>6} {row['support']:14,d}")
        out.append("")
        return out + confusion_lines(result.confusion_matrix, " of pixels")

    def report_sections(self, run: dict, arrays: ReportArrays) -> list[str]:
        from subkit.kinds.report import classes, masks

        return [masks.per_class_iou(run), classes.confusion(run, unit=" of pixels"),
                masks.overlays(run, arrays)]

    def synthetic(self, prof: Profile, n: int, *, seed: int = 0,
                  **kwargs: Any) -> dict[str, np.ndarray]:
        from subkit.data import synthetic

        h, w = prof.input_shape[:2]
        d = synthetic.terrain(n, seed=seed, shape=(h, w), **kwargs)
        return {prof.images_key: d["images"].astype(prof.input_dtype),
                prof.labels_key: d["masks"], "is_outlier": d["is_outlier"]}

    def template_data(self, prof: Profile) -> dict[str, Any]:
        return {"n_classes": prof.n_classes, "ignore_classes": prof.ignore_classes}

    def demo_data(self, prof: Profile, n: int, seed: int) -> DemoData:
        from subkit.data import duplicates, synthetic

        d = synthetic.for_profile(prof, n, seed=seed, aliens=max(4, n // 25))
        keep = np.ones(len(d[prof.labels_key]), bool)
        for group in duplicates.exact_groups(d[prof.labels_key]):
            keep[group] = False
        note = (f"{len(keep)} images; dropped {int((~keep).sum())} that share one "
                "identical mask (the 'alien' outliers)")
        kept = {k: v[keep] for k, v in d.items()}
        is_test = np.random.default_rng(seed).random(len(kept[prof.images_key])) < 0.2
        return DemoData(d, kept, is_test, note)


KIND = Segmentation()
