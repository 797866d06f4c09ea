"""Submit a zip to Codabench and read its score back.

API shapes relied on (Codabench is Django REST Framework; sources are files of
github.com/codalab/codabench, read from its ``develop`` branch):

- ``POST /api/api-token-auth/`` {username, password} -> 200 {"token": "..."}; bad
  credentials -> 400 {"non_field_errors": ["Unable to log in with provided credentials."]}
  (DRF ObtainAuthToken; used by docs/example_scripts/example_submission.py).
  Every later call sends ``Authorization: Token <token>``; a wrong token -> 401
  {"detail": "Invalid token."} (DRF TokenAuthentication).
- ``GET /api/competitions/<id>/`` -> {"id", "title", "phases": [{"id", "index", "name",
  "status": "Previous"|"Current"|"Next", "tasks": [{"id", "key", "name", ...}], ...}]}
  (src/apps/api/serializers/competitions.py, CompetitionDetailSerializer,
  PhaseDetailSerializer.get_status); unknown or hidden -> 404 {"detail": "Not found."}.
- ``GET /api/can_make_submission/<phase_id>/`` -> 200 {"can": bool, "reason": str|null};
  a non-participant gets {"can": false, "reason": "User not approved to participate in this
  competition"}, a full day "Reached maximum allowed submissions for today for this phase"
  (src/apps/api/views/submissions.py can_make_submission; competitions/models.py
  Phase.can_user_make_submissions).
- ``POST /api/datasets/`` {"type": "submission", "request_sassy_file_name": NAME,
  "file_name": NAME, "file_size": BYTES} -> 201 {"key": uuid, "sassy_url": signed URL};
  ``file_size`` is required (400 {"file_size": "This field is required."}); over quota ->
  400 {"data_file": ["Insufficient space. ..."]} (src/apps/api/views/datasets.py
  DataViewSet.create). No ``name`` is sent: the serializer refuses a name the user
  already has.
- ``PUT <sassy_url>`` the zip bytes, ``Content-Type: application/zip``; on Azure storage
  also ``x-ms-blob-type: BlockBlob`` and ``x-ms-version: 2018-03-28`` (the web client,
  src/static/js/ours/client.js create_dataset). The URL is on the storage host, not the
  API host: the API token is never sent there.
- ``PUT /api/datasets/completed/<key>/`` -> 200 {"key": key} (views/datasets.py
  upload_completed).
- ``POST /api/submissions/`` {"phase": id, "data": key[, "tasks": [task ids]]} -> 201
  {"id", "data", "phase", "status", "status_details", "filename", ...}; a non-participant
  -> 403 {"detail": "You do not have access to this competition to make a submission"}
  (serializers/submissions.py SubmissionCreationSerializer). ``tasks`` is optional: left
  out, the server runs every task of the phase.
- ``GET /api/submissions/<id>/`` -> {"id", "status", "status_details", "phase",
  "phase_name", "scores": [{"id", "index", "score": "0.7600000000", "column_key"}],
  "leaderboard", "on_leaderboard", ...} (SubmissionSerializer; ``score`` is a Decimal
  serialised as a string). Status values (competitions/models.py Submission): "None",
  "Submitting", "Submitted", "Preparing", "Running", "Scoring", "Cancelled", "Finished",
  "Failed"; the last three are final.
- Throttling is DRF's: 429 {"detail": "Request was throttled. Expected available in N
  seconds."} with ``Retry-After``.
"""

from __future__ import annotations

import os
import re
import time
import zipfile
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

from subkit import credentials
from subkit.errors import CheckFailed, InputError, SubkitError, UsageError
from subkit.remote.http import Http, HttpError, format_size

DEFAULT_SERVER = "https://www.codabench.org"
FINAL_STATUSES = ("Finished", "Failed", "Cancelled")


class AuthRefused(HttpError):
    """The server refused the token (401)."""


