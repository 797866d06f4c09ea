"""The template train.py of every kind, as `subkit init` writes it beside train_data.py: a
mistake in the training file is one `error:` line and one `hint:` (exit 2, no traceback,
before TensorFlow loads); labels in the layouts students use are read; --quick has a time
budget that ends training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from subkit.workspace import init_workspace

PROFILES = {"classification": "an2dl-2024-blood-cells",
            "series": "an2dl-2022-ts-classification",
            "forecasting": "an2dl-2023-forecasting",
            "segmentation": "an2dl-2024-mars-terrain"}


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train")
    out = {}
    for kind, name in PROFILES.items():
        init_workspace(root / kind, name)
        out[kind] = root / kind
    return out


def train(ws: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train.py", *map(str, args)], cwd=ws,
                          capture_output=True, text=True, timeout=timeout)


def one_error(r: subprocess.CompletedProcess) -> tuple[str, str]:
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and \
        lines[1].startswith("hint: "), r.stderr
    return lines[0], lines[1]


def _td(ws: Path):
    sys.path.insert(0, str(ws))
    try:
        import importlib

        import train_data

        return importlib.reload(train_data)
    finally:
        sys.path.remove(str(ws))


def test_init_writes_train_data_beside_train_py(workspaces):
    for ws in workspaces.values():
        assert "import train_data" in (ws / "train.py").read_text()
        assert (ws / "train_data.py").is_file()


@pytest.mark.parametrize("kind", list(PROFILES))
def test_a_missing_or_unreadable_file_is_one_error(workspaces, kind, tmp_path):
    ws = workspaces[kind]
    err, hint = one_error(train(ws, "--data", tmp_path / "nope.npz"))
    assert "nope.npz not found" in err and "--data" in hint
    err, _ = one_error(train(ws, "--data", tmp_path))
    assert "is a folder" in err
    (tmp_path / "junk.npz").write_bytes(b"not numpy at all")
    err, hint = one_error(train(ws, "--data", tmp_path / "junk.npz"))
    assert "not a readable .npz" in err and "numpy.savez" in hint
    np.save(tmp_path / "one.npy", np.zeros(3))
    err, _ = one_error(train(ws, "--data", tmp_path / "one.npy"))
    assert "single array" in err


@pytest.mark.parametrize("kind", list(PROFILES))
def test_a_wrong_key_names_the_keys_the_file_has(workspaces, kind, tmp_path):
    np.savez(tmp_path / "k.npz", pictures=np.zeros((4, 2)), answers=np.zeros(4))
    err, hint = one_error(train(workspaces[kind], "--data", tmp_path / "k.npz"))
    assert "has no array" in err and "it has pictures, answers" in err
    assert "DATA at the top of train.py" in hint


def test_labels_in_every_layout_students_use(workspaces):
    td = _td(workspaces["classification"])
    y = np.array([0, 2, 1, 2])
    for layout in (y, y[:, None], np.eye(3)[y], y.astype(float)):
        assert td.class_ids(layout, [], 4).tolist() == [0, 2, 1, 2]
    assert td.class_ids(np.array(["b", "a"]), ["a", "b"], 2).tolist() == [1, 0]
    for bad, words in [(np.zeros((4, 3)), "do not fit"), (np.array([0.5, 1, 2, 0]), "fractional"),
                       (np.array([0, 1, 2]), "do not fit"), (np.array(["x"] * 4), "not among"),
                       (np.array([0, 9, 1, 1]), "not a class id"), (np.array([-1, 0, 1, 1]),
                                                                     "negative")]:
        with pytest.raises(SystemExit) as exc:
            td.class_ids(bad, ["a", "b", "c"] if words != "negative" else [], 4)
        assert exc.value.code == 2
    m = np.random.default_rng(0).integers(0, 5, (2, 4, 6))
    for layout in (m, m[..., None], np.eye(5)[m]):
        assert np.array_equal(td.masks(layout, 2, 5), m)
    with pytest.raises(SystemExit):
        td.masks(m + 5, 2, 5)
    t = np.arange(2 * 18, dtype=np.float32).reshape(2, 18)
    assert td.targets(t, 2, 9).shape == (2, 9)
    with pytest.raises(SystemExit):
        td.targets(t, 2, 20)


def test_an_error_line_goes_to_stderr_before_tensorflow(workspaces, tmp_path, capsys):
    td = _td(workspaces["series"])
    np.savez(tmp_path / "s.npz", X=np.zeros((4, 36, 6)), labels=np.zeros((4, 2)))
    with pytest.raises(SystemExit):
        d = td.load(tmp_path / "s.npz", ["X", "labels"])
        td.class_ids(d["labels"], [], 4)
    err = capsys.readouterr().err
    assert err == ("error: labels shaped (4, 2) do not fit 4 samples\n"
                   "hint: store one label per sample: (n,), (n, 1) or one-hot (n, classes)\n")


@pytest.mark.slow
def test_one_hot_labels_train_and_the_time_budget_ends_training(workspaces, tmp_path):
    """One-hot labels (n, 12) read as ids with a note; --time-budget 1 ends 200 epochs early."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 12, 48)
    np.savez(tmp_path / "t.npz", X=rng.normal(size=(48, 36, 6)).astype(np.float32),
             labels=np.eye(12)[y])
    r = train(workspaces["series"], "--data", tmp_path / "t.npz", "--epochs", "200",
              "--time-budget", "1", "--out", tmp_path / "w.keras")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "note: one-hot labels (12 columns) read as class ids" in r.stdout
    assert "note: the time budget of 1 s ended training" in r.stdout
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["epochs_run"] < 200 and (tmp_path / "w.keras").is_file()
