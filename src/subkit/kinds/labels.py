"""What the two classification kinds share: class labels, the per-class table and the
confusion matrix in the terminal summary and in report.html."""

from __future__ import annotations

from typing import Any

from subkit.kinds.base import Kind, ReportArrays


class LabelsKind(Kind):
    task = "classification"
    metrics = ("accuracy", "balanced_accuracy", "macro_f1")
    target_noun = "labels"
    output = "labels"
    one_label = True
    named_cells = True

    def summary_lines(self, result: Any) -> list[str]:
        width = max(len(n) for n in result.class_names) + 2
        out = [f"  {'class':<{width}} precision  recall     f1  support"]
        for row in result.per_class:
            out.append(f"  {row['name']:<{width}} {row['precision']:9.3f} {row['recall']:7.3f} "
                       f"{row['f1']:6.3f} {row['support']:8d}")
        out.append("")
        return out + confusion_lines(result.confusion_matrix, "")

    def report_sections(self, run: dict, arrays: ReportArrays) -> list[str]:
        from subkit.kinds.report import classes

        return [classes.per_class(run), classes.confusion(run)]


def confusion_lines(cm: list[list[int]], unit: str) -> list[str]:
    """The confusion matrix as the terminal prints it (rows: true, columns: predicted)."""
    out = [f"  confusion matrix{unit} (rows: true, columns: predicted)"]
    cw = max(4, max(len(str(v)) for r in cm for v in r) + 1)
    out.append("  " + " " * 4 + "".join(f"{j:>{cw}}" for j in range(len(cm))))
    for i, r in enumerate(cm):
        out.append(f"  {i:>3} " + "".join(f"{v:>{cw}}" for v in r))
    out.append("")
    return out
