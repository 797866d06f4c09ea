"""A probe submission, made by `subkit probe`: it measures the machine that grades it.

It passes the grader with dummy predictions of the competition's output (shape and dtype
as the profile says, returned at once) and prints a fingerprint of the machine that ran
it: Python, every installed distribution and its version, TensorFlow / Keras / numpy /
CUDA / cuDNN when importable, CPU, memory, GPUs, free disk, the working directory and the
paths it sees, the NAMES (never the values) of the environment variables, whether the
network answers (a bounded DNS lookup and TCP connect), the user id, and the wall time of
its own start. The fingerprint is one delimited block on stdout (the log the platform
shows you) with a sha256, so that a truncated or edited block is detected, and a file
`subkit_probe.txt` in the output folder when one can be found.

Read it back with `subkit probe import LOG` in the workspace. Self-contained: the standard
library and numpy at import time; everything else is tried and never required.
"""

import hashlib
import json
import os
import platform
import socket
import sys
import threading
import time

START_WALL = time.time()
START_MONO = time.monotonic()

# filled in by `subkit probe` (the profile the probe was built for and its output)
PROBE = {"format": 1, "profile": "an2dl-2024-blood-cells", "platform": "codabench",
         "kind": "labels", "n_classes": 8, "horizon": 0, "mask_shape": [],
         "probe_id": "unset"}

BEGIN = "=====SUBKIT-PROBE-BEGIN====="
END = "=====SUBKIT-PROBE-END====="
LINE = "SUBKIT-PROBE|"  # every line of the block starts with it (after any log prefix)
NET_TARGETS = (("pypi.org", 443), ("1.1.1.1", 443))
NET_BUDGET_S = 1.5
FILE_NAME = "subkit_probe.txt"
CHUNK = 160


TIMINGS = {}


def _try(fn, *args):
    t = time.monotonic()
    try:
        return fn(*args)
    except BaseException as exc:  # never fail the run for a measurement
        return {"error": "%s: %s" % (type(exc).__name__, str(exc)[:200])}
    finally:
        name = getattr(fn, "__name__", "?").strip("_")
        if name != "<lambda>":
            TIMINGS[name] = round(time.monotonic() - t, 3)


def _read(path, limit=200000):
    with open(path, errors="replace") as fh:
        return fh.read(limit)


def _distributions():
    out = {}
    try:
        from importlib import metadata
    except ImportError:  # Python 3.7 (codalab-legacy:py37): pkg_resources, when there
        import pkg_resources

        for d in pkg_resources.working_set:
            out[d.project_name.lower().replace("_", "-")] = d.version
        return dict(sorted(out.items()))
    for dist in metadata.distributions():
        try:
            name = dist.metadata["Name"]
        except Exception:
            name = None
        if name:
            out[str(name).lower().replace("_", "-")] = dist.version
    return dict(sorted(out.items()))


def _cpu():
    info = {"count": os.cpu_count(), "machine": platform.machine()}
    if hasattr(os, "sched_getaffinity"):
        info["usable"] = len(os.sched_getaffinity(0))
    try:
        for line in _read("/proc/cpuinfo").splitlines():
            if line.lower().startswith("model name"):
                info["model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        info["model"] = platform.processor() or None
    for path in ("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"):
        if os.path.exists(path):
            info["cgroup_quota"] = _read(path).strip()
            break
    return info


def _memory():
    info = {}
    try:
        for line in _read("/proc/meminfo").splitlines():
            key, _, value = line.partition(":")
            if key in ("MemTotal", "MemAvailable", "SwapTotal"):
                info[key.lower() + "_mb"] = int(value.split()[0]) // 1024
    except OSError:
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        if os.path.exists(path):
            raw = _read(path).strip()
            info["cgroup_limit_mb"] = int(raw) // (1 << 20) if raw.isdigit() else raw
            break
    return info


def _disk(paths):
    import shutil

    out = {}
    for p in paths:
        if p and os.path.isdir(p):
            try:
                out[p] = shutil.disk_usage(p).free // (1 << 20)
            except OSError as exc:
                out[p] = str(exc)
    return out


def _listing(folder, depth=1, limit=60):
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        return {"error": str(exc)[:200]}
    out = {}
    for name in names[:limit]:
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            out[name + "/"] = _listing(path, depth - 1, limit) if depth > 0 else None
        else:
            try:
                out[name] = os.lstat(path).st_size
            except OSError:
                out[name] = None
    if len(names) > limit:
        out["..."] = len(names) - limit
    return out


def _gpus():
    info = {}
    try:
        info["nvidia_driver"] = _read("/proc/driver/nvidia/version").splitlines()[0][:200]
    except (OSError, IndexError):
        info["nvidia_driver"] = None
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            res = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version",
                                  "--format=csv,noheader"], capture_output=True, text=True,
                                 timeout=3)
            info["nvidia_smi"] = [ln.strip() for ln in res.stdout.splitlines() if ln.strip()]
        except Exception as exc:
            info["nvidia_smi"] = "failed: %s" % type(exc).__name__
    return info


