"""Entry point: ``subkit`` and ``python -m subkit``.

Turns SubkitError into one ``error:`` line and one ``hint:`` line, click's usage errors
into exit code 2, Ctrl-C into exit code 130. ``--debug`` anywhere on the command line
shows the traceback instead.
"""

from __future__ import annotations

import sys


def _fail(message: str, hint: str | None, code: int, as_json: bool) -> int:
    """One ``error:`` line and one ``hint:`` line on stderr; with ``--json`` the same as one
    JSON object on stdout too (``{"ok": false, "error": ..., "hint": ..., "exit_code": ...}``),
    so a script that reads stdout learns why."""
    import json

    import click

    click.secho(f"error: {message}", fg="red", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    if as_json:
        click.echo(json.dumps({"ok": False, "error": message, "hint": hint or None,
                               "exit_code": code}))
    return code


def run(argv: list[str] | None = None) -> int:
    import click

    from subkit import ui
    from subkit.cli.options import TerminalReporter
    from subkit.errors import EXIT_INTERRUPTED, EXIT_USAGE, SubkitError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    as_json = "--json" in args
    from subkit.cli import main

    try:
        with ui.use(TerminalReporter()):
            main.main(args=args, prog_name="subkit", standalone_mode=False)
    except SubkitError as exc:
        if debug:
            raise
        return _fail(exc.message, exc.hint, exc.exit_code, as_json)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:  # a command's sys.exit(code)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except click.exceptions.Abort:
        return _fail("aborted", "nothing was changed; run the command again to go on",
                     EXIT_INTERRUPTED, as_json)
    except click.ClickException as exc:
        if debug:
            raise
        ctx_help = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            ctx_help = f"run '{exc.ctx.command_path} --help' for the options"
        return _fail(exc.format_message(), ctx_help or "run subkit --help",
                     exc.exit_code if exc.exit_code else EXIT_USAGE, as_json)
    except KeyboardInterrupt:
        click.echo("", err=True)
        return _fail("interrupted; nothing half-written was kept",
                     "run the command again to go on", EXIT_INTERRUPTED, as_json)
    except OSError as exc:
        if debug:
            raise
        return _fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
                     "check the path and its permissions; --debug shows the traceback", 1,
                     as_json)
    except Exception as exc:  # a bug of ours: still one line, the traceback on request
        if debug:
            raise
        return _fail(f"internal error: {type(exc).__name__}: {exc}",
                     "rerun with --debug for the traceback and report it", 1, as_json)
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
