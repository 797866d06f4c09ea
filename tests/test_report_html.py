"""report.html in a real headless browser (Debian's chromium).

The page must load with no console errors and no outside request, and a screenshot is
taken (a human looks at it: it is written to the test's tmp folder, and to the path in
SUBKIT_REPORT_SCREENSHOT when set, e.g. docs/report-screenshot.png).

The browser is driven through the DevTools protocol over ``--remote-debugging-pipe``
(file descriptors 3 and 4, NUL-terminated JSON): no websocket library needed. Console
messages (Runtime.consoleAPICalled, Runtime.exceptionThrown, Log.entryAdded: CSP
violations land there) and every network request (Network.requestWillBeSent) are
collected; a control page proves the detector sees both.

Skipped only when chromium is missing and CI is unset; in CI it must run
(.ci/run installs chromium when absent).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or (
    "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="chromium not installed (apt-get install -y chromium); required when CI is set")


# -- a minimal DevTools-protocol client over a pipe -----------------------------------------
class Browser:
    FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-default-apps", "--disable-extensions", "--mute-audio",
             "--disable-dev-shm-usage", "--remote-debugging-pipe"]

    def __init__(self, user_data_dir: Path):
        if CHROMIUM is None:
            raise RuntimeError("chromium not found: install it (apt-get install -y chromium)")
        r_cmd, w_cmd = os.pipe()
        r_res, w_res = os.pipe()
        a = fcntl.fcntl(r_cmd, fcntl.F_DUPFD, 10)
        b = fcntl.fcntl(w_res, fcntl.F_DUPFD, 10)

        def child_fds():  # the browser reads commands on fd 3 and writes replies on fd 4
            os.dup2(a, 3, inheritable=True)
            os.dup2(b, 4, inheritable=True)

        self.proc = subprocess.Popen(
            [CHROMIUM, *self.FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=child_fds, close_fds=False)
        for fd in (r_cmd, w_res, a, b):
            os.close(fd)
        self.w = os.fdopen(w_cmd, "wb", buffering=0)
        self.r = os.fdopen(r_res, "rb", buffering=0)
        self.next_id = 0
        self.replies: dict[int, dict] = {}
        self.events: list[dict] = []
        self.cond = threading.Condition()
        self.stderr_lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _drain_stderr(self):
        for line in self.proc.stderr:
            self.stderr_lines.append(line.decode("utf-8", "replace").rstrip())

    def _read(self):
        buf = b""
        while True:
            chunk = self.r.read(1 << 16)
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self.cond:
                    if "id" in msg:
                        self.replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60) -> dict:
        self.next_id += 1
        i = self.next_id
        msg = {"id": i, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.w.write(json.dumps(msg).encode() + b"\0")
        end = time.monotonic() + timeout
        with self.cond:
            while i not in self.replies:
                left = end - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise TimeoutError(f"no reply to {method}; browser stderr: "
                                       + "\n".join(self.stderr_lines[-10:]))
                self.cond.wait(left)
            reply = self.replies.pop(i)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, session: str, timeout: float = 60) -> dict:
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for e in self.events:
                    if e.get("method") == method and e.get("sessionId") == session:
                        return e
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {method} event")
                self.cond.wait(left)

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.w.close()


def load_page(url: str, user_data_dir: Path, screenshot: Path | None = None,
              width: int = 1280, height: int = 2400) -> dict:
    """Open ``url``, wait for load, return {errors, requests, screenshot, title}."""
    br = Browser(user_data_dir)
    try:
        target = br.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sess = br.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            br.send(f"{domain}.enable", session=sess)
        br.send("Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, sess)
        br.send("Page.navigate", {"url": url}, sess)
        br.wait_event("Page.loadEventFired", sess)
        time.sleep(0.5)  # late console messages
        title = br.send("Runtime.evaluate", {"expression": "document.title"},
                        sess)["result"]["value"]
        n_img = br.send("Runtime.evaluate", {
            "expression": "[...document.images]"
                          ".filter(i => i.complete && i.naturalWidth > 0).length"},
            sess)["result"]["value"]
        shot = None
        if screenshot is not None:
            data = br.send("Page.captureScreenshot", {"format": "png"}, sess)["data"]
            screenshot.write_bytes(base64.b64decode(data))
            shot = screenshot
        with br.cond:
            events = [e for e in br.events if e.get("sessionId") == sess]
    finally:
        br.close()
    errors, requests = [], []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                   for a in p.get("args", [])))
        elif m == "Runtime.exceptionThrown":
            errors.append(p.get("exceptionDetails", {}).get("text", "exception"))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            errors.append(p["entry"].get("text", ""))
        elif m == "Network.requestWillBeSent":
            u = p.get("request", {}).get("url", "")
            if not u.startswith(("file:", "data:", "about:")):
                requests.append(u)
    return {"errors": errors, "requests": requests, "screenshot": shot, "title": title,
            "images_loaded": n_img}


# -- a real run to report on -----------------------------------------------------------------
CENTROID_MODEL = '''
import os
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def feats(X):
    X = X.astype(np.float32) / 255
    c = X[:, 32:64, 32:64].reshape(len(X), -1, 3)
    return np.concatenate([c.mean(1), c.std(1), X.reshape(len(X), -1, 3).mean(1)], 1)


class Model:
    def __init__(self):
        self.c = np.load(os.path.join(HERE, "centroids.npy"))

    def predict_proba(self, X):
        d = ((feats(X)[:, None] - self.c[None]) ** 2).sum(-1)
        e = np.exp(-(d - d.min(1, keepdims=True)) * 50)
        return e / e.sum(1, keepdims=True)

    def predict(self, X):
        return np.argmax(self.predict_proba(X), 1)
'''


def centroid_zip(path: Path, seed: int = 1) -> Path:
    """A numpy-only nearest-centroid model on colour statistics: fast, and hurt by shifts."""
    import io

    from subkit.data.synthetic import generate

    tr = generate(240, seed=seed)
    X = tr["images"].astype(np.float32) / 255
    c = X[:, 32:64, 32:64].reshape(len(X), -1, 3)
    F = np.concatenate([c.mean(1), c.std(1), X.reshape(len(X), -1, 3).mean(1)], 1)
    y = tr["labels"].ravel()
    cent = np.stack([F[y == k].mean(0) for k in range(8)])
    buf = io.BytesIO()
    np.save(buf, cent)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model.py", CENTROID_MODEL)
        z.writestr("centroids.npy", buf.getvalue())
    return path


REPORT_SUITE = "randaugment:2,erasing,h24_mix:2,blur:3,stain_jitter:2,bubble"


def _two_calibration_zips(ws: Path, d: dict, suite: str) -> None:
    """Two earlier zips in the ledger with leaderboard scores and a run of the same suite on
    the same test set: the report's run gets a leaderboard prediction and its chart."""
    from subkit import shift
    from subkit.calibration import test_set_id
    from subkit.ledger import Ledger

    keys = [shift.key(n, s) for n, s in shift.parse_suite(suite)]
    data = test_set_id(d["images"], d["labels"])
    led = Ledger(ws / "submissions", fsync=False)
    for i, (level, board) in enumerate(((0.7, 0.55), (0.5, 0.38))):
        sha = f"{i}" * 64
        scores = {k: level - 0.02 * j for j, k in enumerate(keys)}
        led.append({"kind": "score-local", "zip_sha256": sha, "zip": f"earlier-{i}.zip",
                    "data_sha256": data, "shift_suite": suite, "shift_seed": 0,
                    "shift_scores": scores})
        led.append({"kind": "leaderboard", "zip_sha256": sha, "leaderboard_score": board,
                    "phase": "development"})


