"""Reading legacy (pre-1.6, ``_use_new_zipfile_serialization=False``) ``torch.save`` files
without torch, with the same unpickler, placeholders and streamed tensors as zip archives.

The layout (checked with ``pickletools`` on torch 2.13's legacy output): five pickles, one
after another, then the storages' bytes::

    pickle 1   the magic number 0x1950a86a20f9469cfc6c
    pickle 2   the protocol version, 1001
    pickle 3   system info: {"protocol_version", "little_endian", "type_sizes"}
    pickle 4   the object; a storage is the persistent id
               ("storage", storage_type, key, location, numel, view_metadata)
    pickle 5   the list of storage keys, in the order their bytes follow
    then, per key: int64 element count, then count * element size bytes

``view_metadata`` is ``None`` unless the storage is a view of another, which torch before
1.0 wrote. What this reader does not handle (views, big-endian files, other protocol
versions) raises :class:`~.unpickle.NeedsTorch`, and the caller hands the file to torch's
safe loader.
"""

from __future__ import annotations

import io
import os
import pickletools
from typing import Any

from ...errors import CorruptCheckpointError
from ...io.streaming import SourceFile
from ...tensormap import TensorMap
from . import unpickle
from .torchzip_reader import MAX_PICKLE_BYTES, add_tensors, check_object_size, unpickle_data
from .unpickle import Malformed, NeedsTorch, Storage

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001


class _Bounded(io.RawIOBase):
    """The file from a position on, reads never asking for more than is left (pickletools
    reads a counted string with ``read(n)``: a false count must cost nothing)."""

    def __init__(self, fd: int, start: int, size: int):
        self._fd, self._pos, self._size = fd, start, size

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        left = max(self._size - self._pos, 0)
        n = left if n is None or n < 0 else min(n, left)
        data = os.pread(self._fd, n, self._pos)
        self._pos += len(data)
        return data

    def readline(self, limit: int = -1) -> bytes:
        out = bytearray()
        while limit < 0 or len(out) < limit:
            c = self.read(1)
            if not c:
                break
            out += c
            if c == b"\n":
                break
        return bytes(out)


def _next_pickle(fd: int, path: str, start: int, size: int) -> tuple[bytes, int]:
    """The bytes of the pickle starting at ``start`` and where the next one starts."""
    stream = _Bounded(fd, start, size)
    try:
        for _op, _arg, _pos in pickletools.genops(stream):
            if stream.tell() - start > MAX_PICKLE_BYTES:
                raise CorruptCheckpointError(f"{path}: a pickle of more than "
                                             f"{MAX_PICKLE_BYTES} bytes is implausibly large")
    except CorruptCheckpointError:
        raise
    except Exception as exc:  # pickletools raises ValueError on damage
        raise CorruptCheckpointError(f"{path}: damaged legacy torch file ({exc})") from None
    if stream.tell() == start:
        raise CorruptCheckpointError(f"{path}: damaged legacy torch file (ends early)")
    end = stream.tell()
    return os.pread(fd, end - start, start), end


class LegacyUnpickler(unpickle.RestrictedUnpickler):
    """Persistent ids of the legacy format: 6-tuples and pickled module classes."""

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "module":
            return pid[1]  # (module, class, source file, source): the class, a placeholder
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise Malformed(f"persistent id {unpickle._short(pid)} is not a storage")
        if pid[5] is not None:  # torch before 1.0 pickled views of storages
            raise NeedsTorch("a view of a storage")
        if isinstance(pid[1], unpickle.StorageType) and pid[1].dtype is None:
            # uint16, float8...: torch 2.13 writes these but cannot read them back itself
            raise NeedsTorch("an untyped storage in a legacy file")
        return super().persistent_load(pid[:5])


def _header(fd: int, path: str, size: int) -> int:
    """Check the three leading pickles; returns where the object's pickle starts."""
    pos = 0
    values = []
    for _ in range(3):
        data, pos = _next_pickle(fd, path, pos, size)
        values.append(unpickle_data(path, data)[0])
    magic, protocol, info = values
    if magic != MAGIC:
        raise CorruptCheckpointError(f"{path}: not a torch file (bad magic number)")
    if protocol != PROTOCOL:
        raise NeedsTorch(f"legacy protocol version {protocol!r}")
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise NeedsTorch("a legacy file written on a big-endian machine")
    return pos


def read_file(path: str, dequantize: bool = False, skip_unsupported: bool = False) -> TensorMap:
    """Read a legacy torch file; raises NeedsTorch for what only torch can load."""
    tmap = TensorMap(source=path, format="torch")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise CorruptCheckpointError(f"{path}: cannot open ({exc.strerror})") from None
    try:
        size = os.fstat(fd).st_size
        pos = _header(fd, path, size)
        data, pos = _next_pickle(fd, path, pos, size)
        obj, storages = unpickle_data(path, data, LegacyUnpickler)
        check_object_size(path, obj, len(data))
        keys_data, pos = _next_pickle(fd, path, pos, size)
        keys = unpickle_data(path, keys_data)[0]
        regions = _storage_regions(fd, path, pos, size, keys, storages)
        add_tensors(obj, path, SourceFile(path, size), lambda key: regions[key], tmap,
                    dequantize, skip_unsupported)
    except OSError as exc:
        raise CorruptCheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    tmap.source_files.append(path)
    return tmap


def _storage_regions(fd: int, path: str, pos: int, size: int, keys: Any,
                     storages: dict[str, Storage]) -> dict[str, tuple[int, int]]:
    """``key -> (offset, bytes)`` of every storage, walking the records after the pickles."""
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CorruptCheckpointError(f"{path}: the storage key list is {type(keys).__name__}")
    regions: dict[str, tuple[int, int]] = {}
    for key in keys:
        storage = storages.get(key)
        if storage is None or key in regions:
            raise CorruptCheckpointError(f"{path}: storage {key!r} is listed but not used, or "
                                         "listed twice")
        head = os.pread(fd, 8, pos)
        if len(head) != 8:
            raise CorruptCheckpointError(f"{path}: storage {key!r}: file ended")
        count = int.from_bytes(head, "little", signed=True)
        item = unpickle.itemsize(storage.type.dtype or "uint8")
        if count != storage.numel or pos + 8 + count * item > size:
            raise CorruptCheckpointError(f"{path}: storage {key!r} holds {count} elements "
                                         f"where {storage.numel} were promised, or runs past "
                                         "the end of the file")
        regions[key] = (pos + 8, count * item)
        pos += 8 + count * item
    missing = [key for key in storages if key not in regions]
    if missing:
        raise CorruptCheckpointError(f"{path}: storage {missing[0]!r} has no bytes in the file")
    return regions


__all__ = ["read_file"]
