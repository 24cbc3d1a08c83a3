"""Keys of partitioned-variable slices: TF's order-preserving "OrderedCode" encoding.

A slice key is ``num(0) string(name) num(rank)`` followed by a signed (start, length) pair
per dimension, where length -1 means "the whole dimension" (docs/formats.md §6.2-§6.3).
Keys start with byte 0, so they sort right after the header entry.
"""

from __future__ import annotations

from typing import Optional

from ...errors import CorruptCheckpointError

FULL = -1  # the length TF stores for an extent that spans the whole dimension

# XOR masks over the first two bytes of a signed number, by its encoded length.
_SIGNED_HEADER = {2: (0xC0, 0x00), 3: (0xE0, 0x00), 4: (0xF0, 0x00), 5: (0xF8, 0x00),
                  6: (0xFC, 0x00), 7: (0xFE, 0x00), 8: (0xFF, 0x00), 9: (0xFF, 0x80),
                  10: (0xFF, 0xC0)}


def _num_increasing(v: int) -> bytes:
    body = v.to_bytes((v.bit_length() + 7) // 8, "big") if v else b""
    return bytes([len(body)]) + body


def _escape(s: bytes) -> bytes:
    out = bytearray()
    for b in s:
        if b == 0x00:
            out += b"\x00\xff"
        elif b == 0xFF:
            out += b"\xff\x00"
        else:
            out.append(b)
    return bytes(out)


def _signed(v: int) -> bytes:
    x = v if v >= 0 else ~v
    n = x.bit_length() // 7 + 1
    if n == 1:
        return bytes([(0x80 ^ v) & 0xFF])
    raw = bytearray((v & ((1 << 80) - 1)).to_bytes(10, "big")[-n:])
    h0, h1 = _SIGNED_HEADER[n]
    raw[0] ^= h0
    raw[1] ^= h1
    return bytes(raw)


def encode_slice_key(name: bytes, extents: list[tuple[int, int]]) -> bytes:
    """The table key of one slice of tensor ``name``; extents are stored (start, length)."""
    out = bytearray(_num_increasing(0))
    out += _escape(name) + b"\x00\x01"
    out += _num_increasing(len(extents))
    for start, length in extents:
        out += _signed(start)
        out += _signed(length)
    return bytes(out)


class _Cursor:
    def __init__(self, key: bytes):
        self.key = key
        self.pos = 0

    def fail(self, what: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(f"bad slice key {self.key[:64]!r}: {what}")

    def num_increasing(self) -> int:
        if self.pos >= len(self.key):
            raise self.fail("truncated number")
        n = self.key[self.pos]
        if n > 8 or self.pos + 1 + n > len(self.key):
            raise self.fail("bad number length")
        v = int.from_bytes(self.key[self.pos + 1:self.pos + 1 + n], "big")
        self.pos += 1 + n
        return v

    def string(self) -> bytes:
        out = bytearray()
        key = self.key
        while True:
            i = key.find(b"\x00", self.pos)
            j = key.find(b"\xff", self.pos)
            stop = min(k for k in (i, j, len(key)) if k >= 0)
            out += key[self.pos:stop]
            if stop + 1 >= len(key):
                raise self.fail("unterminated name")
            pair = key[stop:stop + 2]
            self.pos = stop + 2
            if pair == b"\x00\x01":
                return bytes(out)
            if pair == b"\x00\xff":
                out.append(0)
            elif pair == b"\xff\x00":
                out.append(0xFF)
            else:
                raise self.fail("bad escape in name")

    def signed(self) -> int:
        key = self.key
        if self.pos >= len(key):
            raise self.fail("truncated number")
        inv = 0 if key[self.pos] & 0x80 else 0xFF
        first = key[self.pos] ^ inv
        n = _leading_ones(first)
        if n == 8:
            if self.pos + 1 >= len(key):
                raise self.fail("truncated number")
            n += _leading_ones(key[self.pos + 1] ^ inv)
        if n == 0 or n > 10 or self.pos + n > len(key):
            raise self.fail("bad signed number")
        raw = bytearray(key[self.pos:self.pos + n])
        self.pos += n
        if n == 1:
            return _as_signed_byte(raw[0] ^ 0x80)
        h0, h1 = _SIGNED_HEADER[n]
        raw[0] ^= h0
        raw[1] ^= h1
        return int.from_bytes(raw, "big", signed=True)


def _leading_ones(b: int) -> int:
    n = 0
    mask = 0x80
    while mask and b & mask:
        n += 1
        mask >>= 1
    return n


def _as_signed_byte(b: int) -> int:
    return b - 256 if b >= 128 else b


def decode_slice_key(key: bytes) -> tuple[bytes, list[tuple[int, int]]]:
    """Inverse of :func:`encode_slice_key`: (tensor name, [(start, length), ...])."""
    cur = _Cursor(key)
    if cur.num_increasing() != 0:
        raise cur.fail("does not start with 0")
    name = cur.string()
    rank = cur.num_increasing()
    if not 0 < rank < 255:
        raise cur.fail(f"bad rank {rank}")
    extents = [(cur.signed(), cur.signed()) for _ in range(rank)]
    if cur.pos != len(key):
        raise cur.fail("trailing bytes")
    return name, extents


def bounds(extents: list[tuple[int, int]], shape: tuple[int, ...]) -> Optional[list[tuple[int, int]]]:
    """``(lo, hi)`` per dimension of a slice ``(start, length)`` (length FULL: the whole
    dimension) of a tensor of ``shape``, or None if the slice does not fit in it."""
    out = []
    for d, (start, length) in enumerate(extents):
        lo, n = (0, shape[d]) if length == FULL else (start, length)
        if lo < 0 or n < 0 or lo + n > shape[d]:
            return None
        out.append((lo, lo + n))
    return out


_MAX_PAIRWISE = 4096


def first_overlap(regions: list[tuple[slice, ...]], shape: tuple[int, ...]) -> Optional[int]:
    """The index of a region overlapping an earlier one, or None.

    Partitioners cut along one axis: then sorting by start finds overlaps in n log n. Other
    layouts are compared pairwise, which a hostile header could make quadratic, so their
    number is capped.
    """
    cut = {d for r in regions for d, s in enumerate(r) if (s.start, s.stop) != (0, shape[d])}
    if len(cut) <= 1:
        axis = next(iter(cut), 0)
        if not shape:
            return 1 if len(regions) > 1 else None
        order = sorted(range(len(regions)), key=lambda i: regions[i][axis].start)
        end = 0
        for i in order:
            s = regions[i][axis]
            if s.start < end and s.stop > s.start:
                return i
            end = max(end, s.stop)
        return None
    if len(regions) > _MAX_PAIRWISE:
        raise ValueError(f"{len(regions)} slices cut along several axes, more than the "
                         f"{_MAX_PAIRWISE} ckconv checks for overlap")
    for i, r in enumerate(regions):
        for other in regions[:i]:
            if all(a.start < b.stop and b.start < a.stop for a, b in zip(r, other)):
                return i
    return None
