"""Inspecting Keras weights files and stripping the optimizer state, without TensorFlow.

A Keras 3 ``.keras`` file is a zip of ``metadata.json`` (keras_version, date_saved),
``config.json`` and ``model.weights.h5``. ``model.save()`` always writes the optimizer's
variables into the HDF5 file's top-level ``optimizer`` group (``include_optimizer`` is
ignored for ``.keras``), which can be half the file. Stripping works on the file itself
with h5py: every group but ``optimizer`` is copied byte for byte, and ``compile_config`` is
dropped from ``config.json`` so that loading does not build an optimizer with nothing to
load into it. No model is deserialized, so custom objects are not needed to strip.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from subkit.errors import InputError

WEIGHT_SUFFIXES = (".keras", ".weights.h5", ".h5", ".hdf5")


def is_weights_name(name: str) -> bool:
    return name.lower().endswith(WEIGHT_SUFFIXES)


@dataclass
class WeightsInfo:
    path: Path
    kind: str  # "keras" | "h5-model" | "h5-weights"
    size: int
    keras_version: str | None = None
    date_saved: str | None = None
    has_optimizer: bool = False
    custom_classes: list[str] = field(default_factory=list)  # registered names not from keras

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.path.name, "kind": self.kind, "size": self.size,
                "keras_version": self.keras_version, "date_saved": self.date_saved,
                "has_optimizer": self.has_optimizer, "custom_classes": self.custom_classes}


def inspect(path: Path) -> WeightsInfo:
    p = Path(path)
    if not p.exists():
        raise InputError(f"weights not found: {p}",
                         hint="give the file your training saved (model.save('weights.keras'))")
    if p.is_dir():
        if (p / "saved_model.pb").exists():
            raise InputError(f"{p} is a legacy TensorFlow SavedModel folder, which Keras 3 "
                             "cannot load with load_model",
                             hint="load it where it was made and save it again with "
                                  "model.save('weights.keras')")
        raise InputError(f"{p} is a folder, not a weights file", hint="give the .keras or .h5 file")
    if not os.access(p, os.R_OK):
        raise InputError(f"cannot read {p}", hint="check the file's permissions")
    name = p.name.lower()
    if name.endswith(".keras"):
        return _inspect_keras(p)
    if name.endswith((".h5", ".hdf5")):
        return _inspect_h5(p)
    if name.endswith((".pb", ".pbtxt")):
        raise InputError(f"{p} is a TensorFlow graph file, not Keras weights",
                         hint="save the Keras model with model.save('weights.keras')")
    raise InputError(f"{p}: unknown weights format {p.suffix!r}",
                     hint="use a Keras 3 .keras file "
                          "(or .h5/.weights.h5 when model.py builds the model)")


def corrupt_keras(path: Path, why: object) -> InputError:
    """The one error for a .keras file that opens as a zip but is damaged inside."""
    return InputError(f"{path} is a corrupt .keras file ({why})",
                      hint="save it again with model.save('weights.keras'); "
                           "check the download/copy finished")


def _inspect_keras(p: Path) -> WeightsInfo:
    try:
        with zipfile.ZipFile(p) as zf:
            names = set(zf.namelist())
            missing = {"metadata.json", "config.json", "model.weights.h5"} - names
            if missing:
                raise InputError(f"{p} is not a complete .keras file "
                                 f"(missing {', '.join(sorted(missing))})",
                                 hint="save it again with model.save('weights.keras')")
            meta = json.loads(zf.read("metadata.json"))
            config = json.loads(zf.read("config.json"))
            with _member(p, zf, "model.weights.h5") as fh:
                has_opt = _h5_has_optimizer(fh)
    except zipfile.BadZipFile:
        raise InputError(f"{p} is not a valid .keras file "
                         "(not a zip archive: corrupt or truncated)",
                         hint="save it again with model.save('weights.keras'); "
                              "check the download/copy finished") from None
    except (ValueError, KeyError, OSError) as exc:
        raise corrupt_keras(p, exc) from None
    custom = _custom_classes(config)
    return WeightsInfo(path=p, kind="keras", size=p.stat().st_size,
                       keras_version=meta.get("keras_version"),
                       date_saved=meta.get("date_saved"), has_optimizer=has_opt,
                       custom_classes=custom)


class _StoredMember(io.RawIOBase):
    """The bytes of a stored (uncompressed) zip member, read straight from the archive.

    h5py reads an HDF5 file by seeking back and forth; through ``ZipFile.open`` every seek
    backwards rereads the member from its start, checking its CRC (``zipfile.ZipExtFile.seek``
    before Python 3.12): asking whether a 639 MB ``.keras`` holds optimizer state took 8 s
    that way, against milliseconds here. No CRC is checked: only the names of a few groups
    are read (build's strip extracts the member through ``zipfile``, which checks it)."""

    def __init__(self, path: Path, start: int, size: int):
        self._f = open(path, "rb")  # closed by close()
        self._start, self._size, self._pos = start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        n = max(0, min(len(buffer), self._size - self._pos))
        self._f.seek(self._start + self._pos)
        got = self._f.readinto(memoryview(buffer)[:n]) or 0
        self._pos += got
        return got

    def close(self) -> None:
        self._f.close()
        super().close()


def _member(path: Path, zf: zipfile.ZipFile, name: str) -> IO[bytes]:
    """``name`` of the archive at ``path`` opened for reading: straight from the file when
    it is stored (a ``.keras`` file's weights are), else through ``zipfile``."""
    info = zf.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        return zf.open(info)
    with open(path, "rb") as f:  # the local header's own name and extra field lengths
        f.seek(info.header_offset)
        header = f.read(30)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        return zf.open(info)
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    return io.BufferedReader(_StoredMember(path, start, info.file_size), 1 << 16)


def _h5_has_optimizer(fh) -> bool:
    import h5py

    try:
        with h5py.File(fh, "r") as h5:
            return "optimizer" in h5 and len(h5["optimizer"].get("vars", {})) > 0
    except OSError as exc:
        raise ValueError(f"its model.weights.h5 is not HDF5: {exc}") from None


def _inspect_h5(p: Path) -> WeightsInfo:
    import h5py

    try:
        with h5py.File(p, "r") as h5:
            attrs = dict(h5.attrs)
            version = attrs.get("keras_version")
            version = version.decode() if isinstance(version, bytes) else version
            cfg = attrs.get("model_config")
            has_opt = "optimizer_weights" in h5 or "optimizer" in h5
    except OSError as exc:
        raise InputError(f"{p} is not a readable HDF5 file ({exc})",
                         hint="save it again with model.save(...) "
                              "or model.save_weights(...)") from None
    custom: list = []
    if cfg is not None:
        try:
            custom = _custom_classes(json.loads(cfg.decode() if isinstance(cfg, bytes) else cfg))
        except ValueError:
            pass
    kind = "h5-model" if cfg is not None else "h5-weights"
    return WeightsInfo(path=p, kind=kind, size=p.stat().st_size, keras_version=version,
                       has_optimizer=has_opt, custom_classes=custom)


def _custom_classes(config: Any) -> list[str]:
    """The registered names of the classes not from Keras found in a Keras config tree."""
    custom: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            cls = node.get("class_name")
            if isinstance(cls, str) and ("config" in node or "module" in node):
                module = node.get("module")
                registered = node.get("registered_name")
                if module is not None and not str(module).startswith("keras") \
                        and cls not in ("function",):
                    custom.add(registered or cls)
                elif isinstance(registered, str) and ">" in registered:
                    custom.add(registered)
                elif "module" in node and module is None and not cls.startswith("__") \
                        and "config" in node:  # Keras 3 writes None for __main__ (a notebook)
                    custom.add(registered or cls)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(config)
    return sorted(custom)


def strip_optimizer(src: Path, dst: Path) -> None:
    """Write ``src`` (.keras) to ``dst`` without optimizer state and compile config.

    The whole weights member is read here, its CRC checked: a file damaged inside its
    weights (which ``inspect`` reads only the start of) is refused with the user's hint."""
    try:
        _strip(src, dst)
    except (zipfile.BadZipFile, OSError) as exc:
        raise corrupt_keras(src, exc) from None


def _strip(src: Path, dst: Path) -> None:
    import h5py

    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".subkit-strip-") as tmp:
        tmpd = Path(tmp)
        with zipfile.ZipFile(src) as zf:
            meta = zf.read("metadata.json")
            config = json.loads(zf.read("config.json"))
            zf.extract("model.weights.h5", tmpd)
            others = [i for i in zf.infolist()
                      if i.filename not in ("metadata.json", "config.json", "model.weights.h5")]
            extra = {i.filename: zf.read(i) for i in others}  # e.g. assets/
        config.pop("compile_config", None)
        h5_in, h5_out = tmpd / "model.weights.h5", tmpd / "stripped.h5"
        with h5py.File(h5_in, "r") as fin, h5py.File(h5_out, "w") as fout:
            for k, v in fin.attrs.items():
                fout.attrs[k] = v
            for key in fin.keys():
                if key == "optimizer":
                    continue
                fin.copy(fin[key], fout, name=key)
        out_tmp = tmpd / "out.keras"
        with zipfile.ZipFile(out_tmp, "w", compression=zipfile.ZIP_STORED) as zout:
            zout.writestr("metadata.json", meta)
            zout.writestr("config.json", json.dumps(config))
            zout.write(h5_out, "model.weights.h5")
            for name, data in extra.items():
                zout.writestr(name, data)
        shutil.move(str(out_tmp), dst)


def version_tuple(v: str | None) -> tuple[int, ...] | None:
    if not v:
        return None
    parts = []
    for piece in str(v).split("."):
        num = "".join(ch for ch in piece if ch.isdigit())
        if not num:
            break
        parts.append(int(num))
    return tuple(parts) or None
