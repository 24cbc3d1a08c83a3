"""Keras 3 ``.keras`` archives: a zip of ``metadata.json``, ``config.json`` and
``model.weights.h5`` (plus ``assets/`` for some layers), all stored uncompressed.

Reading opens the weights file where it lies inside the archive (h5py reads a file-like
window onto the member; nothing is extracted) and reads it like any Keras 3 weights file:
tensors named by their paths (``layers/dense/vars/0``). The model's config is kept in
``tmap.extras["keras.config"]`` and its layers as ``(name, class_name)`` pairs in
``tmap.extras["keras.layers"]``, for rules that want them; ``metadata.json`` becomes the
map's metadata.

Writing needs the model's config, which no other format has: a ``.keras`` archive is
written ``--like`` a ``.keras`` template, whose members are all kept as they are but for
the weights, written in the template's layout with the source's values.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from typing import Any, Iterator

from ...errors import CorruptCheckpointError, FormatError, UnsupportedError, UsageError
from ...io.atomic import AtomicFiles, temp_name
from ...tensormap import TensorMap
from ..outputs import os_errors, output_directory

NAME = "keras"
EXTENSIONS = (".keras",)
WEIGHTS = "model.weights.h5"
CONFIG = "config.json"
METADATA = "metadata.json"
#: ``TensorMap.extras`` key: the path of the archive a map was read from.
ARCHIVE_KEY = "keras.archive"
_ZIP_MAGIC = b"PK\x03\x04"
_MAX_JSON = 64 << 20


def sniff(path: str) -> bool:
    try:
        if not os.path.isfile(path):
            return False
        with open(path, "rb") as f:
            if f.read(4) != _ZIP_MAGIC:
                return False
        from ..pytorch.zip_archive import locate, read_directory

        from .files import SIGNATURE

        fd = os.open(path, os.O_RDONLY)
        try:
            directory = read_directory(fd, path)
            if WEIGHTS not in directory.members or CONFIG not in directory.members:
                return False
            member = locate(fd, directory, [WEIGHTS])[WEIGHTS]
            return os.pread(fd, len(SIGNATURE), member.data_offset) == SIGNATURE
        finally:
            os.close(fd)
    except Exception:  # sniffing never raises (a compressed member: not ours to read)
        return False


class _Window(io.RawIOBase):
    """A read-only file over ``size`` bytes at ``offset`` of an open descriptor."""

    def __init__(self, fd: int, offset: int, size: int):
        super().__init__()
        self._fd, self._offset, self._size, self._pos = fd, offset, size, 0

    @property
    def region(self) -> tuple[int, int]:
        return self._offset, self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), max(0, self._size - self._pos))
        if want == 0:
            return 0
        data = os.pread(self._fd, want, self._offset + self._pos)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def _weights_window(path: str) -> _Window:
    from ..pytorch.zip_archive import locate, read_directory

    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        directory = read_directory(fd, path)
        member = directory.members.get(WEIGHTS)
        if member is None:
            raise FormatError(f"{path}: a zip archive without {WEIGHTS}; not a .keras model")
        if member.method != 0:
            raise UnsupportedError(f"{path}: {WEIGHTS} is compressed inside the archive (Keras "
                                   "stores it uncompressed); unzip it and convert the .h5 file")
        m = locate(fd, directory, [WEIGHTS])[WEIGHTS]
        return _Window(fd, m.data_offset, m.size)
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def open_weights(path: str) -> Iterator[Any]:
    """The archive's weights file, opened read-only by h5py in place."""
    import h5py

    window = _weights_window(path)
    try:
        handle = h5py.File(window, "r")
    except Exception as exc:
        window.close()
        raise CorruptCheckpointError(f"{path}: {WEIGHTS} inside the archive is not a readable "
                                     f"HDF5 file ({exc})") from None
    try:
        yield handle
    finally:
        handle.close()
        window.close()


def _json_member(path: str, name: str) -> Any:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            info = z.getinfo(name)
            if info.file_size > _MAX_JSON:
                raise CorruptCheckpointError(f"{path}: {name} claims {info.file_size} bytes")
            return json.loads(z.read(name))
    except KeyError:
        return None
    except CorruptCheckpointError:
        raise
    except Exception as exc:  # zipfile also raises NotImplementedError, RuntimeError...
        raise CorruptCheckpointError(f"{path}: cannot read {name} ({exc})") from None


def read(path: str, **options: Any) -> TensorMap:
    import h5py

    from .files import read_handle

    window = _weights_window(path)
    try:
        handle = h5py.File(window, "r")
    except Exception as exc:
        window.close()
        raise CorruptCheckpointError(f"{path}: {WEIGHTS} inside the archive is not a readable "
                                     f"HDF5 file ({exc})") from None
    tmap = read_handle(handle, path, window.region)
    tmap.extras["keras.window"] = window  # h5py reads through it as long as the map lives
    tmap.format = NAME
    config = _json_member(path, CONFIG)
    metadata = _json_member(path, METADATA) or {}
    tmap.extras[ARCHIVE_KEY] = path
    tmap.extras["keras.config"] = config
    tmap.extras["keras.layers"] = _layers(config)
    for key, value in metadata.items():
        if isinstance(value, (str, int, float)):
            tmap.metadata[key] = str(value)
    tmap.notes = [n for n in tmap.notes if not n.startswith("Keras 3 weights file")]
    tmap.notes.insert(0, f"Keras 3 archive: read {WEIGHTS}; tensors are named by their HDF5 "
                         "paths (layers/<layer>/vars/<index>)")
    return tmap


def _layers(config: Any) -> list[tuple[str, str]]:
    """(name, class_name) of the model's layers, as its config lists them."""
    layers = (config or {}).get("config", {}).get("layers", []) if isinstance(config, dict) else []
    out = []
    for layer in layers if isinstance(layers, list) else []:
        if isinstance(layer, dict):
            name = (layer.get("config") or {}).get("name") or layer.get("name")
            out.append((str(name), str(layer.get("class_name"))))
    return out


def write(tmap: TensorMap, path: str, *, progress: Any = None, max_shard_size: Any = None,
          **options: Any) -> list[str]:
    import zipfile

    from .files import write_file

    like = tmap.extras.get("ckconv.like")
    if like is None or like.format != NAME:
        raise UsageError(f"{path}: a .keras archive holds the model's config, which the source "
                         "does not have", api_hint="shape it like= a .keras file the target "
                         "model saved (or write .weights.h5)", cli_hint="write it --like a "
                         ".keras file the target model saved (or write .weights.h5)")
    if max_shard_size is not None:
        raise UsageError(f"{path}: a .keras archive is a single file; a maximum shard size "
                         "does not apply")
    weights = temp_name(path + ".weights.h5")
    try:
        with output_directory(path), os_errors(path), AtomicFiles() as files:
            notes = write_file(tmap, weights, weights, "generic", progress, open_weights)
            with zipfile.ZipFile(like.path) as src, \
                    zipfile.ZipFile(files.path(path), "w", zipfile.ZIP_STORED) as out:
                for info in src.infolist():
                    if info.filename == WEIGHTS:
                        out.write(weights, WEIGHTS, compress_type=zipfile.ZIP_STORED)
                    else:
                        out.writestr(info, src.read(info.filename))
    finally:
        with contextlib.suppress(OSError):
            os.remove(weights)
    return notes + [f"kept {CONFIG} and {METADATA} of {like.path}"]
