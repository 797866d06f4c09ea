"""Scoring program of a bundle exported by subkit: scores predictions with
scoring.py, the very code `subkit score-local` scores with. Standalone: stdlib and numpy.

    python3 score.py INPUT OUTPUT      (Codabench: $input $output)

INPUT/ref/y.npy holds the labels, INPUT/res/ the prediction run's output (predictions.npy
and ingestion.json, written by ingestion.py). Writes OUTPUT/scores.json and
OUTPUT/detailed_results.html. Invalid or missing predictions: a message on stderr, exit 1,
no scores (Codabench then marks the submission Failed).
"""

import html
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import scoring  # noqa: E402


def _fail(message, hint):
    sys.stderr.write("error: %s\nhint: %s\n" % (message, hint))
    return 1


def main(argv):
    if len(argv) != 3:
        return _fail("usage: score.py INPUT OUTPUT", "Codabench passes $input $output")
    input_dir, output_dir = argv[1], argv[2]
    with open(os.path.join(HERE, "settings.json")) as fh:
        settings = json.load(fh)
    names = settings["class_names"]
    y_true = np.load(os.path.join(input_dir, "ref", "y.npy"), allow_pickle=False)
    res = os.path.join(input_dir, "res")
    status = {}
    try:
        with open(os.path.join(res, "ingestion.json")) as fh:
            status = json.load(fh)
    except (OSError, ValueError):
        pass
    pred_path = os.path.join(res, "predictions.npy")
    if not (status.get("ok") and os.path.exists(pred_path)):
        if status.get("error_type"):
            sys.stderr.write(status.get("traceback", "")[-4000:] + "\n")
            return _fail("the submission failed during %s: %s: %s" % (
                status.get("stage"), status["error_type"], status.get("error", "")),
                "see the ingestion log (prediction_ingestion_stderr)")
        return _fail("the prediction run left no predictions (stage reached: %s)"
                     % status.get("stage"), "see the ingestion log (prediction_ingestion_stderr)")
    pred = np.load(pred_path, allow_pickle=False)
    try:
        labels, warnings = scoring.validate_predictions(pred, len(y_true), len(names))
    except scoring.PredictionError as exc:
        return _fail(exc.message, exc.hint)
    for w in warnings:
        sys.stderr.write("warning: %s\n" % w)
    m = scoring.metrics(y_true, labels, names)
    os.makedirs(output_dir, exist_ok=True)
    scoring.write_scores_json(os.path.join(output_dir, "scores.json"),
                              {k: m[k] for k in settings["columns"]})
    rows = "".join("<tr><td>%s</td><td>%.4f</td><td>%.4f</td><td>%.4f</td><td>%d</td></tr>" % (
        html.escape(r["name"]), r["precision"], r["recall"], r["f1"], r["support"])
        for r in m["per_class"])
    cm = "".join("<tr><th>%s</th>%s</tr>" % (html.escape(names[i]), "".join(
        "<td>%d</td>" % v for v in row)) for i, row in enumerate(m["confusion_matrix"]))
    head = "".join("<th>%d</th>" % i for i in range(len(names)))
    page = ("<!doctype html><meta charset=utf-8><title>Detailed results</title>"
            "<style>td,th{padding:2px 8px;text-align:right}</style>"
            "<h2>%s %.4f</h2><p>%s</p><table><tr><th>class</th><th>precision</th><th>recall</th>"
            "<th>f1</th><th>support</th></tr>%s</table><h3>Confusion matrix (rows: truth)</h3>"
            "<table><tr><th></th>%s</tr>%s</table>") % (
        html.escape(settings["metric"]), m[settings["metric"]],
        " &middot; ".join("%s %.4f" % (k, m[k]) for k in settings["columns"]), rows, head, cm)
    with open(os.path.join(output_dir, "detailed_results.html"), "w") as fh:
        fh.write(page)
    print(json.dumps({k: m[k] for k in settings["columns"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
