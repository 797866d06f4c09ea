"""Image classification (Blood cells, Plants): images in, one class label each out.

The only kind with the image tools: subkit.shift's suite, ``--tta-compare`` and ``--proba``
(class probabilities: the report's most confident mistakes), data sets as class folders,
and the exported Codabench bundle."""

from __future__ import annotations

from subkit.kinds.base import ReportArrays
from subkit.kinds.labels import LabelsKind


class ImageClassification(LabelsKind):
    name = "classification"
    title = "image classification"
    noun = "images"
    templates = ("model.py", "train.py")
    image_tools = True
    folders = True
    exportable = True
    tta = "views"

    def report_sections(self, run: dict, arrays: ReportArrays) -> list[str]:
        from subkit.kinds.report import classes, gallery

        clean = arrays.inputs[: min(3, len(arrays.inputs))] if arrays.inputs is not None \
            else None
        return super().report_sections(run, arrays) + [
            classes.mistakes(run, arrays.inputs, arrays.truth, arrays.pred, arrays.proba),
            gallery.gallery(run, arrays.samples, clean)]


KIND = ImageClassification()
