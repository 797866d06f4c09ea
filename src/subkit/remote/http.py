"""HTTP helpers shared by the platform clients: retries, uploads, error text.

- Transient failures are retried with exponential backoff: a connection that could not
  be made, 429 (honouring ``Retry-After``), 502/503/504; a dropped connection is retried
  only for idempotent requests (GET, PUT), never for a POST that may have created a
  submission already (that would burn one of the day's submissions twice).
- A failure raises ``HttpError`` (a ``SubkitError``) whose message carries the server's
  own words: the ``detail``/``message``/``error`` field of a JSON body, a DRF field-error
  dict flattened, the ``<Code>``/``<Message>`` of a storage service's XML error (S3, GCS
  and Azure all answer so), the title or text of an HTML page, or the first 300
  characters of the body; never a bare status code.
- ``api_host`` checks a ``--server`` value: it names the API host (scheme, host, port);
  the clients append their own paths.
- Secrets (tokens, keys, signed query strings) are scrubbed from every message.
- Uploads stream the file with a ``Content-Length`` (signed-URL storage such as GCS
  resumable uploads refuses chunked bodies) and a progress bar (``ui.bar``: the terminal
  draws it on stderr when it is a tty).
- ``sleep`` and the backoff base are injectable so tests run without waiting.
"""

from __future__ import annotations

import email.utils
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

from subkit import ui
from subkit.errors import SubkitError, UsageError

# the sleep used between retries and polls; tests replace it (monkeypatch) to run at once
SLEEP: Callable[[float], None] = time.sleep

TRANSIENT = (429, 502, 503, 504)
# statuses where the server says it did not process the request: safe to retry a POST
NOT_PROCESSED = (429, 503)

def _user_agent() -> str:
    from subkit import __version__

    return f"subkit/{__version__} python-requests/{requests.__version__}"


USER_AGENT = _user_agent()


class HttpError(SubkitError):
    """An HTTP request failed; ``status`` is None when no response came back."""

    def __init__(self, message: str, hint: str | None = None, status: int | None = None,
                 server_text: str = ""):
        super().__init__(message, hint)
        self.status = status
        self.server_text = server_text


def format_size(n: int | float) -> str:
    n = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


_WS = re.compile(r"\s+")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)
_TAGS = re.compile(r"<[^>]+>")
# <Error><Code>SignatureDoesNotMatch</Code><Message>...</Message></Error>: S3 (and MinIO),
# GCS's XML API and Azure Blob storage all report a refused upload this way
_XML_CODE = re.compile(r"<Code>(.*?)</Code>", re.S)
_XML_MESSAGE = re.compile(r"<Message>(.*?)</Message>", re.S)


def api_host(url: str, what: str = "--server") -> str:
    """``scheme://host[:port]`` from a ``--server`` value, or a UsageError saying why not.

    The value names the API host only: subkit appends the paths it uses, so a mirror or
    a local replay can stand in for the real service."""
    text = (url or "").strip()
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UsageError(f"{what} expects a URL like https://host[:port], got {text!r}",
                         hint="give the scheme and the host, e.g. https://www.codabench.org")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment or parsed.params:
        raise UsageError(f"{what} names the API host only (scheme://host[:port]), got {text!r}",
                         hint=f"drop the path: {parsed.scheme}://{parsed.netloc} "
                              "(subkit appends the API paths itself)")
    return f"{parsed.scheme}://{parsed.netloc}"


def server_text(resp: requests.Response, limit: int = 300) -> str:
    """What the server said about a failure, in its own words."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("detail", "error_msg", "error", "message", "reason", "errorMessage"):
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()[:limit]
        parts = []
        for key, value in data.items():
            if key in ("code", "status"):
                continue
            msgs = value if isinstance(value, list) else [value]
            text = "; ".join(str(m) for m in msgs)
            parts.append(text if key in ("non_field_errors", "__all__") else f"{key}: {text}")
        if parts:
            return "; ".join(parts)[:limit]
    if isinstance(data, list) and data:
        return "; ".join(str(m) for m in data)[:limit]
    body = resp.text or ""
    code, message = _XML_CODE.search(body), _XML_MESSAGE.search(body)
    if code or message:
        parts = [m.group(1).strip() for m in (code, message) if m]
        return ": ".join(parts)[:limit]
    if "<html" in body[:500].lower() or "<!doctype" in body[:200].lower() \
            or re.match(r"\s*<h1>", body):
        m = _TITLE.search(body)
        body = m.group(1) if m else _TAGS.sub(" ", body)
    return _WS.sub(" ", body).strip()[:limit]


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _never_connected(exc: Exception) -> bool:
    """True when the request certainly never reached the server."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = repr(exc)
        return any(s in text for s in ("NewConnectionError", "NameResolutionError",
                                        "Failed to establish a new connection",
                                        "Connection refused"))
    return False


