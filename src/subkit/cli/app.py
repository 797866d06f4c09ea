"""The command line. Each command parses its options and calls one library function;
nothing here imports TensorFlow at import time."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from subkit import __version__
from subkit.cli.options import (
    CONTEXT,
    argument,
    declare,
    echo_json,
    env_option,
    fill,
    json_option,
    load_profile,
    negate,
    option,
    path,
    paths,
    phase_option,
    profile_option,
)


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="subkit")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def main(debug: bool) -> None:
    """subkit: build, check, score locally and submit code submissions.

    \b
    Typical flow:
      subkit init my-workspace          # template model.py + subkit.toml
      subkit data split training_set.npz --test-size 0.15 --out-train train.npz \\
                   --out-test local_test.npz --set-default
      subkit build --weights weights.keras
      subkit score-local                # newest zip, workspace's local test set
      subkit history
    """


# -- profile ----------------------------------------------------------------------------
@main.group(name="profile")
def profile_group() -> None:
    """Competition profiles: list the built-ins, show the effective one."""


@profile_group.command(name="list")
def profile_list() -> None:
    """List built-in profiles."""
    from subkit import profile

    for name in profile.builtin_names():
        data = profile.load_builtin(name)
        click.echo(f"{name:28s} {data.get('platform', ''):10s} {data.get('title', '')}")


@profile_group.command(name="show")
@profile_option
@json_option
def profile_show(profile_name: str | None, as_json: bool) -> None:
    """Print the effective profile (built-in merged with subkit.toml overrides)."""
    from subkit import profile

    prof = profile.load(profile_name)
    if as_json:
        echo_json({"source": prof.source, "profile": prof.to_dict(),
                    "workspace": str(prof.workspace) if prof.workspace else None,
                    "workspace_settings": prof.workspace_settings})
        return
    click.echo(f"# effective profile: {prof.source}")
    if prof.workspace:
        click.echo(f"# workspace: {prof.workspace}")
    click.echo(profile.to_toml(prof.to_dict()), nl=False)
    if prof.workspace_settings:
        click.echo("\n[workspace]")
        for k, v in prof.workspace_settings.items():
            click.echo(f"{k} = {json.dumps(v)}")


# -- init ----------------------------------------------------------------------------------
INIT = (
    argument("directory", required=False, default=".",
             type=click.Path(file_okay=False)),
    profile_option,
    option("--force", dest="force", is_flag=True, help="Overwrite existing files."),
)


@main.command()
@declare(*INIT)
def init(**values) -> None:
    """Lay out a workspace: template model.py, subkit.toml, submissions/."""
    from subkit.workspace import init_workspace

    directory = values["directory"]
    written = init_workspace(Path(directory), values["profile_name"], force=values["force"])
    for p in written:
        click.echo(f"wrote {p}")
    click.echo(f"next: train (see {Path(directory) / 'train.py'}), then "
               "`subkit build --weights weights.keras`")


# -- build / check -------------------------------------------------------------------------
BUILD = (
    option("--weights", dest="weights", convert=paths, multiple=True, required=True,
           metavar="FILE", help="Trained weights (.keras, .h5, .weights.h5, or a TensorFlow "
                                "SavedModel folder where the grader runs Keras 2); repeat for "
                                "ensembles."),
    option("--model", dest="model_py", convert=path, default=None, metavar="FILE",
           help="The submission's model.py (default: ./model.py, else the template)."),
    option("--include", dest="includes", convert=paths, multiple=True, metavar="FILE",
           help="Another file to put at the zip root (repeatable)."),
    option("--tag", dest="tag", default="submission", show_default=True,
           help="Name prefix of the zip."),
    option("--out-dir", dest="out_dir", convert=path, default=None, metavar="DIR",
           help="Where to write the zip (default: the workspace's submissions/)."),
    option("--keep-optimizer", dest="keep_optimizer", is_flag=True,
           help="Keep the optimizer state in .keras files."),
    option("--no-smoke", dest="no_smoke", field="smoke", convert=negate, is_flag=True,
           help="Skip the smoke test in a child process."),
    option("--target-keras", dest="target_keras", default=None, metavar="VERSION",
           help="Rewrite .keras files so this Keras loads them (default: the profile's grader "
                "version when the weights were saved by a newer one)."),
    env_option, phase_option, profile_option, json_option,
)


@main.command()
@declare(*BUILD)
def build(**values) -> None:
    """Package weights and model.py into the competition zip, after checking it."""
    from subkit.commands.build import BuildOptions
    from subkit.commands.build import build as run_build

    opts = fill(BuildOptions, BUILD, values, quiet=values["as_json"])
    manifest = run_build(opts, load_profile(values["profile_name"]))
    if values["as_json"]:
        echo_json(manifest)


CHECK = (
    argument("zip_path", field="path", convert=Path, metavar="ZIP|CSV",
             type=click.Path(dir_okay=False)),
    option("--no-smoke", dest="no_smoke", field="smoke", convert=negate, is_flag=True,
           help="Only the static checks (no child process)."),
    env_option,
    option("--data", dest="data_path", field="data", convert=path, default=None, metavar="FILE",
           help="With a CSV: the test set it predicts (checks the rows and the ids' order)."),
    phase_option, profile_option, json_option,
)


@main.command()
@declare(*CHECK)
def check(**values) -> None:
    """Check an existing zip the way the grader will use it, or a Kaggle CSV against the
    profile's layout: PASSED / FAILED."""
    from subkit.commands.build import CheckOptions
    from subkit.commands.build import check as run_check

    as_json = values["as_json"]
    opts = fill(CheckOptions, CHECK, values, quiet=as_json)
    report = run_check(opts, load_profile(values["profile_name"]))
    if as_json:
        echo_json(report.to_dict())
    if report.status == "FAILED":
        sys.exit(1)


