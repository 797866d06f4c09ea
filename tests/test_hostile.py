"""The adversarial corpus: hostile submissions (tests/hostile/) run through `subkit
score-local` in a real subprocess, as a participant's zip would be, each asserting that its
attack FAILED (the secret not read, the file not written, the score not faked, the process
dead) and what the run's verdict is.

Each attack reads targets.json (zipped next to it) for where to aim; the secrets themselves
are never in it. subkit runs with the secrets in its environment and in a fake home folder.
The sandboxed path needs bubblewrap (CI installs it); the path without it
(SUBKIT_SANDBOX=none) is tested for what it promises: the allow-listed environment, the
kill of every process, the time limit, and saying plainly that nothing was isolated.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from subkit.grader import sandbox

from conftest import SRC, alive_with, subkit_argv, subkit_env, subkit_process

HOSTILE = Path(__file__).parent / "hostile"
SECRET = "s3cr3t-" + hashlib.sha256(str(os.getpid()).encode()).hexdigest()[:16]
HAS_BWRAP = sandbox.bwrap_available()[0]
needs_bwrap = pytest.mark.skipif(not HAS_BWRAP and not os.environ.get("CI"),
                                 reason="bubblewrap sandbox unavailable: "
                                        f"{sandbox.bwrap_available()[1]}")


# -- the arena: a workspace worth attacking --------------------------------------------------------
class _Server(threading.Thread):
    """Accepts connections and counts them."""

    def __init__(self, sock: socket.socket):
        super().__init__(daemon=True)
        self.sock, self.accepted = sock, 0
        sock.listen(8)
        sock.settimeout(0.2)
        self.stop = False
        self.start()

    def run(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
                self.accepted += 1
                conn.close()
            except OSError:
                continue


class Arena:
    def __init__(self, root: Path, workspace: Path, test_npz: Path):
        self.root, self.ws = root, workspace
        self.home = root / "home"
        for rel, text in {".kaggle/kaggle.json": json.dumps({"username": "me", "key": SECRET}),
                          ".config/subkit/codabench.json": json.dumps({"token": SECRET}),
                          ".netrc": f"machine codabench.org login me password {SECRET}\n",
                          ".ssh/id_rsa": f"-----BEGIN KEY-----\n{SECRET}\n"}.items():
            p = self.home / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        shutil.copy(test_npz, workspace / "local_test.npz")
        self.labels = np.load(test_npz)["labels"].ravel()
        self.toml = workspace / "subkit.toml"
        # the network cut is under test: the blood-cells profile leaves the network on, as
        # Codabench's worker does, so the arena's workspace turns it off
        self.toml.write_text(self.toml.read_text().replace(
            '# local_test = "data/local_test.npz"', 'local_test = "local_test.npz"')
            + '\n[sandbox]\nnetwork = "off"\n')
        self.subs = workspace / "submissions"
        self.other_zip = _zip(self.subs / "other-260101_000000.zip", {"model.py": "x = 1\n"})
        self.ledger = self.subs / "ledger.jsonl"
        self.ledger.write_text(json.dumps({"kind": "note", "zip_sha256": "ab" * 32, "text": "mine",
                                           "id": "1", "time": "2026-01-01T00:00:00+00:00"}) + "\n")
        self.host_tmp = root / "host_tmp"
        self.host_tmp.mkdir()
        self.canary = root / "canary.txt"
        self.canary.write_text("the user's file\n")
        self.tcp = _Server(socket.create_server(("127.0.0.1", 0)))
        unix = socket.socket(socket.AF_UNIX)
        self.unix_path = str(root / "agent.sock")
        unix.bind(self.unix_path)
        self.unix = _Server(unix)
        abstract = socket.socket(socket.AF_UNIX)
        self.abstract_name = f"subkit-test-{os.urandom(8).hex()}"
        abstract.bind("\0" + self.abstract_name)
        self.abstract = _Server(abstract)
        self.token = f"0.{int.from_bytes(os.urandom(5), 'big'):012d}"
        from subkit.grader.environment import cache_root

        # the fake home holds secrets, not the grader environment: keep finding that one
        self.env = {"HOME": str(self.home), "XDG_CONFIG_HOME": str(self.home / ".config"),
                    "SUBKIT_CACHE": str(cache_root()),
                    "KAGGLE_KEY": SECRET, "KAGGLE_USERNAME": "me", "CODABENCH_TOKEN": SECRET,
                    "DATABASE_URL": f"postgres://admin:{SECRET}@db.example/prod",
                    "API_PASS": SECRET, "MY_SERVICE_TOKEN": SECRET, "AWS_SECRET_ACCESS_KEY": SECRET,
                    "LANG": "en_US.UTF-8", "TZ": f"https://u:{SECRET}@x",
                    "OMP_NUM_THREADS": f"2; {SECRET}"}

    def targets(self, **extra) -> dict:
        import site

        return {"home": str(self.home), "secret_files": [str(p) for p in self.home.rglob("*")
                                                         if p.is_file()],
                "workspace": str(self.ws), "toml": str(self.toml), "ledger": str(self.ledger),
                "other_zip": str(self.other_zip), "labels": str(self.ws / "local_test.npz"),
                "runs_root": str(self.subs / "runs"), "host_tmp": str(self.host_tmp),
                "canary": str(self.canary), "tcp_port": self.tcp.sock.getsockname()[1],
                "unix_socket": self.unix_path, "abstract_socket": self.abstract_name,
                "site_packages": site.getsitepackages(), "token": self.token,
                "subkit_file": str(SRC / "subkit" / "__init__.py"),
                "pids": [os.getpid()], **extra}

    def protected(self) -> dict[str, str | None]:
        """sha256 of every file an attack must not change (None: must not exist)."""
        import site

        files = [self.toml, self.other_zip, self.canary, self.ws / "local_test.npz",
                 SRC / "subkit" / "__init__.py", SRC / "subkit" / "grader" / "ingestion.py",
                 *self.home.rglob("*")]
        out = {str(p): _sha(p) for p in files if p.is_file()}
        for folder in [*site.getsitepackages(), str(self.host_tmp), str(self.home), str(self.ws)]:
            for name in ("zzz-pwned.pth", "pwned.txt"):
                out[os.path.join(folder, name)] = None
        out[str(self.home / "pwned-by-pth")] = None
        return out

    def zip(self, script: str, name: str | None = None, **extra) -> Path:
        return _zip(self.root / f"{name or script}.zip",
                    {"model.py": (HOSTILE / f"{script}.py").read_text(),
                     "attack_common.py": (HOSTILE / "attack_common.py").read_text(),
                     "targets.json": json.dumps(self.targets(**extra))})

    def limits(self, **limits) -> None:
        self.toml.write_text(self.toml.read_text() + "\n[limits]\n"
                             + "".join(f"{k} = {v}\n" for k, v in limits.items()))

    def score_local(self, z: Path, *args: str, env: dict | None = None,
                    timeout: float = 180) -> tuple[int, dict, str]:
        r = subkit_process("score-local", str(z), "--json", *args, cwd=self.ws,
                       env={**self.env, **(env or {})}, timeout=timeout)
        try:
            res = json.loads(r.stdout)
        except ValueError:
            raise AssertionError(f"no JSON from subkit (exit {r.returncode}): "
                                 f"{r.stdout[-2000:]}{r.stderr[-3000:]}") from None
        return r.returncode, res, r.stderr

    @property
    def baseline(self) -> float:
        """The accuracy of predicting class 0 everywhere: what every attack returns."""
        return float(np.mean(self.labels == 0))


def _zip(path: Path, files: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def _sha(p: Path) -> str | None:
    try:
        return hashlib.sha256(p.read_bytes()).hexdigest()
    except OSError:
        return None


def everything_in(folder: Path) -> str:
    """All the text the run folder holds: logs, outputs, loot, records."""
    parts = []
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink() and p.stat().st_size < 64 << 20:
            parts.append(p.read_bytes().decode("latin-1"))
    return "\n".join(parts)


def loot(res: dict) -> dict:
    p = Path(res["run_dir"]) / "submission" / "loot.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture
def arena(tmp_path, workspace, test_npz):
    a = Arena(tmp_path, workspace, test_npz)
    yield a
    for s in (a.tcp, a.unix, a.abstract):
        s.stop = True
        s.join(timeout=2)
        s.sock.close()
    kill_all(alive_with(a.token))


def assert_untouched(arena: Arena, before: dict) -> None:
    after = arena.protected()
    changed = {k: (before.get(k), v) for k, v in after.items() if before.get(k) != v}
    assert not changed, f"the attack changed: {changed}"
    rows = [json.loads(x) for x in arena.ledger.read_text().splitlines()]
    assert rows[0]["text"] == "mine" and all(r["kind"] == "score-local" for r in rows[1:]), rows


# -- the attacks ---------------------------------------------------------------------------------
# runs subkit in a session keyring of its own holding a secret key (not the machine's)
KEYRING_WRAPPER = r"""
import ctypes, os, platform, sys
libc = ctypes.CDLL(None, use_errno=True)
nr = {"x86_64": (250, 248), "aarch64": (219, 217)}[platform.machine()]
libc.syscall(nr[0], 1, None)  # KEYCTL_JOIN_SESSION_KEYRING
secret = os.environ["SUBKIT_TEST_KEY"].encode()
libc.syscall(nr[1], b"user", b"subkit-test-key", secret, len(secret), -3)  # add_key to @s
os.execv(sys.executable, [sys.executable, "-m", "subkit"] + sys.argv[1:])
"""


@needs_bwrap
def test_credentials_and_environment_stay_out_of_reach(arena):
    import platform

    if platform.machine() not in ("x86_64", "aarch64"):
        pytest.skip("the keyring part knows the syscall numbers of x86_64 and aarch64")
    env = subkit_env(**arena.env, SUBKIT_TEST_KEY=SECRET)
    r = subprocess.run([sys.executable, "-c", KEYRING_WRAPPER, "score-local",
                        str(arena.zip("steal_secrets")), "--json"], cwd=arena.ws, env=env,
                       capture_output=True, text=True, timeout=180)
    code, res = r.returncode, json.loads(r.stdout)
    assert code == 0 and res["ok"] and res["score"] == pytest.approx(arena.baseline)
    run_dir = Path(res["run_dir"])
    assert SECRET not in everything_in(run_dir)
    got = loot(res)
    env = got["environ"]
    assert not {"KAGGLE_KEY", "DATABASE_URL", "API_PASS", "MY_SERVICE_TOKEN"} & set(env)
    assert env["HOME"] == "/tmp" and env["LANG"] == "en_US.UTF-8"
    assert "TZ" not in env and "OMP_NUM_THREADS" not in env
    assert got["pids"] == ["1"]  # its own pid namespace: nobody else to read
    assert got["ppid"] == 0
    assert all(k.endswith(":failed") for k in got if k.startswith(str(arena.home)))
    assert "/etc/shadow:failed" in got
    assert ("subkit-test-key" not in got.get("/proc/keys", "")
            and got.get("session_keys") in (None, []))
    assert res["sandbox"]["isolated"] is True and res["network_isolated"] is True


@needs_bwrap
def test_the_network_cut_cannot_be_undone(arena):
    code, res, _ = arena.score_local(arena.zip("escape_network"))
    assert code == 0 and res["ok"]
    got = loot(res)
    assert not any(k.startswith("setns") and not k.endswith(":failed") for k in got), got
    for key in ("tcp", "unix", "abstract", "internet", "new userns"):
        assert f"{key}:failed" in got, got.get(key)
    assert arena.tcp.accepted == arena.unix.accepted == arena.abstract.accepted == 0
    assert got["interfaces"] == ["lo"]


@needs_bwrap
def test_nothing_outside_the_run_can_be_written(arena):
    before = arena.protected()
    code, res, _ = arena.score_local(arena.zip("write_everywhere"))
    assert code == 0 and res["ok"], res.get("failure")
    got = loot(res)
    assert not [k for k in got if not k.endswith(":failed")], got
    assert_untouched(arena, before)
    assert not list(arena.host_tmp.iterdir())
    # the next subkit command runs no planted .pth
    r = subkit_process("history", cwd=arena.ws, env=arena.env)
    assert r.returncode == 0 and not (arena.home / "pwned-by-pth").exists()


@needs_bwrap
def test_a_detached_grandchild_cannot_forge_the_score(arena):
    z = arena.zip("forge_results", forge_after_s=1.0, zip_sha256="cd" * 32)
    code, res, _ = arena.score_local(z)
    assert code == 0 and res["score"] == pytest.approx(arena.baseline)
    assert not alive_with(arena.token), "the grandchild outlived the sandbox"
    time.sleep(2.5)  # past the moment it meant to strike
    run_dir = Path(res["run_dir"])
    scores = json.loads((run_dir / "scores.json").read_text())
    assert scores["accuracy"] == pytest.approx(arena.baseline)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "complete" and record["score"] == pytest.approx(arena.baseline)
    rows = [json.loads(x) for x in arena.ledger.read_text().splitlines()]
    assert [r["kind"] for r in rows] == ["note", "score-local"]
    assert rows[-1]["clean_score"] == pytest.approx(arena.baseline)


@needs_bwrap
def test_the_test_labels_cannot_be_read(arena):
    code, res, _ = arena.score_local(arena.zip("read_labels"))
    assert code == 0 and res["ok"]
    assert res["score"] == pytest.approx(arena.baseline) and res["score"] < 0.5
    assert "labels_from" not in loot(res)


def _walks(run_dir: Path) -> list[dict]:
    """What find_answers saw at each predict call of every child of the run (its stdout)."""
    out = []
    for log in sorted(run_dir.rglob("stdout.txt")):
        for line in log.read_text("utf-8", errors="replace").splitlines():
            if line.startswith("LOOT {\"walk "):
                out.extend(json.loads(line[5:]).values())
    return out


FIND_MODES = {"clean": (), "proba": ("--proba",), "shift": ("--shift", "blur:1,noise:1"),
              "shift+tta-compare": ("--shift", "blur:1", "--tta-compare"),
              "tta-tune": ("--shift", "blur:1", "--views", "identity,flip_lr")}


@needs_bwrap
@pytest.mark.slow
@pytest.mark.parametrize("mode", list(FIND_MODES))
def test_nothing_of_the_answer_is_in_reach_of_the_child(arena, mode):
    """Every file the child can open (all of its root but /proc, /sys, /dev), read at every
    predict call of every child of the run: no array of the test's labels, no file that
    names the workspace, the runs folder or the home. The shifted sets' labels, the plan and
    the generator's log live outside every folder bound into the sandbox."""
    args = FIND_MODES[mode]
    if mode == "tta-tune":
        return _tta_tune_finds_nothing(arena, args)
    code, res, err = arena.score_local(arena.zip("find_answers"), *args, timeout=400)
    assert code == 0 and res["ok"], (res.get("failure"), err[-2000:])
    walks = _walks(Path(res["run_dir"]))
    n_children = 2 if "--tta-compare" in args else 1
    n_calls = 1 + (len(res["shift"]["scores"]) if res.get("shift") else 0)
    assert len(walks) == n_children * n_calls, walks
    for w in walks:
        assert w["files_seen"] > 50, w  # it walked the sandbox's whole tree
        assert w["cwd"] == "/app/ingested_program"
        assert w["labels"] == [] and w["host_paths"] == [], w
    assert "labels_from" not in loot(res)
    assert res["score"] == pytest.approx(arena.baseline) and res["score"] < 0.5
    if res.get("shift"):
        assert set(res["shift"]["scores"]) == {"blur-1", "noise-1"} or \
            set(res["shift"]["scores"]) == {"blur-1"}
        assert all(v == pytest.approx(arena.baseline) for v in res["shift"]["scores"].values())
    if "--tta-compare" in args:
        assert res["tta_compare"]["clean"]["no_tta"] == pytest.approx(arena.baseline)
    rows = [json.loads(x) for x in arena.ledger.read_text().splitlines()]
    assert rows[-1]["clean_score"] == pytest.approx(arena.baseline)
    assert not (Path(res["run_dir"]) / "shift_work").exists()  # the labels' copy is gone


