"""Codabench's REST API, as its server code answers.

Sources are files of github.com/codalab/codabench (``develop``, read 2026-03; DRF 3.16):

- ``POST /api/api-token-auth/`` {username, password} -> 200 {"token"}; DRF's
  ``obtain_auth_token`` (api/urls.py). ``username`` may be the e-mail address too
  (profiles/backends.py ``EmailAuthenticationBackend``). Refused ->
  400 {"non_field_errors": ["Unable to log in with provided credentials."]}.
- Later calls send ``Authorization: Token <t>``. A refused token is **403**
  {"detail": "Invalid token."} (rest_framework/authentication.py ``TokenAuthentication.
  authenticate_credentials``), without ``WWW-Authenticate``: settings/base.py lists
  SessionAuthentication first, and DRF turns the error into a 403 when the first
  authenticator has no ``authenticate_header`` (rest_framework/views.py ``APIView.
  handle_exception``, ``get_authenticate_header``). It happens on every endpoint, AllowAny
  ones included: DRF authenticates in ``APIView.initial`` before anything else.
- ``GET /api/competitions/<id>/[?secret_key=]`` (views/competitions.py
  ``CompetitionViewSet``, permission AllowAny: a published competition reads without a
  token) -> CompetitionDetailSerializer (serializers/competitions.py): ``phases`` with
  ``status`` Previous/Current/Next computed from the dates (``PhaseDetailSerializer.
  get_status``), ``max_submissions_per_day``/``_per_person``, ``used_submissions_*``;
  ``leaderboards`` (non-hidden ones) with ``primary_index``, ``submission_rule`` and
  ``columns``; ``participant_status`` (approved/pending/denied/absent) for a signed-in
  user; ``auto_run_submissions``. Unknown or not visible -> 404 {"detail": "No Competition
  matches the given query."} (DRF ``exception_handler``: ``NotFound(*(exc.args))``).
- ``GET /api/can_make_submission/<phase>/`` -> {"can", "reason"} (views/submissions.py
  ``can_make_submission``, competitions/models.py ``Phase.can_user_make_submissions``).
- ``POST /api/datasets/`` {type: "submission", competition, request_sassy_file_name,
  file_name, file_size} -> 201 {key, sassy_url} (views/datasets.py ``DataViewSet.create``;
  the web page sends the same, static/riot/competitions/detail/submission_upload.tag
  ``upload`` and static/js/ours/client.js ``create_dataset``). Without ``competition`` the
  file counts as an "unused submission" that the Resources page offers to delete
  (views/quota.py ``user_quota_cleanup``). ``file_name`` is a CharField(max_length=64)
  (datasets/models.py ``Data``). Over the user's quota -> 400 {"data_file": ["Insufficient
  space. ..."]}.
- ``PUT <sassy_url>`` the bytes: an S3 presigned ``put_object`` URL signed with
  ContentType application/zip, a GCS signed URL with the same content type, or an Azure SAS
  URL (utils/data.py ``make_url_sassy``); Azure also wants ``x-ms-blob-type: BlockBlob``
  (client.js ``create_dataset``).
- ``PUT /api/datasets/completed/<key>/`` -> {"key"} (views/datasets.py ``upload_completed``).
- ``POST /api/submissions/`` {phase, data: key[, tasks]} -> 201 (serializers/submissions.py
  ``SubmissionCreationSerializer``); not an approved participant -> 403 {"detail": "You do
  not have access to this competition to make a submission"}. The day's limit is checked
  again in ``Submission.save`` by raising ``PermissionError``, which no one catches: a
  submission that loses the race for the day's last slot gets Django's default HTML page
  "Server Error (500)" (django/views/defaults.py ``server_error``; Codabench has no
  500.html template), its reason lost.
- ``GET /api/submissions/<id>/`` -> SubmissionSerializer: ``status`` (None, Submitting,
  Submitted, Preparing, Running, Scoring, Cancelled, Finished, Failed; competitions/models.py
  ``Submission``), ``status_details``, ``scores`` [{id, index, score (a decimal string),
  column_key}], ``leaderboard``, ``on_leaderboard``, ``has_children``, ``children``.
  The compute worker sets Finished *before* it posts the scores (compute_worker.py
  ``run_wrapper``: ``run.start()`` ends in ``_update_status(STATUS_FINISHED)``, then
  ``run.push_scores()``); a scoring run without a scores file turns Failed after that.
- A leaderboard's ``submission_rule`` "Add" (the default), "Add_And_Delete" and
  "Add_And_Delete_Multiple" leave a finished submission off the leaderboard until its owner
  adds it (leaderboards/strategies.py ``StrategyFactory`` -> ``ManualModeStrategy``).

Nothing here prints; every failure is a ``SubkitError`` carrying the server's words.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from subkit.errors import SubkitError, UsageError
from subkit.remote.http import Http, HttpError, api_host

DEFAULT_SERVER = "https://www.codabench.org"
FILE_NAME_MAX = 64  # datasets/models.py: Data.file_name = CharField(max_length=64)
MANUAL_RULES = ("Add", "Add_And_Delete", "Add_And_Delete_Multiple")
# DRF's AuthenticationFailed/NotAuthenticated texts (rest_framework/authentication.py
# TokenAuthentication.authenticate*, rest_framework/exceptions.py NotAuthenticated)
_AUTH_REFUSALS = ("Invalid token", "User inactive or deleted",
                  "Authentication credentials were not provided")
DAILY_LIMIT = "Reached maximum allowed submissions for today for this phase"
TOTAL_LIMIT = "Reached maximum allowed submissions for this phase"
NOT_APPROVED = "User not approved to participate in this competition"


class AuthRefused(HttpError):
    """The server refused the token (DRF: 403, or 401 behind another front)."""


# -- arguments ------------------------------------------------------------------------------
def parse_competition(arg: str | int) -> tuple[int, str | None, str | None]:
    """``(competition id, server or None, secret_key or None)`` from ``1234`` or the
    competition's URL (a private competition's URL carries ``?secret_key=``)."""
    text = str(arg).strip()
    if text.isdigit():
        return int(text), None, None
    m = re.match(r"^(https?://[^/?#]+)/competitions/(\d+)/?(?:\?(.*))?$", text)
    if m:
        secret = (parse_qs(m.group(3) or "").get("secret_key") or [None])[0]
        return int(m.group(2)), api_host(m.group(1), "--codabench URL"), secret
    raise UsageError(f"--codabench expects a competition number or URL, got {text!r}",
                     hint="the number is in the competition's URL: "
                          "https://www.codabench.org/competitions/<number>/")


def short_file_name(name: str, limit: int = FILE_NAME_MAX) -> str:
    """The name cut to ``limit`` characters, its extension kept (Data.file_name)."""
    if len(name) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext) + 2 > limit:
        return name[:limit]
    return stem[: limit - len(ext) - 1] + "." + ext


def _phase_label(p: dict) -> str:
    return f"{p.get('id')} {p.get('name')!r} ({p.get('status') or 'status unknown'})"


def phase_listing(competition: dict) -> str:
    phases = [p for p in competition.get("phases") or [] if isinstance(p, dict)]
    return "; ".join(_phase_label(p) for p in phases) or "none listed"


def _when(p: dict, key: str) -> str:
    value = str(p.get(key) or "")
    return value[:16].replace("T", " ") + " UTC" if value else "no date"


def choose_phase(competition: dict, phase_arg: str | None, force: bool = False) -> dict:
    """The phase to submit to: ``--phase`` (an exact name, an id of this competition, or a
    unique part of a name), else the one open now. A phase that is not open is refused
    unless ``force``: the server would take it (nothing on the API path checks the dates;
    only the web page refuses, submission_upload.tag ``check_can_upload``)."""
    phases = [p for p in competition.get("phases") or [] if isinstance(p, dict)]
    listing = phase_listing(competition)
    if phase_arg is None or not str(phase_arg).strip():
        current = [p for p in phases if p.get("status") == "Current"]
        if len(current) == 1:
            return current[0]
        if not current:
            raise SubkitError("no phase of this competition is open for submissions now",
                              hint=f"phases: {listing}; to submit to one anyway pass "
                                   "--phase ID --force")
        raise UsageError("several phases are open now", hint=f"pass --phase ID; phases: {listing}")
    arg = str(phase_arg).strip()
    found = [p for p in phases if str(p.get("name", "")).lower() == arg.lower()] \
        or [p for p in phases if str(p.get("id")) == arg] \
        or [p for p in phases if arg.lower() in str(p.get("name", "")).lower()]
    if len(found) != 1:
        what = "no phase" if not found else f"{len(found)} phases"
        raise UsageError(f"--phase {arg!r}: {what} of this competition match",
                         hint=f"give a phase id or name; phases: {listing}")
    phase = found[0]
    status = phase.get("status")
    if status != "Current" and not force:
        when = (f"it started {_when(phase, 'start')} and ended {_when(phase, 'end')}"
                if status == "Previous" else f"it starts {_when(phase, 'start')}")
        raise SubkitError(
            f"phase {phase.get('name')!r} (id {phase.get('id')}) is not open: "
            f"{status or 'its status is unknown'} ({when})",
            hint="the competition's page refuses it; Codabench's API does not check the dates "
                 "and would take it, but the organisers may not count it: pass --force to "
                 "submit anyway")
    return phase


def _is_azure(url: str) -> bool:
    parsed = urlparse(url)
    qs = parse_qs(parsed.query)
    return parsed.hostname is not None and (
        parsed.hostname.endswith(".blob.core.windows.net") or ("sv" in qs and "sig" in qs))


def _is_auth_refusal(status: int, text: str) -> bool:
    return status == 401 or (status == 403 and text.startswith(_AUTH_REFUSALS))


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
                                 allow=(401, 403), hint=hint, headers=self._headers(), **kw)
        if resp.status_code in (401, 403):
            err = self.http.error(resp, what, hint)
            if _is_auth_refusal(resp.status_code, err.server_text):
                raise AuthRefused(err.message, status=resp.status_code,
                                  server_text=err.server_text)
            raise err
        try:
            return resp.json()
        except ValueError:
            raise HttpError(f"{what}: the server did not answer JSON "
                            f"(HTTP {resp.status_code}): {resp.text[:200]!r}",
                            hint=f"is {self.server} a Codabench server? set it with --server "
                                 "or CODABENCH_URL") from None

    @staticmethod
    def login(server: str, username: str, password: str, http: Http) -> str:
        # api/urls.py: path('api-token-auth/', obtain_auth_token)
        http.add_secret(password)
        resp = http.request(
            "POST", f"{server.rstrip('/')}/api/api-token-auth/", what="Codabench login",
            idempotent=True, json={"username": username, "password": password},
            headers={"Accept": "application/json"},
            hint=lambda s, t: ("use your Codabench user name or e-mail address and password "
                               "(an account made with GitHub has none until you set one with "
                               "'Forgot password' on the website)" if s in (400, 401) else None))
        try:
            token = resp.json().get("token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise HttpError("Codabench login: the server answered without a token",
                            hint=f"is {server} a Codabench server?")
        http.add_secret(token)
        return token

    def competition(self, comp_id: int, secret_key: str | None = None) -> dict:
        # views/competitions.py CompetitionViewSet (AllowAny; get_queryset's secret_key)
        return self._call("GET", f"competitions/{comp_id}/", what=f"reading competition {comp_id}",
                          params={"secret_key": secret_key} if secret_key else None,
                          hint=lambda s, t: (
                              f"no competition {comp_id} visible to this account on "
                              f"{self.server}: check the number in its URL "
                              f"({self.server}/competitions/<number>/); a private one needs "
                              "its full URL with ?secret_key=" if s == 404 else None))

    def can_make_submission(self, phase_id: int) -> dict:
        # views/submissions.py can_make_submission -> {"can", "reason"}
        return self._call("GET", f"can_make_submission/{phase_id}/",
                          what=f"asking whether phase {phase_id} accepts a submission")

    def create_dataset(self, file_name: str, size: int, competition_id: int) -> dict:
        # views/datasets.py DataViewSet.create: file_size required (the quota check), the
        # serializer keeps competition and file_name; the same body as the web page's
        # submission_upload.tag upload + client.js create_dataset. A retried POST after a
        # dropped connection leaves at most an empty upload slot.
        data = self._call(
            "POST", "datasets/", what="creating the upload slot", idempotent=True,
            json={"type": "submission", "competition": competition_id,
                  "request_sassy_file_name": file_name, "file_name": file_name,
                  "file_size": size},
            hint=lambda s, t: ("free space on the website's Resources page (unused and failed "
                               "submissions), then submit again"
                               if "space" in t.lower() else None))
        if not isinstance(data, dict) or not data.get("key") or not data.get("sassy_url"):
            raise HttpError("creating the upload slot: the answer has no key/sassy_url",
                            hint="the server's API differs from the one subkit knows")
        return data

    def upload(self, sassy_url: str, path: Path) -> None:
        # the URL was signed for this content type (S3 and GCS refuse any other)
        headers = {"Content-Type": "application/zip"}
        if _is_azure(sassy_url):
            headers.update({"x-ms-blob-type": "BlockBlob", "x-ms-version": "2018-03-28"})
        self.http.upload("PUT", sassy_url, path, what="uploading the zip to storage",
                         headers=headers)

    def complete(self, key: str) -> dict:
        # views/datasets.py upload_completed
        return self._call("PUT", f"datasets/completed/{key}/", what="marking the upload complete")

    def create_submission(self, phase_id: int, key: str,
                          tasks: list[int] | None = None) -> dict:
        # serializers/submissions.py SubmissionCreationSerializer; never retried (a POST)
        body: dict[str, Any] = {"phase": phase_id, "data": key}
        if tasks:
            body["tasks"] = tasks
        return self._call(
            "POST", "submissions/", what="creating the submission", json=body,
            hint=lambda s, t: ("register for the competition on its page and wait for "
                               "approval, then submit again" if s == 403 else None))

    def submission(self, sub_id: int | str) -> dict:
        # views/submissions.py SubmissionViewSet.retrieve -> SubmissionSerializer
        return self._call("GET", f"submissions/{sub_id}/", what=f"reading submission {sub_id}")

    def submission_details(self, sub_id: int | str) -> dict | None:
        """What the submission's "Logs" tab reads, or None when the phase hides its output.

        The web page (static/riot/competitions/detail/submission_modal.tag
        ``update_submission_details``) calls ``GET /api/submissions/<id>/get_details/``
        (static/js/ours/client.js ``get_submission_details``; api/views/submissions.py
        ``SubmissionViewSet.get_details``), answered by serializers/submissions.py
        ``SubmissionFilesSerializer``: ``logs`` [{name, data_file}] (``get_logs``: one
        ``SubmissionDetailSerializer`` per competitions/models.py ``SubmissionDetails``, named
        prediction_/scoring_ + stdout, stderr, ingestion_stdout, ingestion_stderr; an empty
        list when the phase hides the output), ``data_file``, ``prediction_result``,
        ``scoring_result``, ``detailed_result`` (signed URLs), ``leaderboards``. Then the page
        GETs each log's ``data_file`` (``$.get(item.data_file)``), a signed storage URL. A
        phase with ``hide_output`` refuses non-admins with 403 PermissionDenied "Cannot access
        submission details while phase marked to hide output."."""
        try:
            data = self._call("GET", f"submissions/{sub_id}/get_details/",
                              what=f"reading the logs of submission {sub_id}")
        except HttpError as exc:
            if exc.status == 403 and "hide output" in (exc.server_text or ""):
                return None
            raise
        return data if isinstance(data, dict) else {}


