"""Reading and writing data sets in the profile's layout.

A data set is an ``.npz`` with the profile's keys, or (image classification) a folder of
class-named sub-folders of images. Per kind of competition:

- classification: the inputs (``images``, or ``X`` for series) and ``labels``, (n,) or
  (n, 1), class ids or class names (``healthy``) mapped through the profile's classes;
- segmentation: ``images`` and ``masks`` (n, H, W) of class ids;
- forecasting: ``X`` (n, steps), ``y`` (n, >= horizon) the values that follow (cut to the
  phase's horizon), and predict's other inputs (``categories``) under their names.

Arrays of Python objects (string labels saved by pickling) are read only when the profile
says the competition's file needs it (``[data] allow_pickle``), and then by an unpickler
that accepts numpy arrays of strings and nothing else. Every check raises an InputError
with a hint; nothing is half-loaded.
"""

from __future__ import annotations

import importlib
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from subkit.errors import InputError
from subkit.fsutil import atomic_open

if TYPE_CHECKING:
    from subkit.profile import Profile

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"}


@dataclass
class Dataset:
    images: np.ndarray  # what predict receives first: images, or the series X
    # the targets: labels (n,) int64 whatever the file stored, masks (n, H, W) int64, or
    # forecasts (n, horizon) float64
    labels: np.ndarray | None
    path: Path
    labels_stored_shape: tuple[int, ...] | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # predict's other inputs

    def __len__(self) -> int:
        return int(self.images.shape[0])


def load(path: str | os.PathLike, profile: Profile, *, require_labels: bool = True,
         check_shape: bool = True, phase: str | None = None) -> Dataset:
    """``phase``: the profile's phase whose forecast horizon the targets are cut to."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"data not found: {p}",
                         hint="give an .npz with the profile's keys or a folder of class folders")
    if p.is_dir():
        if not profile.kind_spec.folders:
            raise InputError(f"{p} is a folder; a {profile.kind_spec.name} data set is an .npz",
                             hint=f"save it with numpy.savez(path, {_keys_hint(profile)})")
        ds = _load_folder(p, profile, require_labels)
    else:
        ds = _load_npz(p, profile, require_labels)
    _validate(ds, profile, require_labels, check_shape)
    ds.labels = _targets(ds, profile, phase)
    return ds


def _keys_hint(profile: Profile) -> str:
    keys = [profile.images_key, *profile.extra_inputs, profile.labels_key]
    return ", ".join(f"{k}=..." for k in keys)


# -- arrays of Python objects ------------------------------------------------------------------
_NUMPY_RECONSTRUCT = ("numpy.core.multiarray", "numpy._core.multiarray")


class _StringArrayUnpickler(pickle.Unpickler):
    """Unpickles a numpy array of strings (Python's or numpy's ``str_`` scalars), and
    refuses any other global: nothing a hostile file names is imported or called."""

    def find_class(self, module: str, name: str):
        if module in _NUMPY_RECONSTRUCT and name in ("_reconstruct", "scalar"):
            for mod in reversed(_NUMPY_RECONSTRUCT):  # numpy 2 names it numpy._core
                try:
                    return getattr(importlib.import_module(mod), name)
                except (ImportError, AttributeError):
                    continue
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not a numpy array of strings")


def _read_object_array(p: Path, key: str) -> np.ndarray:
    """A pickled object array of strings from an npz, without running arbitrary code."""
    fmt = np.lib.format
    try:
        with zipfile.ZipFile(p) as zf, zf.open(f"{key}.npy") as fh:
            major, _ = fmt.read_magic(fh)
            header = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
            header(fh)
            arr = _StringArrayUnpickler(fh).load()
    except (pickle.UnpicklingError, ValueError, EOFError, KeyError, AttributeError) as exc:
        raise InputError(f"{p}: the {key!r} array holds Python objects that are not strings "
                         f"({exc})",
                         hint="re-save it as strings or numbers: "
                              f"numpy.savez(..., {key}=values.astype(str))") from None
    if not isinstance(arr, np.ndarray) or not all(isinstance(v, (str, bytes)) for v in arr.ravel()):
        raise InputError(f"{p}: the {key!r} array holds Python objects that are not strings",
                         hint="re-save it as strings or numbers: "
                              f"numpy.savez(..., {key}=values.astype(str))")
    return arr.astype(str)


def _get(npz, p: Path, key: str, profile: Profile) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as exc:
        if "allow_pickle" not in str(exc):
            raise
    if not profile.allow_pickle:
        raise InputError(f"{p}: the {key!r} array holds pickled Python objects",
                         hint=f"the profile {profile.name} does not expect them: re-save it "
                              "as strings or numbers "
                              f"(numpy.savez(..., {key}=values.astype(str))), or set "
                              "[data] allow_pickle = true in subkit.toml")
    return _read_object_array(p, key)


def _load_npz(p: Path, profile: Profile, require_labels: bool) -> Dataset:
    if not zipfile.is_zipfile(p):
        raise InputError(f"{p} is not an .npz file (not a zip archive)",
                         hint=f"save data with numpy.savez(path, {_keys_hint(profile)})")
    try:
        with np.load(p, allow_pickle=False) as npz:
            keys = list(npz.keys())
            ik, lk = profile.images_key, profile.labels_key
            if ik not in keys:
                raise InputError(f"{p} has no {ik!r} array "
                                 f"(it has: {', '.join(keys) or 'nothing'})",
                                 hint=f"the profile expects keys {ik!r} and {lk!r}; "
                                      "override [data] images_key in subkit.toml if yours differ")
            images = _get(npz, p, ik, profile)
            labels = None
            if lk in keys:
                labels = _get(npz, p, lk, profile)
            elif require_labels:
                raise InputError(f"{p} has no {lk!r} array (it has: {', '.join(keys)})",
                                 hint=f"a labelled set needs {lk!r}; override [data] labels_key "
                                      "in subkit.toml if yours differs")
            extras = {}
            for name in profile.extra_inputs:
                if name not in keys:
                    raise InputError(f"{p} has no {name!r} array (it has: {', '.join(keys)})",
                                     hint=f"predict({', '.join(['X', *profile.extra_inputs])}) "
                                          f"needs it: save it in the npz as {name}=...")
                extras[name] = _get(npz, p, name, profile)
    except InputError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{p} could not be read as .npz: {exc}",
                         hint="the file may be truncated or hold pickled objects; re-save it "
                              "with numpy.savez") from None
    stored = tuple(labels.shape) if labels is not None else None
    return Dataset(images=images, labels=labels, path=p, labels_stored_shape=stored, extras=extras)


def _targets(ds: Dataset, profile: Profile, phase: str | None) -> np.ndarray | None:
    """The stored targets in the form scoring compares with (see Dataset.labels): the
    profile's kind reads them (``subkit.kinds``)."""
    if ds.labels is None:
        return None
    return profile.kind_spec.targets(ds.labels, ds.path, profile, phase, len(ds))


