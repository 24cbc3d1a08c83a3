"""Reading safetensors: lazily, every dtype, and refusing damaged headers with a clear error."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

import ckconv
from ckconv.errors import CorruptCheckpointError, UnsupportedError
from tests.helpers import assert_bit_exact
from tests.helpers import live_torch, raw, reference_tensors


def _write_raw(path, header: dict, data: bytes, pad: bytes = b"") -> str:
    head = json.dumps(header).encode() + pad
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + data)
    return str(path)


@pytest.mark.live
def test_reads_every_dtype_written_by_the_safetensors_library(tmp_path):
    """Files written by safetensors.torch (BF16, F8 included) read bit-exact."""
    live_torch()
    from safetensors.torch import save_file

    from ckconv.torch_bridge import to_torch

    ref = reference_tensors(("safetensors", "torch"))
    tensors = {name: to_torch(arr, dt).clone() for name, (dt, arr) in ref.items()}
    path = str(tmp_path / "lib.safetensors")
    save_file(tensors, path, metadata={"format": "pt", "note": "ü"})
    tmap = ckconv.load(path)
    assert tmap.format == "safetensors"
    assert tmap.metadata == {"format": "pt", "note": "ü"}
    assert sorted(tmap) == sorted(ref)
    for name, (dt, arr) in ref.items():
        assert tmap[name].dtype == dt and tmap[name].shape == arr.shape, name
        assert raw(tmap[name].numpy()) == raw(arr), name


def test_numpy_library_file_and_order_by_offset(tmp_path):
    from safetensors.numpy import save_file

    arrays = {"b": np.arange(3, dtype=np.int64), "a": np.ones((2, 2), np.float16)}
    path = str(tmp_path / "np.safetensors")
    save_file(arrays, path)
    tmap = ckconv.load(path)
    for k, v in arrays.items():
        assert_bit_exact(tmap[k].numpy(), v, k)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    by_offset = sorted((v["data_offsets"][0], k) for k, v in header.items() if k != "__metadata__")
    assert list(tmap) == [k for _, k in by_offset]


def test_lazy_reads_header_only_and_streams_in_chunks(tmp_path, monkeypatch):
    big = np.arange(1_000_000, dtype=np.float32)  # above the single-read threshold: streamed
    path = str(tmp_path / "big.safetensors")
    ckconv.save({"big": big, "small": np.ones(3, np.int8)}, path)
    reads = []
    for fn in ("preadv", "pread"):
        real = getattr(os, fn)
        monkeypatch.setattr(os, fn, lambda *a, _real=real, _fn=fn: reads.append(_fn) or _real(*a))
    tmap = ckconv.load(path)
    assert tmap["big"].nbytes == big.nbytes and reads == []
    chunks = [bytes(c) for c in tmap["big"].iter_bytes(chunk=65536)]
    assert len(chunks) > 1 and max(len(c) for c in chunks) <= 65536
    assert b"".join(chunks) == big.tobytes()


def test_bf16_and_float8_values_survive_safetensors_round_trip(tmp_path):
    ref = reference_tensors(("safetensors",))
    path = str(tmp_path / "x.safetensors")
    from tests.helpers import ckconv_map

    ckconv.save(ckconv_map(ref), path)
    tmap = ckconv.load(path)
    for name in ("dtype/bfloat16", "dtype/float8_e4m3fn", "dtype/float8_e5m2"):
        assert tmap[name].numpy().dtype == ref[name][1].dtype
        assert raw(tmap[name].numpy()) == raw(ref[name][1])


# --------------------------------------------------------------------------- damage

GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "I8", "shape": [1], "data_offsets": [8, 9]}}


@pytest.mark.parametrize("header,data,message", [
    ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "needs 12 bytes"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, "gap"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, "overlaps"),
    (GOOD, b"\0" * 8, "truncated"),
    (GOOD, b"\0" * 10, "unexpected bytes"),
    ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, "non-negative"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8, "begin <= end"),
    ({"a": [1, 2]}, b"", "not an object"),
    ({"__metadata__": {"k": 1}}, b"", "strings to strings"),
])
def test_inconsistent_headers_are_corrupt(tmp_path, header, data, message):
    path = _write_raw(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(CorruptCheckpointError, match=message):
        ckconv.load(path, format="safetensors")


def test_unknown_dtype_is_unsupported_naming_it(tmp_path):
    path = _write_raw(tmp_path / "x.safetensors",
                      {"a": {"dtype": "F8_E8M0", "shape": [1], "data_offsets": [0, 1]}}, b"\0")
    with pytest.raises(UnsupportedError, match="F8_E8M0"):
        ckconv.load(path)


@pytest.mark.parametrize("blob,message", [
    (struct.pack("<Q", 10**12) + b"{}", "impossible"),
    (struct.pack("<Q", 4) + b"[1] ", "does not start with"),
    (struct.pack("<Q", 8) + b'{"a":1,"a":2}'[:8], "not valid JSON"),
    (struct.pack("<Q", 13) + b'{"a":1,"a":2}', "duplicate"),
    (b"\x05\x00", "too short"),
])
def test_damaged_header_bytes(tmp_path, blob, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(blob)
    with pytest.raises(CorruptCheckpointError, match=message):
        ckconv.load(str(path), format="safetensors")


def test_file_truncated_after_opening_is_an_error_not_garbage(tmp_path):
    path = str(tmp_path / "x.safetensors")
    ckconv.save({"a": np.arange(1000, dtype=np.int64)}, path)
    tmap = ckconv.load(path)
    os.truncate(path, os.path.getsize(path) - 100)
    with pytest.raises(CorruptCheckpointError, match="ended early"):
        tmap["a"].numpy()


def test_reserved_metadata_name_refused(tmp_path):
    with pytest.raises(UnsupportedError, match="__metadata__"):
        ckconv.save({"__metadata__": np.zeros(1, np.float32)}, tmp_path / "x.safetensors")
    assert os.listdir(tmp_path) == []
