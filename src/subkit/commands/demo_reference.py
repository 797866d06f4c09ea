"""`subkit demo`: the whole flow on built-in synthetic data, in a few minutes on a CPU.

1. a workspace (`subkit init`), 2. a synthetic blood-cell-like training set with injected
joke-image duplicates, cleaned and split group-aware into train and local test sets,
3. `train.py --quick` (a small CNN), 4. `subkit build`, 5. `subkit score-local`.
Nothing is downloaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from subkit import ui
from subkit.errors import SubkitError

if TYPE_CHECKING:
    from subkit.profile import Profile


def _step(n: int, text: str) -> None:
    ui.echo(f"\n[{n}/5] {text}", bold=True)


DEFAULT_NAME = "subkit-demo"


def source_checkout(folder: Path) -> Path | None:
    """The git work tree or Python project (pyproject.toml, setup.py) ``folder`` is in, if
    any: a demo's 2000 images, weights and runs do not belong there by surprise."""
    for d in [folder, *folder.parents]:
        if (d / ".git").exists() or (d / "pyproject.toml").is_file() or (d / "setup.py").is_file():
            return d
    return None


def _free(folder: Path) -> Path:
    """``folder``, or ``folder-2``, ``folder-3``... : the first that is missing or empty."""
    cand, i = folder, 1
    while cand.exists() and (not cand.is_dir() or any(cand.iterdir())):
        i += 1
        cand = folder.with_name(f"{folder.name}-{i}")
    return cand


def demo_directory(directory: Path | None) -> tuple[Path, str]:
    """Where the demo's workspace goes, and why there. Given: that folder. Not given:
    ./subkit-demo, unless the current folder is inside a source checkout (then
    ~/subkit-demo); the next free name when that one is taken."""
    if directory is not None:
        return Path(directory).resolve(), "as asked"
    cwd = Path.cwd().resolve()
    checkout = source_checkout(cwd)
    if checkout is None:
        return _free(cwd / DEFAULT_NAME), "in the current folder"
    return (_free(Path.home() / DEFAULT_NAME),
            f"in your home folder, not inside the source checkout {checkout}")


def run_reference_demo(directory: Path, *, n_images: int, epochs: int | None, seed: int,
                       show_score: Callable[[Any, Any], None] | None = None) -> dict:
    """The reference competition's demo in ``directory`` (checked by ``commands.demo``), step
    by step through the reporter (subkit.ui); ``show_score(result, profile)`` renders the
    local run's summary (the CLI passes its terminal summary)."""
    from subkit import profile
    from subkit.workspace import init_workspace

    t0 = time.monotonic()
    _step(1, f"workspace: subkit init {directory}")
    for p in init_workspace(directory, None, force=True):
        ui.echo(f"  wrote {p}")

    _step(2, f"data: {n_images} synthetic blood-cell-like images (+ duplicated joke images), "
             "deduplicated and split group-aware")
    from subkit.data import io as data_io
    from subkit.data import synthetic

    data_dir = directory / "data"
    data_dir.mkdir(exist_ok=True)
    n_dup = max(8, n_images // 20)
    d = synthetic.generate(n_images, seed=seed, duplicates=n_dup)
    raw = data_dir / "training_set.npz"
    data_io.save_npz(raw, force=True, images=d["images"], labels=d["labels"])
    ui.echo(f"  {raw}: {len(d['labels'])} images, {n_dup} of them copies of a few joke images")
    prof = profile.load(workspace=directory)
    train_path, test_path = data_dir / "train.npz", data_dir / "local_test.npz"
    clean_and_split(raw, train_path, test_path, prof, seed)
    from subkit.data.split import set_local_test

    set_local_test(prof, test_path)

    _step(3, "train: python train.py --quick (a small CNN; a real run uses EfficientNetV2B0)")
    run_train(directory, seed, epochs)

    _step(4, "build: subkit build --weights weights.keras --tag demo")
    from subkit.commands.build import BuildOptions, build

    prof = profile.load(workspace=directory)
    manifest = build(BuildOptions(weights=[directory / "weights.keras"],
                                  model_py=directory / "model.py", tag="demo"), prof)

    _step(5, "score-local: the zip run the way the grader runs it, on the local test set")
    from subkit.commands.score_local import score_zip as score_local
    from subkit.grader.run import env_warnings

    result = score_local(Path(manifest["path"]), test_path, prof, progress=True)
    if show_score:
        show_score(result, prof)
    took = time.monotonic() - t0
    ui.echo(f"\ndemo finished in {took:.0f} s. In {directory}:", bold=True)
    ui.echo("  data/            training_set.npz (raw), train.npz, local_test.npz")
    ui.echo("  weights.keras    the trained model;  model.py  the submission's entry point")
    ui.echo(f"  submissions/     {manifest['zip']} (+ manifest .json), runs/, ledger.jsonl")
    ui.echo(f"next: cd {directory} && subkit history")
    if not result.ok:
        raise SubkitError("the demo's submission failed its local run",
                          hint="see the summary above")
    from subkit.grader.run import env_line

    ui.echo(f"local score: {result.metric} {result.score:.4f}, {env_line(result.env)}", bold=True)
    for w in env_warnings(result.env):
        ui.warn(f"WARNING: {w}")
    return {"zip": manifest["path"], "score": result.score, "seconds": took,
            "directory": str(directory), "env": result.env}


def run_train(directory: Path, seed: int, epochs: int | None) -> None:
    """``python train.py --quick`` in the workspace, its epochs streamed as they finish."""
    cmd = [sys.executable, "train.py", "--data", "data/train.npz", "--out", "weights.keras",
           "--quick", "--seed", str(seed)]
    if epochs:
        cmd += ["--epochs", str(epochs)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=directory, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    assert proc.stdout is not None  # stdout=PIPE
    for line in proc.stdout:  # stream the epochs as they finish
        tail = (tail + [line])[-60:]
        if line.startswith(("train ", "Epoch", "{", "note")) or " - accuracy" in line \
                or " - loss" in line:
            ui.echo("  " + line.strip()[:150])
    if proc.wait() != 0:
        ui.progress("".join(tail))
        raise SubkitError("training failed", hint="see the output above")


def clean_and_split(raw: Path, train_path: Path, test_path: Path, prof: Profile, seed: int) -> None:
    """Drop every copy of a duplicated image, then a stratified group-aware split."""
    from subkit.data import duplicates
    from subkit.data import io as data_io

    ds = data_io.load(raw, prof)
    assert ds.labels is not None  # io.load(require_labels=True) refuses a set without labels
    images, labels = ds.images, ds.labels
    groups = duplicates.exact_groups(images)
    drop = {int(i) for g in groups for i in g}
    keep = [i for i in range(len(labels)) if i not in drop]
    ui.echo(f"  dedupe: removed all {len(drop)} copies of {len(groups)} duplicated images "
               f"({len(labels)} -> {len(keep)}), as `subkit data dedupe --drop all-copies` does")
    images, labels = images[keep], labels[keep]
    import numpy as np

    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for c in range(prof.n_classes):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        picked += idx[: max(1, int(round(len(idx) * 0.2)))].tolist()
    test_idx = np.array(sorted(picked))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    ik, lk = prof.images_key, prof.labels_key
    data_io.save_npz(train_path, force=True,
                     **{ik: images[train_idx], lk: labels[train_idx][:, None]})
    data_io.save_npz(test_path, force=True,
                     **{ik: images[test_idx], lk: labels[test_idx][:, None]})
    ui.echo(f"  split: {len(train_idx)} train / {len(test_idx)} local test (stratified; "
               "no image has a copy on the other side)")
