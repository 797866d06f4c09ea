"""`subkit submit --kaggle`: a CSV checked against the profile (or a notebook version of a
code competition), credentials in the official client's order, Kaggle's limits read before
the upload, and with --wait the public and private scores."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from subkit import credentials, ui
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
from subkit.errors import InputError, SubkitError, UsageError
from subkit.ledger import leaderboard_record, submit_record
from subkit.remote import kaggle as kg
from subkit.remote.http import Http, format_size
from subkit.submission_csv import check_csv

if TYPE_CHECKING:
    from subkit.profile import Profile


def _check_kaggle_file(path: Path, profile: Any, force: bool, notes: Notes) -> str | None:
    if path.suffix.lower() != ".csv":
        ui.progress(f"{path.name} is not a .csv: not checked against the profile")
        return None
    if getattr(profile, "platform", None) != "kaggle":
        notes.note(f"note: profile {getattr(profile, 'name', '?')!r} is not a Kaggle "
                   "competition's: the CSV is not checked (pass --profile with the "
                   "competition's profile)")
        return None
    rows, problems = check_csv(path, profile)
    if problems:
        checked("FAILED", "; ".join(problems), f"the CSV check of {path.name}", force, notes,
                hint=f"write the CSV the way profile {profile.name!r} describes (`subkit "
                     "predict --out FILE.csv` does), or pass --force to upload anyway")
        return "FAILED"
    ui.progress(f"{path.name}: {rows} rows, the columns of profile {profile.name!r}")
    return "PASSED"


def _kaggle_client(server: str, http: Http, notes: Notes) -> kg.KaggleClient:
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
        notes.note(f"warning: {refused}; using the API key from {key.source}")
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


def submit_kaggle(opts: SubmitOptions, profile: Profile, ledger: Any) -> dict:
    import hashlib

    from subkit.ledger import sha256_file

    notes = Notes()
    slug = kg.parse_competition(opts.competition)
    if opts.phase:
        raise UsageError("--phase is for Codabench", hint="Kaggle has one public leaderboard")
    if not opts.message:
        raise UsageError("a Kaggle submission needs a message", hint='pass -m "what changed"')
    server = server_of(opts.server, None, kg.DEFAULT_SERVER)
    kernel = kg.parse_kernel(opts.kernel) if opts.kernel else None
    if kernel and not opts.version:
        raise UsageError("--kernel needs --version N (the notebook version to submit)",
                         hint="the version number is on the notebook's page (Version history)")
    if opts.version and not kernel:
        raise UsageError("--version is the version of a notebook: give --kernel OWNER/NOTEBOOK",
                         hint="a file is submitted without --version")
    path = None if kernel else existing_file(
        opts.file, "file", "write predictions first, e.g. `subkit predict --out sub.csv`")
    check = None if path is None else _check_kaggle_file(path, profile, opts.force, notes)
    if not credentials.kaggle_may_have_credentials(os.environ):
        raise SubkitError("no Kaggle credentials found",
                          hint=credentials.no_kaggle_credentials_hint())
    http = Http()
    client = _kaggle_client(server, http, notes)
    comp = client.competition(slug)
    _kaggle_prechecks(client, slug, comp, kernel is not None, opts.force)

    if kernel:
        # kernel was parsed from --kernel, and --version was required with it above
        assert opts.kernel is not None and opts.version is not None
        name = opts.file.name if opts.file else None
        ref_text = _kernel_ref(opts.kernel.strip("/"), opts.version)
        ui.progress(f"submitting notebook {ref_text} to Kaggle competition {slug!r}")
        created = client.create_code_submission(slug, kernel[0], kernel[1], int(opts.version),
                                                name, opts.message)
        what, sha, size = ref_text, hashlib.sha256(f"kaggle-kernel:{ref_text}".encode()
                                                   ).hexdigest(), None
    else:
        assert path is not None  # no --kernel: existing_file gave the file to upload
        size, sha = path.stat().st_size, sha256_file(path)
        ui.progress(f"uploading {path.name} ({format_size(size)}) to Kaggle competition "
                    f"{slug!r}")
        start = client.start_upload(slug, path)
        http.add_secret(str(start["createUrl"]).partition("?")[2])
        client.upload(start["createUrl"], path)
        created = client.create_submission(slug, start["token"], opts.message)
        what = str(path)
    ref = created.get("ref")
    ui.progress(f"submitted: {created.get('message') or 'ok'} (ref {ref})")
    result: dict[str, Any] = {
        "platform": "kaggle", "server": server, "competition": slug, "submission_id": ref,
        "status": "submitted", "server_message": created.get("message"), "file": what,
        "zip_sha256": sha, "size": size, "check": check, "ledger_ids": [],
        "url": f"{kg.WEB}/competitions/{slug}/submissions", "notes": notes,
    }
    record(ledger, submit_record(
        zip=what, zip_sha256=sha, platform="kaggle", competition=slug, phase=None,
        submission_id=ref, status="submitted", message=opts.message, size=size, check=check,
        kernel=opts.kernel if kernel else None, kernel_version=opts.version), result)
    if opts.wait:
        _wait_kaggle(client, ref, result, opts, ledger, http)
    return result


def _wait_kaggle(client: kg.KaggleClient, ref: Any, result: dict, opts: SubmitOptions,
                 ledger: Any, http: Http) -> None:
    if not ref:
        raise SubkitError("Kaggle gave no submission ref to wait for",
                          hint=f"see the score on {result['url']}")
    sub, state = interruptible_wait(
        lambda: kg.wait_for(client, int(ref), timeout=opts.wait_timeout, sleep=http.sleep,
                            clock=now,
                            on_status=lambda s: ui.progress(f"submission {ref}: {s}")),
        f"submission {ref}")
    public = kg.score(sub.get("publicScore"))
    lb = record(ledger, leaderboard_record(
        zip=result["file"], zip_sha256=result["zip_sha256"],
        leaderboard_score=public if state == "complete" else None, phase="public",
        source="kaggle", submission_id=ref, status=state,
        private_score=kg.score(sub.get("privateScore")),
        error=sub.get("errorDescription") or None), result)
    result.update({"status": state, "leaderboard_score": lb["leaderboard_score"],
                   "private_score": lb.get("private_score"),
                   "error": sub.get("errorDescription") or None})
