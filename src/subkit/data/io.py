"""Reading and writing data sets in the profile's layout.

A data set is an ``.npz`` with the profile's keys (``images``, ``labels``; labels may be
(n,) or (n, 1)), or a folder of class-named sub-folders of images. Every check here raises
an InputError with a hint; nothing is half-loaded.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from subkit.errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"}


@dataclass
class Dataset:
    images: np.ndarray
    labels: np.ndarray | None  # always (n,) int64 here, whatever the file stored
    path: Path
    labels_stored_shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


def load(path: str | os.PathLike, profile, *, require_labels: bool = True,
         check_shape: bool = True) -> Dataset:
    p = Path(path)
    if not p.exists():
        raise InputError(f"data not found: {p}",
                         hint="give an .npz with the profile's keys or a folder of class folders")
    if p.is_dir():
        ds = _load_folder(p, profile, require_labels)
    else:
        ds = _load_npz(p, profile, require_labels)
    _validate(ds, profile, require_labels, check_shape)
    return ds


def _load_npz(p: Path, profile, require_labels: bool) -> Dataset:
    if not zipfile.is_zipfile(p):
        raise InputError(f"{p} is not an .npz file (not a zip archive)",
                         hint="save data with numpy.savez(path, images=..., labels=...)")
    try:
        with np.load(p, allow_pickle=False) as npz:
            keys = list(npz.keys())
            ik, lk = profile.images_key, profile.labels_key
            if ik not in keys:
                raise InputError(f"{p} has no {ik!r} array (it has: {', '.join(keys) or 'nothing'})",
                                 hint=f"the profile expects keys {ik!r} and {lk!r}; "
                                      "override [data] images_key in subkit.toml if yours differ")
            images = npz[ik]
            labels = None
            if lk in keys:
                labels = npz[lk]
            elif require_labels:
                raise InputError(f"{p} has no {lk!r} array (it has: {', '.join(keys)})",
                                 hint=f"a labelled set needs {lk!r}; override [data] labels_key "
                                      "in subkit.toml if yours differs")
    except InputError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{p} could not be read as .npz: {exc}",
                         hint="the file may be truncated or hold pickled objects; re-save it "
                              "with numpy.savez") from None
    stored = tuple(labels.shape) if labels is not None else None
    return Dataset(images=images, labels=_normalise_labels(labels, p) if labels is not None else None,
                   path=p, labels_stored_shape=stored)


def _normalise_labels(labels: np.ndarray, p: Path) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim == 2 and lab.shape[1] == 1:
        lab = lab[:, 0]
    elif lab.ndim == 2 and lab.shape[1] > 1:
        # one-hot labels: accept when every row is exactly one-hot
        if np.all((lab == 0) | (lab == 1)) and np.all(lab.sum(axis=1) == 1):
            lab = lab.argmax(axis=1)
        else:
            raise InputError(f"{p}: labels have shape {labels.shape}, not (n,) or (n, 1)",
                             hint="store integer class ids, one per image")
    elif lab.ndim != 1:
        raise InputError(f"{p}: labels have shape {labels.shape}, not (n,) or (n, 1)",
                         hint="store integer class ids, one per image")
    if lab.dtype.kind == "f":
        if not np.all(np.isfinite(lab)) or not np.all(lab == np.round(lab)):
            raise InputError(f"{p}: labels are not whole numbers",
                             hint="store integer class ids 0..n_classes-1")
    elif lab.dtype.kind not in "iub":
        raise InputError(f"{p}: labels have dtype {lab.dtype}, not integers",
                         hint="store integer class ids 0..n_classes-1")
    return lab.astype(np.int64)


def _validate(ds: Dataset, profile, require_labels: bool, check_shape: bool) -> None:
    imgs = ds.images
    if imgs.dtype == object or imgs.dtype.kind not in "uif":
        raise InputError(f"{ds.path}: images have dtype {imgs.dtype}, not numeric",
                         hint="store images as one numeric array (n, H, W, C)")
    if imgs.ndim == 0 or imgs.shape[0] == 0:
        raise InputError(f"{ds.path}: the data set is empty", hint="it needs at least one image")
    if check_shape and tuple(imgs.shape[1:]) != profile.input_shape:
        raise InputError(
            f"{ds.path}: images have shape {tuple(imgs.shape[1:])}, the profile expects "
            f"{profile.input_shape}",
            hint="resize the images, or set [input] shape in subkit.toml if the competition differs")
    if ds.labels is not None:
        if len(ds.labels) != len(imgs):
            raise InputError(f"{ds.path}: {len(imgs)} images but {len(ds.labels)} labels",
                             hint="images and labels must have the same length, in the same order")
        bad = (ds.labels < 0) | (ds.labels >= profile.n_classes)
        if bad.any():
            vals = sorted(set(ds.labels[bad].tolist()))[:5]
            raise InputError(
                f"{ds.path}: {int(bad.sum())} labels outside the profile's classes "
                f"0..{profile.n_classes - 1} (e.g. {vals})",
                hint="the profile has these classes: " + ", ".join(profile.class_names))


def _load_folder(p: Path, profile, require_labels: bool) -> Dataset:
    from PIL import Image

    names = profile.class_names
    subdirs = sorted(d for d in p.iterdir() if d.is_dir())
    files: list[tuple[Path, int | None]] = []
    if subdirs:
        lookup = {n.lower(): i for i, n in enumerate(names)}
        for d in subdirs:
            key = d.name.lower()
            if key in lookup:
                cls = lookup[key]
            elif key.isdigit() and int(key) < len(names):
                cls = int(key)
            else:
                raise InputError(f"{d}: folder name {d.name!r} is not a class of the profile",
                                 hint="name class folders by class name or id: " + ", ".join(names))
            files += [(f, cls) for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    else:
        if require_labels:
            raise InputError(f"{p} has no class sub-folders",
                             hint="a labelled folder holds one sub-folder per class")
        files = [(f, None) for f in sorted(p.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise InputError(f"{p} holds no images", hint=f"image types read: {', '.join(sorted(IMAGE_SUFFIXES))}")
    shape = profile.input_shape
    mode = "RGB" if len(shape) == 3 and shape[-1] == 3 else ("L" if len(shape) == 2 else None)
    out = []
    for f, _ in files:
        try:
            with Image.open(f) as im:
                im = im.convert(mode) if mode else im
                out.append(np.asarray(im))
        except Exception as exc:  # PIL raises many kinds
            raise InputError(f"{f}: not a readable image ({exc})", hint="remove or fix the file") from None
    try:
        images = np.stack(out)
    except ValueError:
        raise InputError(f"{p}: images have different sizes",
                         hint=f"resize them all to {shape}") from None
    labels = np.array([c for _, c in files], dtype=np.int64) if subdirs else None
    return Dataset(images=images, labels=labels, path=p)


def save_npz(path: str | os.PathLike, *, force: bool = False, **arrays: np.ndarray) -> Path:
    """Write an npz atomically: a temp file in the same folder, then os.replace."""
    p = Path(path)
    if p.exists() and not force:
        raise InputError(f"{p} exists; refusing to overwrite", hint="pass --force or choose another path")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"folder {folder} does not exist", hint="create it first")
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return p
