"""Values of a ``TensorProto``, as TF's V1 checkpoints store them, decoded to numpy.

A V1 checkpoint keeps each tensor (slice) as a TensorProto whose values sit in the typed
repeated field of its dtype (FORMATS.md section 11; tensor.proto), not as raw bytes:

====================  =====================  ==============================================
field                 number                 dtypes
====================  =====================  ==============================================
tensor_content        4  (bytes)             any fixed-size dtype: the raw LE element bytes
float_val             5  (packed fixed32)    float32
double_val            6  (packed fixed64)    float64
int_val               7  (packed varint)     int32, uint8, int16, int8, uint16, qint8,
                                             quint8, qint16, quint16, qint32
string_val            8  (bytes, repeated)   string
scomplex_val          9  (packed fixed32)    complex64, (real, imag) pairs
int64_val             10 (packed varint)     int64
bool_val              11 (packed varint)     bool
dcomplex_val          12 (packed fixed64)    complex128
half_val              13 (packed varint)     float16, bfloat16: the 16 bits as an int
uint32_val            16 (packed varint)     uint32
uint64_val            17 (packed varint)     uint64
====================  =====================  ==============================================

Repeated scalars may be packed or not (protobuf's rule); both are accepted. The number of
values must equal the slice's element count: a damaged or hostile proto cannot make the
reader allocate more than the bytes it holds.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from ...dtypes import DType
from ...errors import CorruptCheckpointError, UnsupportedError
from .entries import _fields

if TYPE_CHECKING:
    import numpy as np

_CONTENT = 4
_STRING = 8
# dtype (TF enum) -> (field number, encoding): "f4"/"f8" fixed-width floats, "varint".
_FIELD: dict[int, tuple[int, str]] = {
    1: (5, "f4"), 2: (6, "f8"), 8: (9, "f4"), 18: (12, "f8"),
    3: (7, "varint"), 4: (7, "varint"), 5: (7, "varint"), 6: (7, "varint"),
    11: (7, "varint"), 12: (7, "varint"), 13: (7, "varint"), 15: (7, "varint"),
    16: (7, "varint"), 17: (7, "varint"), 9: (10, "varint"), 10: (11, "varint"),
    14: (13, "varint"), 19: (13, "varint"), 22: (16, "varint"), 23: (17, "varint"),
}


def supported(dtype: DType) -> bool:
    return dtype.tf == 7 or dtype.tf in _FIELD


def decode(buf: Any, dtype: DType, count: int) -> "np.ndarray":
    """The ``count`` values of ``dtype`` a serialized TensorProto holds, as a flat array.

    Raises ValueError (callers add file and tensor) when the proto is malformed or holds
    another number of values.
    """
    import numpy as np

    if not supported(dtype):
        raise UnsupportedError(f"TF dtype {dtype} has no TensorProto value field ckconv reads")
    try:
        fields = _fields(buf)
    except CorruptCheckpointError as exc:
        raise ValueError(str(exc)) from None
    if dtype.tf == 7:
        strings = [bytes(v) for n, w, v in fields if n == _STRING and w == 2]
        _check_count(len(strings), count)  # before the array: the count is the file's claim
        out = np.empty(count, dtype=object)
        out[:] = strings if count else []
        return out
    content = b"".join(bytes(v) for n, w, v in fields if n == _CONTENT and w == 2)
    if content:
        if len(content) != count * dtype.itemsize:
            raise ValueError(f"tensor_content holds {len(content)} bytes, {count} {dtype} "
                             f"values need {count * dtype.itemsize}")
        return np.frombuffer(content, dtype=dtype.numpy).copy()
    number, kind = _FIELD[dtype.tf]
    if kind == "varint":
        packed = [v for n, w, v in fields if n == number and w == 2]
        loose = [v for n, w, v in fields if n == number and w == 0]
        ints = _varints(b"".join(bytes(p) for p in packed)) if packed else np.empty(0, np.uint64)
        if loose:  # unpacked values, rare: order of appearance is what protobuf keeps
            ints = _in_order(fields, number)
        _check_count(len(ints), count)
        return _from_ints(ints, dtype)
    width = 4 if kind == "f4" else 8
    parts: list[Any] = []
    for n, w, v in fields:
        if n != number:
            continue
        if w == 2:
            parts.append(v)
        elif w == 5 and width == 4:
            parts.append(struct.pack("<I", v))
        elif w == 1 and width == 8:
            parts.append(v)
    # One packed field (what TF writes) is used in place: a large tensor is copied once.
    raw = parts[0] if len(parts) == 1 else b"".join(bytes(p) for p in parts)
    if len(raw) % width:
        raise ValueError(f"packed field {number} holds {len(raw)} bytes, not whole values")
    per = dtype.itemsize // width  # complex: two floats per value
    _check_count(len(raw) // width // per, count, len(raw) // width % per)
    return np.frombuffer(raw, dtype=dtype.numpy).copy()


def _check_count(have: int, want: int, odd: int = 0) -> None:
    if have != want or odd:
        raise ValueError(f"holds {have} values, the slice has {want} elements")


def _in_order(fields: list, number: int) -> "np.ndarray":
    import numpy as np

    values: list[int] = []
    for n, w, v in fields:
        if n != number:
            continue
        if w == 0:
            values.append(v & 0xFFFFFFFFFFFFFFFF)
        elif w == 2:
            values.extend(int(x) for x in _varints(bytes(v)))
    return np.array(values, dtype=np.uint64)


def _varints(buf: bytes) -> "np.ndarray":
    """Every varint of a packed field, decoded with numpy (no per-value Python loop)."""
    import numpy as np

    a = np.frombuffer(buf, dtype=np.uint8)
    if not len(a):
        return np.empty(0, np.uint64)
    if a[-1] & 0x80:
        raise ValueError("packed varints end in the middle of a value")
    ends = np.flatnonzero(a < 0x80)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts + 1
    longest = int(lengths.max())
    if longest == 1:
        return a.astype(np.uint64)
    if longest > 10:
        raise ValueError("a packed varint is longer than 10 bytes")
    out = np.zeros(len(ends), np.uint64)
    for k in range(longest):
        sel = lengths > k
        out[sel] |= (a[starts[sel] + k] & 0x7F).astype(np.uint64) << np.uint64(7 * k)
    return out


def _from_ints(ints: "np.ndarray", dtype: DType) -> "np.ndarray":
    """Varint values to the dtype's elements, wrapping as a C++ cast to the type does."""
    import numpy as np

    if dtype.tf == 10:
        return ints != 0
    if dtype.tf in (14, 19):  # half_val: the 16 bits of the value
        return ints.astype(np.uint16).view(dtype.numpy)
    # int_val holds int32 values sign-extended to 64 bits; narrower types were cast to int32.
    return ints.view(np.int64).astype(dtype.numpy)