# -- score-local / predict -------------------------------------------------------------------
SCORE_LOCAL = (
    argument("zip_path", field="zip", convert=path, metavar="[ZIP]", required=False),
    option("--data", dest="data_path", field="data", convert=path, default=None,
           metavar="FILE", help="Labelled test set (.npz or class folders); default: "
                                "subkit.toml's local_test."),
    option("--time-limit", dest="time_limit", type=float, default=None, metavar="S",
           help="Seconds before the child is killed (default: the profile's)."),
    option("--no-network-isolation", dest="no_network_isolation", field="isolate_network",
           convert=lambda v: False if v else None, is_flag=True,  # None: the profile's
           help="Do not cut the child's network even where the machine allows it."),
    option("--bundle", dest="bundle_path", field="bundle", convert=path, default=None,
           metavar="BUNDLE",
           help="A Codabench competition bundle (folder or zip with competition.yaml): run "
                "its own ingestion and scoring programs, as the compute worker does."),
    option("--phase", dest="phase_name", field="phase", default=None, metavar="NAME",
           help="With --bundle: the bundle's phase (name or index; default: the first). "
                "Else the profile's phase, which sets the expected output (the forecast "
                "horizon: 9 in development, 18 in the final phase of an2dl-2023-forecasting)."),
    option("--task", dest="task_index", field="task", type=int, default=None, metavar="N",
           help="With --bundle: the task index (default: the phase's first)."),
    option("--shift", dest="shift_suite", field="shift", is_flag=False, flag_value="",
           default=None, metavar="[SUITE]",
           help="Also score the test set under a seeded suite of distribution shifts: "
                "default, quick, hidden-2024, microscopy, or a list like blur:3,bubble (alone: "
                "the profile's [shift] default, e.g. hidden-2024 for blood cells); "
                "predicts the leaderboard from the ledger (docs/shift-and-report.md)."),
    option("--seed", dest="seed", type=click.IntRange(min=0), default=0, show_default=True,
           help="Seed of the shift suite."),
    option("--tta-compare", dest="tta_compare", is_flag=True,
           help="Run predict again with the template's TTA off (SUBKIT_TTA=0) and compare."),
    option("--proba", dest="proba", is_flag=True,
           help="Also call predict_proba (when the model has one) to rank the report's "
                "mistakes by confidence (implied by --shift)."),
    env_option, profile_option, json_option,
)