class _ProgressReader:
    """A file body with a length (so requests sends Content-Length, not chunked) that
    advances a progress bar as the transport reads it."""

    def __init__(self, path: Path, bar: ui.Bar):
        self._fh = open(path, "rb")
        self._size = os.fstat(self._fh.fileno()).st_size
        self._bar = bar

    def __len__(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        chunk = self._fh.read(n)
        if chunk:
            self._bar.advance(len(chunk))
        return chunk

    def __iter__(self):
        while True:
            chunk = self.read(1 << 16)
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        self._fh.close()


class Http:
    """A requests session with subkit's retry, error and secrecy rules."""

    def __init__(self, *, retries: int = 4, backoff: float = 2.0, max_wait: float = 120.0,
                 sleep: Callable[[float], None] | None = None,
                 timeout: tuple[float, float] = (15.0, 120.0),
                 upload_timeout: tuple[float, float] = (15.0, 900.0),
                 progress: bool | None = None, session: requests.Session | None = None):
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self.sleep = sleep or (lambda seconds: SLEEP(seconds))
        self.timeout = timeout
        self.upload_timeout = upload_timeout
        self.progress = progress
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", USER_AGENT)
        # uploads go to another host (signed storage URLs): a separate session, so that
        # nothing of the API's session (cookies, headers) can ever travel there
        self.upload_session = requests.Session()
        self.upload_session.headers["User-Agent"] = USER_AGENT
        self._secrets: set[str] = set()

    # -- secrecy --------------------------------------------------------------------------
    def add_secret(self, *values: str | None) -> None:
        for v in values:
            if v and len(v) >= 4:
                self._secrets.add(v)

    def scrub(self, text: str) -> str:
        for s in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(s, "***")
        # signed URLs carry their credentials in the query string
        return re.sub(r"(https?://[^\s'\"?]+)\?[^\s'\")]*", r"\1?…", text)

    # -- requests -------------------------------------------------------------------------
    def _wait_for(self, attempt: int, resp: requests.Response | None) -> float:
        after = _retry_after(resp) if resp is not None else None
        return after if after is not None else self.backoff * (2 ** attempt)

    def request(self, method: str, url: str, *, what: str, idempotent: bool | None = None,
                ok: Iterable[int] = (200, 201), allow: Iterable[int] = (),
                hint: Callable[[int | None, str], str | None] | None = None,
                body_factory: Callable[[], Any] | None = None,
                timeout: tuple[float, float] | None = None,
                session: requests.Session | None = None,
                **kwargs: Any) -> requests.Response:
        """Send a request with retries; return the response if its status is in ``ok``
        or ``allow``, else raise ``HttpError`` with the server's text."""
        if idempotent is None:
            idempotent = method.upper() in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")
        ok, allow = tuple(ok), tuple(allow)
        attempt = 0
        while True:
            body = body_factory() if body_factory is not None else None
            try:
                if body is not None:
                    kwargs["data"] = body
                resp = (session or self.session).request(
                    method, url, timeout=timeout or self.timeout, **kwargs)
            except requests.RequestException as exc:
                reason = self._reason(exc)
                if (idempotent or _never_connected(exc)) and attempt < self.retries:
                    wait = self._wait_for(attempt, None)
                    ui.progress(f"{what}: {reason}; retrying in {wait:.0f} s "
                                f"({attempt + 1}/{self.retries})")
                    self.sleep(wait)
                    attempt += 1
                    continue
                extra = None if idempotent or _never_connected(exc) else (
                    "the request may have reached the server before the connection broke: "
                    "check on the platform's page before trying again")
                raise HttpError(f"{what} failed: {reason}",
                                hint=extra or (hint(None, reason) if hint else None)
                                or "check your network connection and the server URL, "
                                   "then try again", status=None) from None
            finally:
                close = getattr(body, "close", None)
                if callable(close):
                    close()
            status = resp.status_code
            if status in TRANSIENT and (idempotent or status in NOT_PROCESSED) \
                    and attempt < self.retries:
                wait = self._wait_for(attempt, resp)
                if wait > self.max_wait:
                    text = self.scrub(server_text(resp))
                    raise HttpError(
                        f"{what} failed: HTTP {status} {resp.reason}"
                        + (f": {text}" if text else ""),
                        hint=f"the server asks to wait {wait:.0f} s; try again later",
                        status=status, server_text=text)
                ui.progress(f"{what}: HTTP {status} {resp.reason}; retrying in {wait:.0f} s "
                            f"({attempt + 1}/{self.retries})")
                self.sleep(wait)
                attempt += 1
                continue
            if status in ok or status in allow:
                return resp
            raise self.error(resp, what, hint)

    def error(self, resp: requests.Response, what: str,
              hint: Callable[[int | None, str], str | None] | None = None) -> HttpError:
        status = resp.status_code
        text = self.scrub(server_text(resp))
        message = f"{what} failed: HTTP {status} {resp.reason or ''}".rstrip()
        if text:
            message += f": {text}"
        h = hint(status, text) if hint else None
        if h is None:
            h = _generic_hint(status)
        return HttpError(message, hint=h, status=status, server_text=text)

    def _reason(self, exc: Exception) -> str:
        # the innermost cause says what happened (refused, reset, timed out, no DNS)
        inner: BaseException = exc
        for _ in range(8):
            nested = [getattr(inner, "reason", None), *getattr(inner, "args", ())]
            nxt = next((e for e in nested if isinstance(e, BaseException) and e is not inner),
                       None)
            if nxt is None:
                break
            inner = nxt
        text = str(inner) or type(inner).__name__
        text = re.sub(r"<[^>]*object at 0x[0-9a-f]+>:?\s*", "", text)
        kind = type(exc).__name__
        return self.scrub(f"{kind} ({text})" if text else kind)[:300]

    def download(self, url: str, *, what: str, max_bytes: int) -> tuple[bytes | None, bool]:
        """``(bytes, truncated)`` of a signed storage URL (sent without the API's
        credentials: the URL carries its own), at most ``max_bytes`` kept; ``(None, False)``
        when storage has no such object (403/404: S3 answers 403 to a missing key unless
        the signer may list the bucket)."""
        resp = self.request("GET", url, what=what, ok=(200,), allow=(403, 404),
                            session=self.upload_session, stream=True)
        try:
            if resp.status_code != 200:
                return None, False
            chunks, total = [], 0
            for chunk in resp.iter_content(64 * 1024):
                chunks.append(chunk)
                total += len(chunk)
                if total > max_bytes:
                    break
            data = b"".join(chunks)
            return data[:max_bytes], len(data) > max_bytes
        finally:
            resp.close()

    def download_text(self, url: str, *, what: str, max_bytes: int
                      ) -> tuple[str | None, bool]:
        """:meth:`download` as text (UTF-8, undecodable bytes replaced)."""
        data, truncated = self.download(url, what=what, max_bytes=max_bytes)
        return (None if data is None else data.decode("utf-8", "replace")), truncated

    # -- uploads ---------------------------------------------------------------------------
    def show_progress(self) -> bool:
        if self.progress is not None:
            return self.progress
        try:
            return sys.stderr.isatty()
        except (AttributeError, ValueError):  # pragma: no cover
            return False

    def upload(self, method: str, url: str, path: Path, *, what: str,
               headers: dict[str, str] | None = None, ok: Iterable[int] = (200, 201),
               hint: Callable[[int | None, str], str | None] | None = None
               ) -> requests.Response:
        """PUT/POST a file's bytes with Content-Length, retrying from the start on a
        dropped connection."""
        size = Path(path).stat().st_size
        bar = ui.bar("upload", size, unit="B") if self.show_progress() else ui.Bar()

        def body() -> _ProgressReader:
            bar.restart()
            return _ProgressReader(Path(path), bar)

        try:
            # a plain session without the API's credentials: a signed URL carries its own
            return self.request(method, url, what=what, idempotent=True, ok=ok, hint=hint,
                                body_factory=body, headers=headers or {},
                                timeout=self.upload_timeout, session=self.upload_session)
        finally:
            bar.close()


def _generic_hint(status: int) -> str:
    if status == 401:
        return "the server refused the credentials: log in again"
    if status == 403:
        return "the server refuses this account the action; read its message above"
    if status == 404:
        return "check the id or the URL"
    if status == 413:
        return "the file is larger than the server accepts"
    if status == 429:
        return "too many requests: wait a little and try again"
    if status >= 500:
        return "the server had a problem; try again in a few minutes"
    return "read the server's message above"