# -- scores ------------------------------------------------------------------------------------
def scores_of(sub: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in sub.get("scores") or []:
        if not isinstance(s, dict):
            continue
        key = str(s.get("column_key") or s.get("index") or len(out))
        score: Any = s.get("score")  # the server's JSON: float(None) is a TypeError, skipped
        try:
            out[key] = float(score)
        except (TypeError, ValueError):
            continue
    return out


def leaderboard_of(competition: dict, sub: dict) -> dict | None:
    """The competition's leaderboard that holds the submission's score columns (a phase's
    leaderboard is not in the phase's serializer; the scores name its columns)."""
    boards = [b for b in competition.get("leaderboards") or [] if isinstance(b, dict)]
    keys = set(scores_of(sub))
    for board in boards:
        columns = {str(c.get("key")) for c in board.get("columns") or [] if isinstance(c, dict)}
        if keys and keys <= columns:
            return board
    return boards[0] if len(boards) == 1 else None


def primary_score(sub: dict, board: dict | None,
                  metric: str | None = None) -> tuple[str | None, float | None]:
    """The score that ranks the submission: the leaderboard column whose index is the
    board's ``primary_index`` (serializers/leaderboards.py ``LeaderboardEntriesSerializer.
    get_submissions`` orders by it). Without the board (a hidden one is not served to
    participants): the column named like the profile's metric, else the lowest index."""
    entries = [s for s in sub.get("scores") or [] if isinstance(s, dict)]
    if not entries:
        return None, None
    chosen = None
    if board is not None:
        primary = board.get("primary_index", 0)
        key = next((c.get("key") for c in board.get("columns") or []
                    if isinstance(c, dict) and c.get("index") == primary), None)
        chosen = next((s for s in entries if s.get("column_key") == key), None)
    if chosen is None and metric:
        chosen = next((s for s in entries
                       if str(s.get("column_key", "")).lower() == metric.lower()), None)
    if chosen is None:
        chosen = min(entries, key=lambda s: (s.get("index") is None, s.get("index") or 0))
    score: Any = chosen.get("score")  # the server's JSON: float(None) is a TypeError
    try:
        return str(chosen.get("column_key")), float(score)
    except (TypeError, ValueError):
        return str(chosen.get("column_key")), None


class WaitTimeout(SubkitError):
    """Still not final when the wait ran out; ``status`` is the last one seen."""

    def __init__(self, message: str, hint: str, status: str | None):
        super().__init__(message, hint)
        self.status = status


def wait_for(client: CodabenchClient, sub_id: int | str, *, poll: float = 5.0,
             timeout: float = 7200.0, score_grace: float = 120.0,
             sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic,
             on_status: Callable[[str], None] = lambda s: None) -> tuple[dict, bool]:
    """Poll until the submission is final and, when Finished, until its scores are in
    (the worker posts them after the status) or ``score_grace`` seconds have passed.
    Returns ``(submission, scores_pending)``."""
    start = clock()
    finished_at: float | None = None
    last = None
    interval = poll
    while True:
        sub = client.submission(sub_id)
        status = sub.get("status")
        if status != last:
            on_status(str(status))
            last = status
        if status in ("Failed", "Cancelled"):
            return sub, False
        if status == "Finished":
            if sub.get("scores"):
                return sub, False
            finished_at = clock() if finished_at is None else finished_at
            if clock() - finished_at >= score_grace:
                return sub, True
            sleep(min(poll, 5.0))
            continue
        finished_at = None
        if clock() - start > timeout:
            raise WaitTimeout(f"stopped waiting after {timeout:.0f} s: submission {sub_id} is "
                              f"still {status} on Codabench",
                              hint="it is recorded in the ledger; when it finishes, enter its "
                                   "score with `subkit history score ZIP --leaderboard SCORE "
                                   "--phase PHASE`", status=status)
        sleep(interval)
        interval = min(interval * 1.5, 60.0)


def failed_children(client: CodabenchClient, sub: dict) -> list[dict]:
    """The child submissions (one per task) that did not finish: a parent turns Finished once
    every child is done, failed ones included (competitions/models.py
    ``Submission.check_child_submission_statuses``)."""
    if not sub.get("has_children"):
        return []
    out = []
    for child in sub.get("children") or []:
        child_id: Any = child.get("id") if isinstance(child, dict) else child  # the server's
        detail = client.submission(child_id)
        if detail.get("status") in ("Failed", "Cancelled"):
            out.append(detail)
    return out


def server_from_env() -> str | None:
    value = os.environ.get("CODABENCH_URL")
    return api_host(value, "CODABENCH_URL") if value else None
