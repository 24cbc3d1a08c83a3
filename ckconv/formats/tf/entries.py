"""The two small protobuf messages of a bundle index, decoded and encoded by hand.

Every tensor of a checkpoint has a ``BundleEntryProto`` in the index, and a checkpoint of
20,000 tensors parses 20,000 of them: a few lines of varint arithmetic do that faster than
the protobuf runtime, and converting a checkpoint then never imports protobuf (its
descriptor pool costs more start-up time than the rest of ckconv; docs/performance.md).
The rarer messages (object graph, meta graph, state file) still go through :mod:`.protos`.

Field numbers (docs/formats.md §4, from tensor_bundle.proto):

* BundleHeaderProto: 1 num_shards int32, 2 endianness enum, 3 version VersionDef
  (1 producer, 2 min_consumer, 3 bad_consumers repeated int32).
* BundleEntryProto: 1 dtype enum, 2 shape TensorShapeProto (2 dim {1 size int64, 2 name},
  3 unknown_rank bool), 3 shard_id int32, 4 offset int64, 5 size int64, 6 crc32c fixed32,
  7 slices repeated TensorSliceProto (1 extent {1 start int64, 2 length int64}).

Decoding follows protobuf's rules: the last value of a scalar field wins, repeated
occurrences of a message field merge, repeated scalars may be packed or not, unknown
fields are skipped. Bad bytes raise ValueError; callers add the file and tensor.
"""

from __future__ import annotations

import struct
from typing import Optional

from ...errors import CorruptCheckpointError
from ...records import field, record
from .varint import decode as _varint
from .varint import encode as _encode_varint

_U32 = struct.Struct("<I")
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5

LITTLE, BIG = 0, 1


@record
class Header:
    num_shards: int = 0
    endianness: int = LITTLE
    producer: int = 0
    min_consumer: int = 0
    bad_consumers: list[int] = field(default_factory=list)


@record
class Extent:
    start: int = 0
    length: Optional[int] = None  # None: the whole dimension (the oneof is unset)


class Entry:
    """The fields of a BundleEntryProto ckconv uses (a plain class: 20,000 are made per index)."""

    __slots__ = ("dtype", "shape", "unknown_rank", "shard_id", "offset", "size", "crc32c", "slices")

    def __init__(self) -> None:
        self.dtype = 0
        self.shape: list[int] = []
        self.unknown_rank = False
        self.shard_id = 0
        self.offset = 0
        self.size = 0
        self.crc32c = 0  # masked, as stored
        self.slices: list[list[Extent]] = []


# -- decoding ----------------------------------------------------------------------------

