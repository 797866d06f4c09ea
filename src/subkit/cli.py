"""The command line. Each command parses its options and calls one library function;
nothing here imports TensorFlow at import time."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from subkit import __version__
from subkit.errors import SubkitError, UsageError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _profile(name: str | None):
    from subkit import profile

    return profile.load(name)


def _echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))


profile_option = click.option(
    "--profile", "profile_name", metavar="NAME",
    help="Competition profile (a built-in name or a .toml path); default: the workspace's "
         "subkit.toml, else an2dl-2024-blood-cells.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
env_option = click.option(
    "--env", "env_name", type=click.Choice(["auto", "grader", "current"]), default=None,
    help="Library versions that run the submission: auto (default; $SUBKIT_ENV) = the "
         "profile's grader versions (a cached environment, created on first need) whenever "
         "the current ones differ; grader; current.")
phase_option = click.option(
    "--phase", "phase_name", default=None, metavar="NAME",
    help="The profile's phase (name or index; default: the first): it sets the expected "
         "output where phases differ (a forecast's horizon).")


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
        _echo_json({"source": prof.source, "profile": prof.to_dict(),
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
    from subkit.build import build_submission

    prof = _profile(profile_name)
    manifest = build_submission(
        weights=[Path(w) for w in weights], model_py=Path(model_py) if model_py else None,
        includes=[Path(i) for i in includes], tag=tag,
        out_dir=Path(out_dir) if out_dir else None, profile=prof,
        keep_optimizer=keep_optimizer, smoke=not no_smoke, echo=None if as_json else click.echo,
        env=env_name, target_keras=target_keras, phase=phase_name)
    if as_json:
        _echo_json(manifest)


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
    from subkit.build import check_csv, check_zip

    prof = _profile(profile_name)
    echo = None if as_json else click.echo
    if zip_path.lower().endswith(".csv"):
        report = check_csv(Path(zip_path), prof, data=Path(data_path) if data_path else None,
                           echo=echo)
    else:
        report = check_zip(Path(zip_path), prof, smoke=not no_smoke, env=env_name, echo=echo,
                           phase=phase_name)
    if as_json:
        _echo_json(report.to_dict())
    if report.status == "FAILED":
        sys.exit(1)


# -- score-local / predict -------------------------------------------------------------------
def _zip_default(prof, zip_path: str | None) -> Path:
    from subkit.workspace import newest_zip

    return Path(zip_path) if zip_path else newest_zip(prof)


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
    from subkit.grader.run import score_local as run_score
    from subkit.report.terminal import print_score

    prof = _profile(profile_name)
    if bundle_path or task_index is not None:
        if shift_suite or tta_compare:
            raise UsageError("--shift and --tta-compare run subkit's own grader, not a bundle's",
                             hint="drop --bundle, or drop --shift/--tta-compare")
        return _score_with_bundle(prof, zip_path, data_path, bundle_path, phase_name, task_index,
                                  time_limit, no_network_isolation, as_json, env_name)
    if phase_name is not None:  # the profile's phase; a bundle's needs --bundle
        try:
            prof.phase(phase_name)
        except SubkitError as exc:
            raise UsageError(exc.message, hint=f"{exc.hint}; a Codabench bundle's phase needs "
                                               "--bundle BUNDLE") from None
    if shift_suite and zip_path is None and shift_suite.lower().endswith(".zip"):
        zip_path, shift_suite = shift_suite, "default"  # `--shift my.zip`: the zip, not a suite
    zp = _zip_default(prof, zip_path)
    data = _data_default(prof, data_path)
    result = run_score(zp, data, prof, time_limit=time_limit,
                       isolate_network=not no_network_isolation,
                       progress=not as_json, shift=shift_suite, seed=seed,
                       tta_compare=tta_compare, proba=proba, env=env_name, phase=phase_name)
    if as_json:
        _echo_json(result.to_dict())
    else:
        print_score(result, prof)
    if not result.ok:
        sys.exit(1)


def _score_with_bundle(prof, zip_path, data_path, bundle_path, phase_name, task_index,
                       time_limit, no_network_isolation, as_json, env_name=None):
    """score-local --bundle: the bundle's programs (issue 7)."""
    from subkit.grader.codabench import score_with_bundle, summary_lines

    if not bundle_path:
        raise UsageError("--task chooses a task of a bundle",
                         hint="pass --bundle BUNDLE too")
    if data_path:
        raise UsageError("--data and --bundle together: the bundle brings its own test data",
                         hint="drop --data (or drop --bundle to score on your own data)")
    zp = _zip_default(prof, zip_path)
    result = score_with_bundle(zp, Path(bundle_path), prof, phase_name, task_index,
                               time_limit=time_limit, isolate_network=not no_network_isolation,
                               progress=not as_json, env=env_name)
    if as_json:
        _echo_json(result.to_dict())
    else:
        for text, style in summary_lines(result):
            err = style.pop("err", False)
            click.secho(text, err=err, **style)
    if not result.ok:
        sys.exit(1)