# -- hooks (monkeypatched by tests) ---------------------------------------------------------
def run_check(zip_path: Path, profile: Any, smoke: bool = True,
              echo: Callable[[str], None] | None = None) -> Any:
    """``subkit check`` on the zip (imported lazily: it may load TensorFlow)."""
    try:
        from subkit.build import check_zip
    except ImportError:
        raise SubkitError("`subkit check` is not available in this installation, so the zip "
                          "cannot be checked before upload",
                          hint="pass --force to upload without the check") from None
    return check_zip(zip_path, profile, smoke=smoke, echo=echo)


def is_interactive() -> bool:
    import sys

    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):  # pragma: no cover
        return False


def prompt_login(server: str) -> tuple[str, str]:
    import click

    click.echo(f"Log in to {server} (once: the token is saved, the password is not).",
               err=True)
    username = click.prompt("Codabench username", err=True)
    password = click.prompt("Codabench password", hide_input=True, err=True)
    return username, password


# -- arguments ------------------------------------------------------------------------------
def parse_competition(arg: str | int) -> tuple[int, str | None]:
    """``(competition id, server or None)`` from ``1234`` or a competition URL."""
    text = str(arg).strip()
    if text.isdigit():
        return int(text), None
    m = re.match(r"^(https?://[^/]+)/competitions/(\d+)", text)
    if m:
        return int(m.group(2)), m.group(1)
    raise UsageError(f"--codabench expects a competition number or URL, got {text!r}",
                     hint="the number is in the competition's URL: "
                          "https://www.codabench.org/competitions/<number>/")


def _phase_label(p: dict) -> str:
    return f"{p.get('id')} {p.get('name')!r} ({p.get('status') or 'status unknown'})"


def choose_phase(competition: dict, phase_arg: str | None) -> dict:
    phases = [p for p in competition.get("phases") or [] if isinstance(p, dict)]
    listing = "; ".join(_phase_label(p) for p in phases) or "none listed"
    if phase_arg:
        arg = str(phase_arg).strip()
        if arg.isdigit():
            for p in phases:
                if str(p.get("id")) == arg:
                    return p
            return {"id": int(arg), "name": None, "status": None}
        exact = [p for p in phases if str(p.get("name", "")).lower() == arg.lower()]
        partial = [p for p in phases if arg.lower() in str(p.get("name", "")).lower()]
        found = exact or partial
        if len(found) == 1:
            return found[0]
        raise UsageError(f"--phase {arg!r} matches {len(found)} phases of this competition",
                         hint=f"give the phase id; phases: {listing}")
    current = [p for p in phases if p.get("status") == "Current"]
    if len(current) == 1:
        return current[0]
    if not current:
        raise SubkitError("no phase of this competition is open for submissions now",
                          hint=f"pass --phase ID to choose one; phases: {listing}")
    raise UsageError("several phases are open now",
                     hint=f"pass --phase ID; phases: {listing}")


def _is_azure(url: str) -> bool:
    parsed = urlparse(url)
    qs = parse_qs(parsed.query)
    return parsed.hostname is not None and (
        parsed.hostname.endswith(".blob.core.windows.net") or ("sv" in qs and "sig" in qs))


