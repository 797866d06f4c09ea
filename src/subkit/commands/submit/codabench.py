"""`subkit submit --codabench`: the zip checked, a token the server accepts (the saved one,
CODABENCH_TOKEN or a login asked through ``subkit.ui``), the service's own refusals, the
upload as the web page does it, and with --wait the result, the scores and the logs."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

from subkit import credentials, ui
from subkit.commands.submit import common
from subkit.commands.submit import logs as platform_logs
from subkit.commands.submit.common import (
    Notes,
    SubmitOptions,
    checked,
    existing_file,
    interruptible_wait,
    now,
    record,
    server_of,
)
from subkit.errors import InputError, SubkitError
from subkit.ledger import leaderboard_record, submit_record
from subkit.remote import codabench as cb
from subkit.remote.http import Http, HttpError, format_size

SCORE_GRACE_S = 120.0  # how long to wait for the scores once Codabench says Finished


def submit_codabench(opts: SubmitOptions, profile: Any, ledger: Any) -> dict:
    from subkit.ledger import sha256_file

    notes = Notes()
    zip_path = existing_file(opts.file, "zip", "give the path of a built zip (`subkit build` "
                              "writes them into submissions/)")
    if not zipfile.is_zipfile(zip_path):
        raise InputError(f"{zip_path} is not a zip file",
                         hint="Codabench takes a .zip; build one with `subkit build`")
    comp_id, url_server, secret_key = cb.parse_competition(opts.competition)
    server = server_of(opts.server, cb.server_from_env() or url_server, cb.DEFAULT_SERVER)
    http = Http()
    if not (ui.interactive() or os.environ.get("CODABENCH_TOKEN")
            or credentials.codabench_may_have_token()):
        raise _no_codabench_credentials(server)

    # before the long check: the competition as anyone sees it catches a wrong phase now
    public = _public_competition(server, comp_id, secret_key, http)
    if public is not None:
        cb.choose_phase(public, opts.phase, force=opts.force)

    check_status = _check_zip_first(zip_path, profile, opts, notes)
    client, comp = _codabench_session(server, comp_id, secret_key, http)
    ph = cb.choose_phase(comp, opts.phase, force=opts.force)
    if ph.get("status") != "Current":
        notes.note(f"warning: phase {ph.get('name')!r} is {ph.get('status')}; submitting anyway "
                   "(--force)")
    _ask_can_submit(client, comp, ph, server)

    size, sha = zip_path.stat().st_size, sha256_file(zip_path)
    file_name = cb.short_file_name(zip_path.name)
    if file_name != zip_path.name:
        notes.note(f"note: Codabench keeps file names to {cb.FILE_NAME_MAX} characters: the "
                   f"submission is named {file_name}")
    title = comp.get("title") or f"competition {comp_id}"
    ui.progress(f"uploading {zip_path.name} ({format_size(size)}) to {server}, {title!r}, "
                f"phase {ph.get('name')!r} (id {ph['id']})")
    sub = _upload_and_create(client, zip_path, file_name, size, comp_id, ph, opts.tasks, http)
    sub_id, status = sub.get("id"), sub.get("status") or "Submitting"
    ui.progress(f"submitted: submission {sub_id} ({status})")
    if comp.get("auto_run_submissions") is False:
        notes.note("note: this competition runs submissions by hand: it stays Submitting until "
                   "the organisers start it")
    forced = bool(opts.force and check_status == "FAILED")
    result: dict[str, Any] = {
        "platform": "codabench", "server": server, "competition": comp_id,
        "competition_title": comp.get("title"), "phase": ph.get("name"), "phase_id": ph["id"],
        "submission_id": sub_id, "status": status, "zip": str(zip_path), "zip_sha256": sha,
        "size": size, "file_name": file_name, "check": check_status, "forced": forced,
        "url": f"{server}/competitions/{comp_id}/", "ledger_ids": [], "notes": notes,
    }
    record(ledger, submit_record(
        zip=str(zip_path), zip_sha256=sha, platform="codabench", server=server,
        competition=comp_id, competition_title=comp.get("title"), phase=ph.get("name"),
        phase_id=ph["id"], submission_id=sub_id, status=status, check=check_status,
        forced=forced, size=size, file_name=file_name, message=opts.message), result)
    if opts.wait:
        _wait_codabench(client, comp, sub_id, result, opts, profile, ledger, notes, http)
    return result


def _check_zip_first(zip_path: Path, profile: Any, opts: SubmitOptions,
                     notes: Notes) -> str | None:
    """`subkit check` with the platforms' secrets out of the environment; a FAILED check
    stops here unless --force. Returns the check's status."""
    with credentials.withheld_env():
        report = common.run_check(zip_path, profile, smoke=opts.smoke, quiet=opts.quiet,
                           env=opts.env)
    status = getattr(report, "status", None)
    failure = getattr(report, "first_failure", lambda: None)()
    checked(status, failure.get("message") if failure else None,
            f"subkit check of {zip_path.name}", opts.force, notes,
            hint=f"fix what the check reports (`subkit check {zip_path}`), or pass --force "
                 "to upload anyway")
    return status