@main.command(name="score-local")
@declare(*SCORE_LOCAL)
def score_local(**values):
    """Run a zip the way the hidden evaluation runs it, and score it.

    With --bundle, the competition's own programs run instead of subkit's grader."""
    from subkit.cli.terminal import print_bundle_summary, print_score
    from subkit.commands.score_local import ScoreLocalOptions
    from subkit.commands.score_local import score_local as run_score

    as_json = values["as_json"]
    prof = load_profile(values["profile_name"])
    opts = fill(ScoreLocalOptions, SCORE_LOCAL, values, progress=not as_json)
    result = run_score(opts, prof)
    if as_json:
        echo_json(result.to_dict())
    elif opts.bundle:
        print_bundle_summary(result)
    else:
        print_score(result, prof)
    if not result.ok:
        sys.exit(1)


PREDICT = (
    argument("zip_path", field="zip", convert=path, metavar="[ZIP]", required=False),
    option("--data", dest="data_path", field="data", convert=Path, required=True,
           metavar="FILE", help="Images to predict (.npz or folder)."),
    option("--out", dest="out_path", field="out", convert=Path, required=True,
           metavar="FILE.csv", help="Kaggle-style CSV to write."),
    option("--force", dest="force", is_flag=True, help="Overwrite --out."),
    option("--time-limit", dest="time_limit", type=float, default=None, metavar="S"),
    env_option, phase_option, profile_option, json_option,
)


@main.command()
@declare(*PREDICT)
def predict(**values):
    """Run a zip on unlabelled data (isolated, like score-local) and write the profile's
    CSV exactly (e.g. Mars: id then 8192 pixel columns; Pirate Pain: sample_index,label)."""
    from subkit.commands.score_local import PredictOptions
    from subkit.commands.score_local import predict as run_predict

    as_json = values["as_json"]
    opts = fill(PredictOptions, PREDICT, values, progress=not as_json)
    info = run_predict(opts, load_profile(values["profile_name"]))
    if as_json:
        echo_json(info)
        return
    from subkit.cli.terminal import print_sandbox
    from subkit.grader.run import env_line

    for w in info["warnings"]:
        click.secho(f"warning: {w}", fg="yellow", bold=w is info["warnings"][0]
                    and bool(info["env"].get("warning")))
    click.echo(f"wrote {info['rows']} predictions to {info['out']}")
    print_sandbox(info["sandbox"])
    click.echo(env_line(info["env"]))  # last, as in score-local's summary


# -- demo ------------------------------------------------------------------------------------
DEMO = (
    argument("directory", convert=path, required=False, default=None,
             type=click.Path(file_okay=False)),
    option("--n", dest="n_images", default=2000, show_default=True,
           help="Synthetic images to generate."),
    option("--epochs", dest="epochs", default=None, type=int,
           help="Training epochs (default: train.py --quick's)."),
    option("--force", dest="force", is_flag=True, help="Reuse a non-empty DIRECTORY."),
    option("--profile", dest="profile_name", metavar="NAME", default=None,
           help="The kind of competition to demonstrate (a built-in profile; default: "
                "an2dl-2024-blood-cells). Kaggle profiles also write and check the CSV."),
)


@main.command()
@declare(*DEMO)
def demo(**values) -> None:
    """End to end on built-in synthetic data: data, train, build, score-local.

    DIRECTORY defaults to ./subkit-demo, or ~/subkit-demo when the current folder is inside
    a source checkout (-2, -3... when taken); the demo says where."""
    from subkit.cli.terminal import print_score
    from subkit.commands.demo import DemoOptions, run

    run(fill(DemoOptions, DEMO, values), show_score=print_score)


from subkit.cli.bundle import bundle as _bundle_group  # noqa: E402
from subkit.cli.data import data as _data_group  # noqa: E402
from subkit.cli.env import env as _env_group  # noqa: E402
from subkit.cli.ledger import history as _history_group  # noqa: E402
from subkit.cli.ledger import submit as _submit_command  # noqa: E402
from subkit.cli.probe import history_time as _history_time  # noqa: E402
from subkit.cli.probe import probe as _probe_group  # noqa: E402
from subkit.cli.report import report as _report_command  # noqa: E402
from subkit.cli.tta import tta as _tta_group  # noqa: E402

for _command in (_data_group, _history_group, _submit_command, _bundle_group, _report_command,
                 _env_group, _probe_group, _tta_group):
    main.add_command(_command)
_history_group.add_command(_history_time)
