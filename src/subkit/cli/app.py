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
    echo_json,
    env_option,
    json_option,
    load_profile,
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
@main.command()
@click.argument("directory", required=False, default=".", type=click.Path(file_okay=False))
@profile_option
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def init(directory: str, profile_name: str | None, force: bool) -> None:
    """Lay out a workspace: template model.py, subkit.toml, submissions/."""
    from subkit.workspace import init_workspace

    written = init_workspace(Path(directory), profile_name, force=force)
    for p in written:
        click.echo(f"wrote {p}")
    click.echo(f"next: train (see {Path(directory) / 'train.py'}), then "
               "`subkit build --weights weights.keras`")


# -- build / check -------------------------------------------------------------------------
@main.command()
@click.option("--weights", "weights", multiple=True, required=True, metavar="FILE",
              help="Trained weights (.keras, .h5, .weights.h5); repeat for ensembles.")
@click.option("--model", "model_py", default=None, metavar="FILE",
              help="The submission's model.py (default: ./model.py, else the template).")
@click.option("--include", "includes", multiple=True, metavar="FILE",
              help="Another file to put at the zip root (repeatable).")
@click.option("--tag", default="submission", show_default=True, help="Name prefix of the zip.")
@click.option("--out-dir", default=None, metavar="DIR",
              help="Where to write the zip (default: the workspace's submissions/).")
@click.option("--keep-optimizer", is_flag=True, help="Keep the optimizer state in .keras files.")
@click.option("--no-smoke", is_flag=True, help="Skip the smoke test in a child process.")
@click.option("--target-keras", default=None, metavar="VERSION",
              help="Rewrite .keras files so this Keras loads them (default: the profile's grader "
                   "version when the weights were saved by a newer one).")
@env_option
@phase_option
@profile_option
@json_option
def build(weights, model_py, includes, tag, out_dir, keep_optimizer, no_smoke, target_keras,
          env_name, phase_name, profile_name, as_json) -> None:
    """Package weights and model.py into the competition zip, after checking it."""
    from subkit.commands.build import BuildOptions
    from subkit.commands.build import build as run_build

    opts = BuildOptions(
        weights=[Path(w) for w in weights], model_py=Path(model_py) if model_py else None,
        includes=[Path(i) for i in includes], tag=tag,
        out_dir=Path(out_dir) if out_dir else None, keep_optimizer=keep_optimizer,
        smoke=not no_smoke, env=env_name, target_keras=target_keras, phase=phase_name,
        quiet=as_json)
    manifest = run_build(opts, load_profile(profile_name))
    if as_json:
        echo_json(manifest)


@main.command()
@click.argument("zip_path", metavar="ZIP|CSV", type=click.Path(dir_okay=False))
@click.option("--no-smoke", is_flag=True, help="Only the static checks (no child process).")
@env_option
@click.option("--data", "data_path", default=None, metavar="FILE",
              help="With a CSV: the test set it predicts (checks the rows and the ids' order).")
@phase_option
@profile_option
@json_option
def check(zip_path, no_smoke, env_name, data_path, phase_name, profile_name, as_json) -> None:
    """Check an existing zip the way the grader will use it, or a Kaggle CSV against the
    profile's layout: PASSED / FAILED."""
    from subkit.commands.build import CheckOptions
    from subkit.commands.build import check as run_check

    opts = CheckOptions(path=Path(zip_path), smoke=not no_smoke, env=env_name,
                        data=Path(data_path) if data_path else None, phase=phase_name,
                        quiet=as_json)
    report = run_check(opts, load_profile(profile_name))
    if as_json:
        echo_json(report.to_dict())
    if report.status == "FAILED":
        sys.exit(1)


# -- score-local / predict -------------------------------------------------------------------
@main.command(name="score-local")
@click.argument("zip_path", metavar="[ZIP]", required=False)
@click.option("--data", "data_path", default=None, metavar="FILE",
              help="Labelled test set (.npz or class folders); default: subkit.toml's local_test.")
@click.option("--time-limit", type=float, default=None, metavar="S",
              help="Seconds before the child is killed (default: the profile's).")
@click.option("--no-network-isolation", is_flag=True,
              help="Do not cut the child's network even where the machine allows it.")
@click.option("--bundle", "bundle_path", default=None, metavar="BUNDLE",
              help="A Codabench competition bundle (folder or zip with competition.yaml): run "
                   "its own ingestion and scoring programs, as the compute worker does.")
@click.option("--phase", "phase_name", default=None, metavar="NAME",
              help="With --bundle: the bundle's phase (name or index; default: the first). "
                   "Else the profile's phase, which sets the expected output (the forecast "
                   "horizon: 9 in development, 18 in the final phase of an2dl-2023-forecasting).")
@click.option("--task", "task_index", type=int, default=None, metavar="N",
              help="With --bundle: the task index (default: the phase's first).")
