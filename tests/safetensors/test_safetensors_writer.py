"""TF -> safetensors: the safetensors library (the oracle) reads back every tensor bit-exact."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

import ckconv
from tests.helpers import assert_bit_exact, expected_array, fixture_names, fixture_prefix, manifest


def _read_with_library(path: str) -> dict[str, bytes]:
    """name -> raw bytes as the safetensors library (torch backend) returns them."""
    torch = pytest.importorskip("torch")
    from safetensors import safe_open

    out = {}
    with safe_open(path, framework="pt") as f:
        for k in f.keys():
            t = f.get_tensor(k).contiguous()
            out[k] = (t.reshape(-1).view(torch.uint8) if t.numel() else t).numpy().tobytes()
    return out


@pytest.mark.parametrize("name", fixture_names())
def test_fixture_to_safetensors_bit_exact(tmp_path, name):
    man = manifest(name)
    dst = str(tmp_path / "out.safetensors")
    notes = ckconv.convert(fixture_prefix(name), dst, skip_unsupported=True)
    got = _read_with_library(dst)
    tmap = ckconv.load(fixture_prefix(name))
    for key, entry in man["tensors"].items():
        if tmap[key].dtype.safetensors is None:
            assert key not in got
            continue
        assert got[key] == expected_array(entry).tobytes(), key
    with open(dst, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    assert header["__metadata__"]["source_format"] == "tf"
    if "_CHECKPOINTABLE_OBJECT_GRAPH" in tmap:
        assert any("_CHECKPOINTABLE_OBJECT_GRAPH" in n for n in notes)


def test_safetensors_numpy_loader_reads_plain_dtypes(tmp_path):
    from safetensors.numpy import load_file

    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float64(3.5),
              "z": np.zeros((0, 4), np.int64), "b": np.array([True, False])}
    ckconv.save(arrays, tmp_path / "x.safetensors")
    back = load_file(str(tmp_path / "x.safetensors"))
    for k, v in arrays.items():
        assert_bit_exact(back[k], np.asarray(v), k)


def test_unsupported_dtype_names_tensor_and_option(tmp_path):
    dst = tmp_path / "x.safetensors"
    with pytest.raises(ckconv.UnsupportedError, match=r"complex128.*skip_unsupported=True"):
        ckconv.save({"c": np.zeros(2, np.complex128)}, dst)
    assert os.listdir(tmp_path) == []


def test_refuses_to_overwrite_input(tmp_path):
    src = tmp_path / "x.safetensors"
    ckconv.save({"a": np.zeros(2, np.float32)}, src)
    tmap = ckconv.load(fixture_prefix("strings"))
    tmap.source_files.append(str(src))
    with pytest.raises(ckconv.UsageError, match="overwrite"):
        ckconv.save(tmap, src, skip_unsupported=True)
