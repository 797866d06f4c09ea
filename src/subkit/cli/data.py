"""`subkit data ...`: inspect, dedupe, split, weights.

Thin: each command parses its options, calls one library function of ``subkit.data``, and
prints. numpy only: nothing here imports TensorFlow.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from subkit.cli.options import echo_json, json_option, load_profile, profile_option

DEFAULT_NEAR = 4  # kept equal to subkit.data.duplicates.DEFAULT_NEAR (tested)
DEFAULT_SIMILARITY = 0.98  # kept equal to duplicates.DEFAULT_SIMILARITY (tested)
MAX_NEAR = 12


def _near_option(default, help_text):
    return click.option("--near", "near", type=click.IntRange(0, MAX_NEAR), default=default,
                        metavar="DIST", show_default=default is not None, help=help_text)


similarity_option = click.option(
    "--similarity", "similarity", type=click.FloatRange(0.0, 1.0),
    default=DEFAULT_SIMILARITY, show_default=True, metavar="S",
    help="A near pair must also have this cosine similarity of its low-frequency DCT "
         "coefficients (brightness- and contrast-insensitive); 0 uses the hash alone.")


@click.group(name="data")
def data() -> None:
    """Make the local test set honest: duplicates, leaks, imbalance.

    \b
      subkit data inspect training_set.npz --html report.html
      subkit data dedupe training_set.npz --out clean.npz --drop all-copies
      subkit data split clean.npz --test-size 0.15 --out-train train.npz \\
                        --out-test local_test.npz --set-default
      subkit data weights train.npz
    """


# -- inspect -------------------------------------------------------------------------------------
@data.command(short_help="Classes, duplicates and their labels, outliers, class weights.")
@click.argument("file", metavar="FILE")
@_near_option(DEFAULT_NEAR, "Near duplicates: perceptual hashes at most DIST bits apart (0-12).")
@similarity_option
@click.option("--z", "z_threshold", type=click.FloatRange(0, min_open=True), default=3.5,
              show_default=True, help="Colour outlier threshold on the robust z-score.")
@click.option("--html", "html_path", metavar="PATH", default=None,
              help="Also write a self-contained HTML page with thumbnails of each duplicate "
                   "group and outlier (overwritten if it exists).")
@click.option("--no-open", is_flag=True,
              help="Do not open the HTML page in a browser (it opens only on a terminal).")
@profile_option
@json_option
def inspect(file, near, similarity, z_threshold, html_path, no_open, profile_name, as_json):
    """Shapes, classes, imbalance, exact and near duplicates (and their labels), colour
    outliers, suggested class weights."""
    from subkit.commands import data as commands
    from subkit.data import inspect as insp

    prof = load_profile(profile_name)
    report = commands.inspect(commands.InspectOptions(
        file=Path(file), near=near, similarity=similarity, z_threshold=z_threshold,
        html=Path(html_path) if html_path is not None else None), prof)
    own = prof.kind_spec.inspect_text(report)  # the kind's own inspection (subkit.kinds)
    if own is not None:
        echo_json(report) if as_json else click.echo(own)
        return
    if as_json:
        echo_json(insp.public(report))
    else:
        click.echo(insp.to_text(report))
        if html_path is not None:
            click.echo(f"wrote {html_path}")
    if html_path is not None and not no_open and sys.stdout.isatty() and not os.environ.get("CI"):
        import webbrowser

        webbrowser.open(Path(html_path).resolve().as_uri())


# -- dedupe --------------------------------------------------------------------------------------
@data.command(short_help="Write a copy without duplicates, and a record of the removed.")
@click.argument("file", metavar="FILE")
@click.option("--out", "out", required=True, metavar="FILE",
              help="The cleaned .npz to write (same keys, label layout and dtypes as FILE).")
@click.option("--drop", type=click.Choice(["keep-one", "conflicting", "all-copies"]),
              default="keep-one", show_default=True,
              help="keep-one: keep the first image of each group whose labels agree, drop "
                   "every image of a group whose labels disagree. conflicting: drop only the "
                   "groups whose labels disagree (all their images). all-copies: drop every "
                   "image of every duplicate group.")
@_near_option(None, "Also treat near duplicates as copies: perceptual hashes at most DIST "
                    "bits apart (default: exact copies, same bytes, only).")
@similarity_option
@click.option("--record", "record", metavar="FILE", default=None,
              help="The JSON record of what was removed (default: <out>.removed.json).")
@click.option("--force", is_flag=True, help="Overwrite --out and the record if they exist.")
@click.option("--drop-shared-masks", is_flag=True,
              help="Segmentation: also drop every image of a group of 3 or more whose masks "
                   "are identical (and not uniform), like Mars' 110 'alien' images.")
@profile_option
@json_option
def dedupe(file, out, drop, near, similarity, record, force, drop_shared_masks, profile_name,
           as_json):
    """Write a copy of FILE without duplicates, and a JSON record of each removed image
    (index, reason, group). FILE is never changed."""
    from subkit.commands import data as commands

    prof = load_profile(profile_name)
    summary = commands.dedupe(commands.DedupeOptions(
        file=Path(file), out=Path(out), drop=drop, near=near, similarity=similarity,
        record=Path(record) if record else None, force=force,
        drop_shared_masks=drop_shared_masks), prof)
    own = prof.kind_spec.dedupe_lines(summary)
    if own is not None and not as_json:
        click.echo("\n".join(own))
        return
    if as_json:
        echo_json(summary)
        return
    click.echo(f"{summary['n_input']:,} -> {summary['n_output']:,} images: removed "
               f"{summary['n_removed']:,} ({summary['drop']}) from {summary['n_groups']:,} "
               f"duplicate groups ({summary['match']}), {summary['n_conflicting_groups']:,} "
               "with conflicting labels")
    per = ", ".join(f"{k} {v}" for k, v in summary["removed_per_class"].items() if v)
    if per:
        click.echo(f"removed per class: {per}")
    for key in summary["skipped_arrays"]:
        click.echo(f"warning: array {key!r} holds Python objects and was not copied")
    click.echo(f"wrote {summary['output']} and {summary['record']}")


# -- split ---------------------------------------------------------------------------------------
@data.command(short_help="Stratified train/test split; near duplicates on one side.")
@click.argument("file", metavar="FILE")
@click.option("--test-size", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.15, show_default=True, help="Share of each class for the test set.")
@click.option("--out-train", required=True, metavar="FILE", help="The training .npz to write.")
@click.option("--out-test", required=True, metavar="FILE", help="The local test .npz to write.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="The same seed gives the same split.")
@_near_option(DEFAULT_NEAR, "Near duplicates (perceptual hashes at most DIST bits apart) stay "
                            "on one side; exact copies always do.")
@similarity_option
@click.option("--set-default", is_flag=True,
              help="Record --out-test as local_test in the workspace's subkit.toml "
                   "([workspace] table), the default data of `subkit score-local`.")
@click.option("--force", is_flag=True, help="Overwrite --out-train/--out-test if they exist.")
@profile_option
@json_option
def split(file, test_size, out_train, out_test, seed, near, similarity, set_default, force,
          profile_name, as_json):
    """Stratified, group-aware train/test split: every class keeps its share on both sides,
    and no test image has a near duplicate in training."""
    from subkit.commands import data as commands

    prof = load_profile(profile_name)
    report = commands.split(commands.SplitOptions(
        file=Path(file), out_train=Path(out_train), out_test=Path(out_test),
        test_size=test_size, seed=seed, near=near, similarity=similarity,
        set_default=set_default, force=force), prof)
    if as_json:
        echo_json(report)
        return
    if "kind" in report:
        _print_kind_split(report, prof.kind_spec.split_lines(report))
        return
    width = max(len(c["name"]) for c in report["classes"])
    click.echo(f"{report['n_images']:,} images -> train {report['train']['n_images']:,}, "
               f"test {report['test']['n_images']:,} (test size {test_size}, seed {seed})")
    click.echo(f"  {'id':>2}  {'class':<{width}}  {'train':>7}  {'test':>6}  {'test %':>6}")
    for c in report["classes"]:
        click.echo(f"  {c['id']:>2}  {c['name']:<{width}}  {c['train']:>7,}  {c['test']:>6,}  "
                   f"{c['test_share'] * 100:5.1f}%")
    click.echo(f"duplicate groups kept together: {report['groups_kept_together']:,} "
               f"({report['images_in_groups']:,} images; {report['groups_on_test_side']:,} "
               f"groups on the test side); near: pHash distance <= {near}")
    for name in report["missing_classes"]:
        click.echo(f"warning: class {name!r} has no image on either side")
    for key in report["skipped_arrays"]:
        click.echo(f"warning: array {key!r} holds Python objects and was not copied")
    click.echo(f"wrote {report['train']['path']} and {report['test']['path']}")
    if report.get("set_default"):
        click.echo(f"set local_test in {report['set_default']}")


def _print_kind_split(report: dict, kind_lines: list[str]) -> None:
    click.echo(f"{report['n_samples']:,} samples -> train {report['train']['n_samples']:,}, "
               f"test {report['test']['n_samples']:,} (test size {report['test_size']}, "
               f"seed {report['seed']})")
    for line in kind_lines:
        click.echo(line)
    click.echo(f"wrote {report['train']['path']} and {report['test']['path']}")
    if report.get("set_default"):
        click.echo(f"set local_test in {report['set_default']}")


# -- weights -------------------------------------------------------------------------------------
@data.command(short_help="Class weights for Keras: class_weight dict, focal alpha list.")
@click.argument("file", metavar="FILE")
@profile_option
@json_option
def weights(file, profile_name, as_json):
    """Class weights to paste into Keras: the `class_weight` dict ("balanced",
    n / (classes * count)) and the `alpha` list of CategoricalFocalCrossentropy."""
    from subkit.commands import data as commands
    from subkit.data import weights as w

    report = commands.weights(Path(file), load_profile(profile_name))
    if as_json:
        echo_json(report)
    else:
        click.echo(w.to_python(report))