def _no_codabench_credentials(server: str, refused: str = "") -> SubkitError:
    return SubkitError(
        refused or f"no Codabench credentials for {server}",
        hint="run this command on a terminal to log in (once: the token is saved), or set "
             "CODABENCH_TOKEN; this prints one: curl -d username=USER -d password=PASS "
             f"{server}/api/api-token-auth/")


def _public_competition(server: str, comp_id: int, secret_key: str | None,
                        http: Http) -> dict | None:
    """The competition read without a token (CompetitionViewSet is AllowAny), or None when
    only a signed-in participant may see it."""
    try:
        return cb.CodabenchClient(server, None, http).competition(comp_id, secret_key)
    except HttpError as exc:
        if exc.status in (401, 403, 404):
            return None
        raise


def _codabench_token(server: str, http: Http, force_login: bool = False) -> tuple[str, str]:
    """``(token, source)``: CODABENCH_TOKEN, a saved token, or a login on a terminal."""
    env = os.environ.get("CODABENCH_TOKEN")
    if env and not force_login:
        return env.strip(), "env"
    saved = None if force_login else credentials.codabench_saved_token(server)
    if saved:
        return saved, "saved"
    if not ui.interactive():
        raise _no_codabench_credentials(server)
    username, password = _ask_login(server)
    token = cb.CodabenchClient.login(server, username, password, http)
    path = credentials.codabench_save_token(server, token, username)
    ui.progress(f"logged in as {username}; token saved in {path} (readable by you only)")
    return token, "login"


def _ask_login(server: str) -> tuple[str, str]:
    """User name and password from the person at the terminal (the reporter draws the
    prompts; the password is not echoed and never kept)."""
    hint = _no_codabench_credentials(server).hint
    ui.progress(f"Log in to {server} (once: the token is saved, the password is not).")
    username = ui.ask("Codabench user name or e-mail", hint=hint)
    password = ui.ask("Codabench password", secret=True, hint=hint)
    return username, password


def _codabench_session(server: str, comp_id: int, secret_key: str | None,
                       http: Http) -> tuple[cb.CodabenchClient, dict]:
    """A client with a token the server accepts, and the competition as it sees us. A
    refused saved token is forgotten; on a terminal a login is asked once."""
    token, source = _codabench_token(server, http)
    client = cb.CodabenchClient(server, token, http)
    try:
        return client, client.competition(comp_id, secret_key)
    except cb.AuthRefused as exc:
        reason = exc.server_text or f"HTTP {exc.status}"
        if source == "env":
            raise SubkitError(f"Codabench refused the token in CODABENCH_TOKEN: {reason}",
                              hint="set CODABENCH_TOKEN to a valid token (curl -d username=USER "
                                   f"-d password=PASS {server}/api/api-token-auth/ prints one), "
                                   "or unset it to log in on a terminal") from None
        if source == "saved":
            credentials.codabench_forget_token(server)
            if not ui.interactive():
                raise _no_codabench_credentials(
                    server, f"Codabench refused the saved token for {server}: {reason} "
                            "(it was forgotten)") from None
            ui.progress(f"Codabench refused the saved token ({reason}); it was forgotten")
        else:
            raise
    token, _ = _codabench_token(server, http, force_login=True)
    client = cb.CodabenchClient(server, token, http)
    return client, client.competition(comp_id, secret_key)


