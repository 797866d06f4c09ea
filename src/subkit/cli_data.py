"""`subkit data ...`: inspect, dedupe, split, weights (issue 4)."""

from __future__ import annotations

import click


@click.group(name="data")
def data() -> None:
    """Make the local test set honest: duplicates, leaks, imbalance."""