def _tta_tune_finds_nothing(arena, args) -> None:
    """`subkit tta tune`: subkit's wrapper calls the model once per view on each set (this
    model has no predict_proba, so each call is its predict, which walks the sandbox)."""
    z = arena.zip("find_answers", name="find_tta")
    with zipfile.ZipFile(z) as zf:
        files = {n: zf.read(n).decode() for n in zf.namelist()}
    files["model.py"] = files["model.py"].split("    def predict_proba")[0]
    z = _zip(arena.root / "find_tta.zip", files)
    r = subkit_process("tta", "tune", str(z), "--json", *args, cwd=arena.ws, env=arena.env,
                       timeout=400)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    res = json.loads(r.stdout)
    walks = _walks(Path(res["run_dir"]))
    assert len(walks) == 2 * 2, walks  # 2 views x (clean + blur-1)
    for w in walks:
        assert w["files_seen"] > 50, w
        assert w["cwd"] == "/app/ingested_program"
        assert w["labels"] == [] and w["host_paths"] == [], w
    assert "labels_from" not in loot(res)
    # every view of every point predicted class 0: the baseline's accuracy on each half
    scores = {p["report"]["clean"] for p in res["front"]} | \
        {p["report"]["shifted"] for p in res["front"]}
    assert len(scores) == 1 and scores.pop() < 0.5
    rows = [json.loads(x) for x in arena.ledger.read_text().splitlines()]
    assert rows[-1]["kind"] == "tta-tune"
    assert not (Path(res["run_dir"]) / "shift_work").exists()