def _frameworks():
    """numpy always; TensorFlow (CUDA, cuDNN, GPUs, tf.keras) and Keras when they import."""
    out = {}
    try:
        import numpy

        out["numpy"] = numpy.__version__
    except BaseException as exc:
        out["numpy_error"] = "%s: %s" % (type(exc).__name__, str(exc)[:200])
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        out["tensorflow"] = tf.__version__
        build = _try(lambda: dict(tf.sysconfig.get_build_info()))
        if isinstance(build, dict):
            out["cuda"] = build.get("cuda_version")
            out["cudnn"] = build.get("cudnn_version")
            out["is_cuda_build"] = build.get("is_cuda_build")
        out["gpus"] = _try(lambda: [d.name for d in tf.config.list_physical_devices("GPU")])
        out["tf_keras"] = _try(lambda: getattr(tf.keras, "__version__", None))
    except BaseException as exc:
        out["tensorflow_error"] = "%s: %s" % (type(exc).__name__, str(exc)[:200])
    try:
        import keras

        out["keras"] = getattr(keras, "__version__", None)
        backend = getattr(keras, "backend", None)
        out["keras_backend"] = _try(lambda: backend.backend()) if backend else None
    except BaseException as exc:
        out["keras_error"] = "%s: %s" % (type(exc).__name__, str(exc)[:200])
    return out


def _network():
    """A DNS lookup and a TCP connect, each in a thread, all within NET_BUDGET_S."""
    result = {"dns": "timeout", "tcp": "timeout"}

    def dns():
        try:
            socket.getaddrinfo(NET_TARGETS[0][0], NET_TARGETS[0][1])
            result["dns"] = "ok"
        except Exception as exc:
            result["dns"] = "failed: %s" % type(exc).__name__

    def tcp():
        host, port = NET_TARGETS[1]
        try:
            with socket.create_connection((host, port), timeout=NET_BUDGET_S - 0.2):
                result["tcp"] = "ok"
        except Exception as exc:
            result["tcp"] = "failed: %s" % type(exc).__name__

    t0 = time.monotonic()
    threads = [threading.Thread(target=f, daemon=True) for f in (dns, tcp)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, NET_BUDGET_S - (time.monotonic() - t0)))
    result["answers"] = result["dns"] == "ok" or result["tcp"] == "ok"
    result["targets"] = ["%s:%d" % t for t in NET_TARGETS]
    result["seconds"] = round(time.monotonic() - t0, 3)
    return result


def _output_folders(here):
    """Where the grader collects outputs: --output of the ingestion program, /app/output
    (Codabench), a CodaLab-style positional 'output' argument."""
    found = []
    argv = list(sys.argv)
    for i, arg in enumerate(argv):
        if arg in ("--output", "--output-dir", "--output_dir") and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif "output" in os.path.basename(arg.rstrip("/")).lower() and os.path.isdir(arg):
            found.append(arg)
    found.append("/app/output")
    out = []
    for p in found:
        p = os.path.abspath(p)
        if os.path.isdir(p) and os.access(p, os.W_OK) and p not in out and p != here:
            out.append(p)
    return out


