"""Tests of the TF V2 checkpoint writer: table builder, bundle writer, and TF itself reading the result.

Tests that need TensorFlow use the ``tf`` fixture (``pytest.importorskip``); the rest run
anywhere. The byte-comparison tests write the same tensors with ckconv and with TF's
``SaveV2`` op and require identical files.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from ckconv import dtypes
from ckconv.dtypes import DType
from ckconv.errors import CkconvError, CorruptCheckpointError, UnsupportedError, UsageError
from ckconv.formats.tf.bundle_writer import write_bundle
from ckconv.formats.tf.crc import crc32c, mask, unmask
from ckconv.formats.tf.protos import BundleEntryProto, BundleHeaderProto
from ckconv.formats.tf.table_writer import (TableWriter, short_successor,
                                            shortest_separator)
from ckconv.sizes import parse_size
from ckconv.tensor import ArrayTensor, Tensor
from ckconv.tensormap import TensorMap
from tests.helpers import live_tf


@pytest.fixture(scope="module")
def tf() -> Any:
    # Every test taking this fixture counts as a live comparison (see conftest.py).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return live_tf()


# --------------------------------------------------------------------------------------
# A tiny independent table decoder, so the table tests do not depend on ckconv's reader.

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _block(data: bytes, offset: int, size: int) -> bytes:
    contents = data[offset:offset + size]
    trailer = data[offset + size:offset + size + 5]
    assert trailer[0] == 0
    assert unmask(struct.unpack("<I", trailer[1:])[0]) == crc32c(contents + trailer[:1])
    return contents


def _entries(block: bytes) -> tuple[list[tuple[bytes, bytes, int]], list[int]]:
    """Return ([(key, value, shared)], restarts) of a block; check restarts are every 16th entry."""
    n = struct.unpack("<I", block[-4:])[0]
    restarts = list(struct.unpack(f"<{n}I", block[-4 - 4 * n:-4]))
    end = len(block) - 4 - 4 * n
    pos, key, out, starts = 0, b"", [], []
    while pos < end:
        starts.append(pos)
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        vlen, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        out.append((key, block[pos:pos + vlen], shared))
        pos += vlen
    assert n >= 1 and restarts[0] == 0
    assert all(out[starts.index(r)][2] == 0 for r in restarts if starts)  # restarts hold full keys
    return out, restarts


def decode_table(data: bytes) -> dict[str, Any]:
    """Decode a whole table: its data blocks, index entries and key/value pairs."""
    footer = data[-48:]
    assert footer[40:] == bytes.fromhex("57fb808b247547db")
    pos = 0
    meta_off, pos = _varint(footer, pos)
    meta_size, pos = _varint(footer, pos)
    idx_off, pos = _varint(footer, pos)
    idx_size, pos = _varint(footer, pos)
    assert _block(data, meta_off, meta_size) == bytes.fromhex("0000000001000000")
    index, index_restarts = _entries(_block(data, idx_off, idx_size))
    assert len(index_restarts) == max(1, len(index))  # index restart interval 1
    blocks, pairs, expected_offset = [], [], 0
    for sep, handle, shared in index:
        assert shared == 0  # index restart interval 1
        off, p = _varint(handle, 0)
        size, _ = _varint(handle, p)
        assert off == expected_offset  # blocks are back to back
        expected_offset = off + size + 5
        entries, restarts = _entries(_block(data, off, size))
        assert entries and entries[-1][0] <= sep
        blocks.append({"size": size, "entries": entries, "restarts": restarts, "sep": sep})
        pairs += [(k, v) for k, v, _ in entries]
    assert expected_offset == meta_off
    keys = [k for k, _ in pairs]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    return {"blocks": blocks, "pairs": pairs}


# --------------------------------------------------------------------------------------
# Table writer unit tests

def _table(pairs: list[tuple[bytes, bytes]], **kw: Any) -> bytes:
    buf = io.BytesIO()
    w = TableWriter(buf, **kw)
    for k, v in pairs:
        w.add(k, v)
    assert w.finish() == len(buf.getvalue())
    return buf.getvalue()


def test_empty_table_layout() -> None:
    data = _table([])
    # empty data is not written: metaindex (13 bytes), empty index (13 bytes), footer
    assert data[:13] == bytes.fromhex("0000000001000000" "00c0f2a1b0")
    assert len(data) == 13 + 13 + 48
    assert decode_table(data)["pairs"] == []


def test_small_table_roundtrip_and_prefix_compression() -> None:
    pairs = [(b"", b"hdr"), (b"abc", b"1"), (b"abd", b"22"), (b"b", b"")]
    data = _table(pairs)
    t = decode_table(data)
    assert t["pairs"] == pairs
    [blk] = t["blocks"]
    assert [e[2] for e in blk["entries"]] == [0, 0, 2, 0]  # "abd" shares "ab"
    assert blk["restarts"] == [0]
    assert blk["sep"] == b"c"  # short successor of the last key


def test_restart_interval_and_block_split() -> None:
    pairs = [(b"key%05d" % i, b"v" * 50) for i in range(400)]
    t = decode_table(_table(pairs, block_size=4096))
    assert t["pairs"] == pairs
    assert len(t["blocks"]) > 3
    for blk in t["blocks"]:
        n = len(blk["entries"])
        assert len(blk["restarts"]) == (n + 15) // 16
        for i, e in enumerate(blk["entries"]):
            assert (e[2] == 0) if i % 16 == 0 else (e[2] > 0)
        # a block is cut as soon as its size estimate reaches the block size
        assert blk["size"] >= 4096 or blk is t["blocks"][-1]
    # separators shortened against the next block's first key
    assert t["blocks"][0]["sep"].startswith(b"key")


def test_overly_large_entry_gets_own_block() -> None:
    pairs = [(b"a", b"x"), (b"b", b"y" * 200), (b"c", b"z")]
    t = decode_table(_table(pairs, block_size=100))
    assert [[e[0] for e in b["entries"]] for b in t["blocks"]] == [[b"a"], [b"b"], [b"c"]]


def test_separator_rules() -> None:
    assert shortest_separator(b"abcd", b"abzz") == b"abd"
    assert shortest_separator(b"abc", b"abd") == b"abc"      # bump would reach limit
    assert shortest_separator(b"ab", b"abc") == b"ab"        # prefix: unchanged
    assert shortest_separator(b"a\xff", b"b") == b"a\xff"    # a < b but 'a'+1 == 'b'
    assert shortest_separator(b"\xff\x01", b"\xff\x05") == b"\xff\x02"
    assert short_successor(b"w") == b"x"
    assert short_successor(b"strs") == b"t"
    assert short_successor(b"\xff\xffa") == b"\xff\xffb"
    assert short_successor(b"\xff\xff") == b"\xff\xff"
    assert short_successor(b"") == b""


def test_unsorted_and_duplicate_keys_rejected() -> None:
    w = TableWriter(io.BytesIO())
    w.add(b"b", b"")
    with pytest.raises(UnsupportedError, match="duplicate"):
        w.add(b"b", b"")
    with pytest.raises(UsageError, match="out of order"):
        w.add(b"a", b"")
    w.add(b"\xff", b"")  # bytewise order: 0xFF sorts after ASCII
    w.finish()
    with pytest.raises(UsageError):
        w.add(b"z", b"")


# --------------------------------------------------------------------------------------
# Bundle writer: structure, without TF

def _files(d: Any) -> list[str]:
    return sorted(os.listdir(d))


def _index(prefix: str) -> dict[bytes, bytes]:
    with open(prefix + ".index", "rb") as f:
        return dict(decode_table(f.read())["pairs"])


def test_worked_example_bytes(tmp_path: Any) -> None:
    """The exact bytes TF 2.21 writes for w=[1,2] f32, s=["ab","c"].

    The same bytes are shown and explained in docs/formats.md §2.7 and §5.5.
    """
    prefix = str(tmp_path / "x")
    tm = TensorMap({"w": np.array([1.0, 2.0], np.float32), "s": np.array([b"ab", b"c"], dtype=object)})
    assert write_bundle(tm, prefix) == []  # a fresh directory: nothing to tell
    data = (tmp_path / "x.data-00000-of-00001").read_bytes()
    assert data == bytes.fromhex("0000803f00000040" "0201" "03717c67" "616263")
    index = (tmp_path / "x.index").read_bytes()
    assert len(index) == 142
    assert index[:9] == bytes.fromhex("000006" "08011a020801")
    assert index[-8:] == bytes.fromhex("57fb808b247547db")
    assert _files(tmp_path) == ["checkpoint", "x.data-00000-of-00001", "x.index"]


def test_entry_encoding_details(tmp_path: Any) -> None:
    prefix = str(tmp_path / "e")
    tm = TensorMap({"scalar": np.float32(3.0), "empty": np.zeros((0, 3), np.float32),
                    "es": np.array([], dtype=object), "abc": np.array(b"abc", dtype=object)})
    write_bundle(tm, prefix)
    idx = _index(prefix)
    assert idx[b""] == bytes.fromhex("0801" "1a020801")
    e = BundleEntryProto.FromString(idx[b"scalar"])
    assert idx[b"scalar"].startswith(bytes.fromhex("0801" "1200"))  # scalar: empty shape message
    assert e.size == 4 and e.offset == 0
    # dtype 1, shape [0, 3] (zero dim = empty Dim), offset 4, no size, crc32c = mask(0) as fixed32
    assert idx[b"empty"] == bytes.fromhex("0801" "1206" "1200" "12020803" "2004" "35") + struct.pack("<I", mask(0))
    es = BundleEntryProto.FromString(idx[b"es"])
    assert es.size == 4 and es.crc32c == mask(crc32c(struct.pack("<I", mask(0))))
    data = open(prefix + ".data-00000-of-00001", "rb").read()
    assert data[4:8] == bytes.fromhex("d8ea82a2")  # empty string tensor = mask(0)
    assert data[8:] == bytes.fromhex("03" "633f7f28" "616263")  # docs/formats.md §5.4


def test_deterministic_and_streaming(tmp_path: Any) -> None:
    class Streamed(Tensor):
        """A fixed-size tensor that can only be streamed, never materialised."""

        def __init__(self, n: int) -> None:
            super().__init__(dtypes.by_name("float32"), (n,))

        def _load(self) -> np.ndarray:
            raise AssertionError("writer must stream fixed-size tensors")

        def iter_bytes(self, chunk: int = 1 << 20) -> Iterator[memoryview]:
            for start in range(0, self.size, 1000):
                n = min(1000, self.size - start)
                yield memoryview(np.arange(start, start + n, dtype="<f4").view(np.uint8))

    def tm() -> TensorMap:
        return TensorMap({"b": Streamed(2500), "a": np.arange(6, dtype=np.int64).reshape(2, 3),
                          "s": np.array(["x", "é"], dtype=object)})

    write_bundle(tm(), str(tmp_path / "one"))
    write_bundle(tm(), str(tmp_path / "two"))
    for suffix in (".index", ".data-00000-of-00001"):
        assert (tmp_path / ("one" + suffix)).read_bytes() == (tmp_path / ("two" + suffix)).read_bytes()
    data = (tmp_path / "one.data-00000-of-00001").read_bytes()
    assert data[:10000] == np.arange(2500, dtype="<f4").tobytes()  # TensorMap order, not key order


def test_sharding_plan(tmp_path: Any) -> None:
    prefix = str(tmp_path / "sh")
    tm = TensorMap({"a": np.zeros(16, np.float32), "b": np.zeros(16, np.float32),  # 64 + 64
                    "big": np.zeros(100, np.float32),  # 400 > limit: own shard
                    "z": np.zeros(0, np.float32),      # empty: stays with "big"
                    "c": np.ones(2, np.float64), "d": np.array([b"hello"], dtype=object)})
    write_bundle(tm, prefix, max_shard_size="100B")
    n = 4
    assert _files(tmp_path) == ["checkpoint"] + [f"sh.data-{i:05d}-of-{n:05d}" for i in range(n)] + ["sh.index"]
    idx = _index(prefix)
    assert BundleHeaderProto.FromString(idx[b""]).num_shards == n
    shards = {k.decode(): BundleEntryProto.FromString(v).shard_id for k, v in idx.items() if k}
    assert shards == {"a": 0, "b": 1, "big": 2, "z": 2, "c": 3, "d": 3}
    assert os.path.getsize(prefix + ".data-00003-of-00004") == 16 + 1 + 4 + 5


@pytest.mark.parametrize("name, tensor, match", [
    ("", np.zeros(2, np.float32), "empty"),
    ("bad\udcffname", np.zeros(2, np.float32), "bad"),
    ("var", ArrayTensor(np.array([b"x"], dtype=object), dtype=dtypes.by_name("variant")), "var"),
    ("odd", ArrayTensor(np.zeros(2, np.float32), dtype=DType("odd32", np.dtype(np.float32), 4, None, None)), "odd"),
    ("deep", Tensor(dtypes.by_name("int8"), (1,) * 255), "deep"),
])
def test_refused_tensors_leave_nothing(tmp_path: Any, name: str, tensor: Any, match: str) -> None:
    tm = TensorMap({"ok": np.zeros(3, np.float32), name: tensor})
    with pytest.raises(UnsupportedError, match=match):
        write_bundle(tm, str(tmp_path / "ckpt"))
    assert _files(tmp_path) == []


def test_failure_mid_write_leaves_nothing(tmp_path: Any) -> None:
    class Short(Tensor):
        def _load(self) -> np.ndarray:
            return np.zeros(2, np.float32)  # claims 4 elements, delivers 2

    tm = TensorMap({"ok": np.zeros(3, np.float32), "short": Short(dtypes.by_name("float32"), (4,))})
    with pytest.raises(CorruptCheckpointError, match="short"):
        write_bundle(tm, str(tmp_path / "ckpt"), max_shard_size=4)
    assert _files(tmp_path) == []


def test_bad_prefix_and_shard_size(tmp_path: Any) -> None:
    tm = TensorMap({"a": np.zeros(1, np.float32)})
    for bad in ("", str(tmp_path), str(tmp_path) + os.sep):
        with pytest.raises(UsageError):
            write_bundle(tm, bad)
    for bad in (0, "0", "lots", -5):
        with pytest.raises(UsageError):
            write_bundle(tm, str(tmp_path / "p"), max_shard_size=bad)
    assert _files(tmp_path) == []
    write_bundle(tm, str(tmp_path / "new" / "sub" / "p"))  # directories are created, like TF
    assert os.path.exists(tmp_path / "new" / "sub" / "p.index")


def test_parse_size() -> None:
    assert parse_size("2GB") == 2_000_000_000
    assert parse_size("2GiB") == 2 << 30
    assert parse_size("512 MiB") == 512 << 20
    assert parse_size("10kb") == 10_000
    assert parse_size("1.5KiB") == 1536
    assert parse_size("1.1GB") == 1_100_000_000
    assert parse_size("100B") == 100
    assert parse_size("4096") == 4096
    assert parse_size(77) == 77
    for bad in ("", "GB", "1.2.3", "-1GB", "5 parsecs", "0.5B", None, -1, True):
        with pytest.raises(UsageError):
            parse_size(bad)  # type: ignore[arg-type]
    assert issubclass(UsageError, CkconvError)


# --------------------------------------------------------------------------------------
# Against TensorFlow

def _tf_dtype(tf: Any, name: str) -> Any:
    from tensorflow.python.framework import dtypes as tf_dtypes  # int4/float8 are not in tf.*
    return tf.string if name == "string" else getattr(tf_dtypes, name)


def _save_v2(tf: Any, prefix: str, tensors: list[tuple[str, Any, str]]) -> None:
    values = [tf.constant(arr, dtype=_tf_dtype(tf, dt)) for _, arr, dt in tensors]
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=[n for n, _, _ in tensors],
                      shape_and_slices=[""] * len(tensors), tensors=values)


def _ckconv_map(tensors: list[tuple[str, Any, str]]) -> TensorMap:
    return TensorMap({n: ArrayTensor(arr, dtype=dtypes.by_name(dt)) for n, arr, dt in tensors})


def _assert_same_as_tf(tf: Any, tmp_path: Any, tensors: list[tuple[str, Any, str]]) -> None:
    (tmp_path / "tf").mkdir()
    _save_v2(tf, str(tmp_path / "tf" / "m"), tensors)
    write_bundle(_ckconv_map(tensors), str(tmp_path / "ck" / "m"))
    for suffix in (".index", ".data-00000-of-00001"):
        ours = (tmp_path / "ck" / ("m" + suffix)).read_bytes()
        theirs = (tmp_path / "tf" / ("m" + suffix)).read_bytes()
        assert ours == theirs, suffix


def test_bytes_identical_to_savev2_mixed(tf: Any, tmp_path: Any) -> None:
    tensors = [
        ("w", np.array([1.0, 2.0], np.float32), "float32"),
        ("s", np.array([b"ab", b"c"], dtype=object), "string"),
        ("step", np.array(7, np.int64), "int64"),
        ("empty", np.zeros((0, 3), np.float32), "float32"),
        ("empty_s", np.array([], dtype=object), "string"),
        ("bf", np.array([1.5, -2.0, 3.25], ml_dtypes.bfloat16), "bfloat16"),
        ("long_s", np.array([b"x" * 200, b"", "ünïcødé".encode(), b"y" * 128], dtype=object), "string"),
        ("scalar_s", np.array(b"abc", dtype=object), "string"),
        ("layer/0/kernel", np.arange(12, dtype=np.float64).reshape(3, 4), "float64"),
        ("\u00e9t\u00e9", np.array([True, False, True]), "bool"),
    ]
    _assert_same_as_tf(tf, tmp_path, tensors)


def test_bytes_identical_to_savev2_every_dtype(tf: Any, tmp_path: Any) -> None:
    tensors = [(f"t_{name}", arr, name) for name, arr in _every_dtype().items()]
    _assert_same_as_tf(tf, tmp_path, tensors)


def test_bytes_identical_to_savev2_many_blocks(tf: Any, tmp_path: Any) -> None:
    # ~12,000 keys spread over several 256 KiB data blocks, plus one 600 KB name that must
    # get a data block of its own (TF's overly-large-entry rule).
    # Random hex prefixes defeat prefix compression, so the entries fill several blocks.
    rng = np.random.default_rng(2)
    tensors = [(f"{rng.integers(2**63):016x}/layer_{i:05d}/kernel", np.float32(i), "float32")
               for i in range(12001)]
    tensors.insert(5000, ("8" + "q" * 600_000, np.float32(-1), "float32"))
    _assert_same_as_tf(tf, tmp_path, tensors)
    blocks = decode_table((tmp_path / "ck" / "m.index").read_bytes())["blocks"]
    assert len(blocks) >= 4
    assert any(len(b["entries"]) == 1 and b["size"] > 600_000 for b in blocks)


def _every_dtype() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    f = rng.standard_normal(6)
    out: dict[str, np.ndarray] = {
        "float16": f.astype(np.float16), "float64": f,
        "float32": np.array([np.nan, -0.0, np.inf, 1e-45, 3.0, -1.0], np.float32),
        "bfloat16": f.astype(ml_dtypes.bfloat16).reshape(2, 3),
        "int8": np.array([-128, 0, 127], np.int8), "int16": np.array([-32768, 32767], np.int16),
        "int32": np.array([[-2**31, 2**31 - 1]], np.int32), "int64": np.array([-2**63, 2**63 - 1], np.int64),
        "uint8": np.array([0, 255], np.uint8), "uint16": np.array([65535], np.uint16),
        "uint32": np.array([2**32 - 1, 1], np.uint32), "uint64": np.array([2**64 - 1], np.uint64),
        "bool": np.array([[True, False], [False, True]]),
        "complex64": np.array([1 + 2j, -3.5j], np.complex64), "complex128": np.array([[1e300 - 1j]], np.complex128),
        "string": np.array([b"", "ü€".encode(), b"z" * 200, b"\x00\xff"], dtype=object),
        "qint8": np.array([-5, 7], np.int8), "quint8": np.array([250], np.uint8),
        "qint16": np.array([-300], np.int16), "quint16": np.array([60000], np.uint16),
        "qint32": np.array([-70000, 5], np.int32),
        "int4": np.array([-8, -1, 0, 7], ml_dtypes.int4), "uint4": np.array([0, 15, 3], ml_dtypes.uint4),
        "int2": np.array([-2, -1, 1], ml_dtypes.int2), "uint2": np.array([0, 3], ml_dtypes.uint2),
        "float4_e2m1fn": np.array([0.5, -6.0], ml_dtypes.float4_e2m1fn),
    }
    for name in ("float8_e5m2", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e4m3b11fnuz", "float8_e5m2fnuz"):
        out[name] = np.array([1.0, -0.5, 2.0], getattr(ml_dtypes, name))
    out["float32"] = np.concatenate([out["float32"], np.array([0x7FC00001], np.uint32).view(np.float32)])
    return out


def test_tf_reads_every_dtype_bit_exact(tf: Any, tmp_path: Any) -> None:
    values = _every_dtype()
    tensors: dict[str, Any] = {}
    for name, arr in values.items():
        dt = dtypes.by_name(name)
        tensors[name] = ArrayTensor(arr, dtype=dt)
        tensors[name + "/scalar"] = ArrayTensor(arr.reshape(-1)[:1].reshape(()), dtype=dt)
        tensors[name + "/empty"] = ArrayTensor(arr.reshape(-1)[:0].reshape(0, 2), dtype=dt)
    prefix = str(tmp_path / "all")
    write_bundle(TensorMap(tensors), prefix)
    reader = tf.train.load_checkpoint(prefix)
    dtype_map = reader.get_variable_to_dtype_map()
    shape_map = reader.get_variable_to_shape_map()
    assert set(shape_map) == set(tensors)
    for key, t in tensors.items():
        assert dtype_map[key].as_datatype_enum == t.dtype.tf, key
        assert tuple(shape_map[key]) == t.shape, key
        got = reader.get_tensor(key)
        want = t.numpy()
        if t.dtype.name == "string":
            assert np.asarray(got, dtype=object).tolist() == want.tolist(), key
        else:
            got = np.asarray(got)
            assert got.shape == want.shape and got.tobytes() == want.tobytes(), key


def test_tf1_saver_and_init_from_checkpoint(tf: Any, tmp_path: Any) -> None:
    kernel = np.arange(6, dtype=np.float32).reshape(3, 2) / 7
    emb = np.array([1.5, -2.0, 0.0078125, 300.0], ml_dtypes.bfloat16)
    prefix = str(tmp_path / "model.ckpt-42")
    write_bundle({"model/dense/kernel": kernel, "model/emb": emb, "global_step": np.int64(42)}, prefix)

    v1 = tf.compat.v1
    with tf.Graph().as_default():
        k = v1.get_variable("model/dense/kernel", shape=[3, 2], dtype=tf.float32, initializer=v1.zeros_initializer())
        e = v1.get_variable("model/emb", shape=[4], dtype=tf.bfloat16, initializer=v1.zeros_initializer())
        s = v1.get_variable("global_step", shape=[], dtype=tf.int64, initializer=v1.zeros_initializer())
        saver = v1.train.Saver()
        with v1.Session() as sess:
            saver.restore(sess, prefix)
            got_k, got_e, got_s = sess.run([k, e, s])
    assert got_k.tobytes() == kernel.tobytes()
    assert np.asarray(got_e).tobytes() == emb.tobytes()
    assert got_s == 42

    with tf.Graph().as_default():
        k = v1.get_variable("renamed/dense/kernel", shape=[3, 2], dtype=tf.float32, initializer=v1.zeros_initializer())
        e = v1.get_variable("renamed/emb", shape=[4], dtype=tf.bfloat16, initializer=v1.zeros_initializer())
        v1.train.init_from_checkpoint(prefix, {"model/": "renamed/"})
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            got_k, got_e = sess.run([k, e])
    assert got_k.tobytes() == kernel.tobytes()
    assert np.asarray(got_e).tobytes() == emb.tobytes()


def test_latest_checkpoint_and_state_file(tf: Any, tmp_path: Any) -> None:
    d = str(tmp_path)
    write_bundle({"a": np.float32(1)}, os.path.join(d, "ckpt-1"))
    assert tf.train.latest_checkpoint(d) == os.path.join(d, "ckpt-1")
    # Another checkpoint in a directory whose state file names ckpt-1: a training run's
    # pointer is never moved unless asked, and the note says so.
    notes = write_bundle({"a": np.float32(3)}, os.path.join(d, "ckpt-2"))
    assert tf.train.latest_checkpoint(d) == os.path.join(d, "ckpt-1")
    assert any("left" in n and "update_state=True" in n for n in notes), notes
    notes = write_bundle({"a": np.float32(2)}, os.path.join(d, "ckpt-2"), update_state=True)
    assert tf.train.latest_checkpoint(d) == os.path.join(d, "ckpt-2")
    assert any("recorded ckpt-2 as the latest" in n for n in notes), notes
    st = tf.train.get_checkpoint_state(d)
    assert list(st.all_model_checkpoint_paths) == [os.path.join(d, "ckpt-1"), os.path.join(d, "ckpt-2")]
    assert tf.train.load_checkpoint(d).get_tensor("a") == 2


def test_tf_reads_sharded(tf: Any, tmp_path: Any) -> None:
    rng = np.random.default_rng(1)
    tensors = {f"v{i}": rng.standard_normal((i + 1) * 10).astype(np.float32) for i in range(8)}
    tensors["names"] = np.array([b"alpha", b"beta"] * 30, dtype=object)
    prefix = str(tmp_path / "sharded")
    write_bundle(tensors, prefix, max_shard_size="256B")
    data_files = [f for f in _files(tmp_path) if ".data-" in f]
    n = len(data_files)
    assert n >= 5 and all(f.endswith(f"-of-{n:05d}") for f in data_files)
    assert BundleHeaderProto.FromString(_index(prefix)[b""]).num_shards == n
    reader = tf.train.load_checkpoint(prefix)
    for name, arr in tensors.items():
        got = reader.get_tensor(name)
        if arr.dtype == object:
            assert list(got) == list(arr)
        else:
            assert got.tobytes() == arr.tobytes()