def label_targets(labels: np.ndarray, path: Path, profile: Profile) -> np.ndarray:
    """Class labels as class ids 0..n-1 (indices, one-hot or the class names)."""
    lab = _normalise_labels(labels, path, profile.class_names)
    bad = (lab < 0) | (lab >= profile.n_classes)
    if bad.any():
        vals = sorted(set(lab[bad].tolist()))[:5]
        raise InputError(
            f"{path}: {int(bad.sum())} labels outside the profile's classes "
            f"0..{profile.n_classes - 1} (e.g. {vals})",
            hint="the profile has these classes: " + ", ".join(profile.class_names))
    return lab


def mask_targets(masks: np.ndarray, p: Path, profile: Profile, n: int) -> np.ndarray:
    m = np.asarray(masks)
    h, w = profile.input_shape[:2]
    if m.ndim == 4 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.shape != (n, h, w):
        raise InputError(f"{p}: masks have shape {m.shape}, the profile expects ({n}, {h}, {w})",
                         hint="one mask of class ids per image, the size of the image")
    if m.dtype.kind not in "uif" or (m.dtype.kind == "f" and not np.all(m == np.round(m))):
        raise InputError(f"{p}: masks are not whole class ids ({m.dtype})",
                         hint=f"store class ids 0..{profile.n_classes - 1} per pixel")
    m = m.astype(np.int64)
    bad = (m < 0) | (m >= profile.n_classes)
    if bad.any():
        raise InputError(f"{p}: {int(bad.sum())} mask pixels hold classes outside "
                         f"0..{profile.n_classes - 1} (e.g. {sorted(set(m[bad].tolist()))[:5]})",
                         hint="the profile has these classes: " + ", ".join(profile.class_names))
    return m


def forecast_targets(y: np.ndarray, p: Path, profile: Profile, phase: str | None,
                     n: int) -> np.ndarray:
    y = np.asarray(y)
    horizon = profile.horizon(phase)
    where = f" of the {profile.phase(phase)} phase" if profile.phases else ""
    if y.ndim != 2 or y.shape[0] != n or y.dtype.kind not in "uif":
        raise InputError(f"{p}: {profile.labels_key!r} has shape {y.shape} ({y.dtype}); the "
                         f"profile expects the future values, ({n}, {horizon}) numbers",
                         hint="one row of the values that follow each input series, in order")
    if y.shape[1] < horizon:
        raise InputError(f"{p}: {profile.labels_key!r} holds {y.shape[1]} future steps; the "
                         f"horizon{where} is {horizon}",
                         hint=f"store at least {horizon} steps (a longer y serves every phase: "
                              "each is scored on its first steps)")
    if not np.isfinite(y).all():
        raise InputError(f"{p}: {profile.labels_key!r} holds NaN or inf",
                         hint="drop or fill those series")
    return y[:, :horizon].astype(np.float64)