@pytest.fixture(scope="module")
def shifted_run(tmp_path_factory, cli):
    """score-local --shift on a small suite, through the CLI: the run folder."""
    from subkit.data.synthetic import generate
    from subkit.workspace import init_workspace

    base = tmp_path_factory.mktemp("report")
    ws = base / "ws"
    init_workspace(ws, None)
    d = generate(48, seed=5)
    np.savez(ws / "test.npz", images=d["images"], labels=d["labels"])
    z = centroid_zip(ws / "centroid.zip")
    _two_calibration_zips(ws, d, REPORT_SUITE)
    r = cli("score-local", z, "--data", "test.npz", "--json", "--shift", REPORT_SUITE, cwd=ws)
    assert r.code == 0, r.text
    runs = sorted((ws / "submissions" / "runs").iterdir())
    return runs[-1]


def test_report_is_self_contained(shifted_run):
    page = (shifted_run / "report.html").read_text()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert "<script" not in page.lower()
    for bad in ("http://", "https://", "//cdn", "@import", "url("):
        assert bad not in page, bad
    # every image is inline
    assert page.count("<img") == page.count("src='data:image/png;base64,")
    for section in ("shifted score", "Per class", "Confusion matrix", "Most confident mistakes",
                    "Time against the limit", "Files of the submission",
                    "What the shifts look like", "predicted leaderboard",
                    "Predicted leaderboard score", "severity 5", "Hypothesis: a custom list",
                    "keras.layers.RandomErasing", "Pillow ImageDraw"):
        assert section in page, section
    assert "centroids.npy" in page and "model.py" in page
    run = json.loads((shifted_run / "run.json").read_text())
    assert f"{run['scores']['accuracy']:.4f}" in page
    assert f"{run['shift']['shifted_score']:.4f}" in page
    pred = run["predicted_leaderboard"]
    assert pred["calibrated_on"] == 2 and f"{pred['score']:.4f}" in page
    assert "earlier-0.zip" in page and "earlier-1.zip" in page  # the chart's rows
    assert page.count("<path d='M") == 2  # their actual scores