@needs_bwrap
@pytest.mark.parametrize("hang", [False, True])
def test_no_process_outlives_the_run(arena, hang):
    args = ("--time-limit", "3") if hang else ()
    t0 = time.monotonic()
    code, res, _ = arena.score_local(arena.zip("outlive", hang=hang), *args)
    assert time.monotonic() - t0 < 60
    assert not alive_with(arena.token), "a process of the submission outlived the run"
    if hang:
        assert code == 1 and "time limit of 3 s" in res["failure"]["message"]
    else:
        assert code == 0 and res["ok"]


@needs_bwrap
def test_stopping_subkit_is_out_of_reach_and_the_clock_runs_on(arena):
    code, res, _ = arena.score_local(arena.zip("stop_the_clock", run_s=20), "--time-limit", "4")
    assert code == 1 and "time limit of 4 s" in res["failure"]["message"]
    assert res["timings"]["child_s"] < 10  # subkit's clock was never frozen


@needs_bwrap
def test_a_run_that_ended_while_subkit_was_stopped_past_the_limit_fails(arena):
    """SIGSTOP of subkit itself (a user's Ctrl-Z, or a hostile process of the user's): the
    sandbox is killed at the limit all the same, and the verdict is the grader's."""
    z = arena.zip("stop_the_clock", run_s=20)
    env = subkit_env(**arena.env)
    proc = subprocess.Popen(subkit_argv("score-local", z, "--json", "--time-limit", "4"),
                            cwd=arena.ws, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    hb = None
    try:
        for _ in range(300):  # until the child runs
            hb = next(arena.subs.glob("runs/*/submission/heartbeat"), None)
            if hb:
                break
            time.sleep(0.05)
        assert hb, "the child never started"
        t_stop = time.monotonic()
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(10)
        last_beat = float(hb.read_text())
        os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert last_beat < t_stop + 4 + sandbox.KILL_GRACE_S + 1, \
        "the child ran on past the limit while subkit was stopped"
    res = json.loads(out)
    assert proc.returncode == 1 and "time limit of 4 s" in res["failure"]["message"]
    assert "stopped for" in res["failure"]["message"]


@needs_bwrap
@pytest.mark.parametrize("attack,limits,expected", [
    ("fork_bomb", {"processes": 64}, None),
    ("memory_hog", {"memory_mb": 256}, "ran out of memory"),
    ("huge_file", {"file_size_mb": 16}, "file larger than 16 MB"),
    ("fill_disk", {"disk_mb": 64}, "wrote more than 64 MB"),
    ("hide_deep", {"disk_mb": 64}, "wrote more than 64 MB"),
    ("fill_tmp", {"tmp_mb": 16}, "/tmp holds 16 MB"),
])
def test_the_machine_cannot_be_exhausted(arena, attack, limits, expected):
    arena.limits(**limits)
    t0 = time.monotonic()
    code, res, _ = arena.score_local(arena.zip("exhaust", attack, attack=attack),
                                     "--time-limit", "30")
    assert time.monotonic() - t0 < 60
    assert not alive_with(arena.token)
    if expected is None:  # the bomb runs into the limit, then the submission goes on
        forks = loot(res)["forks"]
        assert 0 < forks < limits["processes"], forks
        assert "Resource temporarily unavailable" in loot(res)["fork_error"]
        assert code == 0 and res["ok"]
    else:
        assert code == 1 and expected in res["failure"]["message"], res["failure"]
        assert "[limits]" in res["failure"]["hint"]
    if attack == "fill_disk":
        assert res["sandbox"]["written_mb"] < 64 + 512  # stopped soon after the limit
    if attack == "memory_hog":  # and first in line for the OOM killer, should all else fail
        assert loot(res)["oom_score_adj"] == "1000"
    if attack == "hide_deep":  # folders too deep for rmtree's paths
        subprocess.run(["rm", "-rf", str(Path(res["run_dir"]) / "submission")], check=True)


@needs_bwrap
def test_output_traps_cannot_redirect_subkits_writes(arena):
    before = arena.protected()
    code, res, _ = arena.score_local(arena.zip("output_traps"), "--proba")
    assert code == 0 and res["ok"] and res["score"] == pytest.approx(arena.baseline)
    assert_untouched(arena, before)
    out = Path(res["run_dir"]) / "output"
    assert not [p for p in out.iterdir() if p.is_symlink() or not (p.is_file() or p.is_dir())]
    assert np.load(out / "labels.npy").tolist() == [0] * len(arena.labels)
    assert "hardlink:failed" in loot(res)


@needs_bwrap
def test_a_status_file_bomb_is_not_believed(arena):
    code, res, _ = arena.score_local(arena.zip("status_bomb"))
    assert code == 1 and res["ok"] is False and res["score"] is None


@needs_bwrap
def test_predictions_swapped_in_after_the_clean_run_are_ignored(arena):
    code, res, _ = arena.score_local(arena.zip("late_swap"), "--proba")
    assert code == 0 and res["ok"]
    assert res["score"] == pytest.approx(arena.baseline)  # the zeros, not the later ones
    assert res["timings"]["child_s"] < res["timings"]["child_total_s"]


@needs_bwrap
def test_a_bundles_submission_never_sees_the_reference_data(arena, tmp_path):
    bundle = Path(__file__).parent / "bundles" / "placeholder"
    ref = bundle / "dev" / "reference_data" / "y.txt"
    attack = (HOSTILE / "attack_common.py").read_text() + f'''
attempt("reference", lambda: read({str(ref)!r}))
attempt("app_ref", lambda: read("/app/input/ref/y.txt"))
attempt("bundle", lambda: __import__("os").listdir({str(bundle)!r}))
'''
    model = ("import numpy as np\nclass Model:\n    def predict(self, X):\n"
             "        return np.zeros(len(X), int)\n")
    z = _zip(tmp_path / "bundle-attack.zip", {
        "model.py": model, "attack.py": attack, "targets.json": "{}",
        "metadata.yaml": "command: python3 /app/program/attack.py\n"})
    r = subkit_process("score-local", str(z), "--bundle", str(bundle), "--json", cwd=arena.ws,
                   env=arena.env)
    res = json.loads(r.stdout)
    got = json.loads((Path(res["run_dir"]) / "prediction" / "program" / "loot.json").read_text())
    assert set(got) == {"reference:failed", "app_ref:failed", "bundle:failed"}, got
    assert res["isolation"]["isolated"] is True


# -- without bubblewrap: what it promises ----------------------------------------------------------
def test_without_the_sandbox_the_environment_is_still_an_allow_list(arena):
    code, res, _ = arena.score_local(arena.zip("steal_secrets"), env={"SUBKIT_SANDBOX": "none"})
    assert code == 0 and res["ok"]
    env = loot(res)["environ"]
    assert SECRET not in json.dumps(env)
    assert env["HOME"] != str(arena.home) and "subkit-box-" in env["HOME"]
    box = res["sandbox"]
    assert box["isolated"] is False and "SUBKIT_SANDBOX=none" in box["why"]
    assert "home folder" in box["could_reach"] and "bubblewrap" in box["install"]
    record = json.loads((Path(res["run_dir"]) / "run.json").read_text())
    assert record["sandbox"]["isolated"] is False


def test_without_the_sandbox_every_process_still_dies(arena):
    code, res, _ = arena.score_local(arena.zip("outlive", hang=True), "--time-limit", "3",
                                     env={"SUBKIT_SANDBOX": "none"})
    assert code == 1 and "time limit of 3 s" in res["failure"]["message"]
    assert not alive_with(arena.token), "an orphan outlived the run"


def test_the_summary_says_plainly_when_nothing_was_isolated(arena):
    r = subkit_process("score-local", str(arena.zip("outlive")), cwd=arena.ws,
                   env={**arena.env, "SUBKIT_SANDBOX": "none"})
    assert r.returncode == 0, r.stderr
    assert "NOT ISOLATED" in r.stdout and "apt-get install bubblewrap" in r.stdout


@needs_bwrap
def test_the_summary_names_the_sandbox(arena):
    r = subkit_process("score-local", str(arena.zip("outlive")), cwd=arena.ws, env=arena.env)
    assert r.returncode == 0, r.stderr
    assert "sandbox: bubblewrap, no network" in r.stdout and "NOT ISOLATED" not in r.stdout


def test_requiring_the_sandbox_where_there_is_none_is_an_error(arena, monkeypatch):
    r = subkit_process("score-local", str(arena.zip("outlive")), cwd=arena.ws,
                   env={**arena.env, "SUBKIT_SANDBOX": "bwrap", "PATH": "/nonexistent"})
    assert r.returncode == 1 and "error: the bubblewrap sandbox is not available" in r.stderr
    assert "hint: install bubblewrap" in r.stderr


def _world_readable(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o005 == 0o005 for p in [path, *path.parents])


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv") or not HAS_BWRAP
                    or not Path("/usr/bin/python3").exists() or not _world_readable(SRC),
                    reason="needs root (to become another user), setpriv, bubblewrap, and a "
                           "system python that any user can run")
