"""`subkit submit`: check, then credentials, then upload, then record.

The HTTP clients (``subkit.remote``) only speak to the services; this module decides the
order, which matters for the credentials:

1. the arguments and the file are checked first (bad input costs nothing);
2. the pre-upload check runs: for a Codabench zip that is ``subkit.checks.check_zip``,
   which runs the submission (untrusted code) in a child. Meanwhile the platforms' secret
   variables are out of this process's environment (``credentials.withheld_env``: a child
   inherits nothing and reads nothing in ``/proc/<pid>/environ``), no saved token or key
   file has been read, and no password asked;
3. only then are credentials read (or a login asked), and the service asked whether it
   takes the submission; refusals stop here, before any byte is uploaded;
4. upload, submission, one ``submit`` record in the ledger; with ``--wait`` the result and
   the scores become a ``leaderboard`` record.

Every refusal says the service's own reason and what to do. Nothing here prints: progress
goes through ``Ui.echo``; the command prints the result.
"""

from __future__ import annotations

import os
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subkit import credentials
from subkit import ui as reporting
from subkit.errors import CheckFailed, InputError, SubkitError, UsageError
from subkit.ledger import leaderboard_record, submit_record
from subkit.remote import codabench as cb
from subkit.remote import kaggle as kg
from subkit.remote.http import Http, HttpError, api_host, format_size
from subkit.submission_csv import check_csv

# the clock of the waits; tests replace it with one that moves with their fake sleep
CLOCK: Callable[[], float] = time.monotonic
SCORE_GRACE_S = 120.0  # how long to wait for the scores once Codabench says Finished


@dataclass
class SubmitOptions:
    platform: str  # "codabench" or "kaggle"
    competition: str
    file: Path | None = None
    phase: str | None = None
    message: str | None = None
    wait: bool = False
    force: bool = False
    smoke: bool = True
    env: str | None = None  # the check's environment; None: check_zip's default ("auto")
    server: str | None = None
    wait_timeout: float = 7200.0
    kernel: str | None = None
    version: int | None = None
    tasks: list[int] | None = None


@dataclass
class Ui:
    """What the command lends this module: a line printer for progress, whether a person
    is at a terminal, and how to ask them for a login."""

    echo: Callable[[str], None] = lambda m: None
    check_echo: Callable[[str], None] | None = None
    interactive: bool = False
    prompt_login: Callable[[str], tuple[str, str]] | None = None
    notes: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        """A line the user must read (also kept for --json)."""
        self.notes.append(message)
        self.echo(message)


def submit(opts: SubmitOptions, profile: Any, ledger: Any, ui: Ui) -> dict:
    if opts.platform == "codabench":
        return submit_codabench(opts, profile, ledger, ui)
    if opts.platform == "kaggle":
        return submit_kaggle(opts, profile, ledger, ui)
    raise UsageError("say where to submit: --codabench COMPETITION or --kaggle COMPETITION",
                     hint="e.g. subkit submit sub.zip --codabench 1234")


# -- shared --------------------------------------------------------------------------------
def _existing_file(path: Path | None, what: str, hint: str) -> Path:
    if path is None:
        raise UsageError(f"give the {what} to submit", hint=hint)
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}", hint=hint)
    return path


def _server(flag: str | None, fallback: str | None, default: str) -> str:
    return api_host(flag) if flag else (fallback or default)


def _interruptible_wait(fn: Callable[[], Any], what: str, ui: Ui) -> Any:
    try:
        return fn()
    except KeyboardInterrupt:
        ui.echo(f"\nstopped waiting: {what} goes on and is in the ledger; enter its score "
                "later with `subkit history score`")
        raise


def run_check(zip_path: Path, profile: Any, *, smoke: bool, echo: Callable[[str], None] | None,
              env: str | None) -> Any:
    """`subkit check` on the zip (imported lazily: it may load TensorFlow); its lines go to
    ``echo`` (None: nowhere)."""
    from subkit.checks import check_zip

    kwargs = {"env": env} if env else {}
    with reporting.use(reporting.Lines(echo) if echo else reporting.SILENT):
        return check_zip(zip_path, profile, smoke=smoke, **kwargs)


