"""How torch's zip format names the element type of a storage (shared by reader and writer).

Verified against torch 2.13's ``torch.save`` with ``pickletools.dis``: the dtypes of the
pre-2.0 typed storages are pickled as ``torch.<Kind>Storage`` and rebuilt by
``_rebuild_tensor_v2`` (storage numel counts elements); newer dtypes are pickled as
``torch.storage.UntypedStorage`` (numel counts bytes) and rebuilt by ``_rebuild_tensor_v3``
with the dtype (``torch.<name>``) as its last argument.
"""

from __future__ import annotations

#: ckconv dtype -> torch's typed storage class, for dtypes rebuilt by _rebuild_tensor_v2.
TYPED_STORAGES = {
    "float32": "FloatStorage", "float64": "DoubleStorage", "float16": "HalfStorage",
    "bfloat16": "BFloat16Storage", "complex64": "ComplexFloatStorage",
    "complex128": "ComplexDoubleStorage", "bool": "BoolStorage", "int8": "CharStorage",
    "int16": "ShortStorage", "int32": "IntStorage", "int64": "LongStorage",
    "uint8": "ByteStorage",
}

#: typed storage class -> the ckconv dtype of its elements
STORAGE_DTYPES = {kind: dtype for dtype, kind in TYPED_STORAGES.items()}

#: Dtypes torch pickles with _rebuild_tensor_v3 and an untyped storage (``torch.<name>``).
UNTYPED_DTYPES = ("uint16", "uint32", "uint64", "float8_e4m3fn", "float8_e5m2",
                  "float8_e4m3fnuz", "float8_e5m2fnuz")


#: torch's legacy (pre-1.6) format begins with a protocol-2 pickle of this magic number.
LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
