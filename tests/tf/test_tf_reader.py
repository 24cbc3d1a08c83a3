"""The TF V2 reader against checkpoints made by real TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

import ckconv
from tests.helpers import (assert_bit_exact, expected_array, fixture_names, fixture_prefix,
                      live_tf, manifest)


@pytest.mark.parametrize("name", fixture_names())
def test_fixture_matches_tf_reader_manifest(name):
    """Every tensor bit-exact with what tf.train.load_checkpoint returned at generation time."""
    man = manifest(name)
    tmap = ckconv.load(fixture_prefix(name))
    assert sorted(tmap) == sorted(man["tensors"])
    for key, entry in man["tensors"].items():
        t = tmap[key]
        assert t.dtype.name == entry["dtype"], key
        assert list(t.shape) == entry["shape"], key
        assert_bit_exact(t.numpy(), expected_array(entry), key)


@pytest.mark.live
@pytest.mark.parametrize("name", fixture_names())
def test_fixture_matches_live_tensorflow(name):
    tf = live_tf()
    prefix = fixture_prefix(name)
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    types = reader.get_variable_to_dtype_map()
    tmap = ckconv.load(prefix)
    assert sorted(tmap) == sorted(shapes)
    for key in shapes:
        t = tmap[key]
        assert t.dtype.name == types[key].name, key
        assert list(t.shape) == list(shapes[key]), key
        want = reader.get_tensor(key)
        got = t.numpy()
        if t.dtype.name == "string":
            want = np.asarray(want, dtype=object).reshape(t.shape)
            assert got.reshape(-1).tolist() == want.reshape(-1).tolist(), key
        else:
            assert got.tobytes() == np.ascontiguousarray(want).tobytes(), key


def test_lazy_metadata_without_reading(tmp_path, monkeypatch):
    """dtype, shape and size come from the index alone: no data file is opened."""
    tmap = ckconv.load(fixture_prefix("dtypes"))
    import os

    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, *a, **k: opened.append(p) or real_open(p, *a, **k))
    for t in tmap.values():
        _ = (t.dtype, t.shape, t.nbytes)
    assert opened == []


def test_numpy_asarray_reads_values():
    tmap = ckconv.load(fixture_prefix("dtypes"))
    t = tmap["float32"]
    assert_bit_exact(np.asarray(t), t.numpy())


def test_iter_bytes_streams_same_bytes_in_small_chunks():
    tmap = ckconv.load(fixture_prefix("dtypes"))
    for name, t in tmap.items():
        if t.dtype.is_variable_length:
            continue
        streamed = b"".join(bytes(c) for c in t.iter_bytes(chunk=3))
        assert streamed == t.numpy().tobytes(), name


def test_partitioned_slice_keys_hidden_and_reassembled():
    man = manifest("partitioned")
    tmap = ckconv.load(fixture_prefix("partitioned"))
    assert not any(k.startswith("\x00") for k in tmap)
    sliced = [k for k, t in tmap.items() if type(t).__name__ == "SlicedTensor"]
    assert len(sliced) >= 2, "fixture should hold variables partitioned along two axes"
    for k in sliced:
        assert_bit_exact(tmap[k].numpy(), expected_array(man["tensors"][k]), k)


def test_sharded_fixture_uses_several_data_files():
    prefix = fixture_prefix("sharded")
    tmap = ckconv.load(prefix)
    shards = [f for f in tmap.source_files if ".data-" in f]
    assert len(shards) == 3 and all(f.endswith("-of-00003") for f in shards)


@pytest.mark.live
@pytest.mark.parametrize("order", ["tf-first", "ckconv-first"])
def test_no_protobuf_descriptor_clash_with_tensorflow(order):
    """Our private descriptor pool coexists with TF's registered copies of the same protos."""
    import subprocess
    import sys

    live_tf()
    prefix = fixture_prefix("keras2_ckpt")
    imports = ["import tensorflow as tf", "import ckconv, ckconv.formats.tf.protos"]
    if order == "ckconv-first":
        imports.reverse()
    code = "\n".join(imports + [
        f"m = ckconv.load({prefix!r})",
        "g = m['_CHECKPOINTABLE_OBJECT_GRAPH'].numpy()",
        f"r = tf.train.load_checkpoint({prefix!r})",
        "assert r.get_tensor('_CHECKPOINTABLE_OBJECT_GRAPH') == g.item()",
        "from tensorflow.core.protobuf import trackable_object_graph_pb2 as t",
        "from ckconv.formats.tf.protos import TrackableObjectGraph",
        "a = t.TrackableObjectGraph(); a.ParseFromString(g.item())",
        "b = TrackableObjectGraph(); b.ParseFromString(g.item())",
        "assert len(a.nodes) == len(b.nodes) > 0",
        "print('ok')",
    ])
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-2000:]
