"""TensorProto values (V1 checkpoints), encoded by TensorFlow's own protobuf classes."""

from __future__ import annotations

import numpy as np
import pytest

from ckconv import dtypes
from ckconv.formats.tf import tensor_proto
from tests.helpers import live_tf

# dtype -> the TensorProto field TF's V1 writer fills (docs/formats-tf-v1.md)
FIELDS = {"float32": "float_val", "float64": "double_val", "int32": "int_val",
          "uint8": "int_val", "int16": "int_val", "int8": "int_val", "uint16": "int_val",
          "qint8": "int_val", "quint8": "int_val", "qint32": "int_val", "int64": "int64_val",
          "bool": "bool_val", "complex64": "scomplex_val", "complex128": "dcomplex_val",
          "float16": "half_val", "bfloat16": "half_val", "uint32": "uint32_val",
          "uint64": "uint64_val"}


def _values(name: str, rng: np.random.Generator) -> np.ndarray:
    dt = dtypes.by_name(name)
    raw = rng.integers(0, 256, size=7 * dt.itemsize, dtype=np.uint8)
    arr = raw.view(dt.numpy)
    if name == "bool":
        arr = raw[:7] > 127
    return arr


def _typed(arr: np.ndarray, name: str) -> list:
    if name in ("float16", "bfloat16"):
        return arr.view(np.uint16).astype(int).tolist()
    if name.startswith("complex"):
        return arr.view(arr.real.dtype).tolist()
    return arr.tolist()


@pytest.mark.live
@pytest.mark.parametrize("name", sorted(FIELDS))
def test_typed_field_and_tensor_content(name):
    live_tf()
    from tensorflow.core.framework import tensor_pb2

    rng = np.random.default_rng(sum(map(ord, name)))
    arr = _values(name, rng)
    dt = dtypes.by_name(name)
    typed = tensor_pb2.TensorProto()
    getattr(typed, FIELDS[name]).extend(_typed(arr, name))
    got = tensor_proto.decode(typed.SerializeToString(), dt, arr.size)
    assert got.dtype == dt.numpy and got.tobytes() == arr.tobytes(), name
    content = tensor_pb2.TensorProto(tensor_content=arr.tobytes())
    got = tensor_proto.decode(content.SerializeToString(), dt, arr.size)
    assert got.tobytes() == arr.tobytes(), name
    with pytest.raises(ValueError, match="values|bytes"):
        tensor_proto.decode(typed.SerializeToString(), dt, arr.size + 1)


@pytest.mark.live
def test_strings():
    live_tf()
    from tensorflow.core.framework import tensor_pb2

    values = [b"", b"\x00\xff", "ü".encode() * 100]
    proto = tensor_pb2.TensorProto(string_val=values)
    got = tensor_proto.decode(proto.SerializeToString(), dtypes.by_name("string"), 3)
    assert got.tolist() == values
    with pytest.raises(ValueError, match="holds 3 values, the slice has 4"):
        tensor_proto.decode(proto.SerializeToString(), dtypes.by_name("string"), 4)


def test_unpacked_and_packed_fields_keep_their_order():
    # int_val (7): 5 unpacked, then packed [6, -1], then unpacked 8
    buf = bytes([0x38, 5, 0x3A, 11, 6]) + b"\xff" * 9 + b"\x01" + bytes([0x38, 8])
    got = tensor_proto.decode(buf, dtypes.by_name("int32"), 4)
    assert got.tolist() == [5, 6, -1, 8]
    # float_val (5) unpacked: fixed32 fields
    buf = bytes([0x2D]) + np.float32(1.5).tobytes() + bytes([0x2D]) + np.float32(-2).tobytes()
    assert tensor_proto.decode(buf, dtypes.by_name("float32"), 2).tolist() == [1.5, -2.0]


@pytest.mark.parametrize("buf, count, match", [
    (bytes([0x2A, 3, 0, 0, 0]), 1, "not whole values"),
    (bytes([0x52, 2, 0x80, 0x80]), 1, "end in the middle"),
    (bytes([0x52, 11]) + b"\x80" * 10 + b"\x01", 1, "longer than 10 bytes"),
    (bytes([0x22, 3, 1, 2, 3]), 1, "tensor_content holds 3 bytes"),
    (bytes([0x2A, 0x80]), 1, "truncated|varint"),
])
def test_malformed(buf, count, match):
    with pytest.raises(ValueError, match=match):
        tensor_proto.decode(buf, dtypes.by_name("float32" if buf[0] in (0x2A, 0x22) else "int64"),
                            count)
