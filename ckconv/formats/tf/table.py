"""Reader of the SSTable that forms a TF checkpoint's ``.index`` file.

Layout (see FORMATS.md section 2): data blocks of prefix-compressed key/value entries, each
followed by a 5-byte trailer (compression type + masked CRC-32C), an empty metaindex block,
an index block pointing at the data blocks, and a 48-byte footer ending in a magic number.
Every block's checksum is verified; every offset and length is checked against the file
before it is used, so damaged or hostile files raise CorruptCheckpointError, never crash.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from ...errors import CorruptCheckpointError
from . import snappy, varint
from .crc import crc32c, unmask

MAGIC = bytes.fromhex("57fb808b247547db")
FOOTER_SIZE = 48
TRAILER_SIZE = 5
NO_COMPRESSION = 0
SNAPPY_COMPRESSION = 1

_U32 = struct.Struct("<I")


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
    """All key/value entries of an SSTable file, in key order."""

    def __init__(self, path: str, data: bytes):
        self.path = path
        self._data = data

    @classmethod
    def open(cls, path: str) -> "Table":
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise CorruptCheckpointError(f"{path}: cannot read index file ({exc.strerror})") from None
        return cls(path, data)

    def _error(self, what: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(f"{self.path}: {what}")

    def _footer_handles(self) -> tuple[int, int]:
        data = self._data
        if len(data) < FOOTER_SIZE:
            raise self._error(f"file is too short to be a checkpoint index ({len(data)} bytes)")
        if data[-8:] != MAGIC:
            raise self._error("not a checkpoint index (bad SSTable magic number)")
        footer_start = len(data) - FOOTER_SIZE
        end = len(data) - 8
        try:
            meta_off, pos = varint.decode(data, footer_start, end)
            meta_size, pos = varint.decode(data, pos, end)
            index_off, pos = varint.decode(data, pos, end)
            index_size, pos = varint.decode(data, pos, end)
        except CorruptCheckpointError:
            raise self._error("bad block handle in the footer") from None
        # TF never reads the (empty) metaindex block; verifying its checksum anyway means
        # every bit of the file but the footer's padding is covered by some check.
        self.read_block(meta_off, meta_size, "metaindex")
        return index_off, index_size

    def read_block(self, offset: int, size: int, what: str) -> bytes:
        """Return a verified, decompressed block."""
        data = self._data
        end = offset + size
        if end + TRAILER_SIZE > len(data):
            raise self._error(f"truncated {what} block (at offset {offset}, {size} bytes, "
                              f"file has {len(data)})")
        contents = data[offset:end]
        block_type = data[end]
        (stored,) = _U32.unpack_from(data, end + 1)
        if unmask(stored) != crc32c(data[end:end + 1], crc32c(contents)):
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

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) pair in file order, which is sorted key order."""
        index_off, index_size = self._footer_handles()
        index = self.read_block(index_off, index_size, "index")
        previous = None
        for _sep, handle in self._entries(index, "index"):
            try:
                off, pos = varint.decode(handle, 0, len(handle))
                size, _ = varint.decode(handle, pos, len(handle))
            except CorruptCheckpointError:
                raise self._error("bad block handle in the index block") from None
            for key, value in self._entries(self.read_block(off, size, "data"), "data"):
                if previous is not None and key <= previous:
                    raise self._error(f"keys out of order at {key[:64]!r}")
                previous = key
                yield key, value