def _checked(status: str | None, failure: str | None, what: str, force: bool, ui: Ui,
             hint: str) -> None:
    if status != "FAILED":
        return
    reason = f": {failure}" if failure else ""
    if not force:
        raise CheckFailed(f"{what} FAILED{reason}; nothing was uploaded", hint=hint)
    ui.note(f"warning: {what} FAILED{reason}; uploading anyway (--force)")


# -- Codabench ---------------------------------------------------------------------------------
def submit_codabench(opts: SubmitOptions, profile: Any, ledger: Any, ui: Ui) -> dict:
    from subkit.ledger import sha256_file

    zip_path = _existing_file(opts.file, "zip", "give the path of a built zip (`subkit build` "
                              "writes them into submissions/)")
    if not zipfile.is_zipfile(zip_path):
        raise InputError(f"{zip_path} is not a zip file",
                         hint="Codabench takes a .zip; build one with `subkit build`")
    comp_id, url_server, secret_key = cb.parse_competition(opts.competition)
    server = _server(opts.server, cb.server_from_env() or url_server, cb.DEFAULT_SERVER)
    http = Http(echo=ui.echo)
    if not (ui.interactive or os.environ.get("CODABENCH_TOKEN")
            or credentials.codabench_may_have_token()):
        raise _no_codabench_credentials(server)

    # before the long check: the competition as anyone sees it catches a wrong phase now
    public = _public_competition(server, comp_id, secret_key, http)
    if public is not None:
        cb.choose_phase(public, opts.phase, force=opts.force)

    check_status = _check_zip_first(zip_path, profile, opts, ui)
    client, comp = _codabench_session(server, comp_id, secret_key, http, ui)
    ph = cb.choose_phase(comp, opts.phase, force=opts.force)
    if ph.get("status") != "Current":
        ui.note(f"warning: phase {ph.get('name')!r} is {ph.get('status')}; submitting anyway "
                "(--force)")
    _ask_can_submit(client, comp, ph, server)

    size, sha = zip_path.stat().st_size, sha256_file(zip_path)
    file_name = cb.short_file_name(zip_path.name)
    if file_name != zip_path.name:
        ui.note(f"note: Codabench keeps file names to {cb.FILE_NAME_MAX} characters: the "
                f"submission is named {file_name}")
    title = comp.get("title") or f"competition {comp_id}"
    ui.echo(f"uploading {zip_path.name} ({format_size(size)}) to {server}, {title!r}, "
            f"phase {ph.get('name')!r} (id {ph['id']})")
    sub = _upload_and_create(client, zip_path, file_name, size, comp_id, ph, opts.tasks, http)
    sub_id, status = sub.get("id"), sub.get("status") or "Submitting"
    ui.echo(f"submitted: submission {sub_id} ({status})")
    if comp.get("auto_run_submissions") is False:
        ui.note("note: this competition runs submissions by hand: it stays Submitting until "
                "the organisers start it")
    forced = bool(opts.force and check_status == "FAILED")
    record = ledger.append(submit_record(
        zip=str(zip_path), zip_sha256=sha, platform="codabench", server=server,
        competition=comp_id, competition_title=comp.get("title"), phase=ph.get("name"),
        phase_id=ph["id"], submission_id=sub_id, status=status, check=check_status,
        forced=forced, size=size, file_name=file_name, message=opts.message))
    result: dict[str, Any] = {
        "platform": "codabench", "server": server, "competition": comp_id,
        "competition_title": comp.get("title"), "phase": ph.get("name"), "phase_id": ph["id"],
        "submission_id": sub_id, "status": status, "zip": str(zip_path), "zip_sha256": sha,
        "size": size, "file_name": file_name, "check": check_status, "forced": forced,
        "url": f"{server}/competitions/{comp_id}/", "ledger_ids": [record["id"]],
        "notes": ui.notes,
    }
    if opts.wait:
        _wait_codabench(client, comp, sub_id, result, opts, profile, ledger, ui, http)
    return result


