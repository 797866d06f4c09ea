"""The kernel's caps on a whole run (issue 20, points 2 and 3): memory through a memory
cgroup (grader/cgroup.py), disk through size-limited storage under the writable folders
(grader/diskcap.py); where the machine offers neither, the summary and run.json say so and
the per-process limits hold as before.

The hostile submissions are tests/hostile/hide_memory.py and hide_disk.py, run through
`subkit score-local` in a real process by test_hostile.py's Arena.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_hostile as hostile

from subkit.grader import cgroup, diskcap, sandbox

from conftest import alive_with, subkit_process

arena = hostile.arena  # the fixture: a workspace worth attacking
HAS_BWRAP, loot, needs_bwrap = hostile.HAS_BWRAP, hostile.loot, hostile.needs_bwrap

HAS_CGROUP = cgroup.available()[0]
needs_cgroup = pytest.mark.skipif(not HAS_CGROUP and not os.environ.get("CI"),
                                  reason=f"no memory cgroup: {cgroup.available()[1]}")


def _ours() -> list[str]:
    """The cgroups subkit made under this process's own cgroup."""
    version, parent = cgroup._parent()
    if version is None:
        return []
    assert isinstance(parent, Path)
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(cgroup.PREFIX))


# -- memory ------------------------------------------------------------------------------------
@needs_bwrap
@needs_cgroup
@pytest.mark.parametrize("attack", ["memfd", "dev_shm", "oom_adj_memfd", "child_memfd"])
def test_memory_hidden_from_rlimits_is_capped_by_the_kernel(arena, attack):
    """3 GB in memfds read 35 MB of RSS before: now every page of the run counts."""
    arena.limits(memory_mb=256, tmp_mb=2048)  # /dev/shm larger than the memory cap
    before = _ours()
    code, res, _ = arena.score_local(arena.zip("hide_memory", attack, attack=attack, mb=1024),
                                     "--time-limit", "60")
    got = loot(res)
    assert code == 1 and res["ok"] is False and res["score"] is None
    msg = res["failure"]["message"]
    assert "memory limit of 256 MB" in msg and "shared memory included" in msg, msg
    assert "[limits] memory_mb" in res["failure"]["hint"]
    assert "survived" not in got and got.get("held_mb", 0) < 300, got
    box = res["sandbox"]
    assert box["memory_capped"] is True and "under 256 MB" in box["memory"]
    assert box["memory_peak_mb"] <= 256 + 1
    assert not alive_with(arena.token)
    assert _ours() == before  # the run's cgroup is gone
    if attack == "oom_adj_memfd":  # lowering its OOM priority did not move the cap
        assert got["oom_adj_write"] == "ok" or got["oom_adj_write"].startswith("failed")


@needs_cgroup
@pytest.mark.parametrize("mode", ["bubblewrap", "none"])
def test_the_cap_holds_with_and_without_bubblewrap(tmp_path, mode):
    if mode == "bubblewrap" and not HAS_BWRAP:
        pytest.skip("no bubblewrap")
    code = ("import os\nfd = os.memfd_create('x')\nb = b'x' * (1 << 20)\n"
            "for i in range(2048):\n    os.write(fd, b)\nprint('survived')\n")
    box = sandbox.Sandbox(sandbox.Limits(memory_mb=128), python=sys.executable, mode=mode)
    box.bind(tmp_path, "/app/output", writable=True)
    try:
        r = box.run([sys.executable, "-c", code], cwd=tmp_path, log_dir=tmp_path / "logs",
                    time_limit=60)
    finally:
        box.close()
    assert r.limit == "memory" and r.signal == signal.SIGKILL, (r.limit, r.signal, r.tail())
    assert "survived" not in r.tail("stdout")
    assert r.sandbox["memory_capped"] is True and r.sandbox["memory_peak_mb"] <= 129


@needs_cgroup
def test_a_crashed_subkits_cgroup_is_removed_by_the_next_run(tmp_path):
    """kill -9 of subkit mid-run: its sandbox dies with it (die-with-parent); the cgroup it
    leaves is named by its pid, which the next run's sweep finds dead."""
    script = (f"import sys; sys.path.insert(0, {str(Path(sandbox.__file__).parents[2])!r})\n"
              "from pathlib import Path\nfrom subkit.grader import sandbox\n"
              "box = sandbox.Sandbox(sandbox.Limits(memory_mb=256), python=sys.executable)\n"
              f"box.bind({str(tmp_path)!r}, '/app/output', writable=True)\n"
              f"box.run([sys.executable, '-c', 'import time; time.sleep(120)'], "
              f"cwd=Path({str(tmp_path)!r}), log_dir=Path({str(tmp_path)!r}), time_limit=120)\n")
    cgroup.sweep(cgroup._parent()[1])  # type: ignore[arg-type]
    before = set(_ours())
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(200):
            left = set(_ours()) - before
            if left:
                break
            time.sleep(0.05)
        assert left, "the run made no cgroup"
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    left = set(_ours()) - before  # (not the probe's of bwrap_available: removed)
    version, parent = cgroup._parent()
    assert isinstance(parent, Path) and left
    for _ in range(100):  # its processes die with it
        if not any((parent / n / "cgroup.procs").read_text().strip() for n in left):
            break
        time.sleep(0.05)
    assert set(_ours()) >= left  # left behind ...
    cap = cgroup.MemoryCap.create(64 << 20)  # ... until the next run sweeps them
    assert cap is not None
    cap.close()
    assert not set(_ours()) & left and set(_ours()) <= before