def test_an_unprivileged_user_gets_the_same_sandbox():
    """What a participant on a laptop gets: bwrap maps their own uid; the process limit is
    counted in the sandbox's user namespace; nothing of theirs is visible."""
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="subkit-test-unprivileged-"))
    try:
        _unprivileged(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _unprivileged(tmp_path: Path) -> None:
    work = tmp_path / "box"
    work.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chown(work, 65534, 65534)
    script = f'''
import json, sys
sys.path.insert(0, {str(SRC)!r})
from pathlib import Path
from subkit.grader import sandbox
print(json.dumps(sandbox.bwrap_available()))
box = sandbox.Sandbox(sandbox.Limits(processes=16), python="/usr/bin/python3")
box.bind({str(work)!r}, "/app/output", writable=True)
child = """
import json, os
facts = {{"uid": os.getuid(), "pids": [p for p in os.listdir("/proc") if p.isdigit()],
         "home": os.path.exists({str(tmp_path)!r}), "forks": 0}}
try:
    while facts["forks"] < 100:
        if os.fork() == 0:
            import time
            time.sleep(5)
            os._exit(0)
        facts["forks"] += 1
except OSError as exc:
    facts["error"] = str(exc)
json.dump(facts, open("/app/output/facts.json", "w"))
"""
r = box.run(["/usr/bin/python3", "-c", child], cwd=Path({str(work)!r}),
            log_dir=Path({str(work)!r}) / "logs", time_limit=30)
print(json.dumps([r.returncode, r.limit, r.sandbox["isolated"]]))
'''
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          "/usr/bin/python3", "-c", script], capture_output=True, text=True,
                         timeout=120, cwd="/")
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and json.loads(lines[0]) == [True, ""], out.stdout + out.stderr
    assert json.loads(lines[1]) == [0, None, True]
    facts = json.loads((work / "facts.json").read_text())
    assert facts["uid"] == 1000 and facts["pids"][0] == "1" and facts["home"] is False
    assert 0 < facts["forks"] < 16 and "Resource temporarily unavailable" in facts["error"]


