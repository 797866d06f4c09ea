"""`subkit history ...` and `subkit submit` (issue 8)."""

from __future__ import annotations

import click


@click.group(name="history", invoke_without_command=True)
@click.pass_context
def history(ctx: click.Context) -> None:
    """Every build, local score and leaderboard score, one row per zip."""
    if ctx.invoked_subcommand is None:
        click.echo("no history yet")
