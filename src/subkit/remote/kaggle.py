"""Kaggle's public API, as the official client calls it.

Sources: Kaggle/kaggle-cli (ex kaggle-api) ``src/kaggle/api/kaggle_api_extended.py`` and
the ``kagglesdk`` package it uses (0.1.38: ``kaggle_http_client.py``, ``kaggle_env.py``,
``competitions/services/competition_api_service.py``, ``competitions/types/
competition_api_service.py``, ``security/services/oauth_service.py``):

- Every call is ``POST {host}/v1/{service}/{Method}`` with a JSON body whose keys are the
  request's fields in lowerCamelCase (``KaggleHttpClient._get_request_url``,
  ``_prepare_request``); the production host is ``https://api.kaggle.com``
  (``kaggle_env._env_to_endpoint[PROD]``). ``/api/i/...`` on www.kaggle.com is the web
  site's internal API, not this one.
- Auth (``KaggleHttpClient._try_fill_auth``): an access token as ``Authorization: Bearer``,
  else HTTP Basic with the user name and legacy key. ``KaggleApi.authenticate`` checks an
  access token with ``security.OAuthService/IntrospectToken`` {token} -> {active,
  username} and, when refused (400/403/404 or not active), ignores it and goes on with the
  legacy key (``_authenticate_with_access_token``, ``_introspect_token``).
- Bodies are proto3 JSON: a field at its default value is left out
  (``kaggle_object.py`` ``FieldMetadata.get_as_dict_item``/``set_from_dict``). So a pending
  ``ApiSubmission`` has no ``status`` (PENDING is the enum's 0), an empty score no
  ``publicScore``, a false flag no key at all.
- Errors: an HTTP error status, or a JSON body {"code": >= 400, "message"} even under 200
  (``KaggleHttpClient._prepare_response``).
- ``competitions.CompetitionApiService``: ``GetCompetition`` {competitionName} ->
  ApiCompetition (``isKernelsSubmissionsOnly``, ``submissionsDisabled``, ``userHasEntered``,
  ``maxDailySubmissions``...); ``GetSubmissionLimits`` {competitionName} -> {numToday,
  numTotal, numAllowedNow, limitedByTotal} (all zero when the user is on no team yet);
  ``StartSubmissionUpload`` {competitionName, fileName, contentLength,
  lastModifiedEpochSeconds} -> {token, createUrl}; ``PUT createUrl`` the bytes (a resumable
  Google Cloud Storage session, ``KaggleApi.upload_complete``: no Content-Type of its own);
  ``CreateSubmission`` {competitionName, blobFileTokens, submissionDescription} ->
  {message, ref}; ``CreateCodeSubmission`` {competitionName, kernelOwner, kernelSlug,
  kernelVersion, fileName, submissionDescription} -> {message, ref}
  (``KaggleApi.competition_submit_code``); ``GetSubmission`` {ref} -> ApiSubmission {ref,
  status PENDING/COMPLETE/ERROR, publicScore, privateScore, errorDescription, ...}.
- Right after CreateSubmission, GetSubmission may answer 404 for a while (the submission
  is not readable yet); the official client's ``competitions submit --wait`` counts that as
  pending (Kaggle/kaggle-cli pull request #1139).

Nothing here prints; every failure is a ``SubkitError`` carrying the server's words.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from subkit.credentials import KAGGLE_TOKEN_URL, KaggleAuth
from subkit.errors import SubkitError, UsageError
from subkit.remote.http import Http, HttpError

DEFAULT_SERVER = "https://api.kaggle.com"
COMPETITIONS = "competitions.CompetitionApiService"
OAUTH = "security.OAuthService"
WEB = "https://www.kaggle.com"
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def parse_competition(arg: str) -> str:
    """A competition slug from the slug or the competition's URL."""
    text = (arg or "").strip()
    m = re.match(r"^https?://(?:www\.)?kaggle\.com/(?:competitions|c)/([^/?#]+)", text)
    slug = m.group(1) if m else text
    if not _SLUG.match(slug):
        raise UsageError(f"--kaggle expects a competition slug, got {text!r}",
                         hint="the slug is the last part of the competition's URL: "
                              f"{WEB}/competitions/<slug>")
    return slug


def parse_kernel(arg: str) -> tuple[str, str]:
    owner, sep, slug = (arg or "").strip().strip("/").partition("/")
    if not sep or not owner or not slug or "/" in slug:
        raise UsageError(f"--kernel expects OWNER/NOTEBOOK, got {arg!r}",
                         hint=f"as in the notebook's URL: {WEB}/code/<owner>/<notebook>")
    return owner, slug


