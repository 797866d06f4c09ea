"""Loopback stand-ins for Codabench, Kaggle and their blob storage.

Each server is a ``ThreadingHTTPServer`` on 127.0.0.1 with an ephemeral port. The
request and response shapes, status codes and error bodies follow the real services
(see the module comments of ``subkit.remote.codabench`` and ``subkit.remote.kaggle``);
uploads go to a separate storage server on another port, as on the real platforms.
Behaviours are switched per test through the ``state`` objects:

- Codabench: ``participant=False`` (can_make_submission says no, POST /submissions/
  answers 403), ``can_override`` (can says yes but the submission is refused anyway),
  ``throttle[path_prefix] = n`` (n x 429 with Retry-After), ``final_status``,
  ``quota_full`` (400 on datasets), ``phases``.
- Storage: ``drop_first_upload`` (reads half the body, then drops the connection), a
  401/400 for missing Azure headers, 411 for a body without Content-Length.
- Kaggle: ``rules_status`` (400/403 "rules not accepted"), ``permission_denied`` (403 for
  a slug typo), unknown slug -> 404 NotFound, bad credentials -> 401.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake/1.0"

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
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _json(self, body: bytes) -> dict:
        if not body:
            return {}
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            return json.loads(body)
        return {k: v[0] for k, v in parse_qs(body.decode()).items()}

    def _log(self, body: bytes) -> None:
        self.state.log.append({"method": self.command, "path": self.path,
                               "headers": dict(self.headers), "size": len(body)})

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        raise NotImplementedError


# -- blob storage ------------------------------------------------------------------------------
@dataclass
class StorageState:
    blobs: dict[str, bytes] = field(default_factory=dict)
    log: list[dict] = field(default_factory=list)
    drop_first_upload: bool = False
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _StorageHandler(_Handler):
    def _dispatch(self, method: str) -> None:
        st: StorageState = self.state
        if method != "PUT":
            return self._send(405, raw=b"", content_type="text/plain")
        with st.lock:
            st.attempts += 1
            attempt = st.attempts
        if self.headers.get("Content-Length") is None:
            # GCS resumable uploads do not take chunked bodies; Azure answers 411
            self._body()
            self._log(b"")
            return self._send(411, raw=b"Length Required", content_type="text/plain")
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
        if "sig" in qs:  # Azure SAS URL: the blob type header is mandatory
            if self.headers.get("x-ms-blob-type") != "BlockBlob":
                xml = (b'<?xml version="1.0" encoding="utf-8"?><Error><Code>'
                       b"MissingRequiredHeader</Code><Message>An HTTP header that's "
                       b"mandatory for this request is not specified.</Message></Error>")
                return self._send(400, raw=xml, content_type="application/xml")
            st.blobs[parsed.path] = body
            return self._send(201, raw=b"", content_type="text/plain")
        st.blobs[parsed.path] = body
        return self._send(200, {"kind": "storage#object", "size": str(len(body))})


# -- Codabench ---------------------------------------------------------------------------------
@dataclass
class CodabenchState:
    storage: StorageState
    storage_url: str = ""
    token: str = "0123456789abcdef0123456789abcdef01234567"
    users: dict[str, str] = field(default_factory=lambda: {"alice": "correct horse"})
    participant: bool = True
    can_override: bool | None = None  # can_make_submission answer regardless of membership
    limit_reached: bool = False
    quota_full: bool = False
    throttle: dict[str, int] = field(default_factory=dict)
    final_status: str = "Finished"
    scores: list[dict] = field(default_factory=lambda: [
        {"id": 11, "index": 0, "score": "0.7600000000", "column_key": "accuracy"},
        {"id": 12, "index": 1, "score": "12.5000000000", "column_key": "duration"},
    ])
    status_steps: list[str] = field(default_factory=lambda: ["Submitted", "Running", "Scoring"])
    phases: list[dict] = field(default_factory=lambda: [
        {"id": 101, "index": 0, "name": "Development", "status": "Current",
         "tasks": [{"id": 7, "key": "t-7", "name": "blood cells"}]},
        {"id": 102, "index": 1, "name": "Final", "status": "Next",
         "tasks": [{"id": 8, "key": "t-8", "name": "blood cells final"}]},
    ])
    competition_id: int = 1234
    datasets: dict[str, dict] = field(default_factory=dict)
    submissions: dict[int, dict] = field(default_factory=dict)
    log: list[dict] = field(default_factory=list)
    next_id: int = 5000


class _CodabenchHandler(_Handler):
    def _auth(self) -> bool | None:
        """True: valid token; None: no credentials; False (and a 401 sent): refused."""
        h = self.headers.get("Authorization")
        if h is None:
            return None
        m = re.match(r"^Token (\S+)$", h)
        if not m or m.group(1) != self.state.token:
            self._send(401, {"detail": "Invalid token."}, {"WWW-Authenticate": "Token"})
            return False
        return True

    def _require_auth(self) -> bool:
        ok = self._auth()
        if ok is None:
            self._send(401, {"detail": "Authentication credentials were not provided."},
                       {"WWW-Authenticate": "Token"})
            return False
        return bool(ok)

    def _throttled(self) -> bool:
        st: CodabenchState = self.state
        for prefix, n in list(st.throttle.items()):
            if self.path.startswith(prefix) and n > 0:
                st.throttle[prefix] = n - 1
                self._send(429, {"detail": "Request was throttled. Expected available in "
                                           "1 second."}, {"Retry-After": "1"})
                return True
        return False

    def _dispatch(self, method: str) -> None:
        st: CodabenchState = self.state
        body = self._body()
        self._log(body)
        path = urlparse(self.path).path
        if self._throttled():
            return
        if method == "POST" and path == "/api/api-token-auth/":
            data = self._json(body)
            if st.users.get(data.get("username")) == data.get("password") and data.get("password"):
                return self._send(200, {"token": st.token})
            return self._send(400, {"non_field_errors": [
                "Unable to log in with provided credentials."]})
        m = re.match(r"^/api/competitions/(\d+)/$", path)
        if method == "GET" and m:
            if self._auth() is False:
                return
            if int(m.group(1)) != st.competition_id:
                return self._send(404, {"detail": "Not found."})
            return self._send(200, {"id": st.competition_id, "title": "AN2DL blood cells",
                                    "phases": st.phases, "participant_status":
                                    "approved" if st.participant else "unknown"})
        if not self._require_auth():
            return
        m = re.match(r"^/api/can_make_submission/(\d+)/$", path)
        if method == "GET" and m:
            if int(m.group(1)) not in {p["id"] for p in st.phases}:
                return self._send(404, {"detail": "Not found."})
            if st.can_override is not None:
                return self._send(200, {"can": st.can_override, "reason": None})
            if not st.participant:
                return self._send(200, {"can": False, "reason":
                                        "User not approved to participate in this competition"})
            if st.limit_reached:
                return self._send(200, {"can": False, "reason": "Reached maximum allowed "
                                        "submissions for today for this phase"})
            return self._send(200, {"can": True, "reason": None})
        if method == "POST" and path == "/api/datasets/":
            data = self._json(body)
            if not data.get("file_size"):
                return self._send(400, {"file_size": "This field is required."})
            if st.quota_full:
                return self._send(400, {"data_file": [
                    "Insufficient space. Your available space is 1.0 MB. The file size is "
                    f"{data['file_size']} B. Please free up some space and try again. You "
                    "can manage your files in the Resources page."]})
            key = str(uuid.uuid4())
            name = data.get("request_sassy_file_name") or "file.zip"
            st.datasets[key] = {"name": name, "size": data["file_size"], "completed": False,
                                "type": data.get("type")}
            sassy = (f"{st.storage_url}/codabench/dataset/{key}/{name}"
                     "?sv=2018-03-28&sr=b&sp=w&se=2099-01-01&sig=S3CR3T%2Bsignature")
            return self._send(201, {"key": key, "sassy_url": sassy})
        m = re.match(r"^/api/datasets/completed/([0-9a-f-]+)/$", path)
        if method == "PUT" and m:
            key = m.group(1)
            if key not in st.datasets:
                return self._send(404, {"detail": "Not found."})
            st.datasets[key]["completed"] = True
            return self._send(200, {"key": key})
        if method == "POST" and path == "/api/submissions/":
            data = self._json(body)
            if not st.participant:
                return self._send(403, {"detail": "You do not have access to this "
                                                  "competition to make a submission"})
            key = data.get("data")
            if key not in st.datasets:
                return self._send(400, {"data": [f'Object with key={key} does not exist.']})
            phase = int(data.get("phase"))
            ds = st.datasets[key]
            blob = st.storage.blobs.get(f"/codabench/dataset/{key}/{ds['name']}")
            st.next_id += 1
            sid = st.next_id
            st.submissions[sid] = {"id": sid, "phase": phase, "data": key,
                                   "steps": list(st.status_steps), "status": "Submitting",
                                   "blob_ok": blob is not None and len(blob) == ds["size"],
                                   "tasks": data.get("tasks")}
            return self._send(201, {"id": sid, "data": key, "phase": phase,
                                    "status": "Submitting", "status_details": None,
                                    "filename": ds["name"], "description": None, "md5": None,
                                    "fact_sheet_answers": None})
        m = re.match(r"^/api/submissions/(\d+)/$", path)
        if method == "GET" and m:
            sub = st.submissions.get(int(m.group(1)))
            if sub is None:
                return self._send(404, {"detail": "Not found."})
            if sub["steps"]:
                sub["status"] = sub["steps"].pop(0)
            else:
                sub["status"] = st.final_status if sub["blob_ok"] else "Failed"
            finished = sub["status"] == "Finished"
            phase = next((p for p in st.phases if p["id"] == sub["phase"]), {"name": "?"})
            return self._send(200, {
                "phase_name": phase["name"], "name": "", "filename": "x.zip",
                "description": None, "created_when": "2024-11-20 10:00", "is_public": False,
                "is_specific_task_re_run": False, "status": sub["status"],
                "status_details": None if sub["status"] != "Failed"
                else "Traceback: ModuleNotFoundError: No module named 'model'",
                "owner": "alice", "has_children": False, "parent": None, "children": [],
                "pk": sub["id"], "id": sub["id"], "phase": sub["phase"],
                "scores": st.scores if finished else [], "fact_sheet_answers": None,
                "leaderboard": 3 if finished else None, "on_leaderboard": finished,
                "task": {"id": 7, "key": "t-7", "name": "blood cells"},
            })
        return self._send(404, {"detail": "Not found."})


# -- Kaggle ------------------------------------------------------------------------------------
@dataclass
class KaggleState:
    storage: StorageState
    storage_url: str = ""
    username: str = "kuser"
    key: str = "kkey0123456789abcdef"
    competitions: set[str] = field(default_factory=lambda: {"an2dl-mars-terrain"})
    rules_status: int | None = None  # 400 or 403: "rules not accepted"
    permission_denied: bool = False
    tokens: dict[str, str] = field(default_factory=dict)
    submissions: dict[int, dict] = field(default_factory=dict)
    log: list[dict] = field(default_factory=list)
    polls_before_complete: int = 1
    public_score: str = "0.65432"
    next_ref: int = 42000000


class _KaggleHandler(_Handler):
    PREFIX = "/api/i/competitions.CompetitionApiService/"

    def _dispatch(self, method: str) -> None:
        st: KaggleState = self.state
        body = self._body()
        self._log(body)
        path = urlparse(self.path).path
        if method != "POST" or not path.startswith(self.PREFIX):
            return self._send(404, {"code": 404, "message": "NotFound"})
        auth = self.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{st.username}:{st.key}".encode()).decode()
        if auth != expected:
            return self._send(401, {"code": 401, "message": "Unauthenticated"})
        rpc = path[len(self.PREFIX):]
        data = json.loads(body or b"{}")
        if rpc == "StartSubmissionUpload":
            comp = data.get("competitionName")
            if st.permission_denied:
                return self._send(403, {"code": 403, "message":
                                        "Permission 'competitions.participate' was denied"})
            if comp not in st.competitions:
                return self._send(404, {"code": 404, "message": "NotFound"})
            if st.rules_status:
                return self._send(st.rules_status, {
                    "code": st.rules_status,
                    "message": "You must accept this competition's rules before you'll be "
                               "able to submit."})
            for k in ("fileName", "contentLength", "lastModifiedEpochSeconds"):
                if k not in data:
                    return self._send(400, {"code": 400, "message": f"Missing {k}"})
            token = uuid.uuid4().hex
            upload_id = uuid.uuid4().hex
            st.tokens[token] = f"/upload/storage/v1/b/kaggle-competitions-submissions/o/{upload_id}"
            url = (f"{st.storage_url}{st.tokens[token]}?uploadType=resumable&"
                   f"upload_id={upload_id}")
            return self._send(200, {"token": token, "createUrl": url})
        if rpc == "CreateSubmission":
            token = data.get("blobFileTokens")
            blob_path = st.tokens.get(token or "")
            if blob_path is None or blob_path not in st.storage.blobs:
                return self._send(400, {"code": 400, "message": "Invalid blob file token"})
            st.next_ref += 1
            ref = st.next_ref
            st.submissions[ref] = {"polls": 0, "description": data.get("submissionDescription"),
                                   "competition": data.get("competitionName")}
            return self._send(200, {"message": "Successfully submitted to Mars Terrain",
                                    "ref": ref})
        if rpc == "GetSubmission":
            ref = int(data.get("ref") or 0)
            sub = st.submissions.get(ref)
            if sub is None:
                return self._send(404, {"code": 404, "message": "NotFound"})
            sub["polls"] += 1
            done = sub["polls"] > st.polls_before_complete
            return self._send(200, {"ref": ref, "status": "COMPLETE" if done else "PENDING",
                                    "publicScore": st.public_score if done else "",
                                    "privateScore": "", "errorDescription": "",
                                    "description": sub["description"]})
        return self._send(404, {"code": 404, "message": "NotFound"})


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
