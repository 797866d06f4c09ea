"""The errors a user can cause, each carrying the hint that fixes it.

The CLI turns a SubkitError into two lines, ``error: ...`` and ``hint: ...``, and an exit
code; a traceback is shown only with ``--debug``.
"""

from __future__ import annotations

EXIT_FAILED = 1  # a failed check, a failed run, a refused input
EXIT_USAGE = 2  # bad usage: unknown option, missing argument, conflicting flags
EXIT_INTERRUPTED = 130


class SubkitError(Exception):
    """An error a user can fix. ``message`` says what, ``hint`` says how."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class UsageError(SubkitError):
    """The command line itself is wrong (exit code 2)."""

    exit_code = EXIT_USAGE


class InputError(SubkitError):
    """A file the user gave us is missing, unreadable or malformed."""


class ProfileError(SubkitError):
    """The competition profile or subkit.toml is wrong."""


class CheckFailed(SubkitError):
    """A submission failed a check the grader would also fail."""


class RunFailed(SubkitError):
    """The submission failed while running the way the grader runs it."""
