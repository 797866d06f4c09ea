"""The grader's pinned set: a profile's ``[grader]`` table as versions and pip requirements."""

from __future__ import annotations

from typing import TYPE_CHECKING

from subkit.errors import SubkitError

if TYPE_CHECKING:
    from subkit.profile import Profile

MAIN_PACKAGES = ("tensorflow", "keras", "numpy")


def pins(profile: Profile) -> dict:
    """The grader's pinned versions of a profile: python, tensorflow, keras, numpy, extras.

    ``{"python": "3.10", "tensorflow": "2.17.0", "keras": "3.4.1", "numpy": "1.26.4", ...}``;
    the profile's ``extras`` (distribution name -> version) follow the four main ones.
    """
    g = profile.grader
    out = {"python": str(g["python"])}
    for name in MAIN_PACKAGES:
        out[name] = str(g[name])
    for name, version in sorted((g.get("extras") or {}).items()):
        if name in out:
            raise SubkitError(f"[grader] extras repeats {name!r}",
                              hint=f"set it once, as [grader] {name}")
        out[str(name)] = str(version)
    return out


def requirements(pin_set: dict) -> list[str]:
    """pip requirement strings of a pinned set: ``name==version`` (a version that already
    starts with an operator, like ``>=1.2``, is passed as it is)."""
    out = []
    for name, version in pin_set.items():
        if name == "python":
            continue
        version = version.strip()
        if not version or version == "*":
            out.append(name)
        elif version[0].isdigit():
            out.append(f"{name}=={version}")
        else:
            out.append(f"{name}{version}")
    return out