def _check_zip_first(zip_path: Path, profile: Any, opts: SubmitOptions, ui: Ui) -> str | None:
    """`subkit check` with the platforms' secrets out of the environment; a FAILED check
    stops here unless --force. Returns the check's status."""
    with credentials.withheld_env():
        report = run_check(zip_path, profile, smoke=opts.smoke, echo=ui.check_echo, env=opts.env)
    status = getattr(report, "status", None)
    failure = getattr(report, "first_failure", lambda: None)()
    _checked(status, failure.get("message") if failure else None,
             f"subkit check of {zip_path.name}", opts.force, ui,
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


def _codabench_token(server: str, http: Http, ui: Ui, force_login: bool = False
                     ) -> tuple[str, str]:
    """``(token, source)``: CODABENCH_TOKEN, a saved token, or a login on a terminal."""
    env = os.environ.get("CODABENCH_TOKEN")
    if env and not force_login:
        return env.strip(), "env"
    saved = None if force_login else credentials.codabench_saved_token(server)
    if saved:
        return saved, "saved"
    if not (ui.interactive and ui.prompt_login):
        raise _no_codabench_credentials(server)
    username, password = ui.prompt_login(server)
    token = cb.CodabenchClient.login(server, username, password, http)
    path = credentials.codabench_save_token(server, token, username)
    ui.echo(f"logged in as {username}; token saved in {path} (readable by you only)")
    return token, "login"


def _codabench_session(server: str, comp_id: int, secret_key: str | None, http: Http,
                       ui: Ui) -> tuple[cb.CodabenchClient, dict]:
    """A client with a token the server accepts, and the competition as it sees us. A
    refused saved token is forgotten; on a terminal a login is asked once."""
    token, source = _codabench_token(server, http, ui)
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
            if not ui.interactive:
                raise _no_codabench_credentials(
                    server, f"Codabench refused the saved token for {server}: {reason} "
                            "(it was forgotten)") from None
            ui.echo(f"Codabench refused the saved token ({reason}); it was forgotten")
        else:
            raise
    token, _ = _codabench_token(server, http, ui, force_login=True)
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
                    opts: SubmitOptions, profile: Any, ledger: Any, ui: Ui, http: Http) -> None:
    final, scores_pending = _interruptible_wait(
        lambda: cb.wait_for(client, sub_id, timeout=opts.wait_timeout,
                            score_grace=SCORE_GRACE_S, sleep=http.sleep, clock=lambda: CLOCK(),
                            on_status=lambda s: ui.echo(f"submission {sub_id}: {s}")),
        f"submission {sub_id}", ui)
    status, details = final.get("status"), final.get("status_details")
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
        ui.note(f"warning: submission {sub_id} is Finished but its scores are not in yet after "
                f"{SCORE_GRACE_S:.0f} s (Codabench's worker sends them after the status); see "
                f"them on {result['url']} and enter the score with `subkit history score`")
    if manual:
        ui.note(f"note: this leaderboard's rule is {rule!r}: the submission is on the "
                f"leaderboard only once you add it (My Submissions on {result['url']})")
    lb = ledger.append(leaderboard_record(
        zip=result["zip"], zip_sha256=result["zip_sha256"],
        leaderboard_score=score if status == "Finished" else None,
        phase=result["phase"], phase_id=result["phase_id"], source="codabench",
        submission_id=sub_id, status=status, column=column, scores=scores,
        status_details=details if status != "Finished" else None,
        scores_pending=scores_pending, on_leaderboard=final.get("on_leaderboard"),
        submission_rule=rule))
    result.update({"status": status, "leaderboard_score": lb["leaderboard_score"],
                   "column": column, "scores": scores, "scores_pending": scores_pending,
                   "status_details": lb.get("status_details"),
                   "on_leaderboard": final.get("on_leaderboard"), "submission_rule": rule})
    result["ledger_ids"].append(lb["id"])