@needs_bwrap
def test_too_many_files_stop_the_run(tmp_path, monkeypatch):
    from subkit.grader import untrusted

    monkeypatch.setattr(untrusted, "MAX_FILES", 300)
    out = tmp_path / "out"
    out.mkdir()
    box = sandbox.Sandbox(sandbox.Limits(), python=sys.executable)
    box.bind(out, "/app/output", writable=True)
    code = "for i in range(10 ** 6):\n    open(f'/app/output/f{i}', 'w').close()\n"
    r = box.run([sys.executable, "-c", code], cwd=out, log_dir=tmp_path / "logs", time_limit=60)
    assert r.limit == "files" and r.elapsed_s < 30
    assert 300 < len(os.listdir(out)) < 10 ** 6


def test_what_the_child_wrote_is_read_without_trusting_it(tmp_path):
    from subkit.grader import untrusted

    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    (tmp_path / "link").symlink_to(secret)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "big").write_bytes(b"x" * 2000)
    (tmp_path / "ok.json").write_text('{"ok": true, "stage": ["x"], "timings": {"a": "1"}}')
    assert untrusted.read_untrusted(tmp_path / "link", 100) is None
    assert untrusted.read_untrusted(tmp_path / "fifo", 100) is None  # and did not block
    assert untrusted.read_untrusted(tmp_path / "big", 1000) is None
    status = untrusted.sane_status(untrusted.read_untrusted_json(tmp_path / "ok.json"))
    assert status == {"ok": True, "timings": {}}
    assert untrusted.printable("a\x1b[2J\x1b]0;x\x07b\u202ec\n") == \
        "a\\x1b[2J\\x1b]0;x\\x07b\\u202ec\n"  # shown escaped, the lines kept
    assert untrusted.seal([tmp_path]) == 2  # the link and the FIFO
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big", "ok.json", "secret"]


