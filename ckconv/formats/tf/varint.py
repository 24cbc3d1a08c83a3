"""Protobuf-style base-128 varints, decoded with bounds checks for untrusted bytes."""

from __future__ import annotations

from ...errors import CorruptCheckpointError


def decode(buf: bytes, pos: int, end: int, max_bytes: int = 10) -> tuple[int, int]:
    """Decode one varint from ``buf[pos:end]``; return (value, position after it).

    Raises CorruptCheckpointError (with a bare message: the caller adds file context)
    when the varint runs past ``end`` or past ``max_bytes`` bytes.
    """
    if pos < end:
        b = buf[pos]
        if b < 0x80:  # the overwhelmingly common one-byte case
            return b, pos + 1
    result = 0
    shift = 0
    limit = min(end, pos + max_bytes)
    while pos < limit:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if result >> 64:  # a 10th byte above 1: no uint64 has that many bits
                break
            return result, pos
        shift += 7
    raise CorruptCheckpointError("truncated or overlong varint")


def encode(value: int) -> bytes:
    if value < 0:
        raise ValueError("varints here are unsigned")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