# -- the client ------------------------------------------------------------------------------
class CodabenchClient:
    def __init__(self, server: str, token: str | None, http: Http):
        self.server = server.rstrip("/")
        self.api = self.server + "/api"
        self.token = token
        self.http = http
        http.add_secret(token)

    def _headers(self) -> dict[str, str]:
        h = {"Accept": "application/json"}
        if self.token:
            h["Authorization"] = f"Token {self.token}"
        return h

    def _call(self, method: str, path: str, *, what: str, ok=(200, 201),
              hint: Callable[[int | None, str], str | None] | None = None,
              **kw: Any) -> Any:
        resp = self.http.request(method, f"{self.api}/{path.lstrip('/')}", what=what, ok=ok,
                                 allow=(401,), hint=hint, headers=self._headers(), **kw)
        if resp.status_code == 401:
            err = self.http.error(resp, what, lambda s, t: None)
            raise AuthRefused(err.message, status=401, server_text=err.server_text)
        try:
            return resp.json()
        except ValueError:
            raise HttpError(f"{what}: the server did not answer JSON "
                            f"(HTTP {resp.status_code}): {resp.text[:200]!r}",
                            hint=f"is {self.server} a Codabench server? set it with --server "
                                 "or CODABENCH_URL") from None

    @staticmethod
    def login(server: str, username: str, password: str, http: Http) -> str:
        http.add_secret(password)
        resp = http.request(
            "POST", f"{server.rstrip('/')}/api/api-token-auth/", what="Codabench login",
            idempotent=True, json={"username": username, "password": password},
            headers={"Accept": "application/json"},
            hint=lambda s, t: ("use your Codabench user name (not the e-mail address) and "
                               "password; reset it on the website if needed"
                               if s in (400, 401) else None))
        try:
            token = resp.json().get("token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise HttpError("Codabench login: the server answered without a token",
                            hint=f"is {server} a Codabench server?")
        http.add_secret(token)
        return token

    def competition(self, comp_id: int) -> dict:
        return self._call("GET", f"competitions/{comp_id}/",
                          what=f"reading competition {comp_id}",
                          hint=lambda s, t: (
                              f"no competition {comp_id} visible to this account on "
                              f"{self.server}: check the number in its URL "
                              f"({self.server}/competitions/<number>/)"
                              if s == 404 else None))

    def can_make_submission(self, phase_id: int) -> dict:
        return self._call("GET", f"can_make_submission/{phase_id}/",
                          what=f"asking whether phase {phase_id} accepts a submission")

    def create_dataset(self, file_name: str, size: int) -> dict:
        # retrying this POST after a dropped connection is harmless: at worst an empty
        # placeholder dataset is left on the server
        data = self._call("POST", "datasets/", what="creating the upload slot",
                          idempotent=True,
                          json={"type": "submission", "request_sassy_file_name": file_name,
                                "file_name": file_name, "file_size": size},
                          hint=lambda s, t: ("free space under Resources on the website, "
                                             "then retry" if "space" in t.lower() else None))
        if not isinstance(data, dict) or not data.get("key") or not data.get("sassy_url"):
            raise HttpError("creating the upload slot: the answer has no key/sassy_url",
                            hint="the server's API differs from the one subkit knows")
        return data

    def upload(self, sassy_url: str, path: Path) -> None:
        headers = {"Content-Type": "application/zip"}
        if _is_azure(sassy_url):
            headers.update({"x-ms-blob-type": "BlockBlob", "x-ms-version": "2018-03-28"})
        self.http.upload("PUT", sassy_url, path, what="uploading the zip to storage",
                         headers=headers)

    def complete(self, key: str) -> dict:
        return self._call("PUT", f"datasets/completed/{key}/",
                          what="marking the upload complete")

    def create_submission(self, phase_id: int, key: str,
                          tasks: list[int] | None = None) -> dict:
        body: dict[str, Any] = {"phase": phase_id, "data": key}
        if tasks:
            body["tasks"] = tasks
        return self._call(
            "POST", "submissions/", what="creating the submission", json=body,
            hint=lambda s, t: ("register for the competition on its page and wait for "
                               "approval, then submit again" if s == 403 else None))

    def submission(self, sub_id: int | str) -> dict:
        return self._call("GET", f"submissions/{sub_id}/",
                          what=f"reading submission {sub_id}")


