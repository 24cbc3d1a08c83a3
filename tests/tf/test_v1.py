"""TF V1 checkpoints (SavedTensorSlices) and Snappy-compressed tables, against TensorFlow."""

from __future__ import annotations

import os
import shutil
import struct

import numpy as np
import pytest

import ckconv
from ckconv.formats.tf.crc import crc32c, mask
from ckconv.formats.tf.table import Table
from tests.helpers import assert_bit_exact, expected_array
from tests.tf.legacy_helpers import (LEGACY, all_fixtures, ckconv_values, legacy_manifest,
                                     legacy_path, tf_values)

V1 = ["v1_dtypes", "v1_saver", "v1_sharded", "snappy_v1"]


@pytest.mark.parametrize("name", all_fixtures())
def test_fixture_matches_what_tf_read_when_it_was_made(name):
    tmap = ckconv.load(legacy_path(name))
    tensors = legacy_manifest(name)["tensors"]
    assert sorted(tmap) == sorted(tensors)
    for key, entry in tensors.items():
        assert tmap[key].dtype.name == entry["dtype"], key
        assert_bit_exact(tmap[key].numpy(), expected_array(entry), key)


@pytest.mark.live
@pytest.mark.parametrize("name", all_fixtures())
def test_bit_exact_against_live_tensorflow(name):
    assert ckconv_values(ckconv.load(legacy_path(name))) == tf_values(legacy_path(name))


def test_every_dtype_tf_v1_writes_is_read():
    dtypes = {e["dtype"] for e in legacy_manifest("v1_dtypes")["tensors"].values()}
    assert dtypes == {"float32", "float64", "int32", "uint8", "int16", "int8", "uint16",
                      "int64", "bool", "complex64", "complex128", "float16", "qint8",
                      "quint8", "qint32", "string"}


def _block_types(path: str) -> set[int]:
    table = Table.open(path)
    raw = open(path, "rb").read()
    return {raw[off + size] for _sep, off, size in table.data_blocks()}


@pytest.mark.live
@pytest.mark.parametrize("name, table_file", [("snappy_v2", "ckpt.index"),
                                              ("snappy_v1", "model.ckpt")])
def test_snappy_tables_are_read_by_tf_and_ckconv(name, table_file):
    path = str(LEGACY / name / table_file)
    table = Table.open(path)
    assert len(table.data_blocks()) > 1 and _block_types(path) == {1}
    assert ckconv_values(ckconv.load(legacy_path(name))) == tf_values(legacy_path(name))


@pytest.mark.parametrize("form", ["model.ckpt-5", "model.ckpt-5-?????-of-00002",
                                  "model.ckpt-5-00001-of-00002", ""])
def test_sharded_v1_any_path_form(form):
    path = os.path.join(LEGACY, "v1_sharded", form) if form else str(LEGACY / "v1_sharded")
    tmap = ckconv.load(path)
    assert sorted(tmap) == ["b", "emb", "w"]
    assert len(tmap.source_files) == 2
    emb = legacy_manifest("v1_sharded")["tensors"]["emb"]
    assert_bit_exact(tmap["emb"].numpy(), expected_array(emb), "emb")


def test_partitioned_variable_spans_both_shards():
    files = {p.table.path for p in ckconv.load(legacy_path("v1_sharded"))["emb"]._parts}
    assert len(files) == 2


def test_v1_collections_from_meta():
    tmap = ckconv.load(str(LEGACY / "v1_saver"), collections="trainable_variables")
    assert "global_step" not in tmap and "emb" in tmap


@pytest.mark.parametrize("ext", [".safetensors", ".pt", ".h5", ".ckpt"])
def test_v1_converts_to_every_format(tmp_path, ext):
    src = legacy_path("v1_saver")
    dst = str(tmp_path / f"out{ext}")
    from ckconv.cli.main import main

    no_strings = ext in (".safetensors", ".pt")
    args = [src, dst] + (["--skip-unsupported"] if no_strings else [])
    assert main(args) == 0
    back = ckconv.load(dst)
    for key, entry in legacy_manifest("v1_saver")["tensors"].items():
        if no_strings and entry["dtype"] == "string":
            assert key not in back
            continue
        assert_bit_exact(back[key].numpy(), expected_array(entry), key)


