"""The reporter: how library code tells the user what it does, without printing.

pypa/build's ``_ctx.py`` pattern: a context variable holds the current reporter;
``subkit.__main__`` sets the terminal one (``subkit.cli.terminal.TerminalReporter``) for
the length of a command; the default is silent, so a library caller (a notebook, a test)
sees nothing it did not ask for. Library modules call :func:`echo`, :func:`warn` and
:func:`progress` below, never ``print`` or click.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

Echo = Callable[[str], None]


class Reporter:
    """Silent. A subclass decides where each kind of message goes."""

    def info(self, message: str, *, bold: bool = False, fg: str | None = None) -> None:
        """A result or a step the user reads (stdout on a terminal); ``fg``: its colour
        (a verdict: green, yellow, red)."""

    def warn(self, message: str) -> None:
        """Something the user should act on (highlighted)."""

    def progress(self, message: str) -> None:
        """A line of progress (stderr on a terminal: out of the way of ``--json``)."""


SILENT = Reporter()  # stateless: one shared instance
_REPORTER: contextvars.ContextVar[Reporter] = contextvars.ContextVar(
    "subkit_reporter", default=SILENT)


def reporter() -> Reporter:
    return _REPORTER.get()


@contextlib.contextmanager
def use(rep: Reporter) -> Iterator[Reporter]:
    """Report through ``rep`` inside the ``with`` block."""
    token = _REPORTER.set(rep)
    try:
        yield rep
    finally:
        _REPORTER.reset(token)


def echo(message: str, *, bold: bool = False) -> None:
    reporter().info(message, bold=bold)


def warn(message: str) -> None:
    reporter().warn(message)


def progress(message: str) -> None:
    reporter().progress(message)
