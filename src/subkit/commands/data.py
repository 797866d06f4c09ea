"""`subkit data inspect|dedupe|split|weights`: each picks the mechanics of the profile's
kind (``subkit.data`` for one label per image, ``subkit.data.kinds`` for series and
masks) and returns the report the CLI renders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from subkit.errors import UsageError

if TYPE_CHECKING:
    from subkit.profile import Profile


@dataclass(frozen=True)
class InspectOptions:
    file: Path
    near: int
    similarity: float
    z_threshold: float = 3.5
    html: Path | None = None  # also write the page of thumbnails


@dataclass(frozen=True)
class DedupeOptions:
    file: Path
    out: Path
    drop: str = "keep-one"
    near: int | None = None  # None: exact copies only
    similarity: float = 0.98
    record: Path | None = None  # None: <out>.removed.json
    force: bool = False
    drop_shared_masks: bool = False


@dataclass(frozen=True)
class SplitOptions:
    file: Path
    out_train: Path
    out_test: Path
    test_size: float = 0.15
    seed: int = 0
    near: int = 4
    similarity: float = 0.98
    set_default: bool = False
    force: bool = False


def _load_classification(file: Path, prof: Profile, require_labels: bool = True):
    from subkit.data import io
    from subkit.data.subsets import check_classification

    check_classification(prof)
    return io.load(file, prof, require_labels=require_labels)


def inspect(opts: InspectOptions, prof: Profile) -> dict:
    """The inspection report (with ``html``: the page's path); a segmentation set's is the
    kinds' report (``"kind"`` in it)."""
    from subkit.data import inspect as insp

    own = prof.kind_spec.inspect(opts.file, prof, near=opts.near,
                                 min_similarity=opts.similarity)
    if own is not None:
        return own
    html_path = opts.html
    if html_path is not None and html_path.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--html {html_path}: the page's name must end in .html",
                         hint="e.g. --html inspect.html (this guards against overwriting data)")
    if html_path is not None and not html_path.parent.is_dir():
        raise UsageError(f"--html {html_path}: folder {html_path.parent} does not exist",
                         hint="create it first, or choose another path")
    ds = _load_classification(opts.file, prof, require_labels=False)
    report = insp.inspect(ds, prof, near=opts.near, min_similarity=opts.similarity,
                          z_threshold=opts.z_threshold,
                          labels_dtype=insp.labels_dtype(ds.path, prof),
                          keep_arrays=html_path is not None)
    if html_path is not None:
        from subkit.data import html

        page = html.write(html_path, insp.public(report), ds.images, ds.labels, prof.class_names)
        report["html"] = str(page)
    return report


def dedupe(opts: DedupeOptions, prof: Profile) -> dict:
    """Write the copy without duplicates and its record; their summary."""
    kwargs: dict[str, Any] = dict(out=opts.out, drop=opts.drop, near=opts.near,
                  min_similarity=opts.similarity, force=opts.force, record=opts.record)
    return prof.kind_spec.dedupe(opts.file, prof, drop_shared_masks=opts.drop_shared_masks,
                                 **kwargs)


def split(opts: SplitOptions, prof: Profile) -> dict:
    """Write the train and test sets; the split's report (``"kind"`` in it for series and
    masks)."""
    return prof.kind_spec.split(opts.file, prof, test_size=opts.test_size,
                      out_train=opts.out_train,
                      out_test=opts.out_test, seed=opts.seed, near=opts.near,
                      min_similarity=opts.similarity, force=opts.force,
                      set_default=opts.set_default)


def weights(file: Path, prof: Profile) -> dict:
    """Class weights of a labelled set: Keras' class_weight dict and the focal alpha list."""
    from subkit.data import weights as w

    ds = _load_classification(file, prof)
    report = w.class_weights(ds.labels, prof.class_names)
    report["file"] = str(ds.path)
    return report