def _data_default(prof, data_path: str | None) -> Path:
    if data_path:
        return Path(data_path)
    p = prof.workspace_path("local_test")
    if p is None:
        raise UsageError("no test data given and subkit.toml names no local test set",
                         hint="pass --data FILE, or run `subkit data split ... --set-default`")
    return p


@main.command()
@click.argument("zip_path", metavar="[ZIP]", required=False)
@click.option("--data", "data_path", required=True, metavar="FILE", help="Images to predict (.npz or folder).")
@click.option("--out", "out_path", required=True, metavar="FILE.csv", help="Kaggle-style CSV to write.")
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
    from subkit.grader.run import predict_csv

    prof = _profile(profile_name)
    zp = _zip_default(prof, zip_path)
    info = predict_csv(zp, Path(data_path), Path(out_path), prof, force=force,
                       time_limit=time_limit, progress=not as_json, env=env_name,
                       phase=phase_name)
    if as_json:
        _echo_json(info)
        return
    from subkit.grader.run import env_line
    from subkit.report.terminal import print_sandbox

    for w in info["warnings"]:
        click.secho(f"warning: {w}", fg="yellow", bold=w is info["warnings"][0]
                    and bool(info["env"].get("warning")))
    click.echo(f"wrote {info['rows']} predictions to {info['out']}")
    print_sandbox(info["sandbox"])
    click.echo(env_line(info["env"]))


# -- demo ------------------------------------------------------------------------------------
@main.command()
@click.argument("directory", required=False, default=None, type=click.Path(file_okay=False))
@click.option("--n", "n_images", default=2000, show_default=True, help="Synthetic images to generate.")
@click.option("--epochs", default=None, type=int, help="Training epochs (default: train.py --quick's).")
@click.option("--force", is_flag=True, help="Reuse a non-empty DIRECTORY.")
@click.option("--profile", "profile_name", metavar="NAME", default=None,
              help="The kind of competition to demonstrate (a built-in profile; default: "
                   "an2dl-2024-blood-cells). Kaggle profiles also write and check the CSV.")
def demo(directory, n_images, epochs, force, profile_name) -> None:
    """End to end on built-in synthetic data: data, train, build, score-local.

    DIRECTORY defaults to ./subkit-demo, or ~/subkit-demo when the current folder is inside
    a source checkout (-2, -3... when taken); the demo says where."""
    from subkit.demo import run_demo

    run_demo(Path(directory) if directory else None, n_images=n_images, epochs=epochs,
             force=force, profile_name=profile_name)


from subkit.cli_data import data as _data_group  # noqa: E402
from subkit.cli_ledger import history as _history_group  # noqa: E402
from subkit.cli_ledger import submit as _submit_command  # noqa: E402

main.add_command(_data_group)
main.add_command(_history_group)
main.add_command(_submit_command)

from subkit.cli_bundle import bundle as _bundle_group  # noqa: E402
from subkit.cli_report import report as _report_command  # noqa: E402

main.add_command(_bundle_group)
main.add_command(_report_command)
try:  # the grader-environment commands (issue 6) land in their own module
    from subkit.cli_env import env as _env_group  # noqa: E402

    main.add_command(_env_group)
except ImportError:  # pragma: no cover - until that module exists
    pass