def hint_for(competition: str, auth: KaggleAuth | None = None
             ) -> Callable[[int | None, str], str | None]:
    """Turn Kaggle's terse 400/401/403/404 answers into what to do."""
    rules_url = f"{WEB}/competitions/{competition}/rules"

    def hint(status: int | None, text: str) -> str | None:
        low = text.lower()
        if "rule" in low or ("accept" in low and status in (400, 403)):
            return (f"accept the competition's rules first: open {rules_url} and join the "
                    "competition (the API cannot accept rules for you)")
        if status == 401:
            where = f" ({auth.source})" if auth else ""
            return (f"Kaggle refused the credentials{where}: an old token or key may have "
                    f"been revoked or expired; create a new one at {KAGGLE_TOKEN_URL}")
        if "competitions.participate" in low or (status == 403 and "permission" in low):
            return (f"Kaggle denies submitting to {competition!r}: most often a typo in the "
                    f"slug (copy it from the competition's URL, {WEB}/competitions/<slug>), "
                    f"else you have not joined the competition ({rules_url})")
        if status == 404 or "notfound" in low.replace(" ", ""):
            return (f"no competition {competition!r} on Kaggle: copy the slug from the "
                    f"competition's URL ({WEB}/competitions/<slug>)")
        if "limit" in low or "daily" in low:
            return "the daily submission limit is reached; try again after it resets (UTC)"
        if status in (400, 403):
            return (f"the usual causes: the rules of {competition!r} not accepted "
                    f"({rules_url}), a typo in the slug, or a competition that no longer "
                    "accepts submissions")
        return None

    return hint


class _Bearer(requests.auth.AuthBase):
    """``Authorization: Bearer`` as kagglesdk's ``KaggleHttpClient.BearerAuth`` sets it (an
    auth object, so that no ~/.netrc entry replaces it)."""

    def __init__(self, token: str):
        self.token = token

    def __call__(self, r):
        r.headers["Authorization"] = f"Bearer {self.token}"
        return r


