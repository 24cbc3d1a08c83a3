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
                             live_torch, raw, reference_tensors, seen_by_ckconv)

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


@pytest.mark.parametrize("fmt", ["safetensors", "torch", "hdf5"])
def test_reference_set_covers_every_dtype_the_format_holds(fmt):
    from ckconv import dtypes

    ref = reference_tensors((fmt,))
    held = {dt.name for dt in dtypes.ALL if holds(fmt, dt)}
    assert {dt.name for dt, _ in ref.values()} == held


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
