"""The command line: click commands (one module per group) and all terminal rendering.

``subkit.cli.main`` is the root group; ``subkit.__main__.run`` drives it."""

from subkit.cli.app import main

__all__ = ["main"]
