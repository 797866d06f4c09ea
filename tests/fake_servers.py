"""Loopback replays of Codabench, Kaggle and the storage services they upload to.

Each server is a ``ThreadingHTTPServer`` bound to 127.0.0.1 on an ephemeral port; every
read is bounded (bodies over ``MAX_BODY`` are refused) and nothing loops without end. The
replays follow the services' own code, not subkit's expectations: each behaviour names the
file and function it reproduces.

- Codabench: codalab/codabench (``develop``, 2026-03; Django 5.2, DRF 3.16.1).
- Kaggle: Kaggle/kaggle-cli ``src/kaggle/api/kaggle_api_extended.py`` and kagglesdk 0.1.38.
  Kaggle's server is not public: where a body or text is not in the client's source, the
  replay says so ("not in the sources").

Tests switch behaviours through the ``state`` objects (see each ``...State`` class).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import threading
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

MAX_BODY = 64 * 1024 * 1024
# django/views/defaults.py server_error without a 500.html template (Codabench has none in
# src/templates): ERROR_PAGE_TEMPLATE % {"title": "Server Error (500)", "details": ""}
DJANGO_500 = (b'\n<!doctype html>\n<html lang="en">\n<head>\n  <title>Server Error (500)</title>\n'
              b'</head>\n<body>\n  <h1>Server Error (500)</h1><p></p>\n</body>\n</html>\n')


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "replay/1.0"

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    @property
    def state(self) -> Any:
        return self.server.state  # type: ignore[attr-defined]

    def _send(self, code: int, obj: Any = None, headers: dict[str, str] | None = None,
              raw: bytes | None = None, content_type: str = "application/json") -> None:
        body = raw if raw is not None else (b"" if obj is None else json.dumps(obj).encode())
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks, total = [], 0
            while total <= MAX_BODY:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                total += size
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            raise ValueError("body too large for a replay")
        return self.rfile.read(n) if n else b""

    def _data(self, body: bytes) -> dict:
        """A JSON or form body, as DRF's default parsers read it."""
        if not body:
            return {}
        if "json" in self.headers.get("Content-Type", ""):
            data = json.loads(body)
            return data if isinstance(data, dict) else {}
        return {k: v[0] for k, v in parse_qs(body.decode()).items()}

    def _log(self, body: bytes) -> None:
        self.state.log.append({"method": self.command, "path": self.path,
                               "headers": dict(self.headers), "size": len(body),
                               "body": body[:4096]})

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        raise NotImplementedError


# -- storage: S3 presigned URLs, Azure SAS URLs, GCS resumable sessions ------------------------
@dataclass
class StorageState:
    blobs: dict[str, bytes] = field(default_factory=dict)  # what clients uploaded
    files: dict[str, bytes] = field(default_factory=dict)  # what the server wrote (logs)
    # path -> the Content-Type its S3 URL was signed with (utils/data.py make_url_sassy)
    signed_types: dict[str, str] = field(default_factory=dict)
    log: list[dict] = field(default_factory=list)
    drop_first_upload: bool = False
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _s3_error(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>4442587FB7D0A2F9</RequestId></Error>"
            ).encode()