def _refusal_hint(reason: str, comp: dict, phase: dict, server: str) -> str:
    page = f"{server}/competitions/{comp.get('id')}/"
    if reason.startswith(cb.NOT_APPROVED):
        status = comp.get("participant_status")
        if status == "pending":
            return f"your registration waits for the organisers' approval ({page})"
        if status == "denied":
            return f"the organisers denied your registration; contact them ({page})"
        return f"register for the competition on {page} (My Submissions / Register)"
    if reason.startswith(cb.DAILY_LIMIT):
        per_day = phase.get("max_submissions_per_day")
        limit = f"{per_day} a day" if per_day else "its daily limit"
        return (f"this phase takes {limit} (failed ones do not count); the count restarts at "
                "midnight UTC: try again then")
    if reason.startswith(cb.TOTAL_LIMIT):
        total = phase.get("max_submissions_per_person")
        limit = f"{total} submissions per person" if total else "a total per person"
        return (f"this phase takes {limit} in all (failed ones do not count) and you have used "
                "them: that does not reset; ask the organisers if you need more")
    return f"read the reason on the competition's page ({page})"


def _ask_can_submit(client: cb.CodabenchClient, comp: dict, phase: dict, server: str) -> None:
    can = client.can_make_submission(int(phase["id"]))
    if isinstance(can, dict) and not can.get("can", False):
        reason = str(can.get("reason") or "no reason given")
        raise SubkitError(f"Codabench refuses a submission to {comp.get('title')!r} phase "
                          f"{phase.get('name')!r}: {reason}; nothing was uploaded",
                          hint=_refusal_hint(reason, comp, phase, server))


def _upload_and_create(client: cb.CodabenchClient, zip_path: Path, file_name: str, size: int,
                       comp_id: int, phase: dict, tasks: list[int] | None, http: Http) -> dict:
    ds = client.create_dataset(file_name, size, comp_id)
    http.add_secret(ds["sassy_url"].partition("?")[2])
    client.upload(ds["sassy_url"], zip_path)
    client.complete(ds["key"])
    try:
        return client.create_submission(int(phase["id"]), ds["key"], tasks)
    except HttpError as exc:
        if exc.status is None or exc.status < 500:
            raise
        # Submission.save raises PermissionError on a limit reached since our question, and
        # Django answers a bare HTML 500: ask again for the reason
        can = client.can_make_submission(int(phase["id"]))
        if isinstance(can, dict) and not can.get("can", True):
            reason = str(can.get("reason") or "")
            raise SubkitError(
                f"Codabench refused the submission: {reason} (it answered HTTP {exc.status} "
                "without a reason; asked again, it gave this one); no submission was created",
                hint=_refusal_hint(reason, client.competition(comp_id), phase,
                                   client.server)) from None
        raise HttpError(exc.message, status=exc.status, server_text=exc.server_text,
                        hint="the zip is uploaded but the submission may or may not exist: "
                             "look at My Submissions on the competition's page before "
                             "submitting again") from None