@pytest.mark.slow
@needs_bwrap
@pytest.mark.parametrize("attack", ["escape_network", "write_everywhere", "read_labels", "outlive"])
def test_the_grader_environment_runs_in_the_same_sandbox(arena, grader_python, attack):
    """score-local's default child is the cached grader venv (its python links to a base
    interpreter elsewhere): bound read-only like any interpreter, nothing else opened."""
    before = arena.protected()
    code, res, _ = arena.score_local(arena.zip(attack), "--env", "grader")
    assert code == 0 and res["ok"] and res["env"]["name"] == "grader", res.get("failure")
    assert res["score"] == pytest.approx(arena.baseline) and res["sandbox"]["isolated"]
    got = loot(res)
    assert "labels_from" not in got
    assert not [k for k in got if k.startswith(("setns", "tcp", "unix", "abstract", "internet",
                                                "new userns", "pth", "dir ", "toml", "ledger"))
                and not k.endswith(":failed") and k != "toml:failed"], got
    assert_untouched(arena, before)
    assert not alive_with(arena.token)


# -- the user's terminal (issue 20, point 4) ------------------------------------------------------
PAINT_EXPECTED = {  # attack -> words of the error line (the field it paints, escaped)
    "exception": "raised Error\\x1b[2J\\x1b[H\\nFAKE-HEADLINE",
    "status": "ValueError: status\\x1b[2J",
    "weights": "could not load the weights",
    "tail": "the submission's process ended with exit code 1",
    "fields": "predictions are a structured array with fields \\x1b[2J\\x1b[H\\nFAKE-HEADLINE",
    "labels_folder": "the submission wrote a folder where labels.npy goes",
    "predictions_folder": "the submission wrote a folder where predictions.npy goes",
}