def _normalise_labels(labels: np.ndarray, p: Path, class_names: list[str]) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.dtype.kind in "US":
        lab = _labels_from_names(lab.reshape(-1) if lab.ndim == 2 and lab.shape[1] == 1 else lab,
                                 p, class_names)
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


def _labels_from_names(lab: np.ndarray, p: Path, class_names: list[str]) -> np.ndarray:
    """Class names ('healthy') to class ids, in the profile's order."""
    values = np.char.decode(lab) if lab.dtype.kind == "S" else lab
    lookup = {name: i for i, name in enumerate(class_names)}
    unknown = sorted(set(values.ravel().tolist()) - set(lookup))
    if unknown:
        raise InputError(f"{p}: labels the profile does not know: "
                         f"{', '.join(map(repr, unknown[:5]))}",
                         hint="the profile's classes are " + ", ".join(map(repr, class_names))
                              + " (names are case-sensitive); set [classes] names in subkit.toml "
                                "if the competition's differ")
    return np.vectorize(lookup.__getitem__, otypes=[np.int64])(values) if values.size \
        else np.zeros(values.shape, np.int64)


def _validate(ds: Dataset, profile: Profile, require_labels: bool, check_shape: bool) -> None:
    imgs = ds.images
    kind = profile.kind_spec
    what = "images" if kind.noun == "images" else f"the {kind.noun} {profile.images_key!r}"
    if imgs.dtype == object or imgs.dtype.kind not in "uif":
        raise InputError(f"{ds.path}: {what} have dtype {imgs.dtype}, not numeric",
                         hint="store them as one numeric array (n, ...) shaped as the profile says")
    if imgs.ndim == 0 or imgs.shape[0] == 0:
        raise InputError(f"{ds.path}: the data set is empty", hint="it needs at least one sample")
    if check_shape and tuple(imgs.shape[1:]) != profile.input_shape:
        raise InputError(
            f"{ds.path}: {what} have shape {tuple(imgs.shape[1:])}, the profile expects "
            f"{profile.input_shape}",
            hint="resize them, or set [input] shape in subkit.toml if the competition differs")
    for name, arr in ds.extras.items():
        _validate_extra(ds.path, profile, name, arr, len(imgs))
    if ds.labels is not None:
        if len(ds.labels) != len(imgs):
            raise InputError(f"{ds.path}: {len(imgs)} {kind.noun} but {len(ds.labels)} "
                             f"{kind.target_noun}",
                             hint="inputs and targets must have the same length, in the same order")


def _validate_extra(p: Path, profile: Profile, name: str, arr: np.ndarray, n: int) -> None:
    if arr.ndim < 1 or arr.shape[0] != n:
        raise InputError(f"{p}: {name!r} has shape {arr.shape}; predict needs one per sample ({n})",
                         hint=f"store {name} in the same order as {profile.images_key}")
    allowed = profile.extra_input_values(name)
    if allowed is not None:
        unknown = sorted(set(np.asarray(arr).astype(str).ravel().tolist()) - set(map(str, allowed)))
        if unknown:
            raise InputError(f"{p}: {name!r} holds values the profile does not know: "
                             f"{', '.join(map(repr, unknown[:5]))}",
                             hint=f"the profile's {name}: {', '.join(map(str, allowed))}")


def _load_folder(p: Path, profile: Profile, require_labels: bool) -> Dataset:
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
        raise InputError(f"{p} holds no images",
                         hint=f"image types read: {', '.join(sorted(IMAGE_SUFFIXES))}")
    shape = profile.input_shape
    mode = "RGB" if len(shape) == 3 and shape[-1] == 3 else ("L" if len(shape) == 2 else None)
    out = []
    for f, _ in files:
        try:
            with Image.open(f) as im:
                im = im.convert(mode) if mode else im
                out.append(np.asarray(im))
        except Exception as exc:  # PIL raises many kinds
            raise InputError(f"{f}: not a readable image ({exc})",
                             hint="remove or fix the file") from None
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
        raise InputError(f"{p} exists; refusing to overwrite",
                         hint="pass --force or choose another path")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"folder {folder} does not exist", hint="create it first")
    with atomic_open(p, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    return p