def _wait_codabench(client: cb.CodabenchClient, comp: dict, sub_id: Any, result: dict,
                    opts: SubmitOptions, profile: Any, ledger: Any, notes: Notes,
                    http: Http) -> None:
    final, scores_pending = interruptible_wait(
        lambda: cb.wait_for(client, sub_id, timeout=opts.wait_timeout,
                            score_grace=SCORE_GRACE_S, sleep=http.sleep, clock=now,
                            on_status=lambda s: ui.progress(f"submission {sub_id}: {s}")),
        f"submission {sub_id}")
    status, details = final.get("status"), final.get("status_details")
    failed: list[dict] = []
    if status == "Finished":
        failed = cb.failed_children(client, final)
        if failed:
            status = "Failed"
            details = "; ".join(f"task submission {c.get('id')} {c.get('status')}: "
                                f"{c.get('status_details') or 'no details'}" for c in failed)
    board = cb.leaderboard_of(comp, final)
    metric = getattr(profile, "metric", None) if profile is not None else None
    column, score = cb.primary_score(final, board, metric)
    scores = cb.scores_of(final)
    rule = board.get("submission_rule") if board else None
    manual = status == "Finished" and rule in cb.MANUAL_RULES and not final.get("on_leaderboard")
    if status == "Finished" and scores_pending:
        notes.note(f"warning: submission {sub_id} is Finished but its scores are not in yet "
                   f"after {SCORE_GRACE_S:.0f} s (Codabench's worker sends them after the "
                   f"status); see them on {result['url']} and enter the score with "
                   "`subkit history score`")
    if manual:
        notes.note(f"note: this leaderboard's rule is {rule!r}: the submission is on the "
                   f"leaderboard only once you add it (My Submissions on {result['url']})")
    kept = _keep_logs(client, final, result, ledger, notes, http)
    lb = record(ledger, leaderboard_record(
        zip=result["zip"], zip_sha256=result["zip_sha256"],
        leaderboard_score=score if status == "Finished" else None,
        phase=result["phase"], phase_id=result["phase_id"], source="codabench",
        submission_id=sub_id, status=status, column=column, scores=scores,
        status_details=details if status != "Finished" else None,
        scores_pending=scores_pending, on_leaderboard=final.get("on_leaderboard"),
        submission_rule=rule, logs=kept.path.name if kept.path else None,
        scoring_output=[p.name for p in kept.output_paths] or None), result)
    result.update({"status": status, "leaderboard_score": lb["leaderboard_score"],
                   "column": column, "scores": scores, "scores_pending": scores_pending,
                   "status_details": lb.get("status_details"),
                   "on_leaderboard": final.get("on_leaderboard"), "submission_rule": rule,
                   "logs": kept.summary(), "rerun": platform_logs.rerun_command(result["zip"])})
    if status != "Finished":
        where, lines = platform_logs.failing_lines(kept, [c.get("id") for c in failed])
        result["failing_log"], result["failing_lines"] = where, lines


def _keep_logs(client: cb.CodabenchClient, final: dict, result: dict, ledger: Any,
               notes: Notes, http: Http) -> platform_logs.PlatformLogs:
    """The submission's logs, as its Logs tab shows them, kept next to the ledger."""
    sub_id = final.get("id", result["submission_id"])
    ui.progress(f"reading the logs of submission {sub_id}")
    kept = platform_logs.fetch(client, final, http)
    if kept.error:
        notes.note(f"warning: the logs of submission {sub_id} could not be read: {kept.error}; "
                   f"see them on {result['url']}")
    elif kept.hidden:
        notes.note(f"note: this phase hides the submissions' output: Codabench shows no logs "
                   f"of submission {sub_id}")
    elif not kept.logs:
        notes.note(f"note: Codabench lists no logs for submission {sub_id}")
    for why in kept.notes:
        notes.note(f"note: {why}")
    path = platform_logs.keep(kept, Path(ledger.dir), result["zip"], sub_id, client.server)
    if path is not None:
        ui.progress(f"platform logs kept in {path}")
    for out in kept.output_paths:
        ui.progress(f"scoring output kept in {out}")
    return kept