def test_without_a_cgroup_the_summary_and_run_json_say_so(arena):
    """The fallback (simulated with SUBKIT_KERNEL_CAPS=off): the per-process limits, and
    plain words on what is not capped."""
    env = {"SUBKIT_KERNEL_CAPS": "off"}
    code, res, _ = arena.score_local(arena.zip("outlive"), env=env)
    assert code == 0 and res["ok"], res.get("failure")
    box = res["sandbox"]
    assert box["memory_capped"] is False and "SUBKIT_KERNEL_CAPS=off" in box["not_capped"]
    assert "a process (RLIMIT_DATA)" in box["memory"] and "not counted" in box["memory"]
    record = json.loads((Path(res["run_dir"]) / "run.json").read_text())
    assert record["sandbox"]["memory_capped"] is False
    assert record["sandbox"]["not_capped"] == box["not_capped"]
    if HAS_BWRAP:
        r = subkit_process("score-local", str(arena.zip("outlive")), cwd=arena.ws,
                           env={**arena.env, **env})
        assert r.returncode == 0, r.stderr
        assert "MB memory a process" in r.stdout
        assert "not capped by the kernel: memory (no cgroup: turned off" in r.stdout


@needs_bwrap
@needs_cgroup
def test_with_a_cgroup_the_summary_says_the_whole_run(arena):
    r = subkit_process("score-local", str(arena.zip("outlive")), cwd=arena.ws, env=arena.env)
    assert r.returncode == 0, r.stderr
    assert "MB memory for the whole run" in r.stdout and "not capped" not in r.stdout


# -- disk --------------------------------------------------------------------------------------
HAS_DISKCAP = diskcap.available()[0]
needs_diskcap = pytest.mark.skipif(not HAS_DISKCAP and not os.environ.get("CI"),
                                   reason=f"no disk cap: {diskcap.available()[1]}")
MEMBERS = {"model.py", "attack_common.py", "targets.json"}


def _stdout_loot(res: dict) -> dict:
    out: dict = {}
    text = (Path(res["run_dir"]) / "logs" / "stdout.txt").read_text()
    for line in text.splitlines():
        if line.startswith("LOOT "):
            out.update(json.loads(line[5:]))
    return out


def _left(run_dir: Path) -> dict[str, int]:
    """Every file of the run folder but the logs and subkit's own records: path -> size."""
    return {str(p.relative_to(run_dir)): p.stat().st_size for p in run_dir.rglob("*")
            if p.is_file() and p.parts[len(run_dir.parts)] != "logs"
            and p.name not in ("run.json", "report.html")}


@needs_bwrap
@needs_diskcap
@pytest.mark.parametrize("attack", ["tmpfile", "unlinked", "output_files"])
def test_writes_a_scan_cannot_see_are_capped_by_the_kernel(arena, attack):
    """O_TMPFILE + fallocate filled the disk for 5 s and PASSED with written_mb 0 before."""
    arena.limits(disk_mb=64)
    code, res, _ = arena.score_local(arena.zip("hide_disk", attack, attack=attack, mb=1024),
                                     "--time-limit", "60")
    assert code == 1 and res["score"] is None
    assert "wrote more than 64 MB" in res["failure"]["message"], res["failure"]
    assert "[limits] disk_mb" in res["failure"]["hint"]
    got = _stdout_loot(res)
    assert "survived" not in got and got.get("held_mb", 0) <= 64 + 16, got
    box = res["sandbox"]
    assert box["disk_capped"] is True and 64 <= box["written_mb"] <= 64 + 16
    run_dir = Path(res["run_dir"])
    left = _left(run_dir)  # what the submission wrote is gone; the zip's files and logs stay
    assert {Path(k).name for k in left} <= MEMBERS | {"scores.json"}, left
    assert sum(left.values()) < 1 << 20
    assert (run_dir / "logs" / "stdout.txt").stat().st_size > 0
    assert not alive_with(arena.token)


