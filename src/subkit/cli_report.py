"""`subkit report RUN`: the detailed HTML report of a local run (issue 5)."""

from __future__ import annotations

import click


@click.command(name="report")
@click.argument("run_dir", metavar="RUN", required=False)
def report(run_dir) -> None:
    """Write (or rewrite) report.html of a run folder and print its path."""
    raise click.UsageError("not implemented yet")
