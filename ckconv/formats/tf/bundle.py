"""Reader of a TF V2 tensor bundle: ``<prefix>.index`` + ``<prefix>.data-*-of-*``.

:func:`read_bundle` parses the whole index up front (cheap: a few dozen bytes per tensor) and
returns a TensorMap of lazy tensors. A tensor's bytes are read and their CRC-32C verified
only when its values are asked for; :meth:`BundleTensor.iter_bytes` streams a large tensor
in chunks with the CRC computed on the way, so memory stays bounded.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, Optional

from ... import dtypes
from ...dtypes import DType
from ...errors import CorruptCheckpointError, UnsupportedError, listing
from ...io.streaming import WINDOW, FileRegion, SourceFile, iter_region
from ...tensor import Tensor
from ...tensormap import TensorMap
from . import entries, slices, varint
from .crc import crc32c, mask, unmask
from .table import Table

if TYPE_CHECKING:  # imported where values are built: listing and raw copies never need it
    import numpy as np

_MAX_RANK = 254
_U32 = struct.Struct("<I")


def data_path(prefix: str, shard: int, num_shards: int) -> str:
    return f"{prefix}.data-{shard:05d}-of-{num_shards:05d}"


def _missing_shard(prefix: str, path: str, num_shards: int) -> str:
    """Say which data files do exist, so a wrong shard count or a lost file is obvious."""
    directory, base = os.path.split(prefix)
    try:
        # (temporary files of an unfinished save start with "." and are not matched)
        found = sorted(f for f in os.listdir(directory or ".") if f.startswith(base + ".data-"))
    except OSError:
        found = []
    msg = (f"{path}: data shard is missing (the index says the checkpoint has {num_shards} "
           f"shard{'s' if num_shards != 1 else ''}")
    if not found:
        return msg + "; no data file of this checkpoint exists)"
    shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
    return msg + f"; present: {shown})"


class _Shards:
    """The data files of a bundle, each opened lazily (see SourceFile), closed with the map."""

    def __init__(self, prefix: str, num_shards: int):
        self.files: list[SourceFile] = []
        # One file at a time: a damaged header claiming 2**31 shards must fail at the first
        # missing file, not build two billion names first.
        for i in range(num_shards):
            p = data_path(prefix, i, num_shards)
            try:
                self.files.append(SourceFile(p, os.path.getsize(p)))
            except OSError:
                raise CorruptCheckpointError(_missing_shard(prefix, p, num_shards)) from None
        self.paths = [f.path for f in self.files]
        self.sizes = [f.size for f in self.files]

    def fd(self, shard: int) -> int:
        return self.files[shard].fd()

    def read_into(self, shard: int, offset: int, buf: memoryview) -> None:
        self.files[shard].read_into(offset, buf)

    def read(self, shard: int, offset: int, size: int) -> bytearray:
        buf = bytearray(size)
        self.read_into(shard, offset, memoryview(buf))
        return buf

    def close(self) -> None:
        for f in self.files:
            f.close()


class BundleTensor(Tensor):
    """One stored tensor (or one slice of a partitioned one)."""

    def __init__(self, name: str, dtype: DType, shape: tuple[int, ...], shards: _Shards,
                 shard: int, offset: int, size: int, crc: int, swap: bool):
        super().__init__(dtype, shape)
        self.name = name
        self._shards = shards
        self._shard = shard
        self._offset = offset
        self._size = size
        self._crc = crc  # unmasked
        self._swap = swap
        # Variable-length tensors: report what they occupy on disk, known without reading.
        # Computed once: writers ask for it several times per tensor, 20,000 tensors deep.
        self._nbytes = size if dtype.is_variable_length else math.prod(self.shape) * dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self._nbytes

    def describe(self) -> str:
        return f"{self._shards.paths[self._shard]} @ {self._offset}"

    def stored_extents(self) -> list[tuple[str, int]]:
        return [(self._shards.paths[self._shard], self._offset + self._size)]

    def _corrupt(self, what: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(
            f"{self._shards.paths[self._shard]}: tensor {self.name!r} (offset {self._offset}, "
            f"{self._size} bytes): {what}")

    def _check_crc(self, computed: int) -> None:
        if computed != self._crc:
            raise self._corrupt(f"checksum mismatch (stored {mask(self._crc):#010x}, computed "
                                f"{mask(computed):#010x}); the data file is corrupt")

    def _check_readable(self) -> None:
        if self.dtype.tf not in dtypes.BY_TF:
            raise UnsupportedError(f"tensor {self.name!r} has TF dtype {self.dtype.tf}, which "
                                   "ckconv cannot decode")
        end = self._offset + self._size
        if end > self._shards.sizes[self._shard]:
            raise self._corrupt(f"data file is truncated (has {self._shards.sizes[self._shard]} "
                                f"bytes, tensor ends at {end})")

    def _load(self) -> "np.ndarray":
        import numpy as np

        self._check_readable()
        if self.dtype.name == "string":
            return self._load_strings()
        if self.dtype.name == "variant":
            return self._load_variants()
        arr = np.empty(self.shape, dtype=self.dtype.numpy)
        raw = memoryview(arr.reshape(-1).view(np.uint8))
        self._shards.read_into(self._shard, self._offset, raw)
        self._check_crc(crc32c(raw))
        if self._swap:
            arr = _byteswap(arr, self.dtype)
        return arr

    def file_region(self) -> Optional[FileRegion]:
        if self._swap or self.dtype.is_variable_length or self._size == 0:
            return None
        self._check_readable()
        return FileRegion(self._shards.fd(self._shard), self._offset, self._size,
                          check=self._check_crc, corrupt=self._corrupt)

    def iter_bytes(self, chunk: int = WINDOW) -> Iterator[memoryview]:
        """Stream the raw bytes; the CRC is checked before the last chunk is handed out.

        Each yielded view is valid only until the next one is requested.
        """
        if self._swap or self.dtype.is_variable_length:
            yield from super().iter_bytes(chunk)
            return
        self._check_readable()
        if self._size == 0:
            self._check_crc(0)
            return
        crc = 0
        done = 0
        try:
            for view in iter_region(self._shards.fd(self._shard), self._offset, self._size, chunk):
                crc = crc32c(view, crc)
                done += len(view)
                if done == self._size:
                    self._check_crc(crc)
                yield view
        except EOFError as exc:  # the file shrank after it was opened
            raise self._corrupt(f"data file is truncated ({exc})") from None

    def _load_strings(self) -> "np.ndarray":
        import numpy as np

        data = self._shards.read(self._shard, self._offset, self._size)
        n = self.size
        end = len(data)
        lengths = []
        pos = 0
        try:
            for _ in range(n):
                length, pos = varint.decode(data, pos, end)
                lengths.append(length)
        except CorruptCheckpointError:
            raise self._corrupt("string lengths run past the tensor's bytes") from None
        if pos + 4 > end:
            raise self._corrupt("string length checksum is missing")
        order = ">" if self._swap else "<"  # lengths were checksummed in the writer's order
        len_crc = 0
        for length in lengths:
            fmt = f"{order}I" if length <= 0xFFFFFFFF else f"{order}Q"
            len_crc = crc32c(struct.pack(fmt, length), len_crc)
        (stored,) = struct.unpack_from(f"{order}I", data, pos)
        if unmask(stored) != len_crc:
            raise self._corrupt("string length checksum mismatch; the data file is corrupt")
        crc = crc32c(memoryview(data)[pos:pos + 4], len_crc)
        pos += 4
        if pos + sum(lengths) != end:
            raise self._corrupt(f"string lengths add up to {sum(lengths)} bytes but "
                                f"{end - pos} are stored")
        crc = crc32c(memoryview(data)[pos:], crc)
        self._check_crc(crc)
        out = np.empty(n, dtype=object)
        for i, length in enumerate(lengths):
            out[i] = bytes(data[pos:pos + length])
            pos += length
        return out.reshape(self.shape)

    def _load_variants(self) -> "np.ndarray":
        import numpy as np

        # Per element: varint length, serialized VariantTensorDataProto, masked running CRC.
        # ckconv cannot decode variants (TF needs a registered C++ type); the raw protos are
        # returned as bytes so they can at least be inspected or copied.
        data = self._shards.read(self._shard, self._offset, self._size)
        out = np.empty(self.size, dtype=object)
        pos, end, crc = 0, len(data), 0
        try:
            for i in range(self.size):
                length, pos = varint.decode(data, pos, end)
                if pos + length + 4 > end:
                    raise CorruptCheckpointError("element overruns")
                crc = crc32c(struct.pack("<Q", length), crc)
                crc = crc32c(memoryview(data)[pos:pos + length], crc)
                out[i] = bytes(data[pos:pos + length])
                pos += length
                if unmask(_U32.unpack_from(data, pos)[0]) != crc:
                    raise CorruptCheckpointError("element checksum mismatch")
                crc = crc32c(memoryview(data)[pos:pos + 4], crc)
                pos += 4
        except CorruptCheckpointError as exc:
            raise self._corrupt(f"bad variant element ({exc})") from None
        self._check_crc(crc)
        return out.reshape(self.shape)


def _byteswap(arr: "np.ndarray", dtype: DType) -> "np.ndarray":
    import numpy as np

    if arr.dtype.itemsize == 1:
        return arr
    if arr.dtype.kind == "c":  # swap real and imaginary parts separately
        half = np.dtype(f"f{arr.dtype.itemsize // 2}")
        return arr.view(half).byteswap().view(arr.dtype)
    return arr.view(np.dtype(f"u{arr.dtype.itemsize}")).byteswap().view(arr.dtype)


class SlicedTensor(Tensor):
    """A partitioned variable, reassembled from its slices when read."""

    def __init__(self, name: str, dtype: DType, shape: tuple[int, ...], path: str,
                 parts: list[tuple[tuple[slice, ...], BundleTensor]]):
        super().__init__(dtype, shape)
        self.name = name
        self._path = path
        self._parts = parts

    def describe(self) -> str:
        return f"{len(self._parts)} slices"

    def stored_extents(self) -> list[tuple[str, int]]:
        return [e for _, part in self._parts for e in part.stored_extents()]

    def _load(self) -> "np.ndarray":
        import numpy as np

        # Every slice must lie inside its file before the whole tensor's memory is taken:
        # the shape of a damaged entry must not decide how much is allocated.
        for _, part in self._parts:
            part._check_readable()
        out = np.empty(self.shape, dtype=self.dtype.numpy)
        for region, part in self._parts:
            out[region] = part.numpy()
        return out


def _shape(entry: entries.Entry, key: str, path: str) -> tuple[int, ...]:
    shape = tuple(entry.shape)
    if entry.unknown_rank or len(shape) > _MAX_RANK or (shape and min(shape) < 0):
        raise CorruptCheckpointError(f"{path}: tensor {key!r} has an invalid shape")
    if math.prod(shape) >= 2 ** 63:
        raise CorruptCheckpointError(f"{path}: tensor {key!r} has an absurd shape {list(shape)}")
    return shape


def _dtype(number: int) -> DType:
    dt = dtypes.BY_TF.get(number)
    if dt is None:  # keep the tensor listable; reading it raises a clear error
        dt = DType(f"tf_dtype_{number}", "object", 0, number, None)
    return dt


def read_bundle(prefix: str) -> TensorMap:
    index_path = prefix + ".index"
    table = Table.open(index_path)
    items = table.items()
    try:
        first_key, first_value = next(items)
    except StopIteration:
        raise CorruptCheckpointError(f"{index_path}: index has no entries (no header)") from None
    if first_key != b"":
        raise CorruptCheckpointError(f"{index_path}: first entry is not the bundle header")
    try:
        header = entries.decode_header(first_value)
    except ValueError:
        raise CorruptCheckpointError(f"{index_path}: unparseable bundle header") from None
    _check_version(header, index_path)
    if header.num_shards < 1:
        raise CorruptCheckpointError(f"{index_path}: header says {header.num_shards} data shards")
    # Values are handed out little-endian (ckconv targets little-endian hosts, as TF does in
    # practice); a bundle written by a big-endian host is swapped element by element.
    swap = header.endianness == entries.BIG
    shards = _Shards(prefix, header.num_shards)

    tmap = TensorMap(source=prefix, format="tf")
    slice_entries: dict[bytes, bytes] = {}
    sliced: list[tuple[str, object]] = []
    for key, value in items:
        if key[:1] == b"\x00":
            slice_entries[key] = value  # resolved below, once their full entries are known
            continue
        name = key.decode("utf-8", "surrogateescape")
        try:
            entry = entries.decode_entry(value)
        except ValueError:
            raise CorruptCheckpointError(f"{index_path}: entry for tensor {name!r} is not "
                                         "parseable") from None
        if entry.slices:
            sliced.append((name, entry))
            tmap._tensors[name] = None  # placeholder keeps key order
            continue
        tmap._tensors[name] = _plain_tensor(name, entry, shards, swap, index_path)
    for name, entry in sliced:
        tmap._tensors[name] = _sliced_tensor(name, entry, slice_entries, shards, swap, index_path)
    if slice_entries:
        tmap.notes.append(f"{prefix}: left out {len(slice_entries)} slice entr"
                          f"{'y' if len(slice_entries) == 1 else 'ies'} of no partitioned "
                          f"tensor: {listing(_slice_names(slice_entries))}")
    tmap.source_files = [index_path, *shards.paths]
    return tmap


def _slice_names(keys: "dict[bytes, bytes]") -> list[str]:
    """``name[start:length,...]`` for slice keys, as far as they decode."""
    out = []
    for key in keys:
        try:
            name, extents = slices.decode_slice_key(key)
        except CorruptCheckpointError:
            out.append(repr(key))
            continue
        out.append(f"{name.decode('utf-8', 'backslashreplace')}[{_fmt(extents)}]")
    return out


def _check_version(header: entries.Header, path: str) -> None:
    v = header
    if v.producer < 0 or v.min_consumer > 1 or 1 in v.bad_consumers:
        raise CorruptCheckpointError(
            f"{path}: bundle version (producer {v.producer}, min consumer {v.min_consumer}) "
            "is newer than this reader supports")


def _plain_tensor(name: str, entry: entries.Entry, shards: _Shards, swap: bool, path: str) -> BundleTensor:
    dtype = _dtype(entry.dtype)
    shape = _shape(entry, name, path)
    if not 0 <= entry.shard_id < len(shards.paths):
        raise CorruptCheckpointError(f"{path}: tensor {name!r} is in shard {entry.shard_id}, but "
                                     f"the checkpoint has {len(shards.paths)}")
    if entry.offset < 0 or entry.size < 0:
        raise CorruptCheckpointError(f"{path}: tensor {name!r} has a negative offset or size")
    t = BundleTensor(name, dtype, shape, shards, entry.shard_id, entry.offset, entry.size,
                     unmask(entry.crc32c), swap)
    if dtype.itemsize and entry.size != t.size * dtype.itemsize:
        raise CorruptCheckpointError(
            f"{path}: tensor {name!r} stores {entry.size} bytes but {dtype} {list(shape)} needs "
            f"{t.size * dtype.itemsize}")
    if dtype.name == "string" and entry.size < t.size + 4:
        raise CorruptCheckpointError(f"{path}: string tensor {name!r} is too small for "
                                     f"{t.size} elements ({entry.size} bytes)")
    # A variant element takes at least 5 bytes (length varint + checksum): without this
    # bound a damaged shape would size the array of elements before any byte is read.
    if dtype.name == "variant" and entry.size < 5 * t.size:
        raise CorruptCheckpointError(f"{path}: variant tensor {name!r} is too small for "
                                     f"{t.size} elements ({entry.size} bytes)")
    return t


def _sliced_tensor(name: str, entry: entries.Entry, slice_entries: dict[bytes, bytes], shards: _Shards,
                   swap: bool, path: str) -> SlicedTensor:
    dtype = _dtype(entry.dtype)
    shape = _shape(entry, name, path)
    parts = []
    covered = 0
    for sl in entry.slices:
        if len(sl) != len(shape):
            raise CorruptCheckpointError(f"{path}: a slice of {name!r} has rank {len(sl)}, "
                                         f"the tensor has rank {len(shape)}")
        stored = [(e.start, slices.FULL if e.length is None else e.length) for e in sl]
        bounds = slices.bounds(stored, shape)
        if bounds is None:
            raise CorruptCheckpointError(f"{path}: slice {_fmt(stored)} of {name!r} does not "
                                         f"fit its shape {list(shape)}")
        key = slices.encode_slice_key(name.encode("utf-8", "surrogateescape"), stored)
        raw = slice_entries.pop(key, None)
        if raw is None:
            raise CorruptCheckpointError(f"{path}: slice {_fmt(stored)} of partitioned tensor "
                                         f"{name!r} is missing from the index")
        try:
            part_entry = entries.decode_entry(raw)
        except ValueError:
            raise CorruptCheckpointError(f"{path}: entry for slice {_fmt(stored)} of {name!r} "
                                         "is not parseable") from None
        part = _plain_tensor(f"{name}[{_fmt(stored)}]", part_entry, shards, swap, path)
        want = tuple(hi - lo for lo, hi in bounds)
        if part.shape != want or part.dtype != dtype:
            raise CorruptCheckpointError(f"{path}: slice {_fmt(stored)} of {name!r} holds "
                                         f"{part.dtype} {list(part.shape)}, expected {dtype} "
                                         f"{list(want)}")
        covered += part.size
        parts.append((tuple(slice(lo, hi) for lo, hi in bounds), part))
    try:
        overlap = slices.first_overlap([region for region, _ in parts], shape)
    except ValueError as exc:
        raise CorruptCheckpointError(f"{path}: tensor {name!r}: {exc}") from None
    if overlap is not None:
        raise CorruptCheckpointError(f"{path}: slices of {name!r} overlap")
    total = math.prod(shape)
    if covered != total:
        raise CorruptCheckpointError(f"{path}: the slices of partitioned tensor {name!r} cover "
                                     f"{covered} of its {total} elements")
    return SlicedTensor(name, dtype, shape, path, parts)


def _fmt(extents: list[tuple[int, int]]) -> str:
    return ":".join("-" if n == slices.FULL else f"{s},{n}" for s, n in extents)
