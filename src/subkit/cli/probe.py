"""`subkit probe` (build the probe), `subkit probe import FILE`, `subkit probe diff FILE`, and
`subkit history time ZIP --platform-s S` (the grader's clock, entered by hand): options and
rendering over ``subkit.commands.probe`` and ``subkit.clock``."""

from __future__ import annotations

from pathlib import Path

import click

from subkit.cli.options import echo_json, json_option, load_profile, phase_option, profile_option


@click.group(name="probe", invoke_without_command=True)
@click.option("--out-dir", default=None, metavar="DIR",
              help="Where to write the probe (default: the workspace's submissions/).")
@phase_option
@profile_option
@json_option
@click.pass_context
def probe(ctx: click.Context, out_dir: str | None, phase_name: str | None,
          profile_name: str | None, as_json: bool) -> None:
    """Build a probe: a submission that passes the grader with dummy predictions and prints
    a fingerprint of the machine that ran it (versions, CPU, memory, GPUs, network).

    \b
    subkit probe                   # submissions/probe-<time>.zip: submit it once
    subkit probe import LOG        # its stdout log (or a run folder) -> subkit.toml
    subkit probe diff LOG          # what changed since the last import
    """
    if ctx.invoked_subcommand is not None:
        return
    from subkit.commands.probe import ProbeOptions, build_probe

    res = build_probe(ProbeOptions(phase=phase_name, out_dir=Path(out_dir) if out_dir else None),
                      load_profile(profile_name))
    if as_json:
        echo_json(res)
        return
    if res["kind"] == "zip":
        click.secho(f"wrote {res['path']} (probe of {res['profile']}, {res['platform']})",
                    bold=True)
        click.echo("next: submit it once (it scores like a dummy), then download the log of "
                   "its prediction step (Codabench: the submission's row, Logs, stdout) and "
                   "run `subkit probe import LOG`; `subkit score-local ZIP` runs it here first")
    else:
        click.secho(f"wrote {res['path']} and {res['notebook']}", bold=True)
        click.echo(f"note: {res['reason']}.")
        click.echo("next: run it in a Kaggle notebook, download the notebook's log, then "
                   "`subkit probe import LOG`")


@probe.command(name="import")
@click.argument("file", metavar="FILE", type=click.Path())
@click.option("--no-index-check", is_flag=True,
              help="Do not ask the package index whether the measured versions can be "
                   "installed here (offline).")
@profile_option
@json_option
def probe_import(file: str, no_index_check: bool, profile_name: str | None,
                 as_json: bool) -> None:
    """Write a probe's measured versions, network and machine into subkit.toml.

    FILE: a log holding the probe's block (the submission's stdout, a Kaggle notebook's
    log), or a folder (a run folder of `subkit score-local`, downloaded logs)."""
    from subkit.commands.probe import ImportOptions
    from subkit.commands.probe import probe_import as run_import

    res = run_import(ImportOptions(file=Path(file), check_index=not no_index_check),
                     load_profile(profile_name))
    if as_json:
        echo_json(res)
        return
    g = res["grader"]
    extras = ", ".join(f"{k} {v}" for k, v in g["extras"].items()) or "none"
    click.secho(f"wrote {res['toml']}: python {g['python']}, tensorflow {g['tensorflow']}, "
                f"keras {g['keras']}, numpy {g['numpy']}; extras: {extras}; network "
                f"{res['network']}", bold=True)
    m = res["machine"]
    click.echo(f"  machine: {m['cpus']} CPUs ({m['cpu']}), {m['memory_mb']} MB memory, GPUs: "
               f"{', '.join(m['gpus']) or 'none'}, python {m['python']}")
    click.echo(f"  from {res['source']} (sha256 {res['sha256'][:12]})")
    for note in res["notes"]:
        click.secho(f"  note: {note}", fg="yellow")
    click.echo("next: `subkit env create` builds exactly these versions; `subkit profile show` "
               "prints the effective profile")


@probe.command(name="diff")
@click.argument("file", metavar="FILE", type=click.Path())
@profile_option
@json_option
def probe_diff(file: str, profile_name: str | None, as_json: bool) -> None:
    """Name what changed on the grader since the last `subkit probe import`."""
    from subkit.commands.probe import DiffOptions, describe_change
    from subkit.commands.probe import probe_diff as run_diff

    res = run_diff(DiffOptions(file=Path(file)), load_profile(profile_name))
    if as_json:
        echo_json(res)
        return
    if res["same"]:
        click.echo(f"no change since the import of {res['since']}")
        return
    click.secho(f"{len(res['changes'])} changes since the import of {res['since']}:", bold=True)
    for c in res["changes"]:
        click.echo("  " + describe_change(c))
    click.echo("hint: `subkit probe import FILE` takes them into subkit.toml")


@click.command(name="time")
@click.argument("zip_ref", metavar="ZIP")
@click.option("--platform-s", "seconds", type=float, required=True, metavar="S",
              help="Seconds the platform's run of this zip took (its elapsed time).")
@click.option("--phase", default=None, metavar="PHASE", help="The phase it ran in.")
@profile_option
@json_option
def history_time(zip_ref: str, seconds: float, phase: str | None, profile_name: str | None,
                 as_json: bool) -> None:
    """Record how long the platform took to run ZIP: score-local then predicts the grader's
    time of the next zips from these pairs."""
    from subkit.cli.options import err
    from subkit.clock import TimeOptions, record_platform_time
    from subkit.ledger import Ledger

    prof = load_profile(profile_name)
    ledger = Ledger(prof.submissions_dir, on_warning=lambda m: err(f"warning: {m}"))
    rec, line = record_platform_time(TimeOptions(zip=zip_ref, seconds=seconds, phase=phase),
                                     prof, ledger)
    if as_json:
        echo_json(rec)
        return
    click.echo(f"recorded: {rec.get('zip') or rec['zip_sha256'][:12]} took {seconds:g} s on "
               "the platform")
    if line:
        click.echo(line)