def fingerprint(here):
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(START_WALL))
    outputs = _try(_output_folders, here)
    fp = {
        "probe": dict(PROBE),
        "started_utc": started,
        "started_epoch": round(START_WALL, 3),
        "python": {"version": "%d.%d.%d" % sys.version_info[:3],
                   "implementation": platform.python_implementation(),
                   "executable": sys.executable, "prefix": sys.prefix},
        "platform": {"system": platform.system(), "release": platform.release(),
                     "platform": platform.platform(), "hostname_len": len(socket.gethostname()),
                     "container": os.path.exists("/.dockerenv")},
        "user": {"uid": os.getuid() if hasattr(os, "getuid") else None,
                 "gid": os.getgid() if hasattr(os, "getgid") else None},
        "frameworks": _try(_frameworks),
        "distributions": _try(_distributions),
        "cpu": _try(_cpu),
        "memory": _try(_memory),
        "gpus": _try(_gpus),
        "cwd": os.getcwd(),
        "here": here,
        "argv": list(sys.argv)[:20],
        "sys_path": list(sys.path)[:30],
        "paths": {"/app": _try(_listing, "/app", 1), "here": _try(_listing, here, 0),
                  "cwd": _try(_listing, os.getcwd(), 0)},
        "outputs": outputs,
        "disk_free_mb": _try(_disk, [os.getcwd(), here, "/tmp", "/app/output"]
                             + (outputs if isinstance(outputs, list) else [])),
        "env_names": sorted(os.environ),
        "network": _try(_network),
    }
    fp["measure_s"] = round(time.monotonic() - START_MONO, 3)
    fp["timings_s"] = dict(TIMINGS)
    return fp


def canonical(fp):
    return json.dumps(fp, sort_keys=True, separators=(",", ":"), default=str)


def block(fp):
    """The block as printed: BEGIN; the canonical JSON in numbered chunks, each line closed
    by "|" (a log that strips trailing spaces or cuts a line cannot go unnoticed); END with
    the sha256 of the JSON and the number of lines."""
    text = canonical(fp)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    body = ["%s%04d|%s|" % (LINE, i, text[o:o + CHUNK])
            for i, o in enumerate(range(0, len(text), CHUNK))]
    head = "%s profile=%s format=%d" % (BEGIN, PROBE["profile"], PROBE["format"])
    tail = "%s sha256=%s lines=%d" % (END, digest, len(body))
    return "\n".join([head] + body + [tail]) + "\n"


def summary(fp):
    """A few lines for the eye, above the block (not checked: the block is the record)."""
    fw = fp.get("frameworks") or {}
    cpu, mem, net = fp.get("cpu") or {}, fp.get("memory") or {}, fp.get("network") or {}
    return ("subkit probe: python %s, tensorflow %s, keras %s, numpy %s; %s CPUs (%s); "
            "%s MB memory; network %s; uid %s\n" % (
                fp["python"]["version"], fw.get("tensorflow", "-"), fw.get("keras", "-"),
                fw.get("numpy", "-"), cpu.get("count"), cpu.get("model", "?"),
                mem.get("memtotal_mb", "?"), "answers" if net.get("answers") else "silent",
                fp["user"]["uid"]))


def report(here):
    fp = fingerprint(here)
    text = block(fp)
    head = _try(summary, fp)
    sys.stdout.write((head if isinstance(head, str) else "") + text)
    sys.stdout.flush()
    for folder in fp["outputs"] if isinstance(fp["outputs"], list) else []:
        try:
            with open(os.path.join(folder, FILE_NAME), "w") as fh:
                fh.write(text)
        except OSError:
            pass
    return fp


class Model:
    def __init__(self, path=None):
        here = os.path.dirname(os.path.abspath(__file__))
        try:
            self.fingerprint = report(here)
        except Exception as exc:  # the probe must pass whatever happens to its measurement
            self.fingerprint = None
            print("subkit probe: the fingerprint failed: %s: %s" % (type(exc).__name__, exc))

    def predict(self, X, *more):
        """Valid dummy output for the profile: class 0, a persistence forecast, or an
        all-background mask; never a library beyond numpy."""
        import numpy as np

        n = len(X)
        kind = PROBE["kind"]
        if kind == "forecasts":
            h = int(PROBE["horizon"])
            x = np.asarray(X, dtype=np.float64).reshape(n, -1)
            last = x[:, -1:] if x.shape[1] else np.zeros((n, 1))
            return np.repeat(np.nan_to_num(last), h, axis=1)
        if kind == "masks":
            return np.zeros((n,) + tuple(int(s) for s in PROBE["mask_shape"]), np.int64)
        return np.zeros((n,), np.int64)
