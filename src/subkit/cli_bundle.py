"""`subkit bundle ...`: Codabench competition bundles (issue 7)."""

from __future__ import annotations

import click


@click.group(name="bundle")
def bundle() -> None:
    """Codabench bundles: export one from a profile."""
