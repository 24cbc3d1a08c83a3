"""Reader of the SSTable that forms a TF checkpoint's ``.index`` file.

Layout (docs/formats.md §2): data blocks of prefix-compressed key/value entries, each
followed by a 5-byte trailer (compression type + masked CRC-32C), an empty metaindex block,
an index block pointing at the data blocks, and a 48-byte footer ending in a magic number.
Every block's checksum is verified; every offset and length is checked against the file
before it is used, so damaged or hostile files raise CorruptCheckpointError, never crash.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Optional

from ...errors import CorruptCheckpointError
from . import snappy, varint
from .crc import crc32c, unmask

MAGIC = bytes.fromhex("57fb808b247547db")
FOOTER_SIZE = 48
TRAILER_SIZE = 5
NO_COMPRESSION = 0
SNAPPY_COMPRESSION = 1

_U32 = struct.Struct("<I")
_CACHED_BLOCK = 1 << 20


def has_magic(path: str) -> bool:
    """True if the file ends with the SSTable magic (cheap content sniffing)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            if f.tell() < FOOTER_SIZE:
                return False
            f.seek(-8, 2)
            return f.read(8) == MAGIC
    except OSError:
        return False


class Table:
    """The key/value entries of an SSTable file, in key order.

    ``data`` is the whole file (a V2 ``.index``, small) or a :class:`FileBytes` that reads
    blocks on demand (a V1 checkpoint, whose values are the tensors themselves).
    """

    def __init__(self, path: str, data: "bytes | FileBytes"):
        self.path = path
        self._data = data
        self._handles: "list[tuple[bytes, int, int]] | None" = None
        self._cached: "tuple[int, bytes | memoryview] | None" = None

    @classmethod
    def open(cls, path: str) -> "Table":
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise CorruptCheckpointError(f"{path}: cannot read index file ({exc.strerror})") from None
        return cls(path, data)

    @classmethod
    def open_lazy(cls, path: str, size: int) -> "Table":
        """A table whose blocks are read from the file when needed."""
        return cls(path, FileBytes(path, size))

    def _error(self, what: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(f"{self.path}: {what}")

    def _footer_handles(self) -> tuple[int, int]:
        size = len(self._data)
        if size < FOOTER_SIZE:
            raise self._error(f"file is too short to be a checkpoint index ({size} bytes)")
        footer = bytes(self._data[size - FOOTER_SIZE:size])
        if footer[-8:] != MAGIC:
            raise self._error("not a checkpoint index (bad SSTable magic number)")
        end = FOOTER_SIZE - 8
        try:
            meta_off, pos = varint.decode(footer, 0, end)
            meta_size, pos = varint.decode(footer, pos, end)
            index_off, pos = varint.decode(footer, pos, end)
            index_size, pos = varint.decode(footer, pos, end)
        except CorruptCheckpointError:
            raise self._error("bad block handle in the footer") from None
        # TF never reads the (empty) metaindex block; verifying its checksum anyway means
        # every bit of the file but the footer's padding is covered by some check.
        self.read_block(meta_off, meta_size, "metaindex")
        return index_off, index_size

    def read_block(self, offset: int, size: int, what: str) -> "bytes | memoryview":
        """Return a verified, decompressed block."""
        have = len(self._data)
        end = offset + size
        if end + TRAILER_SIZE > have:
            raise self._error(f"truncated {what} block (at offset {offset}, {size} bytes, "
                              f"file has {have})")
        raw = bytes(self._data[offset:end + TRAILER_SIZE])
        # A lazily read block may hold a whole V1 tensor: its entries are views, not copies.
        contents = memoryview(raw)[:size] if isinstance(self._data, FileBytes) else raw[:size]
        block_type = raw[size]
        (stored,) = _U32.unpack_from(raw, size + 1)
        if unmask(stored) != crc32c(raw[size:size + 1], crc32c(contents)):
            raise self._error(f"checksum mismatch in {what} block at offset {offset} "
                              f"(file is corrupt)")
        if block_type == NO_COMPRESSION:
            return contents
        if block_type == SNAPPY_COMPRESSION:
            return self._snappy(contents, offset, what)
        raise self._error(f"bad block type {block_type} in {what} block at offset {offset}")

    def _snappy(self, contents: bytes, offset: int, what: str) -> bytes:
        # A Snappy copy element of 3 bytes yields at most 64: no real block expands more
        # than 22-fold, so a larger declared length is damage, refused before any work.
        try:
            return snappy.decompress(contents, 22 * len(contents))
        except snappy.SnappyError as exc:
            raise self._error(f"corrupted Snappy-compressed {what} block at offset {offset} "
                              f"({exc})") from None

    def _entries(self, block: bytes, what: str) -> Iterator[tuple[bytes, bytes]]:
        n = len(block)
        if n < 4:
            raise self._error(f"bad {what} block (shorter than its restart count)")
        (num_restarts,) = _U32.unpack_from(block, n - 4)
        if num_restarts > (n - 4) // 4:
            raise self._error(f"bad {what} block (restart count {num_restarts} too large)")
        limit = n - 4 * (num_restarts + 1)
        pos = 0
        key = b""
        decode = varint.decode
        try:
            while pos < limit:
                shared, pos = decode(block, pos, limit, 5)
                non_shared, pos = decode(block, pos, limit, 5)
                value_len, pos = decode(block, pos, limit, 5)
                key_end = pos + non_shared
                value_end = key_end + value_len
                if shared > len(key) or value_end > limit:
                    raise CorruptCheckpointError("entry overruns block")
                key = key[:shared] + block[pos:key_end]
                yield key, block[key_end:value_end]
                pos = value_end
        except CorruptCheckpointError:
            raise self._error(f"bad entry in {what} block") from None

    def data_blocks(self) -> list[tuple[bytes, int, int]]:
        """(index key, offset, size) of every data block, from the index block."""
        if self._handles is None:
            index_off, index_size = self._footer_handles()
            index = self.read_block(index_off, index_size, "index")
            handles = []
            for sep, handle in self._entries(index, "index"):
                try:
                    off, pos = varint.decode(handle, 0, len(handle))
                    size, _ = varint.decode(handle, pos, len(handle))
                except CorruptCheckpointError:
                    raise self._error("bad block handle in the index block") from None
                handles.append((sep, off, size))
            self._handles = handles
        return self._handles

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) pair in file order, which is sorted key order."""
        previous = None
        for _sep, off, size in self.data_blocks():
            for key, value in self._entries(self.read_block(off, size, "data"), "data"):
                if previous is not None and key <= previous:
                    raise self._error(f"keys out of order at {key[:64]!r}")
                previous = key
                yield key, value

    def first(self) -> Optional[tuple[bytes, bytes]]:
        """The first entry, reading only the first data block."""
        for _sep, off, size in self.data_blocks():
            for entry in self._entries(self.read_block(off, size, "data"), "data"):
                return entry
        return None

    def get(self, key: bytes) -> Optional[bytes]:
        """The value stored under ``key``, reading only the data block that can hold it."""
        for sep, off, size in self.data_blocks():
            if sep < key:  # index keys are >= every key of their block
                continue
            if self._cached is not None and self._cached[0] == off:
                block = self._cached[1]
            else:
                block = self.read_block(off, size, "data")
                # Keys are read in order: small tensors sharing a block are served by one
                # read. A large block (one big tensor) is not kept alive after its read.
                self._cached = (off, block) if size <= _CACHED_BLOCK else None
            for k, value in self._entries(block, "data"):
                if k == key:
                    return value
                if k > key:
                    break
            return None
        return None


class FileBytes:
    """Byte ranges of a file, read when sliced: a table whose blocks stay on disk."""

    def __init__(self, path: str, size: int):
        self.path = path
        self._size = size

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, key: slice) -> bytes:
        start, stop, _ = key.indices(self._size)
        want = max(0, stop - start)
        try:
            with open(self.path, "rb") as f:
                f.seek(start)
                data = f.read(want)
        except OSError as exc:
            raise CorruptCheckpointError(f"{self.path}: cannot read ({exc.strerror})") from None
        if len(data) != want:
            raise CorruptCheckpointError(f"{self.path}: file ended early (wanted {want} bytes "
                                         f"at offset {start}; was it truncated?)")
        return data
