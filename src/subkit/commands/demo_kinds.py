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
from typing import TYPE_CHECKING, Any

from subkit import ui
from subkit.errors import SubkitError
from subkit.grader.run import env_line, env_warnings

if TYPE_CHECKING:
    from subkit.profile import Profile


def _step(n: int, total: int, text: str) -> None:
    ui.echo(f"\n[{n}/{total}] {text}", bold=True)


def run_kind_demo(directory: Path, prof: Profile, *, n: int, epochs: int | None, seed: int,
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

    _step(2, total, f"data: synthetic {prof.kind_spec.title} data, cleaned and split")
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
    ui.echo(f"next: cd {directory} && subkit history")
    if not result.ok:
        raise SubkitError("the demo's submission failed its local run",
                          hint="see the summary above")
    # the same ending as the image demo's (demo_reference): the score and the versions
    ui.echo(f"local score: {result.metric} {result.score:.4f}, {env_line(result.env)}", bold=True)
    for w in env_warnings(result.env):
        ui.warn(f"WARNING: {w}")
    out.update(directory=str(directory), env=result.env)
    return out


def _make_data(prof: Profile, data_dir: Path, n: int, seed: int) -> Path:
    """The raw synthetic set (with the kind's traps), cleaned and split; the test set's path.
    The kind (``subkit.kinds``) makes the data and says which rows it holds out."""
    from subkit.data import io as data_io

    raw, train, test = (data_dir / "training_set.npz", data_dir / "train.npz",
                        data_dir / "local_test.npz")
    demo = prof.kind_spec.demo_data(prof, n, seed)
    data_io.save_npz(raw, force=True, **demo.raw)
    ui.echo(f"  {raw}: {demo.note}")
    if demo.is_test is None:  # one label per sample: deduplicated and split like the images
        from subkit.commands.demo_reference import clean_and_split

        clean_and_split(raw, train, test, prof, seed)
        return test
    is_test = demo.is_test
    data_io.save_npz(train, force=True, **{k: v[~is_test] for k, v in demo.arrays.items()})
    data_io.save_npz(test, force=True, **{k: v[is_test] for k, v in demo.arrays.items()})
    ui.echo(f"  split: {int((~is_test).sum())} train / {int(is_test.sum())} local test")
    return test