@pytest.mark.live
def test_v1_to_v2_restores_in_tf(tmp_path):
    dst = str(tmp_path / "model.ckpt")
    ckconv.convert(legacy_path("v1_dtypes"), dst)
    assert tf_values(dst) == tf_values(legacy_path("v1_dtypes"))


# -- damage --------------------------------------------------------------------------------

def test_missing_shard_is_named(tmp_path):
    d = tmp_path / "run"
    shutil.copytree(LEGACY / "v1_sharded", d)
    os.remove(d / "model.ckpt-5-00001-of-00002")
    with pytest.raises(ckconv.CorruptCheckpointError,
                       match=r"model\.ckpt-5-00001-of-00002: shard of a V1 checkpoint is missing"):
        ckconv.load(str(d / "model.ckpt-5"))


def _rewrite_value(src: str, dst: str, key: bytes, change) -> None:
    from ckconv.formats.tf.table_writer import TableWriter

    with open(dst, "wb") as f:
        w = TableWriter(f)
        for k, v in Table.open(src).items():
            w.add(k, change(bytes(v)) if k == key else bytes(v))
        w.finish()


def test_value_count_mismatch_names_file_and_tensor(tmp_path):
    from ckconv.formats.tf.slices import encode_slice_key

    dst = str(tmp_path / "ckpt")
    key = encode_slice_key(b"rank3/int64", [(0, -1)] * 3)
    # drop the last varint of the packed int64_val: 23 values for 24 elements
    _rewrite_value(legacy_path("v1_dtypes"), dst, key, lambda v: _drop_last_int(v))
    tmap = ckconv.load(dst)
    with pytest.raises(ckconv.CorruptCheckpointError,
                       match=r"ckpt: tensor 'rank3/int64' slice -:-:-: bad value .*23 values"):
        tmap["rank3/int64"].numpy()


def _msg(n: int, body: bytes) -> bytes:
    from ckconv.formats.tf.varint import encode

    return bytes([(n << 3) | 2]) + encode(len(body)) + body


def _drop_last_int(value: bytes) -> bytes:
    """SavedTensorSlices{data: SavedSlice{name, slice, TensorProto}} minus its last int64_val."""
    from ckconv.formats.tf.entries import _fields

    (_, _, saved), = [f for f in _fields(value) if f[0] == 2]
    fields = {n: bytes(v) for n, _w, v in _fields(saved)}
    (_, _, packed), = _fields(fields[3])
    packed = bytes(packed)
    last_start = max(i + 1 for i in range(len(packed) - 1) if packed[i] < 0x80)
    proto = _msg(10, packed[:last_start])
    return _msg(2, _msg(1, fields[1]) + _msg(2, fields[2]) + _msg(3, proto))


def test_corrupt_block_names_the_file(tmp_path):
    dst = tmp_path / "ckpt"
    raw = bytearray((LEGACY / "v1_dtypes" / "ckpt").read_bytes())
    raw[200] ^= 1
    dst.write_bytes(raw)
    with pytest.raises(ckconv.CorruptCheckpointError, match=r"ckpt: checksum mismatch in data block"):
        ckconv.load(str(dst)).to_numpy()


def test_v1_slice_coverage_is_checked(tmp_path):
    """A header listing two slices of ``emb`` that leave rows out is refused before reading."""
    from ckconv.formats.tf import v1

    meta_tensors, _ = v1.decode_meta(Table.open(legacy_path("v1_saver")).first()[1])
    emb = next(m for m in meta_tensors if m.name == "emb")
    assert len(emb.slices) == 3
    # remove the header's last slice of emb: the file's slices then cover 7 of 10 rows
    src = legacy_path("v1_saver")
    dst = str(tmp_path / "model.ckpt-7")
    _rewrite_value(src, dst, b"", _without_last_emb_slice)
    with pytest.raises(ckconv.CorruptCheckpointError,
                       match=r"model\.ckpt-7: the slices of tensor 'emb' cover 28 of its 40"):
        ckconv.load(dst)


def _slice_bytes(extents) -> bytes:
    from ckconv.formats.tf.varint import encode

    body = b""
    for e in extents:
        ext = (b"\x08" + encode(e.start) if e.start else b"") + \
              (b"\x10" + encode(e.length) if e.length is not None else b"")
        body += b"\x0a" + encode(len(ext)) + ext
    return b"\x22" + encode(len(body)) + body


