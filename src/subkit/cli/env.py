"""`subkit env create|show|remove`: the grader's pinned environment.

Thin click commands over ``subkit.commands.env`` and ``subkit.grader.environment``; nothing
here imports TensorFlow. Progress of an install goes to stderr (``subkit.ui``: one line per
pip step on a terminal); ``--json`` output goes to stdout.
"""

from __future__ import annotations

import click

from subkit.cli.options import (
    declare,
    echo_json,
    fill,
    json_option,
    load_profile,
    option,
    profile_option,
)


def _pins_text(pins: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in pins.items())


def _print_status(st: dict) -> None:
    click.echo(f"profile      {st['profile']}")
    click.echo(f"pins         {_pins_text(st['pins'])}")
    interp = st["interpreter"]
    click.echo(f"interpreter  Python {interp['version']} ({interp['path']})"
               + ("" if interp["exact"] else "  [not the profile's Python]"))
    click.echo(f"state        {st['state']}")
    click.echo(f"folder       {st['path']}")
    if st["state"] == "ready":
        v = st["versions"] or {}
        click.echo(f"python       {st['python']}")
        click.echo(f"installed    python {v.get('python_version')}, tensorflow "
                   f"{v.get('tensorflow')}, keras {v.get('keras')}, numpy {v.get('numpy')}")
        click.echo(f"created      {st['created']} in {st['install_seconds']:.0f} s, "
                   f"{st['size_mb']:.0f} MB")
    elif st["state"] == "broken":
        click.echo("             an install that did not finish: `subkit env create` removes "
                   "and rebuilds it")
    else:
        from subkit.grader.environment import DOWNLOAD_HINT_MB

        click.echo("             not created yet: `subkit env create` (about "
                   f"{DOWNLOAD_HINT_MB} MB once)")
    if st.get("note"):
        click.echo(f"note         {st['note']}")


@click.group(name="env")
def env() -> None:
    """The grader's library versions, as an environment to run submissions in.

    \b
    The profile's [grader] pins (python, tensorflow, keras, numpy, extras) become a venv
    under ~/.cache/subkit/envs/ ($SUBKIT_CACHE), created once and reused by
    `score-local --env grader`, `check --env grader` and `build` (which loads the
    rebuilt weights there to prove the grader can).
    """


CREATE = (
    profile_option,
    option("--force", dest="force", is_flag=True,
           help="Rebuild the environment even if it is ready."),
    json_option,
)


@env.command("create")
@declare(*CREATE)
def create(**values) -> None:
    """Create the grader environment (downloads about 600 MB once)."""
    from subkit.commands.env import EnvCreateOptions
    from subkit.commands.env import create as create_env

    prof = load_profile(values["profile_name"])
    st = create_env(fill(EnvCreateOptions, CREATE, values), prof)
    if values["as_json"]:
        echo_json(st)
    elif st["created_now"]:
        _print_status(st)
    else:
        click.echo(f"the grader environment of {prof.name} is ready: {st['python']}")
        click.echo("(--force rebuilds it)")


@env.command("show")
@profile_option
@json_option
def show(profile_name: str | None, as_json: bool) -> None:
    """Show the grader environment's pins, folder and state."""
    from subkit.grader import environment

    st = environment.env_status(load_profile(profile_name))
    if as_json:
        echo_json(st)
    else:
        _print_status(st)


@env.command("remove")
@profile_option
@json_option
def remove(profile_name: str | None, as_json: bool) -> None:
    """Remove the grader environment (the next use creates it again)."""
    from subkit.grader import environment

    prof = load_profile(profile_name)
    removed = environment.remove_env(prof)
    if as_json:
        echo_json({"profile": prof.name, "removed": str(removed) if removed else None})
    elif removed:
        click.echo(f"removed {removed}")
    else:
        click.echo(f"nothing to remove: the grader environment of {prof.name} does not exist "
                   f"({environment.env_dir(prof)})")
