"""What every command shares: the options (--profile, --json, --env, --phase), the JSON
printer and the one line that goes to stderr. Defined once; nothing here imports
TensorFlow."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from subkit import ui

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

profile_option = click.option(
    "--profile", "profile_name", metavar="NAME",
    help="Competition profile (a built-in name or a .toml path); default: the workspace's "
         "subkit.toml, else an2dl-2024-blood-cells.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
env_option = click.option(
    "--env", "env_name", type=click.Choice(["auto", "grader", "current"]), default=None,
    help="Library versions that run the submission: auto (default; $SUBKIT_ENV) = the "
         "profile's grader versions (a cached environment, created on first need) whenever "
         "the current ones differ; grader; current.")
phase_option = click.option(
    "--phase", "phase_name", default=None, metavar="NAME",
    help="The profile's phase (name or index; default: the first): it sets the expected "
         "output where phases differ (a forecast's horizon).")


def load_profile(name: str | None):
    """The effective profile (imported lazily: ``subkit --help`` stays fast)."""
    from subkit import profile

    return profile.load(name)


class TerminalReporter(ui.Reporter):
    """What library code reports (subkit.ui), on the terminal: steps and results to stdout,
    warnings highlighted, progress lines to stderr. Set by ``subkit.__main__``."""

    live = True

    def info(self, message: str, *, bold: bool = False, fg: str | None = None) -> None:
        if bold or fg:
            click.secho(message, bold=bold or None, fg=fg)
        else:
            click.echo(message)

    def warn(self, message: str) -> None:
        click.secho(message, fg="yellow", bold=True)

    def progress(self, message: str) -> None:
        click.echo(message, err=True)

    def bar(self, label: str, total: float, unit: str) -> ui.Bar:
        return _TqdmBar(label, total, unit) if sys.stderr.isatty() else ui.Bar()

    @property
    def interactive(self) -> bool:  # type: ignore[override]
        """A person at the terminal: stdin and stderr (where the questions go) are ttys."""
        try:
            return sys.stdin.isatty() and sys.stderr.isatty()
        except (AttributeError, ValueError):  # pragma: no cover - closed streams
            return False

    def ask(self, question: str, *, secret: bool = False, hint: str | None = None) -> str:
        if not self.interactive:
            return super().ask(question, secret=secret, hint=hint)
        return str(click.prompt(question, hide_input=secret, err=True))


_BAR_FORMATS = {"s": "{desc}: {n:.0f}/{total:.0f} s of the time limit |{bar}|",
                "set": "{desc}: {n}/{total} sets |{bar}| {elapsed}<{remaining}"}


class _TqdmBar(ui.Bar):
    """A tqdm bar on stderr (gone when closed)."""

    def __init__(self, label: str, total: float, unit: str):
        from tqdm import tqdm

        if unit == "B":
            self._bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                             desc=label, file=sys.stderr, leave=False, dynamic_ncols=True)
        else:
            self._bar = tqdm(total=round(total), desc=label, unit=unit, leave=False,
                             file=sys.stderr, bar_format=_BAR_FORMATS.get(unit))

    def set(self, n: float, description: str | None = None) -> None:
        if description is not None:
            self._bar.set_description_str(description, refresh=False)
        self._bar.n = min(n, self._bar.total)
        self._bar.refresh()

    def advance(self, n: float) -> None:
        self._bar.update(n)

    def restart(self) -> None:
        self._bar.reset(total=self._bar.total)

    def close(self) -> None:
        self._bar.close()


def echo_json(obj: Any) -> None:
    """The one JSON printer of ``--json``: indented, anything unknown as its str()."""
    click.echo(json.dumps(obj, indent=2, default=str))


def err(message: str) -> None:
    """One line to stderr (progress and warnings, out of the way of ``--json``)."""
    click.echo(message, err=True)
