"""Submit a file (CSV) to a Kaggle competition with ``requests``.

API shapes relied on (sources: github.com/Kaggle/kaggle-api ``kaggle/api/
kaggle_api_extended.py`` competition_submit, and its ``kagglesdk`` package:
``competitions/services/competition_api_service.py``, ``competitions/types/
competition_api_service.py``, ``kaggle_http_client.py``):

- Every call is an RPC: ``POST {base}/competitions.CompetitionApiService/<Method>`` with a
  JSON body whose keys are the request's fields in lowerCamelCase, HTTP Basic auth with
  the user's name and API key (``~/.kaggle/kaggle.json`` or KAGGLE_USERNAME/KAGGLE_KEY).
  ``base`` is ``https://www.kaggle.com/api/i`` (kagglesdk's ``_get_request_url``; newer
  kagglesdk releases also serve ``https://api.kaggle.com/v1``: set SUBKIT_KAGGLE_URL).
- ``StartSubmissionUpload`` {competitionName, fileName, contentLength,
  lastModifiedEpochSeconds} -> {"token": str, "createUrl": str}.
- ``PUT createUrl`` the file's bytes with a Content-Length (a resumable Google Cloud
  Storage upload; a chunked body is not accepted) -> 200/201.
- ``CreateSubmission`` {competitionName, blobFileTokens: token, submissionDescription}
  -> {"message": str, "ref": int} (ApiCreateSubmissionResponse).
- ``GetSubmission`` {ref} -> ApiSubmission {"ref", "status", "publicScore",
  "privateScore", "errorDescription", ...}; status is PENDING / COMPLETE / ERROR (matched
  case-insensitively: its JSON spelling is not documented).
- Errors are JSON {"code": 4xx, "message": "..."} (kagglesdk ``_prepare_response``).
  The usual ones, from the kaggle-api issue tracker: rules not accepted ("You must accept
  this competition's rules before you'll be able to ..." / "You cannot submit until you
  accept the competition rules", 400/403, issues #177 and openai/mle-bench#29), a slug
  typo ("403 - Forbidden - Permission 'competitions.participate' was denied", kaggle-cli
  #530 and #488, or 404 {"code":404,"message":"NotFound"}, kaggle-cli #21).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from subkit import credentials
from subkit.errors import InputError, SubkitError, UsageError
from subkit.remote.http import Http, HttpError, format_size

DEFAULT_URL = "https://www.kaggle.com/api/i"
SERVICE = "competitions.CompetitionApiService"


def hint_for(competition: str) -> Callable[[int | None, str], str | None]:
    """Turn Kaggle's terse 400/401/403/404 answers into what to do."""
    rules_url = f"https://www.kaggle.com/competitions/{competition}/rules"

    def hint(status: int | None, text: str) -> str | None:
        low = text.lower()
        if "rule" in low or ("accept" in low and status in (400, 403)):
            return (f"accept the competition's rules first: open {rules_url} and join the "
                    "competition (the API cannot accept rules for you)")
        if status == 401:
            return ("Kaggle refused the credentials: check KAGGLE_USERNAME/KAGGLE_KEY or "
                    "~/.kaggle/kaggle.json; an old key may have been revoked: create a new "
                    "token at https://www.kaggle.com/settings")
        if "competitions.participate" in low or (status == 403 and "permission" in low):
            return (f"Kaggle denies submitting to {competition!r}: most often a typo in the "
                    "slug (copy it from the competition's URL, "
                    "https://www.kaggle.com/competitions/<slug>), else you have not joined "
                    f"the competition ({rules_url})")
        if status == 404 or "notfound" in low.replace(" ", ""):
            return (f"no competition {competition!r} on Kaggle: copy the slug from the "
                    "competition's URL (https://www.kaggle.com/competitions/<slug>)")
        if "limit" in low or "daily" in low:
            return "the daily submission limit is reached; try again after it resets (UTC)"
        if status in (400, 403):
            return (f"the usual causes: the rules of {competition!r} not accepted "
                    f"({rules_url}), a typo in the slug, or a competition that no longer "
                    "accepts submissions")
        return None

    return hint


class KaggleClient:
    def __init__(self, username: str, key: str, http: Http, base_url: str | None = None):
        self.base = (base_url or os.environ.get("SUBKIT_KAGGLE_URL") or DEFAULT_URL).rstrip("/")
        self.auth = (username, key)
        self.http = http
        http.add_secret(key)

    def call(self, method: str, body: dict, *, what: str,
             hint: Callable[[int | None, str], str | None] | None = None,
             idempotent: bool = False) -> dict:
        resp = self.http.request("POST", f"{self.base}/{SERVICE}/{method}", what=what,
                                 json=body, auth=self.auth, idempotent=idempotent,
                                 headers={"Accept": "application/json"}, hint=hint)
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise HttpError(f"{what}: Kaggle did not answer a JSON object "
                            f"(HTTP {resp.status_code})",
                            hint="set SUBKIT_KAGGLE_URL if Kaggle moved its API")
        code = data.get("code")
        if isinstance(code, int) and code >= 400:  # an error inside a 200 (kagglesdk checks)
            text = str(data.get("message") or "")
            raise HttpError(f"{what} failed: {code}: {text}",
                            hint=(hint(code, text) if hint else None), status=code,
                            server_text=text)
        return data

    def start_upload(self, competition: str, path: Path) -> dict:
        st = path.stat()
        data = self.call("StartSubmissionUpload", {
            "competitionName": competition, "fileName": path.name,
            "contentLength": st.st_size, "lastModifiedEpochSeconds": int(st.st_mtime),
        }, what="starting the upload", hint=hint_for(competition), idempotent=True)
        if not data.get("createUrl") or not data.get("token"):
            raise HttpError("starting the upload: Kaggle's answer has no createUrl/token",
                            hint="the API differs from the one subkit knows")
        return data

    def upload(self, url: str, path: Path) -> None:
        self.http.upload("PUT", url, path, what="uploading the file to Kaggle's storage",
                         headers={"Content-Type": "application/octet-stream"})

    def create_submission(self, competition: str, token: str, message: str) -> dict:
        return self.call("CreateSubmission", {
            "competitionName": competition, "blobFileTokens": token,
            "submissionDescription": message,
        }, what="creating the submission", hint=hint_for(competition))

    def get_submission(self, ref: int) -> dict:
        return self.call("GetSubmission", {"ref": ref}, what=f"reading submission {ref}",
                         idempotent=True)