# -- scores ------------------------------------------------------------------------------------
def scores_of(sub: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in sub.get("scores") or []:
        if not isinstance(s, dict):
            continue
        key = str(s.get("column_key") or s.get("index") or len(out))
        try:
            out[key] = float(s.get("score"))
        except (TypeError, ValueError):
            continue
    return out


def primary_score(sub: dict, metric: str | None = None) -> tuple[str | None, float | None]:
    """The leaderboard column that stands for the submission: the one named like the
    profile's metric, else the first column (lowest index)."""
    entries = [s for s in sub.get("scores") or [] if isinstance(s, dict)]
    if not entries:
        return None, None
    chosen = None
    if metric:
        for s in entries:
            if str(s.get("column_key", "")).lower() == metric.lower():
                chosen = s
                break
    if chosen is None:
        chosen = min(entries, key=lambda s: (s.get("index") is None, s.get("index") or 0))
    try:
        return str(chosen.get("column_key")), float(chosen.get("score"))
    except (TypeError, ValueError):
        return str(chosen.get("column_key")), None


def wait_for(client: CodabenchClient, sub_id: int | str, *, poll: float = 5.0,
             timeout: float = 7200.0, sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic,
             echo: Callable[[str], None] = lambda m: None) -> dict:
    start = clock()
    last = None
    interval = poll
    while True:
        sub = client.submission(sub_id)
        status = sub.get("status")
        if status != last:
            echo(f"submission {sub_id}: {status}")
            last = status
        if status in FINAL_STATUSES:
            return sub
        if clock() - start > timeout:
            raise SubkitError(
                f"stopped waiting after {timeout:.0f} s: submission {sub_id} is still "
                f"{status} on Codabench",
                hint="it is recorded in the ledger; when it finishes, enter its score with "
                     "`subkit history score ZIP --leaderboard SCORE --phase PHASE`")
        sleep(interval)
        interval = min(interval * 1.5, 60.0)


# -- credentials --------------------------------------------------------------------------------
def get_token(server: str, http: Http, echo: Callable[[str], None],
              force_login: bool = False) -> tuple[str, str]:
    """``(token, source)``: CODABENCH_TOKEN, a saved token, or a login on a terminal."""
    env = os.environ.get("CODABENCH_TOKEN")
    if env and not force_login:
        return env.strip(), "env"
    if not force_login:
        saved = credentials.codabench_saved_token(server)
        if saved:
            return saved, "saved"
    if not is_interactive():
        raise SubkitError(
            f"no Codabench credentials for {server}",
            hint="set CODABENCH_TOKEN (get one once with: curl -d username=U -d password=P "
                 f"{server}/api/api-token-auth/), or run subkit submit on a terminal to log in")
    username, password = prompt_login(server)
    token = CodabenchClient.login(server, username, password, http)
    path = credentials.codabench_save_token(server, token, username)
    echo(f"logged in as {username}; token saved in {path} (readable by you only)")
    return token, "login"


# -- the command ------------------------------------------------------------------------------
def submit(zip_path: Path, competition: str | int, *, profile: Any, ledger: Any,
           phase: str | None = None, wait: bool = False, force: bool = False,
           smoke: bool = True, server: str | None = None, tasks: list[int] | None = None,
           message: str | None = None, http: Http | None = None,
           echo: Callable[[str], None] = lambda m: None,
           check_echo: Callable[[str], None] | None = None,
           poll: float = 5.0, wait_timeout: float = 7200.0,
           sleep: Callable[[float], None] | None = None) -> dict:
    """Check, upload and submit a zip; with ``wait`` poll until it is scored. Returns a
    JSON-able summary; every step that happened is in the ledger."""
    from subkit.ledger import sha256_file

    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise InputError(f"no such file: {zip_path}", hint="give the path of a built zip "
                         "(`subkit build` writes them into submissions/)")
    if not zipfile.is_zipfile(zip_path):
        raise InputError(f"{zip_path} is not a zip file",
                         hint="Codabench takes a .zip; build one with `subkit build`")
    comp_id, url_server = parse_competition(competition)
    server = (server or os.environ.get("CODABENCH_URL") or url_server
              or DEFAULT_SERVER).rstrip("/")
    http = http or Http(echo=echo, sleep=sleep)
    sleep = sleep or http.sleep
    size = zip_path.stat().st_size
    sha = sha256_file(zip_path)

    # 1. the same check `subkit check` runs; a failure stops here, before any upload
    report = run_check(zip_path, profile, smoke=smoke, echo=check_echo)
    check_status = getattr(report, "status", None)
    if check_status == "FAILED":
        if not force:
            raise CheckFailed(f"subkit check FAILED for {zip_path.name}: nothing was uploaded",
                              hint=f"fix what the check reports (`subkit check {zip_path}`), "
                                   "or pass --force to upload anyway")
        echo(f"warning: subkit check FAILED for {zip_path.name}; uploading anyway (--force)")

    # 2. credentials, competition, phase (a refused saved token asks for a login once)
    token, source = get_token(server, http, echo)
    client = CodabenchClient(server, token, http)
    try:
        comp = client.competition(comp_id)
    except AuthRefused as exc:
        if source == "env":
            raise SubkitError(f"Codabench refused CODABENCH_TOKEN: {exc.server_text}",
                              hint="set CODABENCH_TOKEN to a valid token, or unset it to "
                                   "log in with your user name and password") from None
        if source == "saved":
            credentials.codabench_forget_token(server)
            echo("the saved Codabench token was refused; it was forgotten")
        token, source = get_token(server, http, echo, force_login=True)
        client = CodabenchClient(server, token, http)
        comp = client.competition(comp_id)
    ph = choose_phase(comp, phase)
    phase_id = int(ph["id"])
    phase_name = ph.get("name") or str(phase_id)
    title = comp.get("title") or f"competition {comp_id}"

    can = client.can_make_submission(phase_id)
    if isinstance(can, dict) and not can.get("can", False):
        reason = str(can.get("reason") or "no reason given")
        low = reason.lower()
        if "not approved" in low or "participate" in low:
            hint = (f"register for the competition on {server}/competitions/{comp_id}/ "
                    "and, if it needs approval, wait for the organisers'")
        elif "maximum" in low or "today" in low:
            hint = "the phase's submission limit is reached; try again tomorrow"
        else:
            hint = "read the reason above on the competition's page"
        raise SubkitError(f"Codabench refuses a submission to {title!r} phase {phase_name!r}: "
                          f"{reason}", hint=hint)

    # 3. upload: slot, bytes to storage, completion, submission
    echo(f"uploading {zip_path.name} ({format_size(size)}) to {server}, {title!r}, "
         f"phase {phase_name!r} (id {phase_id})")
    ds = client.create_dataset(zip_path.name, size)
    http.add_secret(ds["sassy_url"].partition("?")[2])
    client.upload(ds["sassy_url"], zip_path)
    client.complete(ds["key"])
    sub = client.create_submission(phase_id, ds["key"], tasks)
    sub_id = sub.get("id")
    status = sub.get("status") or "Submitted"
    echo(f"submitted: submission {sub_id} ({status})")
    record = ledger.append({
        "kind": "submit", "zip": str(zip_path), "zip_sha256": sha, "platform": "codabench",
        "server": server, "competition": comp_id, "competition_title": comp.get("title"),
        "phase": phase_name, "phase_id": phase_id, "submission_id": sub_id,
        "status": status, "check": check_status, "forced": bool(force and
                                                                 check_status == "FAILED"),
        "size": size, "message": message,
    })
    result: dict[str, Any] = {
        "platform": "codabench", "server": server, "competition": comp_id,
        "competition_title": comp.get("title"), "phase": phase_name, "phase_id": phase_id,
        "submission_id": sub_id, "status": status, "zip": str(zip_path), "zip_sha256": sha,
        "size": size, "check": check_status, "url": f"{server}/competitions/{comp_id}/",
        "ledger_ids": [record["id"]],
    }
    if not wait:
        return result

    # 4. wait for the score and put it in the ledger
    try:
        final = wait_for(client, sub_id, poll=poll, timeout=wait_timeout, sleep=sleep,
                         echo=echo)
    except KeyboardInterrupt:
        echo(f"\nstopped waiting: submission {sub_id} goes on on Codabench and is in the "
             "ledger; enter its score later with `subkit history score`")
        raise
    metric = getattr(profile, "metric", None) if profile is not None else None
    column, score = primary_score(final, metric)
    scores = scores_of(final)
    lb = ledger.append({
        "kind": "leaderboard", "zip": str(zip_path), "zip_sha256": sha,
        "leaderboard_score": score if final.get("status") == "Finished" else None,
        "phase": phase_name, "phase_id": phase_id, "source": "codabench",
        "submission_id": sub_id, "status": final.get("status"), "column": column,
        "scores": scores, "status_details": final.get("status_details"),
    })
    result.update({"status": final.get("status"), "leaderboard_score": lb["leaderboard_score"],
                   "column": column, "scores": scores,
                   "status_details": final.get("status_details")})
    result["ledger_ids"].append(lb["id"])
    return result
