"""`subkit bundle ...`: Codabench competition bundles."""

from __future__ import annotations

import click

from subkit.cli.options import (
    declare,
    echo_json,
    json_option,
    load_profile,
    option,
    path,
    profile_option,
)


@click.group(name="bundle")
def bundle() -> None:
    """Codabench bundles: export one from a profile.

    \b
    To run a competition's own bundle on a submission:
      subkit score-local ZIP --bundle BUNDLE [--phase NAME] [--task N]
    """


EXPORT = (
    profile_option,
    option("--reference", dest="reference", convert=path, required=True, metavar="FILE",
           help="Labelled test set (.npz with the profile's keys, or class folders)."),
    option("--out", dest="out", convert=path, required=True, metavar="bundle.zip",
           help="The bundle zip to write."),
    option("--docker-image", dest="docker_image", default=None, metavar="IMAGE",
           help="competition.yaml's docker_image (default: tensorflow/tensorflow:<the "
                "profile's tensorflow>); it must hold the profile's grader versions "
                "(the bundle's docker/Dockerfile builds one that does)."),
    option("--force", dest="force", is_flag=True, help="Overwrite --out."),
    json_option,
)


@bundle.command(name="export")
@declare(*EXPORT)
def export(**values) -> None:
    """Write a Codabench v2 bundle whose grader is subkit's own code.

    The ingestion program is subkit's grader/ingestion.py and the scoring program its
    grader/scoring.py, so `subkit score-local ZIP --bundle bundle.zip` and Codabench score
    with the same code as plain `subkit score-local`.
    """
    from subkit.grader.codabench.export import export_bundle

    got = {o.dest: o.value(values) for o in EXPORT}
    info = export_bundle(load_profile(got["profile_name"]), got["reference"], got["out"],
                         force=got["force"], docker_image=got["docker_image"])
    if got["as_json"]:
        echo_json(info)
        return
    click.secho(f"wrote {info['out']}", bold=True)
    click.echo(f"  profile {info['profile']}: {info['n']} test images, phases "
               f"{', '.join(info['phases'])}, time limit {info['time_limit_s']} s")
    click.echo(f"  leaderboard: {', '.join(info['columns'])} (first: {info['metric']})")
    click.echo(f"  docker_image: {info['docker_image']}")
    for w in info["warnings"]:
        click.secho(f"  note: {w}", fg="yellow")
    click.echo(f"next: subkit score-local ZIP --bundle {info['out']}   "
               "(then upload it to Codabench)")
