"""Shared test helpers: reference fixtures made by the real frameworks, and the oracles.

Live comparisons (tests marked ``live``) need TensorFlow, torch or h5py. Locally they are
skipped when missing; with CKCONV_REQUIRE_LIVE=1 (set by .ci/run) a skipped live test is a
failure (see conftest.py), so CI cannot go green without comparing against the frameworks.

The oracles read a file with the real library (torch, safetensors, h5py, TensorFlow) and
return ``name -> (dtype name, shape, raw bytes | list of bytes)``, never using ckconv.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ckconv import dtypes
from ckconv import formats as _registry

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "tf"
SEED = ROOT / "examples" / "seed"
REQUIRE_LIVE = os.environ.get("CKCONV_REQUIRE_LIVE") == "1"


def fixture_names() -> list[str]:
    return sorted(p.name for p in FIXTURES.iterdir() if (p / "manifest.json").is_file())


def manifest(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name / "manifest.json").read_text())


def fixture_prefix(name: str) -> str:
    return str(FIXTURES / name / manifest(name)["prefix"])


def expected_array(entry: dict[str, Any]) -> np.ndarray:
    """The array TF's own reader returned when the fixture was made."""
    shape = tuple(entry["shape"])
    if entry["dtype"] == "string":
        out = np.empty(len(entry["strings"]), dtype=object)
        for i, h in enumerate(entry["strings"]):
            out[i] = bytes.fromhex(h)
        return out.reshape(shape)
    dt = dtypes.by_name(entry["dtype"])
    return np.frombuffer(bytes.fromhex(entry["data"]), dtype=dt.numpy).reshape(shape)


def assert_bit_exact(actual: np.ndarray, expected: np.ndarray, what: str = "") -> None:
    assert actual.shape == expected.shape, what
    if expected.dtype == object:
        assert actual.dtype == object, what
        assert actual.reshape(-1).tolist() == expected.reshape(-1).tolist(), what
    else:
        assert actual.dtype == expected.dtype, f"{what}: {actual.dtype} != {expected.dtype}"
        assert np.ascontiguousarray(actual).tobytes() == np.ascontiguousarray(expected).tobytes(), what


def live_tf():
    """Import TensorFlow for a live comparison (skip locally if missing, fail in CI)."""
    if REQUIRE_LIVE:
        import tensorflow as tf  # noqa: F401  (an ImportError fails the test)

        return tf
    return pytest.importorskip("tensorflow")

# ------------------------------------------------------------------ other formats

OTHER = ROOT / "tests" / "fixtures" / "other"
# The formats any map can be written in, and a file name for each, from the registry.
FORMATS = tuple(f.name for f in _registry.FORMATS if f.writes_any)
EXT = {f.name: "model" + f.extensions[0] for f in _registry.FORMATS if f.writes_any}

Seen = dict[str, tuple[str, tuple[int, ...], Any]]


def other(name: str) -> str:
    return str(OTHER / name)


def other_manifest(name: str) -> dict[str, Any]:
    return json.loads((OTHER / "manifest.json").read_text())[name]


def live_torch() -> Any:
    """Import torch for a live comparison (skip locally if missing, fail in CI)."""
    if REQUIRE_LIVE:
        import torch

        return torch
    return pytest.importorskip("torch")


def live_module(name: str) -> Any:
    if REQUIRE_LIVE:
        import importlib

        return importlib.import_module(name)
    return pytest.importorskip(name)


# ------------------------------------------------------------------ reference tensors

_FLOAT_BITS = {
    # 1.5, -0.0, +inf, -inf, quiet NaN, NaN with a payload, smallest subnormal, max
    2: [0x3E00, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0x7D01, 0x0001, 0x7BFF],
    4: [0x3FC00000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7FA00001, 1, 0x7F7FFFFF],
    8: [0x3FF8 << 48, 1 << 63, 0x7FF << 52, 0xFFF << 52, 0x7FF8 << 48, (0x7FF4 << 48) | 1, 1,
        0x7FEFFFFFFFFFFFFF],
}
_BF16_BITS = [0x3FC0, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0x7FA1, 0x0001, 0x7F7F]
_BYTE_BITS = [0x00, 0x38, 0x7F, 0x80, 0xFF, 0x01, 0x7E, 0x3C]


def _from_bits(bits: list[int], itemsize: int, dt: dtypes.DType) -> np.ndarray:
    raw = np.array(bits, dtype=f"<u{itemsize}")
    return raw.view(dt.numpy).reshape(2, 4)