@click.option("--shift", "shift_suite", is_flag=False, flag_value="default", default=None,
              metavar="[SUITE]",
              help="Also score the test set under a seeded suite of distribution shifts: "
                   "default, quick, hidden-2024, microscopy, or a list like blur:3,bubble; "
                   "predicts the leaderboard from the ledger (docs/shift-and-report.md).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the shift suite.")
@click.option("--tta-compare", is_flag=True,
              help="Run predict again with the template's TTA off (SUBKIT_TTA=0) and compare.")
@click.option("--proba", is_flag=True,
              help="Also call predict_proba (when the model has one) to rank the report's "
                   "mistakes by confidence (implied by --shift).")
@env_option
@profile_option
@json_option
def score_local(zip_path, data_path, time_limit, no_network_isolation, profile_name, as_json,
                bundle_path=None, phase_name=None, task_index=None, shift_suite=None, seed=0,
                tta_compare=False, proba=False, env_name=None):
    """Run a zip the way the hidden evaluation runs it, and score it.

    With --bundle, the competition's own programs run instead of subkit's grader."""
    from subkit.cli.terminal import print_bundle_summary, print_score
    from subkit.commands.score_local import ScoreLocalOptions
    from subkit.commands.score_local import score_local as run_score

    prof = load_profile(profile_name)
    opts = ScoreLocalOptions(
        zip=Path(zip_path) if zip_path else None, data=Path(data_path) if data_path else None,
        time_limit=time_limit, isolate_network=not no_network_isolation,
        bundle=Path(bundle_path) if bundle_path else None, phase=phase_name, task=task_index,
        shift=shift_suite, seed=seed, tta_compare=tta_compare, proba=proba, env=env_name,
        progress=not as_json)
    result = run_score(opts, prof)
    if as_json:
        echo_json(result.to_dict())
    elif opts.bundle:
        print_bundle_summary(result)
    else:
        print_score(result, prof)
    if not result.ok:
        sys.exit(1)


@main.command()
@click.argument("zip_path", metavar="[ZIP]", required=False)
@click.option("--data", "data_path", required=True, metavar="FILE",
              help="Images to predict (.npz or folder).")
@click.option("--out", "out_path", required=True, metavar="FILE.csv",
              help="Kaggle-style CSV to write.")
@click.option("--force", is_flag=True, help="Overwrite --out.")
@click.option("--time-limit", type=float, default=None, metavar="S")
@env_option
@phase_option
@profile_option
@json_option
def predict(zip_path, data_path, out_path, force, time_limit, env_name, phase_name, profile_name,
            as_json):
    """Run a zip on unlabelled data (isolated, like score-local) and write the profile's
    CSV exactly (e.g. Mars: id then 8192 pixel columns; Pirate Pain: sample_index,label)."""
    from subkit.commands.score_local import PredictOptions
    from subkit.commands.score_local import predict as run_predict

    opts = PredictOptions(data=Path(data_path), out=Path(out_path),
                          zip=Path(zip_path) if zip_path else None, force=force,
                          time_limit=time_limit, env=env_name, phase=phase_name,
                          progress=not as_json)
    info = run_predict(opts, load_profile(profile_name))
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
@main.command()
@click.argument("directory", required=False, default=None, type=click.Path(file_okay=False))
@click.option("--n", "n_images", default=2000, show_default=True,
              help="Synthetic images to generate.")
@click.option("--epochs", default=None, type=int,
              help="Training epochs (default: train.py --quick's).")
@click.option("--force", is_flag=True, help="Reuse a non-empty DIRECTORY.")
@click.option("--profile", "profile_name", metavar="NAME", default=None,
              help="The kind of competition to demonstrate (a built-in profile; default: "
                   "an2dl-2024-blood-cells). Kaggle profiles also write and check the CSV.")
def demo(directory, n_images, epochs, force, profile_name) -> None:
    """End to end on built-in synthetic data: data, train, build, score-local.

    DIRECTORY defaults to ./subkit-demo, or ~/subkit-demo when the current folder is inside
    a source checkout (-2, -3... when taken); the demo says where."""
    from subkit.cli.terminal import print_score
    from subkit.commands.demo import DemoOptions, run

    run(DemoOptions(directory=Path(directory) if directory else None, n_images=n_images,
                    epochs=epochs, force=force, profile_name=profile_name),
        show_score=print_score)


from subkit.cli.bundle import bundle as _bundle_group  # noqa: E402
from subkit.cli.data import data as _data_group  # noqa: E402
from subkit.cli.env import env as _env_group  # noqa: E402
from subkit.cli.ledger import history as _history_group  # noqa: E402
from subkit.cli.ledger import submit as _submit_command  # noqa: E402
from subkit.cli.report import report as _report_command  # noqa: E402
from subkit.cli.tta import tta as _tta_group  # noqa: E402

for _command in (_data_group, _history_group, _submit_command, _bundle_group, _report_command,
                 _env_group, _tta_group):
    main.add_command(_command)