@needs_bwrap
@needs_diskcap
def test_a_burst_of_fallocates_passes_the_limit_by_a_small_margin_at_most(arena):
    """Ten 256 MB fallocates in 20 ms overshot disk_mb = 256 by 11x with polling."""
    arena.limits(disk_mb=256)
    code, res, _ = arena.score_local(arena.zip("hide_disk", "burst", attack="burst",
                                               chunk_mb=256), "--time-limit", "60")
    assert code == 1 and "wrote more than 256 MB" in res["failure"]["message"]
    burst = _stdout_loot(res).get("burst", {"ok": 1})  # (killed before it could say)
    assert burst["ok"] == 1, burst  # the first fits, the kernel refuses the others
    assert res["sandbox"]["written_mb"] <= 256 * 1.25 + 1
    assert {Path(k).name for k in _left(Path(res["run_dir"]))} <= MEMBERS | {"scores.json"}


@needs_bwrap
@needs_diskcap
def test_what_the_child_writes_under_the_limit_reaches_the_run_folder(tmp_path):
    """The overlay's upper layer applied to the host folder: new, changed and deleted files,
    never a link or a FIFO; the host folder shows the child's writes while it runs."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("subkit's")
    (work / "change.txt").write_text("old")
    (work / "gone.txt").write_text("x")
    (work / "sub").mkdir()
    (work / "sub" / "inner.txt").write_text("y")
    code = ("import os, time\nopen('new.txt', 'w').write('new')\n"
            "open('change.txt', 'w').write('changed')\nos.unlink('gone.txt')\n"
            "import shutil; shutil.rmtree('sub'); os.mkdir('sub')\n"
            "open('sub/fresh.txt', 'w').write('f')\nos.symlink('/etc/passwd', 'link')\n"
            "os.mkfifo('fifo')\nos.mkdir('deep'); open('deep/d.txt', 'w').write('d')\n"
            "time.sleep(1.5)\n")
    box = sandbox.Sandbox(sandbox.Limits(disk_mb=64), python=sys.executable)
    box.bind(work, "/app/ingested_program", writable=True)
    seen: list[bool] = []
    try:
        r = box.run([sys.executable, "-c", code], cwd=work, log_dir=tmp_path / "logs",
                    time_limit=60, on_tick=lambda t: seen.append((work / "new.txt").exists()))
    finally:
        box.close()
    assert r.returncode == 0 and r.limit is None, r.tail()
    assert any(seen)  # live, as run.py's status and clean-predictions watch read them
    files = {str(p.relative_to(work)): p.read_text() for p in work.rglob("*") if p.is_file()}
    assert files == {"keep.txt": "subkit's", "change.txt": "changed", "new.txt": "new",
                     "sub/fresh.txt": "f", "deep/d.txt": "d"}
    assert not (work / "link").exists() and not (work / "link").is_symlink()
    assert r.sandbox["disk_capped"] is True and r.written_mb < 1
    assert not [m for m in Path("/proc/self/mountinfo").read_text().splitlines()
                if f"{diskcap.PREFIX}{os.getpid()}-" in m or str(work) in m]


@needs_diskcap
def test_a_crashed_subkits_mounts_are_swept(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    script = (f"import sys, os; sys.path.insert(0, {str(Path(sandbox.__file__).parents[2])!r})\n"
              "from pathlib import Path\nfrom subkit.grader import diskcap\n"
              f"cap = diskcap.DiskCap.create([Path({str(folder)!r})], 1 << 20, 100)\n"
              "print(cap.stage, flush=True)\nos.kill(os.getpid(), 9)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    stage = out.stdout.strip()
    assert stage and os.path.ismount(stage) and os.path.ismount(folder)
    assert diskcap.sweep() >= 2
    assert not os.path.ismount(folder) and not os.path.exists(stage)


def test_without_the_disk_cap_the_record_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBKIT_KERNEL_CAPS", "off")
    box = sandbox.Sandbox(sandbox.Limits(disk_mb=64), python=sys.executable)
    d = box.describe()
    assert d["disk_capped"] is False and "not enforced by the kernel" in d["disk"]
    assert "disk (turned off" in d["not_capped"] and "memory (no cgroup" in d["not_capped"]


@needs_bwrap
@needs_diskcap
def test_folders_too_deep_for_a_path_are_dropped_not_a_crash(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    code = ("import os\nopen('top.txt', 'w').write('t')\n"
            "for _ in range(25):\n    os.mkdir('d' * 200)\n    os.chdir('d' * 200)\n"
            "open('deep.txt', 'w').write('x')\n")
    box = sandbox.Sandbox(sandbox.Limits(disk_mb=64), python=sys.executable)
    box.bind(work, "/app/output", writable=True)
    try:
        r = box.run([sys.executable, "-c", code], cwd=work, log_dir=tmp_path / "logs",
                    time_limit=60)
    finally:
        box.close()
    assert r.returncode == 0 and r.limit is None, r.tail()
    assert (work / "top.txt").read_text() == "t"
    subprocess.run(["rm", "-rf", str(work)], check=True)  # past PATH_MAX for rmtree
