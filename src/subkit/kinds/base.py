"""What every kind of competition answers: the base class of ``subkit.kinds``' objects.

One object per kind (``Profile.kind_spec`` hands it out); the rest of the tree asks it
instead of branching on the kind's name. A method here is the default most kinds share;
a kind's module overrides what differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from subkit.errors import UsageError
from subkit.kinds.report import ReportArrays

__all__ = ["DemoData", "Kind", "ReportArrays"]

if TYPE_CHECKING:
    from pathlib import Path

    from subkit.profile import Profile


@dataclass
class DemoData:
    """The demo's synthetic set: ``raw`` (saved as training_set.npz, with the kind's
    traps), ``arrays`` (cleaned) with the held-out rows ``is_test`` (None: cleaned and
    split the way the image demo does), and a line saying what the set holds."""

    raw: dict[str, np.ndarray]
    arrays: dict[str, np.ndarray]
    is_test: np.ndarray | None
    note: str


class Kind:
    """A kind of competition: classification, series-classification, forecasting,
    segmentation (``Profile.kind``)."""

    name: str = ""  # Profile.kind
    # what a profile says that makes it this kind: its task and [input] kind
    task: str = ""
    input_kind: str = "images"
    metrics: tuple[str, ...] = ()  # what can rank it (subkit.grader.scoring computes them)
    needs_classes: bool = True  # the profile must have a [classes] table
    title: str = ""  # in sentences: "image classification"
    noun: str = "images"  # what one sample is, plural: images, series
    target_noun: str = "labels"  # what the truth of one sample is, plural
    output: str = "labels"  # [output] kind: the predictions' file is output/<output>.npy
    templates: tuple[str, str] = ("model.py", "train.py")  # subkit/templates: model, train
    # the image tools: subkit.shift's suite (with --tta-compare and --proba, which read
    # class probabilities); the other kinds have their own shift families (shift_families)
    image_tools: bool = False
    folders: bool = False  # a data set may be a folder of class folders
    csv: bool = True  # predictions can be written as the profile's Kaggle CSV
    one_label: bool = False  # one class label per sample (the classification data tools)
    named_cells: bool = False  # a CSV cell may hold a class name (labels, not pixels)
    exportable: bool = False  # `subkit bundle export` writes a Codabench bundle for it
    # test-time augmentation of the kind's template: "views" (subkit tta tune chooses them),
    # "untuned" (the template has views, the tuner does not tune them yet), "none"
    tta: str = "none"
    shift_families: dict[str, Any] = {}
    shift_titles: dict[str, str] = {}
    shift_example: str = "noise:3"

    def __repr__(self) -> str:
        return f"<kind {self.name}>"

    # -- data ------------------------------------------------------------------------------
    def targets(self, raw: np.ndarray, path: Path, prof: Profile, phase: str | None,
                n: int) -> np.ndarray:
        """The stored targets in the form scoring compares with (``data.io.Dataset.labels``)."""
        from subkit.data import io

        return io.label_targets(raw, path, prof)

    def inspect(self, path: Path, prof: Profile, *, near: int | None,
                min_similarity: float) -> dict | None:
        """``subkit data inspect`` of this kind's own (a report with ``"kind"``), or None:
        the image classifier's inspection."""
        return None

    def inspect_text(self, report: dict) -> str | None:
        """The text of this kind's own inspection report (None: the image classifier's)."""
        return None

    def dedupe(self, path: Path, prof: Profile, *, drop_shared_masks: bool,
               **kwargs: Any) -> dict:
        if drop_shared_masks:
            raise UsageError("--drop-shared-masks is for segmentation profiles",
                             hint=f"{prof.name} is {self.name}: drop the option")
        from subkit.data.duplicates import dedupe_file

        return dedupe_file(path, prof, **kwargs)

    def split(self, path: Path, prof: Profile, **kwargs: Any) -> dict:
        from subkit.data.split import split_file

        return split_file(path, prof, **kwargs)

    def split_rows(self, ds: Any, arrays: dict, test_size: float, seed: int, near: int,
                   min_similarity: float) -> tuple[np.ndarray, np.ndarray, dict]:
        """(train rows, test rows, the report's kind-specific part) of
        ``data.kinds.split_file`` (the kinds with their own split)."""
        raise NotImplementedError(f"{self.name} splits with subkit.data.split")

    def split_lines(self, report: dict) -> list[str]:
        """The kind's lines of ``subkit data split``'s summary (after the counts)."""
        return [f"duplicate image groups kept together: {report['groups_kept_together']} "
                f"({report['images_in_groups']} images)"]

    def dedupe_lines(self, summary: dict) -> list[str] | None:
        """The kind's own summary of ``subkit data dedupe`` (None: the image classifier's)."""
        return None

    # -- predictions -----------------------------------------------------------------------
    def output_words(self, values: np.ndarray, prof: Profile, phase: str | None) -> str:
        """What a smoke test's predictions were, in words."""
        return f"labels {values.tolist()}"

    def csv_header(self) -> bool:
        """A Kaggle CSV layout describes this kind's predictions."""
        return self.csv

    def refuse_tta_tune(self, prof: Profile) -> None:
        """``subkit tta tune`` of a kind whose views it cannot tune."""
        from subkit.errors import SubkitError

        if self.tta == "none":
            raise SubkitError(f"{prof.name} is {prof.kind}: its template has no test-time "
                              "augmentation, so there is nothing to tune",
                              hint="tta tune is for image classification (the template's views)")
        if self.tta != "views":
            raise SubkitError(f"tta tune does not tune {prof.kind} yet ({prof.name})",
                              hint="set TTA_VIEWS in model.py by hand and compare with "
                                   "`subkit score-local --shift default`")

    def refuse_csv(self, prof: Profile) -> None:
        """``subkit predict`` writes no CSV for a kind whose competition takes the zip."""

    def refuse_export(self, prof: Profile) -> None:
        if not self.exportable:
            raise UsageError(
                f"bundle export does not support {self.title} yet; {prof.name} is a "
                f"{self.title} competition",
                hint="score it with `subkit score-local` (its own metrics and report); the "
                     "exported scoring program handles image classification only")

    # -- shift families (score-local --shift on a kind without the image tools) ------------
    def apply_shift(self, name: str, sev: int, X: np.ndarray, truth: np.ndarray | None,
                    rng: np.random.Generator, prof: Profile, seed: int,
                    image_shift: Any) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError(f"{self.name} has no shift families")

    # -- the terminal summary and the report ------------------------------------------------
    def headline_suffix(self, phase: str | None) -> str:
        """What follows the headline's sample count (forecasting: the phase)."""
        return ""

    def summary_lines(self, result: Any) -> list[str]:
        """The kind's part of the terminal summary (per class, per step ...), each line
        already indented; cli/terminal.py prints them."""
        return []

    def report_sections(self, run: dict, arrays: ReportArrays) -> list[str]:
        """The kind's sections of report.html (HTML strings)."""
        return []

    def synthetic(self, prof: Profile, n: int, *, seed: int = 0,
                  **kwargs: Any) -> dict[str, np.ndarray]:
        """A synthetic set of this kind shaped as ``prof`` says (``data.synthetic``)."""
        from subkit.data import synthetic

        return synthetic.images_for_profile(prof, n, seed=seed, **kwargs)

    # -- the workspace and the demo --------------------------------------------------------
    def template_data(self, prof: Profile) -> dict[str, Any]:
        """train.py's DATA line beyond the keys."""
        return {"class_names": prof.class_names}

    def edit_model_template(self, text: str, prof: Profile) -> str:
        return text

    def demo_data(self, prof: Profile, n: int, seed: int) -> DemoData:
        from subkit.data import synthetic

        d = synthetic.for_profile(prof, n, seed=seed, duplicates=max(8, n // 20))
        raw = {k: v for k, v in d.items() if k != "is_duplicate"}
        return DemoData(raw, raw, None, f"{len(d[prof.labels_key])} samples")