def _without_last_emb_slice(header: bytes) -> bytes:
    from ckconv.formats.tf import v1
    from ckconv.formats.tf.entries import _fields

    (_, _, meta), = _fields(header)
    out = b""
    for n, _w, v in _fields(meta):
        v = bytes(v)
        if n == 1 and v1._slice_meta(v).name == "emb":
            v = v.replace(_slice_bytes(v1._slice_meta(v).slices[-1]), b"")
        out += _msg(n, v)
    return _msg(1, out)


def test_v2_index_under_a_bare_name_is_explained(tmp_path):
    src = LEGACY / "snappy_v2" / "ckpt.index"
    dst = tmp_path / "weights"
    shutil.copy(src, dst)
    with pytest.raises(ckconv.FormatError, match="the .index file of a V2 checkpoint"):
        ckconv.load(str(dst))


def test_snappy_block_damage_is_one_line(tmp_path):
    raw = bytearray((LEGACY / "snappy_v1" / "model.ckpt").read_bytes())
    table = Table.open(str(LEGACY / "snappy_v1" / "model.ckpt"))
    _sep, off, size = table.data_blocks()[1]
    raw[off + 1] = 0xFF  # an element tag inside the compressed block
    raw[off + size + 1:off + size + 5] = struct.pack(
        "<I", mask(crc32c(bytes([1]), crc32c(bytes(raw[off:off + size])))))
    dst = tmp_path / "model.ckpt"
    dst.write_bytes(raw)
    with pytest.raises(ckconv.CorruptCheckpointError) as err:
        ckconv.load(str(dst)).to_numpy()
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(dst))
    assert "Snappy-compressed data block at offset" in msg or "bad entry" in msg


def test_inspect_reads_only_the_header(tmp_path, monkeypatch):
    """Listing a V1 file reads its first block only: no tensor block is touched."""
    from ckconv.formats.tf import table as table_mod

    reads = []
    orig = table_mod.FileBytes.__getitem__

    def spy(self, key):
        reads.append(key)
        return orig(self, key)

    monkeypatch.setattr(table_mod.FileBytes, "__getitem__", spy)
    tmap = ckconv.load(legacy_path("snappy_v1"))
    assert len(tmap) == 3
    blocks = Table.open(legacy_path("snappy_v1")).data_blocks()
    assert len(reads) == 4  # footer, metaindex, index, first data block
    assert np.asarray(tmap["c"].numpy()).sum() == sum(range(100))
    assert len(blocks) == 3  # the header has a block of its own here


@pytest.mark.live
@pytest.mark.parametrize("ext", [".h5", ".safetensors", ".pt"])
def test_every_v1_dtype_converts_bit_exact(tmp_path, ext):
    """Each V1 dtype lands in each format with TF's own values (what a format cannot hold,
    strings and quantized or complex128 types in safetensors/torch, is left out)."""
    want = tf_values(legacy_path("v1_dtypes"))
    dst = str(tmp_path / f"out{ext}")
    from ckconv.cli.main import main

    assert main([legacy_path("v1_dtypes"), dst, "--skip-unsupported", "-q"]) == 0
    got = ckconv_values(ckconv.load(dst))
    assert got, ext
    for name, value in got.items():
        assert value == want[name], name
    if ext == ".h5":
        assert set(got) == set(want)


class _FakeTable:
    path = "f.ckpt"


def _extents(*pairs):
    from ckconv.formats.tf.entries import Extent

    return [Extent(0, None) if p is None else Extent(*p) for p in pairs]


