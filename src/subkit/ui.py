"""The reporter: how library code tells the user what it does, without printing.

pypa/build's ``_ctx.py`` pattern: a context variable holds the current reporter;
``subkit.__main__`` sets the terminal one (``subkit.cli.options.TerminalReporter``) for
the length of a command; the default is silent, so a library caller (a notebook, a test)
sees nothing it did not ask for. Library modules call :func:`echo`, :func:`warn`,
:func:`progress`, :func:`bar` and :func:`ask` below, never ``print``, click or tqdm.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

Echo = Callable[[str], None]


class Reporter:
    """Silent. A subclass decides where each kind of message goes."""

    live = False  # whether a live display (a child's progress bar) may be drawn
    interactive = False  # whether a person can answer :meth:`ask`

    def info(self, message: str, *, bold: bool = False, fg: str | None = None) -> None:
        """A result or a step the user reads (stdout on a terminal); ``fg``: its colour
        (a verdict: green, yellow, red)."""

    def warn(self, message: str) -> None:
        """Something the user should act on (highlighted)."""

    def progress(self, message: str) -> None:
        """A line of progress (stderr on a terminal: out of the way of ``--json``)."""

    def bar(self, label: str, total: float, unit: str) -> Bar:
        """A live display (only asked for where ``live`` is true); ``unit``: "s" (seconds
        of a time limit), "set" (data sets) or "B" (bytes)."""
        return Bar()

    def ask(self, question: str, *, secret: bool = False, hint: str | None = None) -> str:
        """A person's answer (``secret``: not echoed, e.g. a password). No one is here to
        answer: refused with the caller's ``hint`` (how to do without the question)."""
        from subkit.errors import SubkitError

        raise SubkitError(f"cannot ask for {question.lower()}: no terminal to answer on",
                          hint=hint or "run the command on a terminal")


class Bar:
    """A live progress display of ``n`` out of ``total``; this one draws nothing (the
    terminal reporter's draws on stderr)."""

    def set(self, n: float, description: str | None = None) -> None:
        """Show ``n`` done (and a new description, when given)."""

    def advance(self, n: float) -> None:
        """Add ``n`` to what is done."""

    def restart(self) -> None:
        """Back to zero (an upload retried from the start)."""

    def close(self) -> None:
        """Remove the display."""


class Lines(Reporter):
    """Every message, plain, to one line printer (a command's own, e.g. submit's check lines
    on stderr)."""

    live = True

    def __init__(self, echo: Echo):
        self._echo = echo

    def info(self, message: str, *, bold: bool = False, fg: str | None = None) -> None:
        self._echo(message)

    def warn(self, message: str) -> None:
        self._echo(message)

    def progress(self, message: str) -> None:
        self._echo(message)


class _Quiet(Reporter):
    """The outer reporter's warnings and progress; no results (they go out as JSON)."""

    def __init__(self, outer: Reporter):
        self._outer = outer

    def warn(self, message: str) -> None:
        self._outer.warn(message)

    def progress(self, message: str) -> None:
        self._outer.progress(message)

    @property
    def interactive(self) -> bool:  # type: ignore[override]
        return self._outer.interactive

    def ask(self, question: str, *, secret: bool = False, hint: str | None = None) -> str:
        return self._outer.ask(question, secret=secret, hint=hint)


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


@contextlib.contextmanager
def quiet() -> Iterator[Reporter]:
    """Inside the ``with`` block, results are not reported (``--json`` prints them);
    warnings and progress still are."""
    with use(_Quiet(reporter())) as rep:
        yield rep


def live() -> bool:
    """Whether a live progress display suits the current reporter."""
    return reporter().live


def bar(label: str, total: float, *, unit: str = "s") -> Bar:
    """A live progress display where the current reporter draws one, else a silent one."""
    rep = reporter()
    return rep.bar(label, total, unit) if rep.live else Bar()


def interactive() -> bool:
    """Whether the current reporter has a person to answer :func:`ask`."""
    return bool(reporter().interactive)


def ask(question: str, *, secret: bool = False, hint: str | None = None) -> str:
    """Ask the person at the terminal (``secret``: a password, not echoed); without one, a
    SubkitError with ``hint``."""
    return reporter().ask(question, secret=secret, hint=hint)


def echo(message: str, *, bold: bool = False, fg: str | None = None) -> None:
    reporter().info(message, bold=bold, fg=fg)


def warn(message: str) -> None:
    reporter().warn(message)


def progress(message: str) -> None:
    reporter().progress(message)
