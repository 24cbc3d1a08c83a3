"""One table of element types shared by every format.

A :class:`DType` has a canonical name (``float32``, ``bfloat16``, ``qint8``, ``string``...)
that survives a round trip through any format able to hold it, plus the numpy dtype used
for values in memory. Formats translate their own codes through the lookups below.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Optional

from .errors import UnsupportedError
from .records import record

if TYPE_CHECKING:
    import numpy as np

# numpy and ml_dtypes are imported on first use, not here: a raw byte-for-byte conversion
# (TF -> safetensors, say) never needs them, and importing them is a large share of
# ckconv's start-up (docs/performance.md).


@record(frozen=True)
class DType:
    name: str
    #: numpy dtype of values in memory (``object`` for strings and variants, holding bytes),
    #: given as a numpy dtype or as a name ("float32", "ml_dtypes:bfloat16") resolved lazily
    numpy_spec: Any
    #: bytes per element on disk; 0 for variable-length types
    itemsize: int
    #: TensorFlow ``DataType`` enum value, if TF can store it
    tf: Optional[int]
    #: safetensors dtype code, if safetensors can store it
    safetensors: Optional[str]

    @property
    def numpy(self) -> "np.dtype":
        return _resolve(self.numpy_spec)

    @property
    def is_variable_length(self) -> bool:
        return self.itemsize == 0

    @property
    def from_ml_dtypes(self) -> bool:
        """Whether :attr:`numpy` comes from ml_dtypes (bfloat16, float8...): knowing that
        does not import it (its import costs ~0.8 s on this project's VM)."""
        return isinstance(self.numpy_spec, str) and self.numpy_spec.startswith("ml_dtypes:")

    def __str__(self) -> str:
        return self.name


@lru_cache(maxsize=None)
def _resolve(spec: Any) -> "np.dtype":
    import numpy as np

    if isinstance(spec, str) and spec.startswith("ml_dtypes:"):
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, spec.split(":", 1)[1]))
    return np.dtype(spec)


ALL: tuple[DType, ...] = (
    DType("float32", "float32", 4, 1, "F32"),
    DType("float64", "float64", 8, 2, "F64"),
    DType("int32", "int32", 4, 3, "I32"),
    DType("uint8", "uint8", 1, 4, "U8"),
    DType("int16", "int16", 2, 5, "I16"),
    DType("int8", "int8", 1, 6, "I8"),
    DType("string", "object", 0, 7, None),
    DType("complex64", "complex64", 8, 8, "C64"),
    DType("int64", "int64", 8, 9, "I64"),
    DType("bool", "bool", 1, 10, "BOOL"),
    # Quantized types are raw integers on disk; their scale lives in other tensors, if anywhere.
    DType("qint8", "int8", 1, 11, None),
    DType("quint8", "uint8", 1, 12, None),
    DType("qint32", "int32", 4, 13, None),
    DType("bfloat16", "ml_dtypes:bfloat16", 2, 14, "BF16"),
    DType("qint16", "int16", 2, 15, None),
    DType("quint16", "uint16", 2, 16, None),
    DType("uint16", "uint16", 2, 17, "U16"),
    DType("complex128", "complex128", 16, 18, None),
    DType("float16", "float16", 2, 19, "F16"),
    DType("variant", "object", 0, 21, None),
    DType("uint32", "uint32", 4, 22, "U32"),
    DType("uint64", "uint64", 8, 23, "U64"),
    DType("float8_e5m2", "ml_dtypes:float8_e5m2", 1, 24, "F8_E5M2"),
    DType("float8_e4m3fn", "ml_dtypes:float8_e4m3fn", 1, 25, "F8_E4M3"),
    DType("float8_e4m3fnuz", "ml_dtypes:float8_e4m3fnuz", 1, 26, None),
    DType("float8_e4m3b11fnuz", "ml_dtypes:float8_e4m3b11fnuz", 1, 27, None),
    DType("float8_e5m2fnuz", "ml_dtypes:float8_e5m2fnuz", 1, 28, None),
    # TF keeps 4-bit and 2-bit integers one per byte (value in the low bits), as ml_dtypes does.
    DType("int4", "ml_dtypes:int4", 1, 29, None),
    DType("uint4", "ml_dtypes:uint4", 1, 30, None),
    DType("int2", "ml_dtypes:int2", 1, 31, None),
    DType("uint2", "ml_dtypes:uint2", 1, 32, None),
    DType("float4_e2m1fn", "ml_dtypes:float4_e2m1fn", 1, 33, None),
)

BY_NAME: dict[str, DType] = {d.name: d for d in ALL}
BY_TF: dict[int, DType] = {d.tf: d for d in ALL if d.tf is not None}
BY_SAFETENSORS: dict[str, DType] = {d.safetensors: d for d in ALL if d.safetensors is not None}


@lru_cache(maxsize=2)
def _by_numpy(with_ml_dtypes: bool) -> dict:
    """numpy dtype -> DType; the plain types win over the quantized ones sharing a layout.

    ml_dtypes' types are left out until ml_dtypes is imported: a numpy dtype of theirs
    cannot exist before, and importing it just to build this table costs ~0.8 s."""
    table: dict = {}
    for dt in ALL:
        # quint16 precedes uint16 in TF's enum order: skip the quantized names explicitly.
        if dt.itemsize and not dt.name.startswith(("qint", "quint")) and (
                with_ml_dtypes or not dt.from_ml_dtypes):
            table.setdefault(dt.numpy, dt)
    return table

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


def from_numpy(dtype: Any) -> DType:
    """The DType of a numpy array; bytes/str/object arrays are strings."""
    import numpy as np

    dtype = np.dtype(dtype)
    if dtype.kind in ("O", "S", "U"):
        return STRING
    if dtype.byteorder == ">":
        dtype = dtype.newbyteorder("<")
    try:
        return _by_numpy("ml_dtypes" in sys.modules)[dtype]
    except KeyError:
        raise UnsupportedError(f"numpy dtype {dtype} has no ckconv equivalent") from None
