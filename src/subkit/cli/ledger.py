"""`subkit history ...` and `subkit submit`: their options and their rendering.

Thin click commands over ``subkit.commands.history`` and ``subkit.commands.submit``;
nothing here imports TensorFlow (the check before an upload imports it lazily, inside
``subkit.checks``).
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from subkit.cli.options import (
    argument,
    declare,
    echo_json,
    err,
    fill,
    load_profile,
    negate,
    option,
    path,
    profile_option,
)
from subkit.commands.history import COLUMNS
from subkit.errors import SubkitError, UsageError


def _ledger(prof):
    from subkit.ledger import Ledger

    return Ledger(prof.submissions_dir, on_warning=lambda m: err(f"warning: {m}"))


# -- the history table --------------------------------------------------------------------------
def _fmt_score(v: Any) -> str:
    if v is None:
        return "-"
    try:
        return f"{float(v):.4f}"
    except (TypeError, ValueError):
        return str(v)


def _fmt_lb(row: dict) -> str:
    lb = row.get("leaderboard") or {}
    if not lb:
        return "-"
    return " / ".join(f"{phase} {_fmt_score(score)}" for phase, score in lb.items())


def _fmt_predicted(row: dict) -> str:
    p = row.get("predicted_leaderboard")
    if not p:
        return "-"
    return f"{p['score']:.4f} ({p['low']:.2f}-{p['high']:.2f})"


def _fmt_runtime(v: Any) -> str:
    try:
        return f"{float(v):.1f}s"
    except (TypeError, ValueError):
        return "-"


def _cut(text: Any, n: int) -> str:
    s = "-" if text in (None, "") else str(text)
    return s if len(s) <= n else s[: n - 1] + "…"


# the cell of each column of the table (commands.history.COLUMNS: their order, how they sort)
CELLS: dict[str, Callable[[dict], str]] = {
    "zip": lambda r: _cut(r.get("zip_name") or r["zip_sha256"][:12], 44),
    "tag": lambda r: _cut(r.get("tag"), 16),
    "note": lambda r: _cut(r.get("note"), 32),
    "weights": lambda r: _cut(r.get("weights_sha256"), 26),
    "keras": lambda r: _cut(r.get("keras_version"), 12),
    "clean": lambda r: _fmt_score(r.get("clean_score")),
    "shifted": lambda r: _fmt_score(r.get("shifted_score")) + (
        f" ({r['shifted_suite']})" if r.get("shifted_suite") else ""),
    # the last run failed: say so, not the runtime of an earlier good run
    "runtime": lambda r: "failed" if r.get("local_ok") is False else _fmt_runtime(
        r.get("runtime_s")),
    "leaderboard": _fmt_lb,
    "predicted": _fmt_predicted,
    "submission": lambda r: _cut(r.get("submission_id"), 12),
    "built": lambda r: _cut((r.get("built") or "")[:16].replace("T", " ") or None, 16),
}


def render_table(rows: list[dict]) -> str:
    headers = list(COLUMNS)
    cells = [[CELLS[name](r) for name in headers] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    for c in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())
    return "\n".join(lines)


CSV_FIELDS = ["zip_name", "zip_sha256", "tag", "note", "weights_sha256", "keras_version",
              "metric", "clean_score", "shifted_score", "runtime_s", "local_ok",
              "leaderboard_score", "leaderboard_phase", "predicted_leaderboard",
              "predicted_low", "predicted_high", "platform", "competition",
              "submission_id", "status", "built", "updated", "zip"]


def render_csv(rows: list[dict]) -> str:
    phases: list[str] = []
    for r in rows:
        for p in (r.get("leaderboard") or {}):
            if p not in phases:
                phases.append(p)
    fields = CSV_FIELDS[:11] + [f"leaderboard_{p}" for p in phases] + CSV_FIELDS[11:]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        out = {k: r.get(k) for k in CSV_FIELDS}
        pred = r.get("predicted_leaderboard") or {}
        out.update(predicted_leaderboard=pred.get("score"), predicted_low=pred.get("low"),
                   predicted_high=pred.get("high"))
        for p in phases:
            out[f"leaderboard_{p}"] = (r.get("leaderboard") or {}).get(p)
        w.writerow({k: ("" if v is None else v) for k, v in out.items()})
    return buf.getvalue()


HISTORY = (
    option("--json", dest="as_json", field=None, is_flag=True, help="Print the rows as JSON."),
    option("--csv", dest="as_csv", field=None, is_flag=True,
           help="Print the rows as CSV (for a spreadsheet)."),
    option("--sort", dest="sort_col", field="sort", metavar="COLUMN",
           help="Sort by a column: " + ", ".join(COLUMNS) + ", leaderboard:PHASE "
                "(scores best first)."),
    option("--reverse", dest="reverse", is_flag=True, help="Reverse the sort order."),
    profile_option,
)
# a stored record printed by `history note` and `history score`
RECORD_JSON = option("--json", dest="as_json", field=None, is_flag=True,
                     help="Print the stored record as JSON.")


@click.group(name="history", invoke_without_command=True)
@declare(*HISTORY)
@click.pass_context
def history(ctx: click.Context, **values: Any) -> None:
    """Every build, local score and leaderboard score, one row per zip.

    The "predicted" column is the leaderboard score the other zips' leaderboard scores
    predict for a zip from its `score-local --shift` run (same test set, suite and seed;
    at least two such zips), with a leave-one-out band.

    \b
    subkit history                       # the table, oldest zip first
    subkit history --sort leaderboard    # best leaderboard score first
    subkit history --sort predicted      # best predicted leaderboard score first
    subkit history note ZIP --text "V2M + AdamW + TTA"
    subkit history score ZIP --leaderboard 0.76 --phase final
    """
    ctx.ensure_object(dict)
    profile_name, as_json, as_csv = values["profile_name"], values["as_json"], values["as_csv"]
    ctx.obj["profile_name"] = profile_name
    if ctx.invoked_subcommand is not None:
        return
    if as_json and as_csv:
        raise UsageError("--json and --csv exclude each other", hint="pick one")
    from subkit.commands.history import HistoryOptions
    from subkit.commands.history import history as read_history

    prof = load_profile(profile_name)
    ledger = _ledger(prof)
    rows = read_history(fill(HistoryOptions, HISTORY, values), prof, ledger)
    if as_json:
        echo_json(rows)
        return
    if as_csv:
        click.echo(render_csv(rows), nl=False)
        return
    if not rows:
        click.echo(f"no history yet in {ledger.path}: `subkit build`, `subkit score-local` "
                   "and `subkit submit` add to it")
        return
    click.echo(render_table(rows))


def _profile_and_ledger(ctx: click.Context, profile_name: str | None):
    prof = load_profile(profile_name or (ctx.obj or {}).get("profile_name"))
    return prof, _ledger(prof)


NOTE = (
    argument("zip_ref", field="zip", metavar="ZIP"),
    option("--text", dest="text", required=True, help="The note, e.g. \"V2M + AdamW + TTA\"."),
    profile_option, RECORD_JSON,
)


@history.command(name="note")
@declare(*NOTE)
@click.pass_context
def history_note(ctx: click.Context, **values: Any) -> None:
    """Attach a note to a zip (a path, its name, or a sha256 prefix)."""
    from subkit.commands.history import NoteOptions, note

    _, ledger = _profile_and_ledger(ctx, values["profile_name"])
    rec, where = note(fill(NoteOptions, NOTE, values), ledger)
    if values["as_json"]:
        echo_json(rec)
    else:
        click.echo(f"noted {Path(where).name if where else rec['zip_sha256'][:12]}: "
                   f"{values['text']}")


SCORE = (
    argument("zip_ref", field="zip", metavar="ZIP"),
    option("--leaderboard", dest="score", type=float, required=True, metavar="SCORE",
           help="The leaderboard score the platform showed."),
    option("--phase", dest="phase", default=None, metavar="PHASE",
           help="Leaderboard phase (default: the profile's first phase)."),
    profile_option, RECORD_JSON,
)


@history.command(name="score")
@declare(*SCORE)
@click.pass_context
def history_score(ctx: click.Context, **values: Any) -> None:
    """Record a leaderboard score entered by hand."""
    from subkit.commands.history import ScoreOptions
    from subkit.commands.history import score as record_score

    prof, ledger = _profile_and_ledger(ctx, values["profile_name"])
    rec, where = record_score(fill(ScoreOptions, SCORE, values), prof, ledger)
    if values["as_json"]:
        echo_json(rec)
    else:
        click.echo(f"recorded {Path(where).name if where else rec['zip_sha256'][:12]}: "
                   f"{rec['phase']} {values['score']}")


# -- submit ---------------------------------------------------------------------------------------
SUBMIT = (
    argument("file", convert=path, metavar="[ZIP|FILE.csv]", required=False,
             type=click.Path(dir_okay=False)),
    option("--codabench", dest="codabench", field=None, metavar="COMPETITION",
           help="Codabench competition number or URL."),
    option("--kaggle", dest="kaggle", field=None, metavar="COMPETITION",
           help="Kaggle competition slug or URL."),
    option("--phase", dest="phase", metavar="ID|NAME",
           help="Codabench phase (default: the one open now; a closed one needs --force)."),
    option("-m", "--message", dest="message", metavar="TEXT",
           help="Submission description: required for Kaggle, which shows it; for "
                "Codabench kept in the ledger (its API takes no description)."),
    option("--wait", dest="wait", is_flag=True,
           help="Wait until the submission is scored and record the score."),
    option("--force", dest="force", is_flag=True,
           help="Submit even when subkit's own checks say no (a failed check or CSV check, "
                "a closed Codabench phase, Kaggle's limits as read before the upload)."),
    option("--no-smoke", dest="no_smoke", field="smoke", convert=negate, is_flag=True,
           help="Check without the smoke test in a child process (faster)."),
    option("--env", dest="env_name", field="env", type=click.Choice(["auto", "grader", "current"]),
           default=None, help="Python environment of the check's smoke test (default: auto)."),
    option("--server", dest="server", metavar="URL",
           help="API host, scheme://host[:port] (Codabench: default $CODABENCH_URL, else "
                "https://www.codabench.org; Kaggle: https://api.kaggle.com)."),
    option("--kernel", dest="kernel", metavar="OWNER/NOTEBOOK",
           help="Kaggle code competition: submit this notebook's version (FILE, if given, "
                "names its output file, e.g. submission.csv)."),
    option("--version", dest="kernel_version", field="version", type=click.IntRange(min=1),
           metavar="N", help="The notebook version to submit with --kernel."),
    option("--wait-timeout", dest="wait_timeout", type=float, default=7200.0, show_default=True,
           metavar="S",
           help="Give up waiting after S seconds (the submission stays on the server)."),
    profile_option,
    option("--json", dest="as_json", field=None, is_flag=True, help="Print the result as JSON."),
)


@click.command(name="submit")
@declare(*SUBMIT)
def submit(**values: Any) -> None:
    """Submit a zip to Codabench (after `subkit check`), or a CSV or a notebook version to
    Kaggle.

    \b
    subkit submit submissions/v2m.zip --codabench 1234 --wait
    subkit submit preds.csv --kaggle an2dl-mars -m "UNet + TTA"
    subkit submit --kaggle some-code-comp --kernel me/my-notebook --version 3 -m "v3"

    Codabench credentials: CODABENCH_TOKEN, else a login asked once on a terminal (the
    token is saved in ~/.config/subkit, owner-only). Kaggle, in the official client's
    order: an access token (KAGGLE_API_TOKEN, ~/.kaggle/access_token), else kaggle.json or
    KAGGLE_USERNAME/KAGGLE_KEY. Credentials are read only after the check. Every
    submission and score goes into the ledger (`subkit history`).
    """
    from subkit.commands.submit import SubmitOptions
    from subkit.commands.submit import submit as run_submit

    codabench, kaggle, as_json = values["codabench"], values["kaggle"], values["as_json"]
    if bool(codabench) == bool(kaggle):
        raise UsageError("say where to submit: --codabench COMPETITION or --kaggle COMPETITION",
                         hint="e.g. subkit submit sub.zip --codabench 1234")
    prof = load_profile(values["profile_name"])
    opts = fill(SubmitOptions, SUBMIT, values, platform="codabench" if codabench else "kaggle",
                competition=codabench or kaggle, quiet=as_json)
    result = run_submit(opts, prof, _ledger(prof))
    status = str(result.get("status") or "").lower()
    failed = opts.wait and status in ("failed", "cancelled", "error")
    if not failed:
        if as_json:
            echo_json(result)
        else:
            _print_result(result)
        return
    detail = result.get("status_details") or result.get("error") or ""
    message = (f"submission {result.get('submission_id')} {status} on {result['platform']}"
               + (f": {detail}" if detail else ""))
    hint = _failure_hint(result)
    if as_json:
        # one JSON object on stdout: the result with the error (the entry point's --json
        # error shape: ok, error, hint, exit_code), then the error and hint lines on stderr
        echo_json({**result, "ok": False, "error": message, "hint": hint, "exit_code": 1})
        click.secho(f"error: {message}", fg="red", err=True)
        err(f"hint: {hint}")
        sys.exit(1)
    _print_result(result)
    _print_failing_lines(result)
    raise SubkitError(message, hint=hint)


def _print_failing_lines(r: dict) -> None:
    """The platform log's failing lines (made printable by the command: they are the
    grader's words about untrusted code), on stderr above the error."""
    if r.get("failing_lines"):
        err(f"--- {r['failing_log']} ---")
        for line in r["failing_lines"]:
            err(f"  {line}")
        err("---")


def _failure_hint(r: dict) -> str:
    logs = (r.get("logs") or {}).get("file")
    where = f"the platform's logs are in {logs}" if logs else f"read its logs on {r.get('url')}"
    rerun = r.get("rerun")
    return f"{where}; rerun it here the grader's way: {rerun}" if rerun else where


def _print_result(r: dict) -> None:
    where = (f"{r.get('competition_title') or r.get('competition')} phase {r.get('phase')!r}"
             if r["platform"] == "codabench" else f"{r.get('competition')}")
    click.echo(f"{r['platform']}: submission {r.get('submission_id')} to {where}: "
               f"{r.get('status')}")
    if r.get("leaderboard_score") is not None:
        extra = ""
        if r.get("scores") and len(r["scores"]) > 1:
            extra = " (" + ", ".join(f"{k} {v:.4f}" for k, v in r["scores"].items()) + ")"
        column = f" ({r['column']})" if r.get("column") and not extra else ""
        click.echo(f"leaderboard score: {r['leaderboard_score']:.4f}{column}{extra}")
    logs = (r.get("logs") or {}).get("file")
    if logs:
        click.echo(f"platform logs: {logs}")
    click.echo(f"recorded in the ledger; see `subkit history` ({r.get('url')})")
