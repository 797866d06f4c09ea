"""The kinds of competition, one module each: everything that differs by kind.

``Profile.kind_spec`` hands out the profile's kind object (``of(prof)`` here too); the
rest of the tree asks it (``kind.noun``, ``kind.targets(...)``, ``kind.summary_lines(...)``,
``kind.report_sections(...)``, ...) and never branches on the kind's name.

Adding a kind: a module here whose ``KIND`` is an instance of a ``subkit.kinds.base.Kind``
subclass with a new ``name``, and a profile in ``subkit/profiles/`` whose task and input
kind give that name (``Profile.kind``). The modules are found by walking this package.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import TYPE_CHECKING

from subkit.kinds.base import DemoData, Kind, ReportArrays

if TYPE_CHECKING:
    from subkit.profile import Profile

__all__ = ["DemoData", "Kind", "ReportArrays", "all_kinds", "by_name", "of"]


@functools.cache
def all_kinds() -> dict[str, Kind]:
    """name -> kind object of every module of this package that defines ``KIND``."""
    found: dict[str, Kind] = {}
    for info in pkgutil.iter_modules(__path__):
        kind = getattr(importlib.import_module(f"{__name__}.{info.name}"), "KIND", None)
        if isinstance(kind, Kind):
            found[kind.name] = kind
    return found


def for_profile_data(task: str, input_kind: str) -> Kind | None:
    """The kind a profile's task and [input] kind make (the task's images kind when no
    kind takes that input; None: no kind has the task)."""
    ks = [k for k in all_kinds().values() if k.task == task]
    exact = [k for k in ks if k.input_kind == input_kind]
    return exact[0] if exact else ks[0] if ks else None


def tasks() -> dict[str, list[Kind]]:
    """task -> its kinds, in a stable order (what a profile's task may be)."""
    out: dict[str, list[Kind]] = {}
    for k in sorted(all_kinds().values(), key=lambda k: _ORDER.get(k.task, 99)):
        out.setdefault(k.task, []).append(k)
    return out


_ORDER = {"classification": 0, "segmentation": 1, "forecasting": 2}  # the hints' order


def by_name(name: str) -> Kind:
    try:
        return all_kinds()[name]
    except KeyError:
        raise KeyError(f"no kind of competition called {name!r} "
                       f"(known: {', '.join(sorted(all_kinds()))})") from None


def of(prof: Profile) -> Kind:
    """The kind object of a profile."""
    return by_name(prof.kind)