# -- Kaggle ------------------------------------------------------------------------------------
def _check_kaggle_file(path: Path, profile: Any, force: bool, ui: Ui) -> str | None:
    if path.suffix.lower() != ".csv":
        ui.echo(f"{path.name} is not a .csv: not checked against the profile")
        return None
    if getattr(profile, "platform", None) != "kaggle":
        ui.note(f"note: profile {getattr(profile, 'name', '?')!r} is not a Kaggle competition's: "
                "the CSV is not checked (pass --profile with the competition's profile)")
        return None
    rows, problems = check_csv(path, profile)
    if problems:
        _checked("FAILED", "; ".join(problems), f"the CSV check of {path.name}", force, ui,
                 hint=f"write the CSV the way profile {profile.name!r} describes (`subkit "
                      "predict --out FILE.csv` does), or pass --force to upload anyway")
        return "FAILED"
    ui.echo(f"{path.name}: {rows} rows, the columns of profile {profile.name!r}")
    return "PASSED"


def _kaggle_client(server: str, http: Http, ui: Ui) -> kg.KaggleClient:
    """A client with credentials in the official order: an access token Kaggle accepts,
    else the legacy key (a refused token is skipped, as the official client does)."""
    env = os.environ
    token = credentials.kaggle_access_token(env)
    refused = None
    if token is not None:
        client = kg.KaggleClient(token, http, server)
        if client.introspect():
            return client
        refused = f"Kaggle refused the access token from {token.source} (expired or revoked?)"
    key = credentials.kaggle_api_key(env)
    if key is None:
        raise SubkitError(refused or "no Kaggle credentials found",
                          hint=credentials.no_kaggle_credentials_hint())
    if refused:
        ui.note(f"warning: {refused}; using the API key from {key.source}")
    return kg.KaggleClient(key, http, server)


def _kaggle_prechecks(client: kg.KaggleClient, slug: str, comp: dict, kernel: bool,
                      force: bool) -> None:
    page = f"{kg.WEB}/competitions/{slug}"
    if comp.get("submissionsDisabled"):
        raise SubkitError(f"Kaggle competition {slug!r} takes no submissions now; nothing was "
                          "uploaded", hint=f"see its page: {page}")
    if comp.get("isKernelsSubmissionsOnly") and not kernel:
        raise InputError(
            f"{slug!r} is a code competition: Kaggle takes a notebook version, not an uploaded "
            "file; nothing was uploaded",
            hint="save a version of your notebook on Kaggle (it writes the submission file), "
                 f"then: subkit submit --kaggle {slug} --kernel YOU/NOTEBOOK --version N -m MSG")
    limits = client.submission_limits(slug)
    if limits is None or force or limits.get("numAllowedNow", 0) > 0:
        return
    if limits.get("limitedByTotal"):
        why, hint = "your team has used the competition's total of submissions", \
            "that does not reset; ask the hosts if you need more"
    elif not limits.get("numTotal") and not limits.get("numToday"):
        why, hint = "you are on no team of this competition yet", \
            f"join it and accept its rules: {page}/rules"
    else:
        why, hint = f"the day's submissions are used ({limits.get('numToday', 0)} today)", \
            "the count restarts at midnight UTC: try again then"
    raise SubkitError(f"Kaggle allows no submission to {slug!r} now: {why}; nothing was "
                      "uploaded", hint=hint + " (--force tries anyway)")


def _kernel_ref(kernel: str, version: int | None) -> str:
    return f"{kernel}@v{version}"


