"""The synthetic data set and `subkit demo`, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from subkit.data import synthetic


def test_synthetic_is_deterministic_and_imbalanced_like_the_reference():
    a = synthetic.generate(400, seed=5, duplicates=40)
    b = synthetic.generate(400, seed=5, duplicates=40)
    np.testing.assert_array_equal(a["images"], b["images"])
    np.testing.assert_array_equal(a["labels"], b["labels"])
    assert a["images"].shape == (440, 96, 96, 3) and a["images"].dtype == np.uint8
    assert a["labels"].shape == (440, 1)
    clean = a["labels"][~a["is_duplicate"], 0]
    counts = np.bincount(clean, minlength=8)
    np.testing.assert_array_equal(counts, synthetic.class_counts(400))
    share = synthetic.REFERENCE_COUNTS / synthetic.REFERENCE_COUNTS.sum()
    assert np.abs(counts / 400 - share).max() < 0.01
    dup = a["images"][a["is_duplicate"]]
    distinct = {im.tobytes() for im in dup}
    assert len(distinct) <= 4  # copies of a few joke images, byte-identical
    assert not (synthetic.generate(50, seed=6)["images"]
                == synthetic.generate(50, seed=5)["images"]).all()


def test_synthetic_classes_differ_but_not_trivially():
    d = synthetic.generate(800, seed=1, labels_2d=False)
    x, y = d["images"].reshape(800, -1).astype(np.float32), d["labels"]
    # a nearest-class-mean classifier on raw pixels must be far from perfect
    means = np.stack([x[y == c].mean(0) for c in range(8)])
    pred = np.argmin(((x[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    acc = (pred == y).mean()
    assert 0.15 < acc < 0.8, acc


@pytest.mark.slow
def test_demo_end_to_end(cli, tmp_path):
    out = tmp_path / "demo"
    r = cli("demo", out, "--n", "400", "--epochs", "1")
    assert r.code == 0, r.text[-3000:]
    for step in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]", "demo finished"):
        assert step in r.out
    zips = list((out / "submissions").glob("demo-*.zip"))
    assert len(zips) == 1
    ledger = [json.loads(x)
              for x in (out / "submissions" / "ledger.jsonl").read_text().splitlines()]
    kinds = [rec["kind"] for rec in ledger]
    assert kinds == ["build", "score-local"]
    (run,) = (out / "submissions" / "runs").iterdir()
    scores = json.loads((run / "scores.json").read_text())
    assert scores["accuracy"] == ledger[1]["clean_score"]
    assert 0.0 <= scores["accuracy"] <= 1.0
    assert 'local_test = "data/local_test.npz"' in (out / "subkit.toml").read_text()
    r = cli("demo", out)
    assert r.code == 1 and "not empty" in r.err
