"""One table of element types shared by every format.

A :class:`DType` has a canonical name (``float32``, ``bfloat16``, ``qint8``, ``string``...)
that survives a round trip through any format able to hold it, plus the numpy dtype used
for values in memory. Formats translate their own codes through the lookups below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import ml_dtypes
import numpy as np

from .errors import UnsupportedError


@dataclass(frozen=True)
class DType:
    name: str
    #: numpy dtype of values in memory (``object`` for strings and variants, holding bytes)
    numpy: np.dtype
    #: bytes per element on disk; 0 for variable-length types
    itemsize: int
    #: TensorFlow ``DataType`` enum value, if TF can store it
    tf: Optional[int]
    #: safetensors dtype code, if safetensors can store it
    safetensors: Optional[str]

    @property
    def is_variable_length(self) -> bool:
        return self.itemsize == 0

    def __str__(self) -> str:
        return self.name


def _d(name: str, np_dtype, tf: Optional[int], st: Optional[str]) -> DType:
    dt = np.dtype(np_dtype)
    itemsize = 0 if dt == np.dtype(object) else dt.itemsize
    return DType(name, dt, itemsize, tf, st)


ALL: tuple[DType, ...] = (
    _d("float32", np.float32, 1, "F32"),
    _d("float64", np.float64, 2, "F64"),
    _d("int32", np.int32, 3, "I32"),
    _d("uint8", np.uint8, 4, "U8"),
    _d("int16", np.int16, 5, "I16"),
    _d("int8", np.int8, 6, "I8"),
    _d("string", object, 7, None),
    _d("complex64", np.complex64, 8, "C64"),
    _d("int64", np.int64, 9, "I64"),
    _d("bool", np.bool_, 10, "BOOL"),
    # Quantized types are raw integers on disk; their scale lives in other tensors, if anywhere.
    _d("qint8", np.int8, 11, None),
    _d("quint8", np.uint8, 12, None),
    _d("qint32", np.int32, 13, None),
    _d("bfloat16", ml_dtypes.bfloat16, 14, "BF16"),
    _d("qint16", np.int16, 15, None),
    _d("quint16", np.uint16, 16, None),
    _d("uint16", np.uint16, 17, "U16"),
    _d("complex128", np.complex128, 18, None),
    _d("float16", np.float16, 19, "F16"),
    _d("variant", object, 21, None),
    _d("uint32", np.uint32, 22, "U32"),
    _d("uint64", np.uint64, 23, "U64"),
    _d("float8_e5m2", ml_dtypes.float8_e5m2, 24, "F8_E5M2"),
    _d("float8_e4m3fn", ml_dtypes.float8_e4m3fn, 25, "F8_E4M3"),
    _d("float8_e4m3fnuz", ml_dtypes.float8_e4m3fnuz, 26, None),
    _d("float8_e4m3b11fnuz", ml_dtypes.float8_e4m3b11fnuz, 27, None),
    _d("float8_e5m2fnuz", ml_dtypes.float8_e5m2fnuz, 28, None),
    # TF keeps 4-bit and 2-bit integers one per byte (value in the low bits), as ml_dtypes does.
    _d("int4", ml_dtypes.int4, 29, None),
    _d("uint4", ml_dtypes.uint4, 30, None),
    _d("int2", ml_dtypes.int2, 31, None),
    _d("uint2", ml_dtypes.uint2, 32, None),
    _d("float4_e2m1fn", ml_dtypes.float4_e2m1fn, 33, None),
)

BY_NAME: dict[str, DType] = {d.name: d for d in ALL}
BY_TF: dict[int, DType] = {d.tf: d for d in ALL if d.tf is not None}
BY_SAFETENSORS: dict[str, DType] = {d.safetensors: d for d in ALL if d.safetensors is not None}

# numpy dtype -> canonical name; the plain types win over the quantized ones sharing a layout.
_BY_NUMPY: dict[np.dtype, DType] = {}
for _dt in ALL:
    if _dt.numpy != np.dtype(object):
        _BY_NUMPY.setdefault(_dt.numpy, _dt)

ALIASES = {
    "fp32": "float32", "f32": "float32", "float": "float32",
    "fp16": "float16", "f16": "float16", "half": "float16",
    "bf16": "bfloat16",
    "fp64": "float64", "f64": "float64", "double": "float64",
}

STRING = BY_NAME["string"]


def by_name(name: str) -> DType:
    key = ALIASES.get(name, name)
    try:
        return BY_NAME[key]
    except KeyError:
        raise UnsupportedError(f"unknown dtype {name!r}; known: {', '.join(BY_NAME)}") from None


def from_numpy(dtype: np.dtype) -> DType:
    """The DType of a numpy array; bytes/str/object arrays are strings."""
    dtype = np.dtype(dtype)
    if dtype.kind in ("O", "S", "U"):
        return STRING
    if dtype.byteorder == ">":
        dtype = dtype.newbyteorder("<")
    try:
        return _BY_NUMPY[dtype]
    except KeyError:
        raise UnsupportedError(f"numpy dtype {dtype} has no ckconv equivalent") from None