class KaggleClient:
    def __init__(self, auth: KaggleAuth, http: Http, server: str | None = None):
        self.server = (server or DEFAULT_SERVER).rstrip("/")
        self.auth = auth
        self.http = http
        http.add_secret(auth.secret)

    def _auth(self) -> Any:
        if self.auth.kind == "bearer":
            return _Bearer(self.auth.secret)
        return (self.auth.username or "", self.auth.secret)

    def call(self, service: str, method: str, body: dict, *, what: str,
             hint: Callable[[int | None, str], str | None] | None = None,
             idempotent: bool = False, allow: tuple[int, ...] = ()) -> dict | None:
        """The JSON object answered, or None for a status in ``allow``."""
        resp = self.http.request("POST", f"{self.server}/v1/{service}/{method}", what=what,
                                 json=body, idempotent=idempotent, hint=hint, allow=allow,
                                 auth=self._auth(), headers={"Accept": "application/json"})
        if resp.status_code in allow:
            return None
        try:
            data = resp.json() if resp.content else {}
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise HttpError(f"{what}: Kaggle did not answer a JSON object "
                            f"(HTTP {resp.status_code})",
                            hint=f"is {self.server} Kaggle's API host? (--server)")
        code = data.get("code")
        if isinstance(code, int) and code >= 400:  # an error inside a 200 (kagglesdk checks)
            text = str(data.get("message") or "")
            if code in allow:
                return None
            raise HttpError(f"{what} failed: {code}: {text}",
                            hint=(hint(code, text) if hint else None), status=code,
                            server_text=text)
        return data

    def introspect(self) -> str | None:
        """The user name an access token belongs to, or None if Kaggle refuses it
        (kaggle_api_extended.py ``_introspect_token``: 400/403/404 or not active)."""
        data = self.call(OAUTH, "IntrospectToken", {"token": self.auth.secret},
                         what="checking the Kaggle access token", idempotent=True,
                         allow=(400, 401, 403, 404))
        if not data or not data.get("active") or not data.get("username"):
            return None
        return str(data["username"])

    def competition(self, competition: str) -> dict:
        # competition_api_service.py get_competition -> ApiCompetition
        return self.call(COMPETITIONS, "GetCompetition", {"competitionName": competition},
                         what=f"reading competition {competition!r}", idempotent=True,
                         hint=hint_for(competition, self.auth)) or {}

    def submission_limits(self, competition: str) -> dict | None:
        """The user's remaining submissions (competition_api_service.py
        get_submission_limits -> ApiSubmissionLimits), or None when Kaggle does not say."""
        try:
            return self.call(COMPETITIONS, "GetSubmissionLimits",
                             {"competitionName": competition}, idempotent=True,
                             what="reading the submission limits")
        except HttpError:
            return None

    def start_upload(self, competition: str, path: Path) -> dict:
        # kaggle_api_extended.py competition_submit: ApiStartSubmissionUploadRequest
        st = path.stat()
        data = self.call(COMPETITIONS, "StartSubmissionUpload", {
            "competitionName": competition, "fileName": path.name,
            "contentLength": st.st_size, "lastModifiedEpochSeconds": int(st.st_mtime),
        }, what="starting the upload", hint=hint_for(competition, self.auth), idempotent=True)
        if not data or not data.get("createUrl") or not data.get("token"):
            raise HttpError("starting the upload: Kaggle's answer has no createUrl/token",
                            hint="the API differs from the one subkit knows")
        return data

    def upload(self, url: str, path: Path) -> None:
        # kaggle_api_extended.py upload_complete: a plain PUT of the bytes, no Content-Type
        self.http.upload("PUT", url, path, what="uploading the file to Kaggle's storage")

    def create_submission(self, competition: str, token: str, message: str) -> dict:
        # kaggle_api_extended.py competition_submit: ApiCreateSubmissionRequest
        return self.call(COMPETITIONS, "CreateSubmission", {
            "competitionName": competition, "blobFileTokens": token,
            "submissionDescription": message,
        }, what="creating the submission", hint=hint_for(competition, self.auth)) or {}

    def create_code_submission(self, competition: str, owner: str, kernel: str,
                               version: int, file_name: str | None, message: str) -> dict:
        # kaggle_api_extended.py competition_submit_code: ApiCreateCodeSubmissionRequest
        body: dict[str, Any] = {"competitionName": competition, "kernelOwner": owner,
                                "kernelSlug": kernel, "kernelVersion": int(version),
                                "submissionDescription": message}
        if file_name:
            body["fileName"] = file_name
        return self.call(COMPETITIONS, "CreateCodeSubmission", body,
                         what=f"submitting notebook {owner}/{kernel} version {version}",
                         hint=hint_for(competition, self.auth)) or {}

    def get_submission(self, ref: int) -> dict | None:
        """The submission (competition_api_service.py get_submission -> ApiSubmission), or
        None while Kaggle answers 404 for it."""
        return self.call(COMPETITIONS, "GetSubmission", {"ref": ref},
                         what=f"reading submission {ref}", idempotent=True, allow=(404,))


def state(sub: dict) -> str:
    """pending / complete / error from an ApiSubmission; a missing status is PENDING, the
    enum's default (competitions/types/submission_status.py SubmissionStatus; kagglesdk's
    EnumSerializer._from_str also reads SUBMISSION_STATUS_COMPLETE-style names)."""
    s = str(sub.get("status") or "PENDING").upper()
    if s.endswith("COMPLETE"):
        return "complete"
    if s.endswith("ERROR"):
        return "error"
    return "pending"


def score(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


class WaitTimeout(SubkitError):
    pass


def wait_for(client: KaggleClient, ref: int, *, poll: float = 10.0, timeout: float = 3600.0,
             not_found_grace: float = 120.0, sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic,
             on_status: Callable[[str], None] = lambda s: None) -> tuple[dict, str]:
    """Poll GetSubmission until the submission is complete or in error; a 404 counts as
    pending for ``not_found_grace`` seconds after the start."""
    begin = clock()
    interval = poll
    last = None
    while True:
        sub = client.get_submission(ref)
        if sub is None:
            if clock() - begin > not_found_grace:
                raise SubkitError(f"Kaggle still does not know submission {ref} after "
                                  f"{not_found_grace:.0f} s (GetSubmission: 404)",
                                  hint="see the competition's My Submissions page; enter the "
                                       "score later with `subkit history score`")
            current = "pending (not visible yet)"
        else:
            current = state(sub)
        if current != last:
            on_status(current)
            last = current
        if sub is not None and current != "pending":
            return sub, current
        if clock() - begin > timeout:
            raise WaitTimeout(f"stopped waiting after {timeout:.0f} s: submission {ref} "
                              "is still pending on Kaggle",
                              hint="enter its score later with `subkit history score FILE "
                                   "--leaderboard SCORE --phase public`")
        sleep(interval)
        interval = min(interval * 1.5, 60.0)
