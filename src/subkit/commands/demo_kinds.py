"""`subkit demo --profile NAME`: the whole flow for any kind of competition.

1. a workspace for the profile (`subkit init --profile NAME`: the kind's model.py and
train.py, CodaLab's metadata file), 2. a synthetic training set of that kind with its
traps (duplicated joke images, Mars' "alien" images sharing one mask), cleaned and split
the way the kind needs (group-aware; forecasting windows by series), 3. `train.py --quick`,
4. `subkit build`, 5. `subkit score-local`, 6. on Kaggle profiles, `subkit predict` and
the CSV read back by `subkit check`. Nothing is downloaded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from subkit import ui
from subkit.errors import SubkitError


def _step(n: int, total: int, text: str) -> None:
    ui.echo(f"\n[{n}/{total}] {text}", bold=True)


def run_kind_demo(directory: Path, prof, *, n: int, epochs: int | None, seed: int,
                  show_score: Callable[[Any, Any], None] | None = None) -> dict:
    from subkit.checks import check_csv
    from subkit.commands.build import BuildOptions, build
    from subkit.commands.demo_reference import run_train
    from subkit.commands.score_local import predict_csv
    from subkit.commands.score_local import score_zip as score_local
    from subkit.data.split import set_local_test
    from subkit.profile import load
    from subkit.workspace import init_workspace

    t0 = time.monotonic()
    total = 6 if prof.platform == "kaggle" else 5
    _step(1, total, f"workspace: subkit init --profile {prof.name} {directory}")
    for p in init_workspace(directory, prof.name, force=True):
        ui.echo(f"  wrote {p}")

    _step(2, total, f"data: synthetic {prof.kind} data, cleaned and split")
    data_dir = directory / "data"
    data_dir.mkdir(exist_ok=True)
    prof = load(workspace=directory)
    test_path = _make_data(prof, data_dir, n, seed)
    set_local_test(prof, test_path)

    _step(3, total, "train: python train.py --quick (a small offline network of this kind)")
    run_train(directory, seed, epochs)

    _step(4, total, "build: subkit build --weights weights.keras --tag demo")
    prof = load(workspace=directory)
    manifest = build(BuildOptions(weights=[directory / "weights.keras"],
                                  model_py=directory / "model.py", tag="demo"), prof)

    _step(5, total, "score-local: the zip run the way the grader runs it, on the local test set")
    result = score_local(Path(manifest["path"]), test_path, prof, progress=True)
    if show_score:
        show_score(result, prof)
    out = {"zip": manifest["path"], "score": result.score, "metric": result.metric}
    if prof.platform == "kaggle" and result.ok:
        _step(6, total, "predict: the Kaggle CSV, then read back by subkit check")
        csv_path = directory / "submission.csv"
        info = predict_csv(Path(manifest["path"]), test_path, csv_path, prof, force=True)
        ui.echo(f"  wrote {info['rows']} rows x {info['columns']} columns to {csv_path}")
        report = check_csv(csv_path, prof, data=test_path)
        out.update(csv=str(csv_path), csv_status=report.status)
    out["seconds"] = time.monotonic() - t0
    ui.echo(f"\ndemo finished in {out['seconds']:.0f} s in {directory}", bold=True)
    if not result.ok:
        raise SubkitError("the demo's submission failed its local run", hint="see the summary above")
    return out


def _make_data(prof, data_dir: Path, n: int, seed: int) -> Path:
    """The raw synthetic set (with the kind's traps), cleaned and split; the test set's path."""
    from subkit.data import io as data_io
    from subkit.data import synthetic

    raw, train, test = data_dir / "training_set.npz", data_dir / "train.npz", data_dir / "local_test.npz"
    if prof.kind == "forecasting":
        d = synthetic.for_profile(prof, n, seed=seed)
        data_io.save_npz(raw, force=True, **d)
        test_ids = _series_split(d["series"], seed)
        is_test = np.isin(d["series"], test_ids)
        ui.echo(f"  {raw}: {len(d['series'])} windows of {len(np.unique(d['series']))} series; "
                   f"split by series: {len(test_ids)} series held out (their windows overlap)")
    elif prof.kind == "segmentation":
        d = synthetic.for_profile(prof, n, seed=seed, aliens=max(4, n // 25))
        data_io.save_npz(raw, force=True, **d)
        keep = _without_shared_masks(d[prof.labels_key])
        ui.echo(f"  {raw}: {len(keep)} images; dropped {int((~keep).sum())} that share one "
                   "identical mask (the 'alien' outliers)")
        d = {k: v[keep] for k, v in d.items()}
        is_test = np.random.default_rng(seed).random(len(d[prof.images_key])) < 0.2
    else:
        from subkit.commands.demo_reference import clean_and_split

        d = synthetic.for_profile(prof, n, seed=seed, **({"duplicates": max(8, n // 20)}
                                                          if prof.input_kind == "images" else {}))
        data_io.save_npz(raw, force=True, **{k: v for k, v in d.items() if k != "is_duplicate"})
        ui.echo(f"  {raw}: {len(d[prof.labels_key])} samples")
        clean_and_split(raw, train, test, prof, seed)
        return test
    data_io.save_npz(train, force=True, **{k: v[~is_test] for k, v in d.items()})
    data_io.save_npz(test, force=True, **{k: v[is_test] for k, v in d.items()})
    ui.echo(f"  split: {int((~is_test).sum())} train / {int(is_test.sum())} local test")
    return test


def _series_split(series: np.ndarray, seed: int, fraction: float = 0.2) -> np.ndarray:
    ids = np.unique(series)
    return np.random.default_rng(seed).choice(ids, max(1, int(round(len(ids) * fraction))), replace=False)


def _without_shared_masks(masks: np.ndarray) -> np.ndarray:
    """False for every image whose mask is byte-identical to another's."""
    from subkit.data import duplicates

    keep = np.ones(len(masks), bool)
    for group in duplicates.exact_groups(masks):
        keep[group] = False
    return keep
