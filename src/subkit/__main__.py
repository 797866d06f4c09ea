"""Entry point: ``subkit`` and ``python -m subkit``.

Turns SubkitError into one ``error:`` line and one ``hint:`` line, click's usage errors
into exit code 2, Ctrl-C into exit code 130. ``--debug`` anywhere on the command line
shows the traceback instead.
"""

from __future__ import annotations

import sys


def run(argv: list[str] | None = None) -> int:
    import click

    from subkit import ui
    from subkit.cli.options import TerminalReporter
    from subkit.errors import EXIT_INTERRUPTED, EXIT_USAGE, SubkitError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    from subkit.cli import main

    try:
        with ui.use(TerminalReporter()):
            main.main(args=args, prog_name="subkit", standalone_mode=False)
    except SubkitError as exc:
        if debug:
            raise
        click.secho(f"error: {exc.message}", fg="red", err=True)
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:  # a command's sys.exit(code)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        if debug:
            raise
        ctx_help = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            ctx_help = f"run '{exc.ctx.command_path} --help' for the options"
        click.secho(f"error: {exc.format_message()}", fg="red", err=True)
        click.echo(f"hint: {ctx_help or 'run subkit --help'}", err=True)
        return exc.exit_code if exc.exit_code else EXIT_USAGE
    except KeyboardInterrupt:
        click.echo("\nerror: interrupted; nothing half-written was kept", err=True)
        return EXIT_INTERRUPTED
    except OSError as exc:
        if debug:
            raise
        click.secho(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
                    fg="red", err=True)
        click.echo("hint: check the path and its permissions; --debug shows the traceback",
                   err=True)
        return 1
    except Exception as exc:  # a bug of ours: still one line, the traceback on request
        if debug:
            raise
        click.secho(f"error: internal error: {type(exc).__name__}: {exc}", fg="red", err=True)
        click.echo("hint: rerun with --debug for the traceback and report it", err=True)
        return 1
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
