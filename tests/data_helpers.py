"""Small synthetic data sets for the tests of `subkit data`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from subkit.data import synthetic


def make_set(n_clean: int = 240, duplicates: int = 40, seed: int = 11, n_near: int = 0,
             brightness: int = 8, consistent_copies: int = 0) -> dict[str, np.ndarray]:
    """A blood-cell-like set in the reference layout, with its traps marked.

    ``duplicates`` byte-identical copies of 3 joke images with random (conflicting)
    labels; ``n_near`` brightness-shifted copies (+``brightness``) of clean images, same
    label; ``consistent_copies`` byte-identical copies of clean images, same label.
    Extra keys: ``is_duplicate`` (joke copies), ``near_of`` (index of the original of a
    near copy, else -1), ``copy_of`` (same for consistent copies).
    """
    d = synthetic.generate(n_clean, seed=seed, duplicates=duplicates, n_joke_images=3)
    images, labels = d["images"], d["labels"]
    n = len(images)
    rng = np.random.default_rng(seed + 1)
    clean = np.flatnonzero(~d["is_duplicate"])
    near_src = rng.choice(clean, n_near, replace=False) if n_near else np.zeros(0, int)
    rest = np.setdiff1d(clean, near_src)
    copy_src = (rng.choice(rest, consistent_copies, replace=False) if consistent_copies
                else np.zeros(0, int))
    extra_img = [np.clip(images[near_src].astype(np.int16) + brightness, 0, 255).astype(np.uint8),
                 images[copy_src]]
    extra_lab = [labels[near_src], labels[copy_src]]
    near_of = np.full(n + n_near + consistent_copies, -1)
    near_of[n:n + n_near] = near_src
    copy_of = np.full(n + n_near + consistent_copies, -1)
    copy_of[n + n_near:] = copy_src
    return {
        "images": np.concatenate([images, *extra_img]),
        "labels": np.concatenate([labels, *extra_lab]),
        "is_duplicate": np.concatenate([d["is_duplicate"],
                                        np.zeros(n_near + consistent_copies, bool)]),
        "near_of": near_of,
        "copy_of": copy_of,
    }


def save(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def listing(folder: Path) -> set[str]:
    return {p.name for p in Path(folder).iterdir()}
