"""What every command shares: how an option is declared (once: :class:`Opt` makes the click
option and fills the command's Options field), the shared options (--profile, --json,
--env, --phase), the terminal reporter, the JSON printer and the one line that goes to
stderr. Nothing here imports TensorFlow."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, TypeVar

import click

from subkit import ui

T = TypeVar("T")

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclass(frozen=True)
class Opt:
    """One command-line option (or argument), declared once: how click reads it, the
    keyword the command's callback receives (``dest``) and the field of the command's
    Options dataclass it fills (``field``; None: the callback itself uses it, as --json).
    ``convert`` turns the parsed value into the field's (``path``, ``paths``, ``negate``).
    An Opt is also a click decorator, so a shared one reads ``@profile_option``."""

    decls: tuple[str, ...]
    dest: str
    field: str | None
    help: str | None = None
    convert: Callable[[Any], Any] | None = None
    argument: bool = False
    click_kw: Mapping[str, Any] = dataclass_field(default_factory=dict)

    def __call__(self, f: Callable[..., Any]) -> Callable[..., Any]:
        if self.argument:
            return click.argument(self.dest, *self.decls, **self.click_kw)(f)
        return click.option(*self.decls, self.dest, help=self.help, **self.click_kw)(f)

    def value(self, values: Mapping[str, Any]) -> Any:
        raw = values[self.dest]
        return self.convert(raw) if self.convert is not None else raw


_SAME = object()


def option(*decls: str, dest: str, field: str | None | object = _SAME, help: str | None = None,
           convert: Callable[[Any], Any] | None = None, **click_kw: Any) -> Opt:
    """An option; ``field`` defaults to ``dest`` (None: not an Options field)."""
    return Opt(tuple(decls), dest, dest if field is _SAME else field,  # type: ignore[arg-type]
               help, convert, False, click_kw)


def argument(dest: str, *, field: str | None | object = _SAME,
             convert: Callable[[Any], Any] | None = None, **click_kw: Any) -> Opt:
    """A positional argument, declared like an option."""
    return Opt((), dest, dest if field is _SAME else field,  # type: ignore[arg-type]
               None, convert, True, click_kw)


def declare(*opts: Opt) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Put ``opts`` on a click command, in this order (the order of its --help)."""
    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        for o in reversed(opts):
            f = o(f)
        return f
    return decorate


def fill(cls: type[T], opts: Iterable[Opt], values: Mapping[str, Any], **extra: Any) -> T:
    """The command's Options from the parsed ``values``: each declared option fills its
    own field (``extra``: fields the command sets itself)."""
    fields = {o.field: o.value(values) for o in opts if o.field is not None}
    return cls(**fields, **extra)


def path(value: Any) -> Path | None:
    return Path(value) if value else None


def paths(values: Iterable[Any]) -> list[Path]:
    return [Path(v) for v in values]


def negate(value: Any) -> bool:
    """A --no-X flag filling the field X."""
    return not value


profile_option = option(
    "--profile", dest="profile_name", field=None, metavar="NAME",
    help="Competition profile (a built-in name or a .toml path); default: the workspace's "
         "subkit.toml, else an2dl-2024-blood-cells.")
json_option = option("--json", dest="as_json", field=None, is_flag=True,
                     help="Print machine-readable JSON.")
env_option = option(
    "--env", dest="env_name", field="env", type=click.Choice(["auto", "grader", "current"]),
    default=None,
    help="Library versions that run the submission: auto (default; $SUBKIT_ENV) = the "
         "profile's grader versions (a cached environment, created on first need) whenever "
         "the current ones differ; grader; current.")
phase_option = option(
    "--phase", dest="phase_name", field="phase", default=None, metavar="NAME",
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