def reference_array(dt: dtypes.DType) -> np.ndarray:
    """Edge-case values of ``dt`` (bit patterns for floats, extremes for integers)."""
    name = dt.name
    if name == "string":
        out = np.empty((2, 2), dtype=object)
        out[:] = [[b"", b"\xff\x00\x80"], ["ü日本".encode(), b"tail\x00"]]
        return out
    if name == "bool":
        return np.array([[True, False, True], [False, False, True]])
    if name == "bfloat16":
        return _from_bits(_BF16_BITS, 2, dt)
    if name in ("float16", "float32", "float64"):
        return _from_bits(_FLOAT_BITS[dt.itemsize], dt.itemsize, dt)
    if name.startswith("complex"):
        half = dt.itemsize // 2
        parts = np.array(_FLOAT_BITS[half], dtype=f"<u{half}").reshape(4, 2)
        return parts.reshape(-1).view(dt.numpy).reshape(2, 2)
    if name.startswith("float8"):
        return np.array(_BYTE_BITS, np.uint8).view(dt.numpy).reshape(2, 4)
    if name in ("int4", "uint4", "float4_e2m1fn"):
        return np.arange(16, dtype=np.uint8).view(dt.numpy).reshape(4, 4)
    if name in ("int2", "uint2"):
        return np.arange(4, dtype=np.uint8).view(dt.numpy).reshape(2, 2)
    info = np.iinfo(dt.numpy)
    return np.array([info.min, info.max, 0, 1, info.max // 3, info.min // 5 if info.min else 7],
                    dtype=dt.numpy).reshape(2, 3)


def reference_tensors(fmts: tuple[str, ...]) -> dict[str, tuple[dtypes.DType, np.ndarray]]:
    """One tensor per dtype that every format in ``fmts`` can hold, plus odd shapes."""
    out: dict[str, tuple[dtypes.DType, np.ndarray]] = {}
    for dt in dtypes.ALL:
        if all(holds(f, dt) for f in fmts):
            out[f"dtype/{dt.name}"] = (dt, reference_array(dt))
    f32 = dtypes.BY_NAME["float32"]
    out["shape/scalar"] = (f32, np.array(-2.5, np.float32))
    out["shape/empty"] = (f32, np.zeros((0, 3), np.float32))
    out["shape/rank3"] = (f32, np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    return out


def holds(fmt: str, dt: dtypes.DType) -> bool:
    if dt.name == "variant":
        return False
    if fmt == "safetensors":
        return dt.safetensors is not None
    if fmt == "torch":
        from ckconv.torch_bridge import TORCH_NAMES

        return dt.name in TORCH_NAMES
    return True  # tf, hdf5


def ckconv_map(ref: dict[str, tuple[dtypes.DType, np.ndarray]]) -> Any:
    from ckconv.tensor import ArrayTensor
    from ckconv.tensormap import TensorMap

    return TensorMap({n: ArrayTensor(a, dt) for n, (dt, a) in ref.items()})


def raw(arr: np.ndarray) -> Any:
    if arr.dtype == object:
        return [bytes(v) for v in arr.reshape(-1)]
    return np.ascontiguousarray(arr).tobytes()


# ------------------------------------------------------------------ oracles

def read_torch(path: str) -> Seen:
    torch = live_torch()
    obj = torch.load(path, weights_only=True)
    assert type(obj) is dict, type(obj)
    return {k: (str(t.dtype).rpartition(".")[2], tuple(t.shape),
                t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
            for k, t in obj.items()}


def read_safetensors(path: str) -> Seen:
    torch = live_torch()
    from safetensors import safe_open

    out = {}
    with safe_open(path, framework="pt") as f:
        for k in f.keys():
            t = f.get_tensor(k).contiguous()
            out[k] = (str(t.dtype).rpartition(".")[2], tuple(t.shape),
                      t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return out


def read_hdf5(path: str) -> Seen:
    """Every dataset by path; ``ckconv_dtype`` attributes interpreted by hand."""
    import h5py

    out: Seen = {}

    def visit(name: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Dataset):
            return
        named = obj.attrs.get("ckconv_dtype")
        value = obj[()]
        if h5py.check_string_dtype(obj.dtype) or named == "string":
            flat = np.asarray(value, dtype=object).reshape(-1) if obj.shape else [value]
            data = [bytes(v) if not isinstance(v, np.ndarray) else v.tobytes() for v in flat]
            out[name] = ("string", obj.shape, data)
            return
        arr = np.asarray(value)
        dname = named or dtypes.from_numpy(arr.dtype).name
        out[name] = (dname, obj.shape, np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes())

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return out


def read_tf(prefix: str) -> Seen:
    from tests.helpers import live_tf

    tf = live_tf()
    reader = tf.train.load_checkpoint(prefix)
    types = reader.get_variable_to_dtype_map()
    out: Seen = {}
    for k, shape in reader.get_variable_to_shape_map().items():
        v = reader.get_tensor(k)
        if types[k].name == "string":
            flat = np.asarray(v, dtype=object).reshape(-1)
            out[k] = ("string", tuple(shape), [bytes(b) for b in flat])
        else:
            out[k] = (types[k].name, tuple(shape), np.ascontiguousarray(v).tobytes())
    return out


ORACLES = {"tf": read_tf, "safetensors": read_safetensors, "torch": read_torch,
           "hdf5": read_hdf5}


def assert_map_equals(got: Seen, ref: dict[str, tuple[dtypes.DType, np.ndarray]],
                      what: str) -> None:
    assert sorted(got) == sorted(ref), what
    for name, (dt, arr) in ref.items():
        gdt, gshape, gdata = got[name]
        assert gdt == dt.name, f"{what}: {name}: {gdt} != {dt.name}"
        assert tuple(gshape) == arr.shape, f"{what}: {name}"
        assert gdata == raw(arr), f"{what}: {name}: bytes differ"


def seen_by_ckconv(path: str) -> Seen:
    import ckconv

    tmap = ckconv.load(path)
    return {n: (t.dtype.name, t.shape, raw(t.numpy())) for n, t in tmap.items()}


def expected_entries(entries: dict[str, Any]) -> dict[str, tuple[str, tuple[int, ...], Any]]:
    return {k: (e["dtype"], tuple(e["shape"]), raw(expected_array(e))) for k, e in entries.items()}