class _StorageHandler(_Handler):
    def _dispatch(self, method: str) -> None:
        st: StorageState = self.state
        if method == "GET":
            # a presigned get_object URL (utils/data.py make_url_sassy, permission "r"): the
            # object, or S3's NoSuchKey for one that is gone
            self._log(b"")
            path = urlparse(self.path).path
            blob = st.blobs.get(path, st.files.get(path))
            if blob is None:
                return self._send(404, raw=_s3_error("NoSuchKey", "The specified key does not "
                                                     "exist."), content_type="application/xml")
            return self._send(200, raw=blob, content_type="text/plain")
        if method != "PUT":
            return self._send(405, raw=b"", content_type="text/plain")
        with st.lock:
            st.attempts += 1
            attempt = st.attempts
        if self.headers.get("Content-Length") is None:
            # S3 refuses a PUT without a length (MissingContentLength, 411); so do GCS
            # resumable sessions and Azure
            self._body()
            self._log(b"")
            return self._send(411, raw=_s3_error("MissingContentLength", "You must provide "
                                                 "the Content-Length HTTP header."),
                              content_type="application/xml")
        length = int(self.headers["Content-Length"])
        if st.drop_first_upload and attempt == 1:
            self.rfile.read(length // 2)
            self._log(b"")
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        body = self.rfile.read(length)
        self._log(body)
        parsed = urlparse(self.path)
        qs = parse_qs(parsed.query)
        if "X-Amz-Signature" in qs:
            # a SigV4 presigned put_object URL: the headers listed in X-Amz-SignedHeaders must
            # be sent with the values signed (boto3 generate_presigned_url with ContentType)
            signed = st.signed_types.get(parsed.path)
            if "content-type" in qs.get("X-Amz-SignedHeaders", [""])[0].split(";") and \
                    self.headers.get("Content-Type") != signed:
                return self._send(403, raw=_s3_error(
                    "SignatureDoesNotMatch", "The request signature we calculated does not "
                    "match the signature you provided. Check your key and signing method."),
                    content_type="application/xml")
            st.blobs[parsed.path] = body
            return self._send(200, raw=b"", headers={"ETag": '"d41d8cd98f00b204"'},
                              content_type="text/plain")
        if "sig" in qs:  # Azure SAS URL: the blob type header is mandatory (Put Blob)
            if self.headers.get("x-ms-blob-type") != "BlockBlob":
                return self._send(400, raw=(
                    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>MissingRequiredHeader'
                    b"</Code><Message>An HTTP header that's mandatory for this request is not "
                    b"specified.</Message></Error>"), content_type="application/xml")
            st.blobs[parsed.path] = body
            return self._send(201, raw=b"", content_type="text/plain")
        # a GCS resumable session URI (the createUrl of Kaggle's StartSubmissionUpload)
        st.blobs[parsed.path] = body
        return self._send(200, {"kind": "storage#object", "size": str(len(body))})


# -- Codabench ---------------------------------------------------------------------------------
def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _phase(pid: int, index: int, name: str, start_days: float, end_days: float | None,
           tasks: list[dict], per_day: int = 5, per_person: int = 100) -> dict:
    now = datetime.now(timezone.utc)
    return {"id": pid, "index": index, "name": name, "description": "",
            "start": now + timedelta(days=start_days),
            "end": None if end_days is None else now + timedelta(days=end_days),
            "execution_time_limit": 600, "tasks": tasks, "has_max_submissions": True,
            "max_submissions_per_day": per_day, "max_submissions_per_person": per_person,
            "auto_migrate_to_this_phase": False, "hide_output": False,
            "hide_prediction_output": False, "hide_score_output": False,
            "public_data": None, "starting_kit": None, "is_final_phase": index == 1}


def _default_phases() -> list[dict]:
    task = {"id": 7, "key": "5d3c7f5e-task-7", "name": "blood cells", "description": ""}
    final = {"id": 8, "key": "5d3c7f5e-task-8", "name": "blood cells final", "description": ""}
    return [_phase(101, 0, "Development", -30, None, [task]),
            _phase(102, 1, "Final", 10, 17, [final], per_day=2, per_person=3)]


def _default_leaderboard() -> dict:
    # index 0 is not the primary column: primary_index decides (leaderboards/models.py)
    return {"id": 3, "primary_index": 1, "title": "Results", "key": "main", "hidden": False,
            "submission_rule": "Add", "columns": [
                {"id": 31, "computation": None, "computation_indexes": None,
                 "title": "Duration", "key": "duration", "sorting": "asc", "index": 0,
                 "hidden": False, "precision": 2},
                {"id": 32, "computation": None, "computation_indexes": None,
                 "title": "Accuracy", "key": "accuracy", "sorting": "desc", "index": 1,
                 "hidden": False, "precision": 4}]}


@dataclass
class CodabenchState:
    """Switches: ``participants`` (user -> approved/pending/denied), ``published``,
    ``secret_key``, ``phases`` (dates decide their status), ``leaderboard``
    (``submission_rule``, ``primary_index``), ``quota_bytes``, ``used_bytes``,
    ``auto_run``, ``storage_kind`` ("s3" or "azure"), ``race_limit`` (another submission
    takes the day's last slot between can_make_submission and POST /submissions/),
    ``start_fails`` (the submission is saved, then starting it raises: a bare 500 too),
    ``worker`` ("finished", "program_failed", "no_scores_file", "scores_late",
    "scores_never", "child_failed"), ``scores``; the logs: ``hide_output`` (the phase hides
    the submissions' output), ``log_texts`` (name -> text, over the worker's own),
    ``logs_lost`` (names listed whose file is gone from storage)."""

    storage: StorageState
    storage_url: str = ""
    competition_id: int = 1234
    title: str = "AN2DL blood cells"
    published: bool = True
    secret_key: str = "f0e1d2c3-secret"
    users: dict[str, dict] = field(default_factory=lambda: {
        "alice": {"password": "correct horse", "email": "alice@example.org",
                  "token": "0123456789abcdef0123456789abcdef01234567"}})
    participants: dict[str, str] = field(default_factory=lambda: {"alice": "approved"})
    phases: list[dict] = field(default_factory=_default_phases)
    leaderboard: dict = field(default_factory=_default_leaderboard)
    quota_bytes: int = 15 * 10**9  # DEFAULT_USER_QUOTA = 15 GB (settings/base.py)
    used_bytes: int = 0
    auto_run: bool = True
    storage_kind: str = "s3"
    race_limit: bool = False
    start_fails: bool = False  # Submission.start raises after the row is saved
    worker: str = "finished"
    scores: dict[str, str] = field(default_factory=lambda: {"accuracy": "0.7600000000",
                                                            "duration": "12.5000000000"})
    hide_output: bool = False
    log_texts: dict[str, str] = field(default_factory=dict)
    logs_lost: set[str] = field(default_factory=set)
    datasets: dict[str, dict] = field(default_factory=dict)
    submissions: dict[int, dict] = field(default_factory=dict)
    log: list[dict] = field(default_factory=list)
    next_id: int = 5000

    @property
    def token(self) -> str:
        return self.users["alice"]["token"]


class _AuthFailed(Exception):
    pass


class _CodabenchHandler(_Handler):
    # -- DRF's authentication, on every request (rest_framework/views.py APIView.initial) --
    def _user(self) -> str | None:
        """The user of a valid token, None without credentials; ``_AuthFailed`` for a refused
        token (TokenAuthentication.authenticate_credentials: "Invalid token.")."""
        header = self.headers.get("Authorization")
        if not header:
            return None
        parts = header.split()
        if parts[0].lower() != "token":
            return None  # another scheme: TokenAuthentication passes it on
        if len(parts) == 1:
            raise _AuthFailed("Invalid token header. No credentials provided.")
        for name, user in self.state.users.items():
            if parts[1] == user["token"]:
                return name
        raise _AuthFailed("Invalid token.")

    def _forbidden(self, detail: str) -> None:
        # 403, not 401, and no WWW-Authenticate: SessionAuthentication is the first class
        # in settings/base.py DEFAULT_AUTHENTICATION_CLASSES and has no authenticate_header
        self._send(403, {"detail": detail})

    def _not_found(self, model: str) -> None:
        # django get_object_or_404 -> Http404("No X matches the given query.") -> DRF NotFound
        self._send(404, {"detail": f"No {model} matches the given query."})

    def _dispatch(self, method: str) -> None:
        body = self._body()
        self._log(body)
        try:
            user = self._user()
        except _AuthFailed as exc:
            return self._forbidden(str(exc))
        path = urlparse(self.path).path
        for verb, pattern, handler in self.ROUTES:
            m = re.match(pattern, path)
            if m and verb == method:
                return handler(self, user, self._data(body), *m.groups())
        return self._send(404, raw=b"<h1>Not Found</h1>", content_type="text/html")

    # -- views ------------------------------------------------------------------------------
    def token_auth(self, user, data) -> None:
        """rest_framework.authtoken.views.obtain_auth_token; username or e-mail
        (profiles/backends.py EmailAuthenticationBackend)."""
        missing = {k: ["This field is required."] for k in ("username", "password")
                   if not data.get(k)}
        if missing:
            return self._send(400, missing)
        for name, u in self.state.users.items():
            if data["username"] in (name, u["email"]) and data["password"] == u["password"]:
                return self._send(200, {"token": u["token"]})
        return self._send(400, {"non_field_errors": ["Unable to log in with provided "
                                                     "credentials."]})

    def _visible(self, user: str | None) -> bool:
        """views/competitions.py CompetitionViewSet.get_queryset: published, or an approved
        participant, or the secret key (anonymous: published or secret key only)."""
        st: CodabenchState = self.state
        key = (parse_qs(urlparse(self.path).query).get("secret_key") or [None])[0]
        approved = user is not None and st.participants.get(user) == "approved"
        return st.published or approved or key == st.secret_key

    def _phase_json(self, p: dict, user: str | None) -> dict:
        """serializers/competitions.py PhaseDetailSerializer (get_status from the dates)."""
        now = datetime.now(timezone.utc)
        if p["start"] > now:
            status = "Next"
        elif p["end"] is not None and p["end"] < now:
            status = "Previous"
        else:
            status = "Current"
        mine = [s for s in self.state.submissions.values()
                if s["owner"] == user and s["phase"] == p["id"] and s["parent"] is None
                and s["status"] != "Failed"]
        today = [s for s in mine if s["created"].date() == now.date()]
        out = {k: v for k, v in p.items() if k not in ("start", "end")}
        out.update(start=_iso(p["start"]), end=_iso(p["end"]) if p["end"] else None,
                   status=status, used_submissions_per_day=len(today),
                   used_submissions_per_person=len(mine))
        return out

    def competition(self, user, data, comp_id) -> None:
        st: CodabenchState = self.state
        if int(comp_id) != st.competition_id or not self._visible(user):
            return self._not_found("Competition")
        out = {"id": st.competition_id, "title": st.title, "published": st.published,
               "created_by": "organiser", "owner_display_name": "organiser",
               "phases": [self._phase_json(p, user) for p in st.phases],
               "leaderboards": [] if st.leaderboard.get("hidden") else [st.leaderboard],
               "auto_run_submissions": st.auto_run, "enable_detailed_results": False,
               "registration_auto_approve": False, "allow_robot_submissions": False,
               "competition_type": "competition", "queue": None, "docker_image":
               "codalab/codalab-legacy:py37", "description": "", "terms": ""}
        if user is not None:  # annotated only for a signed-in user; absent otherwise
            out["participant_status"] = st.participants.get(user)
        return self._send(200, out)

    def _limits(self, user: str, phase: dict) -> str | None:
        """competitions/models.py Phase.can_user_make_submissions."""
        mine = [s for s in self.state.submissions.values()
                if s["owner"] == user and s["phase"] == phase["id"] and s["parent"] is None
                and s["status"] != "Failed"]
        today = [s for s in mine if s["created"].date() == datetime.now(timezone.utc).date()]
        if phase["max_submissions_per_day"] and len(today) >= phase["max_submissions_per_day"]:
            return "Reached maximum allowed submissions for today for this phase"
        if phase["max_submissions_per_person"] and \
                len(mine) >= phase["max_submissions_per_person"]:
            return "Reached maximum allowed submissions for this phase"
        return None

    def can_make_submission(self, user, data, phase_id) -> None:
        """views/submissions.py can_make_submission (IsAuthenticated by default)."""
        if user is None:
            return self._forbidden("Authentication credentials were not provided.")
        phase = next((p for p in self.state.phases if str(p["id"]) == phase_id), None)
        if phase is None:
            return self._not_found("Phase")
        if self.state.participants.get(user) != "approved":
            return self._send(200, {"can": False, "reason": "User not approved to participate "
                                                            "in this competition"})
        reason = self._limits(user, phase)
        return self._send(200, {"can": reason is None, "reason": reason})

    def create_dataset(self, user, data) -> None:
        """views/datasets.py DataViewSet.create + serializers/datasets.py DataSerializer."""
        st: CodabenchState = self.state
        if user is None:
            return self._forbidden("Authentication credentials were not provided.")
        if not data.get("file_size"):
            return self._send(400, {"file_size": "This field is required."})
        size = float(data["file_size"])
        if st.used_bytes + size > st.quota_bytes:
            return self._send(400, {"data_file": [
                f"Insufficient space. Your available space is "
                f"{(st.quota_bytes - st.used_bytes) / 1e9:.1f} GB. The file size is "
                f"{size / 1e6:.1f} MB. Please free up some space and try again. You can manage "
                "your files in the Resources page."]})
        errors: dict[str, list[str]] = {}
        name = data.get("request_sassy_file_name")
        if not name:
            errors["request_sassy_file_name"] = ["This field is required."]
        elif len(name) > 255:
            errors["request_sassy_file_name"] = ["Ensure this field has no more than 255 "
                                                 "characters."]
        if len(data.get("file_name") or "") > 64:  # Data.file_name max_length=64
            errors["file_name"] = ["Ensure this field has no more than 64 characters."]
        comp = data.get("competition")
        if comp is not None and int(comp) != st.competition_id:
            errors["competition"] = [f'Invalid pk "{comp}" - object does not exist.']
        if errors:
            return self._send(400, errors)
        key = str(uuid.uuid4())
        # utils/data.py PathWrapper: dataset/<date-epoch>/<12 hex>/<name[:35]><ext>
        stem, ext = os.path.splitext(os.path.basename(name))
        path = f"/private/dataset/2024-11-20-1732096800/{uuid.uuid4().hex[:12]}/{stem[:35]}{ext}"
        st.datasets[key] = {"owner": user, "path": path, "size": size, "completed": False,
                            "competition": comp, "file_name": data.get("file_name", "")}
        if st.storage_kind == "azure":
            sassy = (f"{st.storage_url}{quote(path)}?se=2099-01-01T00%3A00%3A00Z&sp=rw"
                     "&sv=2018-03-28&sr=b&sig=S3CR3T%2Bsignature")
        else:
            st.storage.signed_types[quote(path)] = "application/zip"
            sassy = (f"{st.storage_url}{quote(path)}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                     "&X-Amz-Credential=AKIAEXAMPLE%2F20241120%2Fus-east-1%2Fs3%2Faws4_request"
                     "&X-Amz-Date=20241120T100000Z&X-Amz-Expires=432000"
                     "&X-Amz-SignedHeaders=content-type%3Bhost&X-Amz-Signature=S3CR3Tsig0123")
        return self._send(201, {"key": key, "sassy_url": sassy})

    def upload_completed(self, user, data, key) -> None:
        """views/datasets.py upload_completed: Data.objects.get(created_by=user, key=key)."""
        ds = self.state.datasets.get(key)
        if user is None:
            return self._forbidden("Authentication credentials were not provided.")
        if ds is None or ds["owner"] != user:
            return self._send(404, {"detail": "Not found."})  # a bare Http404()
        ds["completed"] = True
        return self._send(200, {"key": key})

    def _new_submission(self, user: str, phase: dict, key: str | None, parent: int | None,
                        task: dict) -> dict:
        st: CodabenchState = self.state
        st.next_id += 1
        sub = {"id": st.next_id, "owner": user, "phase": phase["id"], "data": key,
               "parent": parent, "status": "Submitting", "status_details": None,
               "scores": [], "leaderboard": None, "children": [], "task": task,
               "created": datetime.now(timezone.utc), "steps": [], "finished_polls": 0,
               "details": []}
        st.submissions[sub["id"]] = sub
        return sub

    def create_submission(self, user, data) -> None:
        """serializers/submissions.py SubmissionCreationSerializer.validate/create, then
        competitions/models.py Submission.save (the limit check) and Submission.start."""
        st: CodabenchState = self.state
        phase = next((p for p in st.phases if str(p["id"]) == str(data.get("phase"))), None)
        if phase is None:
            return self._send(400, {"phase": [f'Invalid pk "{data.get("phase")}" - object does '
                                              "not exist."]})
        key = data.get("data")
        if key not in st.datasets:
            return self._send(400, {"data": [f"Object with key={key} does not exist."]})
        task_ids = {t["id"] for t in phase["tasks"]}
        if data.get("tasks") and not set(data["tasks"]) <= task_ids:
            return self._send(400, {"non_field_errors": ["All tasks must be part of the "
                                                         "current phase."]})
        if st.participants.get(user) != "approved":
            return self._forbidden("You do not have access to this competition to make a "
                                   "submission")
        if st.race_limit:  # another tab took the day's last slot since can_make_submission
            for _ in range(phase["max_submissions_per_day"] or 0):
                if self._limits(user, phase) is not None:
                    break
                self._new_submission(user, phase, None, None, phase["tasks"][0])
        if self._limits(user, phase) is not None:
            # Submission.save raises PermissionError; nothing catches it: Django's default
            # server_error page
            return self._send(500, raw=DJANGO_500, content_type="text/html")
        sub = self._new_submission(user, phase, key, None, phase["tasks"][0])
        if st.start_fails:  # SubmissionCreationSerializer.create: sub.start() after save
            return self._send(500, raw=DJANGO_500, content_type="text/html")
        if st.auto_run:
            sub["steps"] = self._worker_steps(sub, phase)
            self._details(sub, phase)
        ds = st.datasets[key]
        return self._send(201, {
            "id": sub["id"], "data": key, "phase": phase["id"], "status": "Submitting",
            "status_details": None, "filename": os.path.basename(ds["path"]),
            "description": None, "md5": None, "fact_sheet_answers": None,
            "organization": None, "queue": None,
            "created_when": sub["created"].strftime("%Y-%m-%d %H:%M"), "scores": []})

    def _worker_steps(self, sub: dict, phase: dict) -> list[tuple[str, str | None]]:
        """The statuses the site and compute_worker.py set, one per poll: Submitted
        (tasks.py _send_to_compute_worker), then Run.prepare's Running/Preparing, the
        prediction run's Scoring, the scoring run's Running, Run.start's Finished (before
        run_wrapper's push_scores)."""
        st: CodabenchState = self.state
        blob = st.storage.blobs.get(quote(st.datasets[sub["data"]]["path"]))
        if blob is None or len(blob) != st.datasets[sub["data"]]["size"]:
            return [("Submitted", None), ("Running", "ingestion_hostname-worker1"),
                    ("Failed", "Could not download the submission")]
        run = [("Submitted", None), ("Running", "ingestion_hostname-worker1"),
               ("Preparing", None)]
        if st.worker == "program_failed":
            return run + [("Failed", "program_rc=1, async=[...]")]
        run += [("Scoring", None), ("Running", "scoring_hostname-worker1"), ("Finished", None)]
        if st.worker == "no_scores_file":  # run_wrapper: push_scores raises after Finished
            return run + [("Failed", "Could not find scores file, did the scoring program "
                                     "output it?")]
        if st.worker == "child_failed":
            self._children(sub, phase)
        return run

    # what the worker writes into each log (compute_worker.py Run._run_container: the
    # program's and the ingestion's stdout/stderr, pushed to the detail files' URLs)
    _WORKER_LOGS = {
        "finished": {
            "prediction_ingestion_stdout": "Ingestion program: loading model.py\n"
                                           "predicted 400 images in 3.1 s\n",
            "scoring_stdout": "accuracy: 0.76\nduration: 12.5\n"},
        "program_failed": {
            "prediction_ingestion_stdout": "Ingestion program: loading model.py\n",
            "prediction_ingestion_stderr": (
                "Traceback (most recent call last):\n"
                '  File "/app/program/ingestion.py", line 12, in <module>\n'
                "    from model import Model\n"
                '  File "/app/ingested_program/model.py", line 3, in <module>\n'
                "    import cv2\n"
                "ModuleNotFoundError: No module named 'cv2'\n")},
        "no_scores_file": {
            "scoring_stderr": "scoring.py: predictions.npy not found in /app/input/res\n"},
    }

    def _details(self, sub: dict, phase: dict) -> None:
        """competitions/tasks.py _send_to_compute_worker: every step sent to the worker gets
        its four SubmissionDetails (create_detailed_output_file saves an empty
        ``<name>.txt`` under submission_details/), the scoring ones only if the prediction
        step ended well; the worker fills them. A time limit appends the error to
        prediction_ingestion_stderr (api/views/submissions.py SubmissionViewSet.update)."""
        st: CodabenchState = self.state
        steps = [s for s, _ in sub["steps"]]
        names = list(self._PREDICTION_LOGS)
        if "Scoring" in steps:
            names += self._SCORING_LOGS
        texts = dict(self._WORKER_LOGS.get(st.worker, {}))
        if sub.get("status_details") and "Time Limit" in sub["status_details"]:
            texts["prediction_ingestion_stderr"] = "\n" + sub["status_details"]
        texts.update(st.log_texts)
        for name in names:
            path = (f"/private/submission_details/2024-11-20-1732096800/"
                    f"{uuid.uuid4().hex[:12]}/{name}.txt")
            if name not in st.logs_lost:
                st.storage.files[quote(path)] = texts.get(name, "").encode()
            sub["details"].append({"name": name, "path": path})
        if "Finished" in steps:
            # compute_worker.py Run.push_output: the scoring step's output folder, zipped,
            # becomes Submission.scoring_result
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as zf:
                if st.worker != "no_scores_file":
                    zf.writestr("scores.json", json.dumps(
                        {k: float(v) for k, v in st.scores.items()}))
                zf.writestr("metadata", "exitCode: 0\n")
            path = f"/private/scoring_result/2024-11-20/{uuid.uuid4().hex[:12]}/output.zip"
            st.storage.files[quote(path)] = buf.getvalue()
            sub["scoring_result"] = path

    _PREDICTION_LOGS = ("prediction_stdout", "prediction_stderr", "prediction_ingestion_stdout",
                        "prediction_ingestion_stderr")
    _SCORING_LOGS = ("scoring_stdout", "scoring_stderr", "scoring_ingestion_stdout",
                     "scoring_ingestion_stderr")

    def _children(self, parent: dict, phase: dict) -> None:
        """One child per task; the parent turns Finished once all are done, failed ones
        included (competitions/models.py Submission.check_child_submission_statuses)."""
        for i, task in enumerate(phase["tasks"] * 2):
            child = self._new_submission(parent["owner"], phase, parent["data"], parent["id"],
                                         task)
            child["status"] = "Finished" if i == 0 else "Failed"
            child["status_details"] = None if i == 0 else "Execution Time Limit exceeded. " \
                                                          "Limit was 600 seconds"
            parent["children"].append(child["id"])
            child["steps"] = [("Scoring", None)] if i == 0 else []
            self._details(child, phase)
            child["steps"] = []

    def _advance(self, sub: dict) -> None:
        st: CodabenchState = self.state
        if sub["steps"]:
            sub["status"], sub["status_details"] = sub["steps"].pop(0)
            return
        if sub["status"] != "Finished" or sub["scores"]:
            return
        sub["finished_polls"] += 1
        late = {"finished": 1, "scores_late": 3, "child_failed": 1}.get(st.worker)
        if late is not None and sub["finished_polls"] >= late:
            # views/submissions.py upload_submission_scores, then the leaderboard rule
            cols = {c["key"]: c for c in st.leaderboard["columns"]}
            sub["scores"] = [{"id": 900 + i, "index": cols[k]["index"], "score": v,
                              "column_key": k} for i, (k, v) in enumerate(st.scores.items())
                             if k in cols]
            if st.leaderboard["submission_rule"] not in ("Add", "Add_And_Delete",
                                                         "Add_And_Delete_Multiple"):
                sub["leaderboard"] = st.leaderboard["id"]

    def submission(self, user, data, sub_id) -> None:
        """SubmissionViewSet.retrieve with SubmissionSerializer; others' submissions are
        filtered out of the queryset (get_queryset)."""
        st: CodabenchState = self.state
        sub = st.submissions.get(int(sub_id))
        if sub is None or user is None or sub["owner"] != user:
            return self._not_found("Submission")
        self._advance(sub)
        phase = next(p for p in st.phases if p["id"] == sub["phase"])
        ds = st.datasets.get(sub["data"] or "", {"path": "Deleted File"})
        return self._send(200, {
            "phase_name": phase["name"], "name": "", "filename": os.path.basename(ds["path"]),
            "description": None, "created_when": _iso(sub["created"]), "is_public": False,
            "is_specific_task_re_run": False, "status": sub["status"],
            "status_details": sub["status_details"], "owner": user,
            "has_children": bool(sub["children"]), "parent": sub["parent"],
            "children": sub["children"], "pk": sub["id"], "id": sub["id"],
            "phase": sub["phase"], "scores": sub["scores"], "fact_sheet_answers": None,
            "leaderboard": sub["leaderboard"], "on_leaderboard": sub["leaderboard"] is not None,
            "task": sub["task"], "auto_run": st.auto_run,
            "can_make_submissions_public": True, "is_soft_deleted": False})

    def get_details(self, user, data, sub_id) -> None:
        """SubmissionViewSet.get_details (api/views/submissions.py): PermissionDenied when the
        phase hides its output (for a participant), else SubmissionFilesSerializer
        (serializers/submissions.py): ``logs`` as SubmissionDetailSerializer {name,
        data_file: a signed URL}, the result files' signed URLs, ``leaderboards``."""
        st: CodabenchState = self.state
        sub = st.submissions.get(int(sub_id))
        if sub is None or user is None or sub["owner"] != user:
            return self._not_found("Submission")
        if st.hide_output:
            return self._forbidden("Cannot access submission details while phase marked to "
                                   "hide output.")

        def signed(path: str) -> str:
            return (f"{st.storage_url}{quote(path)}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                    "&X-Amz-Credential=AKIAEXAMPLE%2F20241120%2Fus-east-1%2Fs3%2Faws4_request"
                    "&X-Amz-Date=20241120T100000Z&X-Amz-Expires=432000"
                    "&X-Amz-SignedHeaders=host&X-Amz-Signature=S3CR3Tget0123")

        ds = st.datasets.get(sub["data"] or "", {"path": "/private/deleted"})
        return self._send(200, {
            "logs": [{"name": d["name"], "data_file": signed(d["path"])}
                     for d in sub["details"]],
            "data_file": signed(ds["path"]), "prediction_result": None,
            "detailed_result": None, "leaderboards": [],
            "scoring_result": signed(sub["scoring_result"]) if sub.get("scoring_result")
            else None,
            "fact_sheet_answers": None})

    ROUTES = [
        ("POST", r"^/api/api-token-auth/$", token_auth),
        ("GET", r"^/api/competitions/(\d+)/$", competition),
        ("GET", r"^/api/can_make_submission/([^/]+)/$", can_make_submission),
        ("POST", r"^/api/datasets/$", create_dataset),
        ("PUT", r"^/api/datasets/completed/([0-9a-f-]{36})/$", upload_completed),
        ("POST", r"^/api/submissions/$", create_submission),
        ("GET", r"^/api/submissions/(\d+)/$", submission),
        ("GET", r"^/api/submissions/(\d+)/get_details/$", get_details),
    ]


# -- Kaggle ------------------------------------------------------------------------------------
def _proto(obj: dict) -> dict:
    """Proto3 JSON: fields at their default value are left out (kagglesdk kaggle_object.py
    FieldMetadata.get_as_dict_item / set_from_dict)."""
    return {k: v for k, v in obj.items() if v not in (None, 0, "", False, [], {})}


@dataclass
class KaggleState:
    """Switches: ``competitions`` (slug -> ApiCompetition fields), ``entered`` (slugs the
    user joined), ``rules_status`` (400/403 with the rules text on StartSubmissionUpload),
    ``permission_denied``, ``limits`` (slug -> ApiSubmissionLimits), ``not_found_polls``
    (GetSubmission answers 404 that many times after CreateSubmission),
    ``pending_polls``, ``outcome`` ("complete" or "error"), ``kernels``."""

    storage: StorageState
    storage_url: str = ""
    username: str = "kuser"
    key: str = "kkey0123456789abcdef"
    access_token: str = "KGAT_0123456789abcdef0123456789abcdef"
    competitions: dict[str, dict] = field(default_factory=lambda: {
        "an2dl-mars-terrain": {"id": 87001, "title": "AN2DL Mars Terrain",
                               "maxDailySubmissions": 5, "evaluationMetric": "Mean IoU"},
        "some-code-comp": {"id": 87002, "title": "A Code Competition",
                           "isKernelsSubmissionsOnly": True, "maxDailySubmissions": 1},
    })
    entered: set[str] = field(default_factory=lambda: {"an2dl-mars-terrain", "some-code-comp"})
    limits: dict[str, dict] = field(default_factory=dict)
    rules_status: int | None = None
    permission_denied: bool = False
    kernels: dict[tuple[str, str], set[int]] = field(default_factory=lambda: {
        ("kuser", "mars-notebook"): {1, 2, 3}})
    tokens: dict[str, str] = field(default_factory=dict)
    submissions: dict[int, dict] = field(default_factory=dict)
    log: list[dict] = field(default_factory=list)
    not_found_polls: int = 1
    pending_polls: int = 1
    outcome: str = "complete"
    public_score: str = "0.65432"
    next_ref: int = 42000000


class _KaggleHandler(_Handler):
    PREFIX = "/v1/"  # kaggle_http_client.py _get_request_url: {endpoint}/v1/{service}/{method}

    def _error(self, code: int, message: str) -> None:
        # the shape kagglesdk's _prepare_response reads: {"code": >= 400, "message"}
        self._send(code, {"code": code, "message": message})

    def _caller(self) -> str | None:
        """The user of a Bearer token or of HTTP Basic credentials; None if refused."""
        st: KaggleState = self.state
        auth = self.headers.get("Authorization", "")
        if auth == f"Bearer {st.access_token}":
            return st.username
        basic = "Basic " + base64.b64encode(f"{st.username}:{st.key}".encode()).decode()
        return st.username if auth == basic else None

    def _dispatch(self, method: str) -> None:
        body = self._body()
        self._log(body)
        path = urlparse(self.path).path
        if method != "POST" or not path.startswith(self.PREFIX):
            return self._error(404, "Not Found")
        service, _, rpc = path[len(self.PREFIX):].partition("/")
        data = json.loads(body or b"{}")
        if (service, rpc) == ("security.OAuthService", "IntrospectToken"):
            return self.introspect(data)
        if self._caller() is None:
            return self._error(401, "Unauthenticated")  # the text is not in the sources
        handler = self.RPCS.get((service, rpc))
        if handler is None:
            return self._error(404, "Not Found")
        return handler(self, data)

    def introspect(self, data) -> None:
        """security/types/oauth_service.py IntrospectTokenResponse; an expired token is not
        active (false, so left out)."""
        st: KaggleState = self.state
        if data.get("token") == st.access_token:
            return self._send(200, _proto({"active": True, "username": st.username,
                                           "clientId": "kaggle-cli", "scope": "resources.admin"}))
        return self._send(200, _proto({"active": False}))

    def get_competition(self, data) -> None:
        st: KaggleState = self.state
        slug = data.get("competitionName")
        comp = st.competitions.get(slug)
        if comp is None:
            return self._error(404, "NotFound")  # as seen in Kaggle/kaggle-cli issue #21
        out = dict(comp, ref=f"https://www.kaggle.com/competitions/{slug}",
                   userHasEntered=slug in st.entered,
                   deadline="2099-01-01T23:59:00Z")
        return self._send(200, _proto(out))

    def submission_limits(self, data) -> None:
        st: KaggleState = self.state
        slug = data.get("competitionName")
        if slug not in st.competitions:
            return self._error(404, "NotFound")
        if slug not in st.entered:  # "empty/zeros if the user is not on a team yet"
            return self._send(200, {})
        default = {"numToday": 0, "numTotal": 0, "numAllowedNow": 5, "limitedByTotal": False}
        return self._send(200, _proto(st.limits.get(slug, default)))

    def start_upload(self, data) -> None:
        st: KaggleState = self.state
        comp = data.get("competitionName")
        if st.permission_denied:
            return self._error(403, "Permission 'competitions.participate' was denied")
        if comp not in st.competitions:
            return self._error(404, "NotFound")
        if st.rules_status:
            return self._error(st.rules_status, "You must accept this competition's rules "
                                                "before you'll be able to submit.")
        if not data.get("fileName") or not data.get("contentLength"):
            return self._error(400, "Invalid request")  # the text is not in the sources
        token = uuid.uuid4().hex
        upload_id = uuid.uuid4().hex
        st.tokens[token] = f"/upload/storage/v1/b/kaggle-competitions-submissions/o/{upload_id}"
        return self._send(200, _proto({"token": token, "createUrl": (
            f"{st.storage_url}{st.tokens[token]}?uploadType=resumable&upload_id={upload_id}")}))

    def _created(self, slug: str, description: str | None) -> None:
        st: KaggleState = self.state
        st.next_ref += 1
        st.submissions[st.next_ref] = {"polls": 0, "description": description,
                                       "competition": slug}
        title = st.competitions[slug]["title"]
        return self._send(200, _proto({"message": f"Successfully submitted to {title}",
                                       "ref": st.next_ref}))

    def create_submission(self, data) -> None:
        st: KaggleState = self.state
        blob_path = st.tokens.get(data.get("blobFileTokens") or "")
        if blob_path is None or blob_path not in st.storage.blobs:
            return self._error(400, "Invalid blob file token")  # not in the sources
        return self._created(data.get("competitionName"), data.get("submissionDescription"))

    def create_code_submission(self, data) -> None:
        """competition_api_service.py ApiCreateCodeSubmissionRequest."""
        st: KaggleState = self.state
        slug = data.get("competitionName")
        if slug not in st.competitions:
            return self._error(404, "NotFound")
        versions = st.kernels.get((data.get("kernelOwner"), data.get("kernelSlug")))
        if versions is None or data.get("kernelVersion") not in versions:
            return self._error(404, "NotFound")  # the text is not in the sources
        return self._created(slug, data.get("submissionDescription"))

    def get_submission(self, data) -> None:
        """ApiSubmission; 404 while the new submission is not readable yet (kaggle-cli
        pull request #1139 counts that as pending); PENDING is the default: no status."""
        st: KaggleState = self.state
        sub = st.submissions.get(int(data.get("ref") or 0))
        if sub is None:
            return self._error(404, "NotFound")
        sub["polls"] += 1
        if sub["polls"] <= st.not_found_polls:
            return self._error(404, "NotFound")
        done = sub["polls"] > st.not_found_polls + st.pending_polls
        out = {"ref": int(data["ref"]), "date": "2024-12-01T10:00:00.000Z",
               "description": sub["description"], "fileName": "preds.csv",
               "submittedBy": st.username}
        if done and st.outcome == "complete":
            out.update(status="COMPLETE", publicScore=st.public_score)
        elif done:
            # errorDescription carries the reason (kaggle-cli issue #1190); this text is ours
            out.update(status="ERROR", errorDescription="Submission CSV Header mismatch.")
        return self._send(200, _proto(out))

    RPCS = {
        ("competitions.CompetitionApiService", "GetCompetition"): get_competition,
        ("competitions.CompetitionApiService", "GetSubmissionLimits"): submission_limits,
        ("competitions.CompetitionApiService", "StartSubmissionUpload"): start_upload,
        ("competitions.CompetitionApiService", "CreateSubmission"): create_submission,
        ("competitions.CompetitionApiService", "CreateCodeSubmission"): create_code_submission,
        ("competitions.CompetitionApiService", "GetSubmission"): get_submission,
    }


# -- a front that throttles or fails (a reverse proxy, a load balancer) ---------------------------
@dataclass
class FlakyState:
    """Answers the ``answers`` in turn (status, headers, body), then 200 {"ok": true}.
    Codabench itself sets no DRF throttle (settings/base.py REST_FRAMEWORK has no
    DEFAULT_THROTTLE_CLASSES); a proxy in front of a service may still answer 429 with
    Retry-After (RFC 6585) or 502/503/504."""

    answers: list[tuple[int, dict, bytes]] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)


class _FlakyHandler(_Handler):
    def _dispatch(self, method: str) -> None:
        body = self._body()
        self._log(body)
        if self.state.answers:
            status, headers, raw = self.state.answers.pop(0)
            return self._send(status, raw=raw, headers=headers, content_type="text/html")
        return self._send(200, {"ok": True})


# -- running them ------------------------------------------------------------------------------
class Running:
    def __init__(self, handler: type, state: Any):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.state = state  # type: ignore[attr-defined]
        self.state = state
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_codabench() -> tuple[Running, Running]:
    storage = Running(_StorageHandler, StorageState())
    api = Running(_CodabenchHandler, CodabenchState(storage=storage.state,
                                                    storage_url=storage.url))
    return api, storage


def start_kaggle() -> tuple[Running, Running]:
    storage = Running(_StorageHandler, StorageState())
    api = Running(_KaggleHandler, KaggleState(storage=storage.state, storage_url=storage.url))
    return api, storage


def start_flaky() -> Running:
    return Running(_FlakyHandler, FlakyState())
