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

from subkit.grader import cgroup, sandbox

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
