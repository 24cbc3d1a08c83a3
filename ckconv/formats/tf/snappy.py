"""A decoder of Snappy's raw block format, for compressed SSTable blocks (type byte 1).

TensorFlow before 1.1 (and LevelDB's default options) compressed index blocks with Snappy;
such ``.index`` files and V1 checkpoints are still published. The format is small enough to
decode here, so a plain install reads them:

* a varint (at most 5 bytes, below 2**32) giving the decompressed length;
* then elements, each starting with a tag byte whose low two bits say what follows:

  - ``0`` literal: the length minus one is the tag's upper six bits, or, when those hold
    60..63, the little-endian integer in the next 1..4 bytes; the literal bytes follow.
  - ``1`` copy: length ``4 + ((tag >> 2) & 7)`` (4..11), offset ``(tag >> 5) << 8`` plus
    the next byte (11 bits).
  - ``2`` copy: length ``1 + (tag >> 2)`` (1..64), offset in the next two bytes (LE).
  - ``3`` copy: the same length, offset in the next four bytes (LE).

  A copy repeats ``length`` bytes starting ``offset`` bytes back in the output; the two may
  overlap (offset < length repeats a pattern). An offset of 0, or one reaching before the
  output's start, is invalid.

Every length and offset is checked against the input and the declared output size before
it is used, so a hostile block costs at most its declared size (itself capped by the
caller) and raises :class:`CorruptCheckpointError` rather than crashing or looping.
"""

from __future__ import annotations

from ...errors import CorruptCheckpointError

_MAX_LENGTH_BYTES = 5  # Snappy's preamble is a varint32
_LITERAL, _COPY_1, _COPY_2, _COPY_4 = 0, 1, 2, 3


class SnappyError(CorruptCheckpointError):
    """The bytes are not a valid Snappy block; the message says where (callers add the file)."""


def decompressed_length(data: bytes) -> tuple[int, int]:
    """The length the preamble declares, and where the elements start."""
    value = 0
    for i in range(min(len(data), _MAX_LENGTH_BYTES)):
        b = data[i]
        value |= (b & 0x7F) << (7 * i)
        if b < 0x80:
            if value >> 32:
                break
            return value, i + 1
    raise SnappyError("bad length preamble")


def decompress(data: bytes, max_length: int) -> bytes:
    """Decompress one raw Snappy block whose declared length is at most ``max_length``."""
    want, pos = decompressed_length(data)
    if want > max_length:
        raise SnappyError(f"declares {want} decompressed bytes, more than the "
                          f"{max_length} allowed")
    out = bytearray()
    end = len(data)
    while pos < end:
        tag = data[pos]
        kind = tag & 3
        pos += 1
        if kind == _LITERAL:
            n = tag >> 2
            if n >= 60:
                width = n - 59
                if pos + width > end:
                    raise SnappyError(f"literal length runs past the input at byte {pos}")
                n = int.from_bytes(data[pos:pos + width], "little")
                pos += width
            n += 1
            if pos + n > end:
                raise SnappyError(f"literal of {n} bytes runs past the input at byte {pos}")
            if len(out) + n > want:
                raise SnappyError(f"output overrun: literal at byte {pos} exceeds the "
                                  f"declared {want} bytes")
            out += data[pos:pos + n]
            pos += n
            continue
        if kind == _COPY_1:
            if pos + 1 > end:
                raise SnappyError(f"copy offset runs past the input at byte {pos}")
            length = 4 + ((tag >> 2) & 7)
            offset = ((tag >> 5) << 8) | data[pos]
            pos += 1
        else:
            width = 2 if kind == _COPY_2 else 4
            if pos + width > end:
                raise SnappyError(f"copy offset runs past the input at byte {pos}")
            length = 1 + (tag >> 2)
            offset = int.from_bytes(data[pos:pos + width], "little")
            pos += width
        _copy(out, offset, length, want, pos)
    if len(out) != want:
        raise SnappyError(f"decompressed to {len(out)} bytes, the preamble declares {want}")
    return bytes(out)


def _copy(out: bytearray, offset: int, length: int, want: int, pos: int) -> None:
    have = len(out)
    if offset == 0 or offset > have:
        raise SnappyError(f"copy at byte {pos} reaches {offset} bytes back, before the "
                          f"start of the output ({have} bytes so far)")
    if have + length > want:
        raise SnappyError(f"output overrun: copy at byte {pos} exceeds the declared "
                          f"{want} bytes")
    start = have - offset
    if offset >= length:
        out += out[start:start + length]
        return
    # Overlapping copy: the source keeps growing while it is read, i.e. the last
    # ``offset`` bytes repeat; build the repetition in one step.
    pattern = bytes(out[start:have])
    reps = -(-length // offset)
    out += (pattern * reps)[:length]