def _assert_terminal_intact(out: str, err: str) -> None:
    """No escape byte, one error line with its hint right after it, nothing the submission
    wrote on a line of its own (every line of it is indented under subkit's words)."""
    assert "\x1b" not in out + err and "\u202e" not in out + err and "\r" not in out + err
    lines = err.splitlines()
    at = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(at) == 1 and lines[at[0] + 1].startswith("hint:"), err
    assert sum(line.startswith("hint:") for line in lines) == 1, err
    for line in (out + "\n" + err).splitlines():  # a tail's lines are indented: its own
        assert not line.startswith(("FAKE-", "accuracy", "hint: FAKE", "\\u202e")), line


@needs_bwrap
@pytest.mark.slow
@pytest.mark.parametrize("attack", list(PAINT_EXPECTED))
def test_the_submission_cannot_write_on_the_users_terminal(arena, attack):
    """Each text the summary shows, fed an ANSI clear-screen, a fake green headline and a
    fake hint behind newlines: the summary stays intact (the terminal summary, the --json
    record and run.json hold the text escaped)."""
    z = arena.zip("paint_the_terminal", attack, attack=attack)
    r = subkit_process("score-local", str(z), cwd=arena.ws, env=arena.env, timeout=180)
    assert r.returncode == 1, r.stdout + r.stderr
    _assert_terminal_intact(r.stdout, r.stderr)
    error = next(line for line in r.stderr.splitlines() if line.startswith("error:"))
    assert PAINT_EXPECTED[attack] in error, error
    if attack == "weights":  # the hint names the weights file, escaped
        hint = next(line for line in r.stderr.splitlines() if line.startswith("hint:"))
        assert "--weights \\x1b[2J\\x1b[H\\n FAKE-HEADLINE" in hint, hint
    if attack == "tail":
        assert "line 39\\x1b[2J" in r.stdout  # the tail is shown, escaped, line by line
    if attack == "status":
        assert "  stage: \\x1b[2J\\x1b[H\\nFAKE-HEADLINE" in r.stdout
    code, res, err = arena.score_local(z)
    assert code == 1 and "\x1b" not in json.dumps(res, ensure_ascii=False) + err
    f = res["failure"]
    assert "\n" not in f["message"] + f["hint"] + f["stage"]
    record = (Path(res["run_dir"]) / "run.json").read_text()
    assert "\x1b" not in json.loads(record)["failure"]["message"] + record
    assert not alive_with(arena.token)