def submit_kaggle(opts: SubmitOptions, profile: Any, ledger: Any, ui: Ui) -> dict:
    import hashlib

    from subkit.ledger import sha256_file

    slug = kg.parse_competition(opts.competition)
    if opts.phase:
        raise UsageError("--phase is for Codabench", hint="Kaggle has one public leaderboard")
    if not opts.message:
        raise UsageError("a Kaggle submission needs a message", hint='pass -m "what changed"')
    server = _server(opts.server, None, kg.DEFAULT_SERVER)
    kernel = kg.parse_kernel(opts.kernel) if opts.kernel else None
    if kernel and not opts.version:
        raise UsageError("--kernel needs --version N (the notebook version to submit)",
                         hint="the version number is on the notebook's page (Version history)")
    if opts.version and not kernel:
        raise UsageError("--version is the version of a notebook: give --kernel OWNER/NOTEBOOK",
                         hint="a file is submitted without --version")
    path = None if kernel else _existing_file(
        opts.file, "file", "write predictions first, e.g. `subkit predict --out sub.csv`")
    check = None if path is None else _check_kaggle_file(path, profile, opts.force, ui)
    if not credentials.kaggle_may_have_credentials(os.environ):
        raise SubkitError("no Kaggle credentials found",
                          hint=credentials.no_kaggle_credentials_hint())
    http = Http(echo=ui.echo)
    client = _kaggle_client(server, http, ui)
    comp = client.competition(slug)
    _kaggle_prechecks(client, slug, comp, kernel is not None, opts.force)

    if kernel:
        name = opts.file.name if opts.file else None
        ref_text = _kernel_ref(opts.kernel.strip("/"), opts.version)
        ui.echo(f"submitting notebook {ref_text} to Kaggle competition {slug!r}")
        created = client.create_code_submission(slug, kernel[0], kernel[1], int(opts.version),
                                                name, opts.message)
        what, sha, size = ref_text, hashlib.sha256(f"kaggle-kernel:{ref_text}".encode()
                                                   ).hexdigest(), None
    else:
        size, sha = path.stat().st_size, sha256_file(path)
        ui.echo(f"uploading {path.name} ({format_size(size)}) to Kaggle competition {slug!r}")
        start = client.start_upload(slug, path)
        http.add_secret(str(start["createUrl"]).partition("?")[2])
        client.upload(start["createUrl"], path)
        created = client.create_submission(slug, start["token"], opts.message)
        what = str(path)
    ref = created.get("ref")
    ui.echo(f"submitted: {created.get('message') or 'ok'} (ref {ref})")
    record = ledger.append(submit_record(
        zip=what, zip_sha256=sha, platform="kaggle", competition=slug, phase=None,
        submission_id=ref, status="submitted", message=opts.message, size=size, check=check,
        kernel=opts.kernel if kernel else None, kernel_version=opts.version))
    result: dict[str, Any] = {
        "platform": "kaggle", "server": server, "competition": slug, "submission_id": ref,
        "status": "submitted", "server_message": created.get("message"), "file": what,
        "zip_sha256": sha, "size": size, "check": check, "ledger_ids": [record["id"]],
        "url": f"{kg.WEB}/competitions/{slug}/submissions", "notes": ui.notes,
    }
    if opts.wait:
        _wait_kaggle(client, ref, result, opts, ledger, ui, http)
    return result


def _wait_kaggle(client: kg.KaggleClient, ref: Any, result: dict, opts: SubmitOptions,
                 ledger: Any, ui: Ui, http: Http) -> None:
    if not ref:
        raise SubkitError("Kaggle gave no submission ref to wait for",
                          hint=f"see the score on {result['url']}")
    sub, state = _interruptible_wait(
        lambda: kg.wait_for(client, int(ref), timeout=opts.wait_timeout, sleep=http.sleep,
                            clock=lambda: CLOCK(),
                            on_status=lambda s: ui.echo(f"submission {ref}: {s}")),
        f"submission {ref}", ui)
    public = kg.score(sub.get("publicScore"))
    lb = ledger.append(leaderboard_record(
        zip=result["file"], zip_sha256=result["zip_sha256"],
        leaderboard_score=public if state == "complete" else None, phase="public",
        source="kaggle", submission_id=ref, status=state,
        private_score=kg.score(sub.get("privateScore")),
        error=sub.get("errorDescription") or None))
    result.update({"status": state, "leaderboard_score": lb["leaderboard_score"],
                   "private_score": lb.get("private_score"),
                   "error": sub.get("errorDescription") or None})
    result["ledger_ids"].append(lb["id"])
