"""Every pair of formats over the same reference tensors, checked by the real libraries.

For A -> B: the reference tensors (one per dtype both formats hold, NaN payloads, -0,
subnormals, integer extremes, strings with NUL bytes, 0-d, empty and rank-3 shapes) are
written as A by ckconv, converted to B by ckconv, then read back by the library that owns
B (TensorFlow, safetensors, torch, h5py) and by ckconv, bit-exact with names, dtypes, shapes.
"""

from __future__ import annotations

import itertools

import pytest

import ckconv
from tests.helpers import expected_array, fixture_names, fixture_prefix, manifest
from tests.helpers import (EXT, FORMATS, ORACLES, assert_map_equals, ckconv_map, holds,
                             live_module, live_torch, raw, reference_tensors, seen_by_ckconv)

pytestmark = pytest.mark.live


@pytest.mark.parametrize("src,dst", list(itertools.product(FORMATS, FORMATS)))
def test_pair_round_trip_bit_exact(tmp_path, src, dst):
    live_torch()
    ref = reference_tensors((src, dst))
    a = str(tmp_path / "a" / EXT[src])
    b = str(tmp_path / "b" / EXT[dst])
    ckconv.save(ckconv_map(ref), a)
    ckconv.convert(a, b)
    assert_map_equals(ORACLES[dst](b), ref, f"{src} -> {dst} read by the {dst} library")
    assert_map_equals(seen_by_ckconv(b), ref, f"{src} -> {dst} read back by ckconv")


#: The dtype codes of the safetensors format (its specification's list, newest included).
SAFETENSORS_CODES = ("BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16", "U16", "F16",
                     "BF16", "I32", "U32", "F32", "C64", "F64", "I64", "U64", "F4", "F6_E2M3",
                     "F6_E3M2")


def _safetensors_reads(code: str, tmp_path) -> "str | None":
    """The torch dtype the real safetensors library gives a one-element-per-byte-width
    tensor of ``code``, or None if it refuses the code."""
    import json
    import struct

    from safetensors import safe_open

    for width in (1, 2, 4, 8, 16):
        header = json.dumps({"t": {"dtype": code, "shape": [8],
                                   "data_offsets": [0, 8 * width]}}).encode()
        path = tmp_path / f"{code}-{width}.safetensors"
        path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(8 * width))
        try:
            with safe_open(str(path), "pt") as f:
                return str(f.get_tensor("t").dtype).rpartition(".")[2]
        except Exception:
            continue
    return None


@pytest.mark.live
def test_safetensors_dtypes_are_the_ones_the_library_reads(tmp_path):
    """ckconv's safetensors dtypes against the real library: every code ckconv writes is
    read, and every code the library reads for a dtype ckconv has is one ckconv writes."""
    from ckconv import dtypes

    live_module("torch")
    live_module("safetensors")
    read = {code: _safetensors_reads(code, tmp_path) for code in SAFETENSORS_CODES}
    ours = {dt.name: dt.safetensors for dt in dtypes.ALL if holds("safetensors", dt)}
    assert all(read[code] is not None for code in ours.values()), read
    for code, torch_name in read.items():
        if torch_name in dtypes.BY_NAME:
            assert ours.get(torch_name) == code, (code, torch_name)
    assert set(ref.name for ref, _ in reference_tensors(("safetensors",)).values()
               if ref.name in ours) == set(ours)


@pytest.mark.live
def test_torch_dtypes_are_the_ones_torch_saves_and_loads():
    """ckconv's PyTorch dtypes against torch itself: every ckconv dtype torch can make a
    tensor of, save and load back (weights_only) is one ckconv writes, and no other."""
    import io

    from ckconv import dtypes

    torch = live_module("torch")
    works = set()
    for dt in dtypes.ALL:
        torch_dtype = getattr(torch, dt.name, None)
        if not isinstance(torch_dtype, torch.dtype) or dt.name.startswith(("qint", "quint")):
            continue  # quantized tensors are made by quantizing, not as plain tensors
        try:
            buf = io.BytesIO()
            torch.save({"t": torch.zeros(4, dtype=torch_dtype)}, buf)
            buf.seek(0)
            torch.load(buf, weights_only=True)
        except Exception:
            continue
        works.add(dt.name)
    assert {dt.name for dt in dtypes.ALL if holds("torch", dt)} == works


def test_hdf5_holds_every_fixed_size_dtype_and_strings():
    """HDF5 stores any dtype's bits (docs/format-behaviour.md): all but TF's variant."""
    from ckconv import dtypes

    names = {dt.name for dt, _ in reference_tensors(("hdf5",)).values()}
    assert names == {dt.name for dt in dtypes.ALL} - {"variant"}


@pytest.mark.parametrize("via", ["safetensors", "torch", "hdf5"])
@pytest.mark.parametrize("name", fixture_names())
def test_tf_through_format_and_back_reads_bit_exact_in_tf(tmp_path, via, name):
    """TF fixture -> X -> TF: TensorFlow reads every tensor X could hold, bit-exact."""
    live_torch()
    mid = str(tmp_path / "mid" / EXT[via])
    out = str(tmp_path / "out" / "model.ckpt")
    source = ckconv.load(fixture_prefix(name))
    ckconv.convert(fixture_prefix(name), mid, skip_unsupported=True)
    ckconv.convert(mid, out)
    kept = {k for k, t in source.items()
            if holds(via, t.dtype) and k != "_CHECKPOINTABLE_OBJECT_GRAPH"}
    got = ORACLES["tf"](out)
    assert sorted(got) == sorted(kept)
    for key in kept:
        entry = manifest(name)["tensors"][key]
        dt, shape, data = got[key]
        assert dt == entry["dtype"] and list(shape) == entry["shape"], key
        assert data == raw(expected_array(entry)), key


def test_torch_fixture_to_tf_keeps_every_name_including_tied(tmp_path):
    """A tied pair becomes two TF tensors with the same bytes; TF reads all bit-exact."""
    live_torch()
    from tests.helpers import expected_entries, other, other_manifest

    out = str(tmp_path / "tf" / "model.ckpt")
    ckconv.convert(other("torch_state_dict.pt"), out)
    want = expected_entries(other_manifest("torch_state_dict.pt")["tensors"])
    got = ORACLES["tf"](out)
    assert got == want