def _state(status: Any) -> str:
    s = str(status or "").lower()
    if "complete" in s:
        return "complete"
    if "error" in s or "fail" in s:
        return "error"
    return "pending"


def _float(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _wait(client: KaggleClient, ref: int, *, poll: float, timeout: float,
          sleep: Callable[[float], None], clock: Callable[[], float],
          echo: Callable[[str], None]) -> tuple[dict, str]:
    begin = clock()
    interval = poll
    last = None
    while True:
        sub = client.get_submission(ref)
        state = _state(sub.get("status"))
        if state != last:
            echo(f"submission {ref}: {sub.get('status')}")
            last = state
        if state != "pending":
            return sub, state
        if clock() - begin > timeout:
            raise SubkitError(f"stopped waiting after {timeout:.0f} s: submission {ref} "
                              "is still pending on Kaggle",
                              hint="enter its score later with `subkit history score FILE "
                                   "--leaderboard SCORE --phase public`")
        sleep(interval)
        interval = min(interval * 1.5, 60.0)


def submit(path: Path, competition: str, message: str, *, ledger: Any, wait: bool = False,
           http: Http | None = None, base_url: str | None = None,
           echo: Callable[[str], None] = lambda m: None, poll: float = 10.0,
           wait_timeout: float = 3600.0, sleep: Callable[[float], None] | None = None,
           clock: Callable[[], float] = time.monotonic) -> dict:
    from subkit.ledger import sha256_file

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}",
                         hint="write predictions first, e.g. `subkit predict --out sub.csv`")
    if not competition or "/" in competition or " " in competition:
        raise UsageError(f"--kaggle expects a competition slug, got {competition!r}",
                         hint="the slug is the last part of the competition's URL: "
                              "https://www.kaggle.com/competitions/<slug>")
    if not message:
        raise UsageError("a Kaggle submission needs a message", hint='pass -m "what changed"')
    username, key, _where = credentials.kaggle_credentials()
    http = http or Http(echo=echo, sleep=sleep)
    sleep = sleep or http.sleep
    client = KaggleClient(username, key, http, base_url)
    size = path.stat().st_size
    sha = sha256_file(path)

    echo(f"uploading {path.name} ({format_size(size)}) to Kaggle competition {competition!r}")
    start = client.start_upload(competition, path)
    http.add_secret(str(start["createUrl"]).partition("?")[2])
    client.upload(start["createUrl"], path)
    created = client.create_submission(competition, start["token"], message)
    ref = created.get("ref")
    echo(f"submitted: {created.get('message') or 'ok'} (ref {ref})")
    record = ledger.append({
        "kind": "submit", "zip": str(path), "zip_sha256": sha, "platform": "kaggle",
        "competition": competition, "phase": None, "submission_id": ref,
        "status": "submitted", "message": message, "size": size,
    })
    result: dict[str, Any] = {
        "platform": "kaggle", "competition": competition, "submission_id": ref,
        "status": "submitted", "server_message": created.get("message"), "file": str(path),
        "zip_sha256": sha, "size": size, "ledger_ids": [record["id"]],
        "url": f"https://www.kaggle.com/competitions/{competition}/submissions",
    }
    if not wait:
        return result
    if not ref:
        raise SubkitError("Kaggle gave no submission ref to wait for",
                          hint=f"see the score on {result['url']}")
    try:
        sub, state = _wait(client, int(ref), poll=poll, timeout=wait_timeout, sleep=sleep,
                           clock=clock, echo=echo)
    except KeyboardInterrupt:
        echo(f"\nstopped waiting: submission {ref} goes on on Kaggle and is in the "
             "ledger; enter its score later with `subkit history score`")
        raise
    public = _float(sub.get("publicScore"))
    lb = ledger.append({
        "kind": "leaderboard", "zip": str(path), "zip_sha256": sha,
        "leaderboard_score": public if state == "complete" else None, "phase": "public",
        "source": "kaggle", "submission_id": ref, "status": state,
        "private_score": _float(sub.get("privateScore")),
        "error": sub.get("errorDescription") or None,
    })
    result.update({"status": state, "leaderboard_score": lb["leaderboard_score"],
                   "private_score": lb.get("private_score"),
                   "error": sub.get("errorDescription") or None})
    result["ledger_ids"].append(lb["id"])
    return result