def test_report_ranks_mistakes_by_confidence(shifted_run):
    page = (shifted_run / "report.html").read_text()
    assert "ranked by the model's probability" in page
    assert (shifted_run / "output" / "proba.npy").exists()


@needs_chromium
def test_report_loads_in_a_headless_browser(shifted_run, tmp_path):
    shot = tmp_path / "report.png"
    res = load_page((shifted_run / "report.html").as_uri(), tmp_path / "profile", screenshot=shot)
    assert res["errors"] == [], res["errors"]
    assert res["requests"] == [], res["requests"]
    assert res["title"].startswith("subkit report")
    assert res["images_loaded"] > 20
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    w, h = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (w, h) == (1280, 2400)
    out = os.environ.get("SUBKIT_REPORT_SCREENSHOT")
    if out:
        shutil.copyfile(shot, out)
    print(f"screenshot: {shot}")


@needs_chromium
def test_the_detector_sees_errors_and_outside_requests(tmp_path):
    """A control page: a console error and an outside request must both be caught."""
    page = tmp_path / "control.html"
    page.write_text("<!doctype html><title>control</title><img src='http://127.0.0.1:9/x.png'>"
                    "<script>console.error('boom')</script>")
    res = load_page(page.as_uri(), tmp_path / "profile")
    assert any("boom" in e for e in res["errors"])
    assert "http://127.0.0.1:9/x.png" in res["requests"]


@needs_chromium
def test_the_reports_policy_blocks_outside_requests(shifted_run, tmp_path):
    """The report's CSP turns any outside request into a logged error, not a fetch."""
    text = (shifted_run / "report.html").read_text().replace(
        "</main>", "<img src='http://127.0.0.1:9/leak.png'></main>")
    page = tmp_path / "leaky.html"
    page.write_text(text)
    res = load_page(page.as_uri(), tmp_path / "profile")
    assert any("Content Security Policy" in e for e in res["errors"]), res["errors"]


@needs_chromium
def test_failed_run_report_loads_clean(tmp_path, workspace, cli):
    from subkit.data.synthetic import generate

    ws = workspace
    d = generate(16, seed=5)
    np.savez(ws / "test.npz", images=d["images"], labels=d["labels"])
    with zipfile.ZipFile(ws / "bad.zip", "w") as z:
        z.writestr("model.py", "class Model:\n    def predict(self, X):\n"
                               "        raise ValueError('kaput')\n")
    assert cli("score-local", "bad.zip", "--data", "test.npz", "--json").code == 1
    rd = next((ws / "submissions" / "runs").iterdir())
    page = (rd / "report.html").read_text()
    assert "FAILED" in page and "kaput" in page
    res = load_page((rd / "report.html").as_uri(), tmp_path / "profile")
    assert res["errors"] == [] and res["requests"] == []


def test_report_command_rewrites_the_newest_run(shifted_run, cli, monkeypatch):
    ws = shifted_run.parent.parent.parent
    monkeypatch.chdir(ws)
    monkeypatch.delenv("SUBKIT_WORKSPACE", raising=False)
    (shifted_run / "report.html").unlink()
    r = cli("report", "--json")
    assert r.code == 0, r.text
    assert json.loads(r.out)["report"] == str(shifted_run / "report.html")
    page = (shifted_run / "report.html").read_text()
    assert "Most confident mistakes" in page and "data:image/png" in page  # images reloaded
    r = cli("report", str(shifted_run / "nope"))
    assert r.code != 0 and "error:" in r.err and "hint:" in r.err