def _fields(buf: bytes) -> list[tuple[int, int, object]]:
    """(field number, wire type, value) of every field: an int, or bytes for wire type 2."""
    out = []
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if not 0 < number < 1 << 29:  # protobuf's range of field numbers
            raise ValueError(f"invalid field number {number}")
        if wire == _VARINT:
            value, pos = _varint(buf, pos, end)
        elif wire == _FIXED32:
            if pos + 4 > end:
                raise ValueError("truncated fixed32")
            value = _U32.unpack_from(buf, pos)[0]
            pos += 4
        elif wire == _FIXED64:
            if pos + 8 > end:
                raise ValueError("truncated fixed64")
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == _BYTES:
            n, pos = _varint(buf, pos, end)
            if n > end - pos:
                raise ValueError("truncated length-delimited field")
            value, pos = buf[pos:pos + n], pos + n
        else:  # groups (3, 4) are proto2-only and never written by TF; 6, 7 do not exist
            raise ValueError(f"unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


def _int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def _int64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def decode_header(buf: bytes) -> Header:
    try:
        return _decode_header(buf)
    except CorruptCheckpointError as exc:  # from varint.decode: keep this module's contract
        raise ValueError(str(exc)) from None


def _decode_header(buf: bytes) -> Header:
    h = Header()
    version = b""
    # A field whose wire type does not match its declaration is an unknown field to
    # protobuf, so it is skipped here too (the `wire ==` tests below).
    for number, wire, value in _fields(buf):
        if number == 1 and wire == _VARINT:
            h.num_shards = _int32(value)
        elif number == 2 and wire == _VARINT:
            h.endianness = _int32(value)
        elif number == 3 and wire == _BYTES:
            version += value  # repeated occurrences of a message field merge
    for number, wire, value in _fields(version):
        if number == 1 and wire == _VARINT:
            h.producer = _int32(value)
        elif number == 2 and wire == _VARINT:
            h.min_consumer = _int32(value)
        elif number == 3 and wire == _VARINT:
            h.bad_consumers.append(_int32(value))
        elif number == 3 and wire == _BYTES:  # packed
            pos = 0
            while pos < len(value):
                v, pos = _varint(value, pos, len(value))
                h.bad_consumers.append(_int32(v))
    return h


def decode_entry(buf: bytes) -> Entry:
    """Decode an entry, by the fast path when it has the layout TF writes."""
    try:
        e = _decode_canonical(buf)
    except (ValueError, IndexError, CorruptCheckpointError):
        e = None
    if e is not None:
        return e
    try:
        return _decode_general(buf)
    except CorruptCheckpointError as exc:  # from varint.decode: keep this module's contract
        raise ValueError(str(exc)) from None


def _decode_canonical(buf: bytes) -> Optional[Entry]:
    """TF's serializer writes fields in number order, each at most once, dims as ``08 size``
    (empty for 0). Entries of that shape are read in one straight pass; anything else
    returns None and goes to the general decoder, which knows every protobuf rule."""
    e = Entry()
    end = len(buf)
    pos = 0
    if pos < end and buf[pos] == 0x08:
        v, pos = _varint(buf, pos + 1, end)
        e.dtype = _int32(v)
    if pos < end and buf[pos] == 0x12:
        n, pos = _varint(buf, pos + 1, end)
        stop = pos + n
        if stop > end:
            return None
        dims = e.shape
        while pos < stop:
            if buf[pos] != 0x12:
                return None
            n, pos = _varint(buf, pos + 1, stop)
            if n == 0:
                dims.append(0)
                continue
            if buf[pos] != 0x08:
                return None
            v, after = _varint(buf, pos + 1, stop)
            if after != pos + n:
                return None
            dims.append(_int64(v))
            pos = after
    if pos < end and buf[pos] == 0x18:
        v, pos = _varint(buf, pos + 1, end)
        e.shard_id = _int32(v)
    if pos < end and buf[pos] == 0x20:
        v, pos = _varint(buf, pos + 1, end)
        e.offset = _int64(v)
    if pos < end and buf[pos] == 0x28:
        v, pos = _varint(buf, pos + 1, end)
        e.size = _int64(v)
    if pos + 5 <= end and buf[pos] == 0x35:
        e.crc32c = _U32.unpack_from(buf, pos + 1)[0]
        pos += 5
    return e if pos == end else None


def _decode_general(buf: bytes) -> Entry:
    e = Entry()
    shape = b""
    for number, wire, value in _fields(buf):
        if wire == _VARINT:
            if number == 1:
                e.dtype = _int32(value)
            elif number == 3:
                e.shard_id = _int32(value)
            elif number == 4:
                e.offset = _int64(value)
            elif number == 5:
                e.size = _int64(value)
        elif wire == _BYTES:
            if number == 2:
                shape += value
            elif number == 7:
                e.slices.append(_decode_slice(value))
        elif number == 6 and wire == _FIXED32:
            e.crc32c = value
    for number, wire, value in _fields(shape):
        if number == 2 and wire == _BYTES:
            size = 0
            for n2, w2, v2 in _fields(value):
                if n2 == 1 and w2 == _VARINT:
                    size = _int64(v2)
            e.shape.append(size)
        elif number == 3 and wire == _VARINT:
            e.unknown_rank = value != 0
    return e


def _decode_slice(buf: bytes) -> list[Extent]:
    extents = []
    for number, wire, value in _fields(buf):
        if number != 1 or wire != _BYTES:
            continue
        ext = Extent()
        for n2, w2, v2 in _fields(value):
            if n2 == 1 and w2 == _VARINT:
                ext.start = _int64(v2)
            elif n2 == 2 and w2 == _VARINT:
                ext.length = _int64(v2)
        extents.append(ext)
    return extents


# -- encoding: byte-identical to TF's deterministic serialization ------------------------

def _tag(number: int, wire: int) -> bytes:
    return bytes([(number << 3) | wire])  # every field number here is below 16


def _int_field(number: int, value: int) -> bytes:
    """A varint field; proto3 leaves out zeros, as TF's serializer does."""
    if value == 0:
        return b""
    return _tag(number, _VARINT) + _encode_varint(value & 0xFFFFFFFFFFFFFFFF)


def _message_field(number: int, body: bytes) -> bytes:
    return _tag(number, _BYTES) + _encode_varint(len(body)) + body


def encode_header(num_shards: int, producer: int, endianness: int = LITTLE) -> bytes:
    return (_int_field(1, num_shards) + _int_field(2, endianness)
            + _message_field(3, _int_field(1, producer)))


def encode_entry(dtype: int, shape: tuple[int, ...], shard_id: int, offset: int, size: int,
                 crc32c: int) -> bytes:
    """A plain (unsliced) entry. TF always writes the shape message, even when empty (a
    scalar's shape is ``12 00``), and a zero-sized dimension as an empty Dim."""
    dims = b"".join(_message_field(2, _int_field(1, d)) for d in shape)
    return (_int_field(1, dtype) + _message_field(2, dims) + _int_field(3, shard_id)
            + _int_field(4, offset) + _int_field(5, size)
            + (_tag(6, _FIXED32) + _U32.pack(crc32c) if crc32c else b""))