@pytest.mark.parametrize("slices, error", [
    ([((0, 5), None), ((5, 5), None)], None),
    ([((5, 5), None), ((0, 5), None)], None),                    # any order
    ([((0, 6), None), ((5, 5), None)], "overlaps another slice"),
    ([((0, 5), None), ((0, 5), None)], "overlaps another slice"),  # listed twice
    ([((0, 5), (0, 2)), ((0, 5), (2, 2)), ((5, 5), None)], None),  # two axes: pairwise
    ([((0, 5), (0, 3)), ((0, 5), (2, 2)), ((5, 5), None)], "overlaps another slice"),
    ([((0, 5), None)], "cover 20 of its 40 elements"),
    ([((0, 5), None), ((5, 6), None)], "does not fit its shape"),
])
def test_slice_layouts(slices, error):
    from ckconv.formats.tf.v1 import _tensor

    stored = [(_FakeTable(), _extents(*s)) for s in slices]
    if error is None:
        assert _tensor("t", ckconv.dtypes.by_name("float32"), (10, 4), stored).shape == (10, 4)
    else:
        with pytest.raises(ckconv.CorruptCheckpointError, match=rf"^f\.ckpt: .*{error}"):
            _tensor("t", ckconv.dtypes.by_name("float32"), (10, 4), stored)


def test_many_slices_along_one_axis_are_checked_quickly():
    from ckconv.formats.tf.v1 import _tensor

    n = 20000
    stored = [(_FakeTable(), _extents((i, 1), None)) for i in reversed(range(n))]
    t = _tensor("t", ckconv.dtypes.by_name("float32"), (n, 4), stored)
    assert len(t._parts) == n
    stored.append((_FakeTable(), _extents((7, 1), None)))
    with pytest.raises(ckconv.CorruptCheckpointError, match="overlaps"):
        _tensor("t", ckconv.dtypes.by_name("float32"), (n, 4), stored)


def test_many_slices_along_two_axes_are_refused():
    from ckconv.formats.tf.v1 import _tensor

    stored = [(_FakeTable(), _extents((i, 1), (j, 1))) for i in range(70) for j in range(70)]
    with pytest.raises(ckconv.CorruptCheckpointError,
                       match=r"^f\.ckpt: tensor 't': 4900 slices cut along several axes"):
        _tensor("t", ckconv.dtypes.by_name("float32"), (70, 70), stored)


@pytest.mark.live
@pytest.mark.parametrize("name, step", [("v1_saver", 7), ("v1_sharded", 5)])
def test_v1_graph_restores_the_converted_v2_checkpoint(tmp_path, name, step):
    """The V1 Saver's .meta travels with the V2 output: TF's own graph restores it."""
    from tests.helpers import live_tf

    tf = live_tf()
    v1 = tf.compat.v1
    dst = str(tmp_path / f"model.ckpt-{step}")
    notes = ckconv.convert(str(LEGACY / name), dst)
    assert any("copied the graph" in n for n in notes), notes
    assert not any(p.name.startswith(f"model.ckpt-{step}-") for p in tmp_path.iterdir())
    want = legacy_manifest(name)["tensors"]
    graph = tf.Graph()
    with graph.as_default():
        saver = v1.train.import_meta_graph(dst + ".meta")
        with v1.Session(graph=graph, config=v1.ConfigProto(device_count={"CPU": 2})) as sess:
            saver.restore(sess, dst)
            values = {v.name: sess.run(v) for v in v1.global_variables()}
    for var, value in values.items():
        base = var.split(":")[0]
        full = base.rsplit("/part_", 1)[0]
        expected = expected_array(want[full])
        if "/part_" in base:  # a partition: compare with its rows of the full tensor
            parts = sorted(k for k in values if k.startswith(full + "/part_"))
            expected = np.array_split(expected, len(parts))[parts.index(var)] \
                if full == "emb" else np.array_split(expected, len(parts), axis=1)[parts.index(var)]
        assert_bit_exact(np.asarray(value, dtype=expected.dtype), expected, var)


@pytest.mark.parametrize("path, step", [("v1_saver", 7), ("v1_saver@7", None),
                                        ("v1_sharded/model.ckpt@5", None),
                                        ("v1_sharded/model.ckpt-5@5", None),
                                        ("v1_sharded", 5)])
def test_v1_checkpoint_picked_by_step(path, step):
    tmap = ckconv.load(str(LEGACY / path), step=step)
    assert tmap.source.endswith(("model.ckpt-7", "model.ckpt-5"))


def test_v1_missing_step_lists_the_steps_present():
    with pytest.raises(ckconv.FormatError,
                       match=r"v1_sharded: no checkpoint with step 4 \(V1 checkpoint steps "
                             r"present: 5\)"):
        ckconv.load(str(LEGACY / "v1_sharded"), step=4)
