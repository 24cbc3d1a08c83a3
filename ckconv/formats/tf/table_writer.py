"""Build the LevelDB-style sorted table that TensorFlow uses for a bundle's ``.index`` file.

The layout (docs/formats.md §2) is: data blocks, an empty metaindex block, an index block, and
a 48-byte footer. Every block is followed by a 5-byte trailer (type byte + masked CRC-32C).
Parameters mirror what TF's ``BundleWriter`` uses, so that for the same entries the output
is byte-identical to TF's: no compression, 256 KiB blocks, restart interval 16 in data
blocks and 1 in the index block, the "overly large entry gets its own block" rule, and
index keys shortened to separators / successors exactly as TF shortens them.

The builder streams: only the current data block and the (small) index block are held in
memory; finished blocks go straight to the file object.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from ...errors import UnsupportedError, UsageError
from .crc import crc32c, mask
from .varint import encode as varint

BLOCK_SIZE = 256 * 1024
RESTART_INTERVAL = 16
#: TF flushes the current block before an entry whose key+value is at least this many
#: block sizes, so one huge entry never drags its small neighbours into a huge block.
OVERLY_LARGE_RATIO = 2
NO_COMPRESSION = 0
FOOTER_SIZE = 48
#: Leading 64 bits of the SHA-1 of a LevelDB URL; the last 8 bytes of every table.
MAGIC = 0xDB4775248B80FB57
_HANDLE_MAX = 20  # two varint64s

_U32 = struct.Struct("<I")


class BlockBuilder:
    """Accumulate prefix-compressed entries of one block plus its restart array."""

    def __init__(self, restart_interval: int) -> None:
        self._interval = restart_interval
        self._buf = bytearray()
        self._restarts = [0]  # the first entry is always a restart point
        self._counter = 0     # entries since the last restart point
        self._last_key = b""
        self.empty = True

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self._counter < self._interval:
            # Share the common prefix with the previous key of this block.
            limit = min(len(key), len(self._last_key))
            while shared < limit and key[shared] == self._last_key[shared]:
                shared += 1
        else:
            self._restarts.append(len(self._buf))
            self._counter = 0
        buf = self._buf
        buf += varint(shared)
        buf += varint(len(key) - shared)
        buf += varint(len(value))
        buf += key[shared:]
        buf += value
        self._last_key = key
        self._counter += 1
        self.empty = False

    def size_estimate(self) -> int:
        """Size of the finished block, the quantity TF compares with ``block_size``."""
        return len(self._buf) + 4 * len(self._restarts) + 4

    def finish(self) -> bytes:
        """Return the block contents (entries + restart array) and reset for reuse."""
        out = self._buf
        for r in self._restarts:
            out += _U32.pack(r)
        out += _U32.pack(len(self._restarts))
        self._buf = bytearray()
        self._restarts = [0]
        self._counter = 0
        self._last_key = b""
        self.empty = True
        return bytes(out)


def encode_handle(offset: int, size: int) -> bytes:
    """A BlockHandle: varint64 offset then varint64 size (size excludes the trailer)."""
    return varint(offset) + varint(size)


def shortest_separator(start: bytes, limit: bytes) -> bytes:
    """A short key k with start <= k < limit (TF's bytewise FindShortestSeparator).

    Only the first differing byte is bumped, and only when the bump stays below ``limit``;
    when one key is a prefix of the other, ``start`` is kept unchanged.
    """
    n = min(len(start), len(limit))
    i = 0
    while i < n and start[i] == limit[i]:
        i += 1
    if i < n:
        b = start[i]
        if b < 0xFF and b + 1 < limit[i]:
            return start[:i] + bytes([b + 1])
    return start


def short_successor(key: bytes) -> bytes:
    """A short key >= ``key`` (TF's FindShortSuccessor): bump the first non-0xFF byte, cut after it."""
    for i, b in enumerate(key):
        if b != 0xFF:
            return key[:i] + bytes([b + 1])
    return key  # all 0xFF: nothing shorter is larger


class TableWriter:
    """Write a sorted table to a binary file object positioned at its start.

    Keys must be added in strictly increasing bytewise order; call :meth:`finish` once at
    the end. Offsets are counted from where the file object was when the writer was made
    (TF tables always start at offset 0 of their file).
    """

    def __init__(self, f: BinaryIO, *, block_size: int = BLOCK_SIZE,
                 restart_interval: int = RESTART_INTERVAL) -> None:
        if block_size <= 0 or restart_interval <= 0:
            raise UsageError("block_size and restart_interval must be positive")
        self._f = f
        self._block_size = block_size
        self._offset = 0
        self._data = BlockBuilder(restart_interval)
        self._index = BlockBuilder(1)  # every index entry is a restart point, as in TF
        self._last_key: bytes | None = None
        # TF delays the index entry of a finished block until the next key is known, so the
        # separator can be shortened against it.
        self._pending_handle: bytes | None = None
        self._finished = False
        self.num_entries = 0

    def add(self, key: bytes, value: bytes) -> None:
        if self._finished:
            raise UsageError("table already finished")
        key = bytes(key)
        if self._last_key is not None:
            if key == self._last_key:
                raise UnsupportedError(f"duplicate table key {key!r}")
            if key < self._last_key:  # bytes compare like unsigned memcmp, as TF requires
                raise UsageError(f"table keys out of order: {key!r} after {self._last_key!r}")
            if len(key) + len(value) >= OVERLY_LARGE_RATIO * self._block_size:
                self._flush()
        if self._pending_handle is not None:
            assert self._last_key is not None
            self._index.add(shortest_separator(self._last_key, key), self._pending_handle)
            self._pending_handle = None
        self._data.add(key, value)
        self._last_key = key
        self.num_entries += 1
        if self._data.size_estimate() >= self._block_size:
            self._flush()

    def _flush(self) -> None:
        if self._data.empty:
            return
        self._pending_handle = self._write_block(self._data.finish())

    def _write_block(self, contents: bytes) -> bytes:
        """Write a block and its trailer; return the block's encoded handle."""
        type_byte = bytes([NO_COMPRESSION])
        crc = mask(crc32c(type_byte, crc32c(contents)))  # CRC covers contents + type byte
        self._f.write(contents)
        self._f.write(type_byte + _U32.pack(crc))
        handle = encode_handle(self._offset, len(contents))
        self._offset += len(contents) + 5
        return handle

    def finish(self) -> int:
        """Write the remaining blocks and the footer; return the table's total size."""
        if self._finished:
            raise UsageError("table already finished")
        self._flush()
        self._finished = True
        # TF writes no filters or stats: the metaindex block is always empty.
        meta_handle = self._write_block(BlockBuilder(RESTART_INTERVAL).finish())
        if self._pending_handle is not None:
            assert self._last_key is not None
            self._index.add(short_successor(self._last_key), self._pending_handle)
            self._pending_handle = None
        index_handle = self._write_block(self._index.finish())
        footer = (meta_handle + index_handle).ljust(2 * _HANDLE_MAX, b"\0")
        footer += _U32.pack(MAGIC & 0xFFFFFFFF) + _U32.pack(MAGIC >> 32)
        self._f.write(footer)
        self._offset += FOOTER_SIZE
        return self._offset
