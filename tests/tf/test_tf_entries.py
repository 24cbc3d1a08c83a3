"""The hand-written BundleEntryProto/BundleHeaderProto codec against the protobuf runtime.

protobuf (through ckconv's private descriptor pool) is the oracle: every message it
serializes must decode to the same fields, and arbitrary bytes must either decode to what
protobuf parses or be refused by both.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckconv.formats.tf import entries, protos

i32 = st.integers(-2**31, 2**31 - 1)
i64 = st.integers(-2**63, 2**63 - 1)
u32 = st.integers(0, 2**32 - 1)


@st.composite
def entry_protos(draw):
    e = protos.BundleEntryProto(dtype=draw(st.integers(0, 30)), shard_id=draw(i32),
                                offset=draw(i64), size=draw(i64), crc32c=draw(u32))
    if draw(st.booleans()):
        e.shape.SetInParent()
    for d in draw(st.lists(i64, max_size=5)):
        e.shape.dim.add(size=d, name=draw(st.sampled_from(["", "x"])))
    e.shape.unknown_rank = draw(st.booleans())
    for _ in range(draw(st.integers(0, 3))):
        sl = e.slices.add()
        for _ in range(draw(st.integers(0, 3))):
            ext = sl.extent.add(start=draw(i64))
            if draw(st.booleans()):
                ext.length = draw(i64)
    return e


def _as_tuple(e) -> tuple:
    """The fields ckconv reads, from either representation."""
    if isinstance(e, entries.Entry):
        return (e.dtype, tuple(e.shape), e.unknown_rank, e.shard_id, e.offset, e.size, e.crc32c,
                tuple(tuple((x.start, x.length) for x in sl) for sl in e.slices))
    return (e.dtype, tuple(d.size for d in e.shape.dim), e.shape.unknown_rank, e.shard_id,
            e.offset, e.size, e.crc32c,
            tuple(tuple((x.start, x.length if x.HasField("length") else None) for x in sl.extent)
                  for sl in e.slices))


@settings(max_examples=300, deadline=None)
@given(entry_protos())
def test_entries_decode_like_protobuf(e):
    assert _as_tuple(entries.decode_entry(e.SerializeToString())) == _as_tuple(e)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60))
def test_arbitrary_bytes_decode_like_protobuf(raw):
    ref = protos.BundleEntryProto()
    try:
        ref.ParseFromString(raw)
        expected = _as_tuple(ref)
    except Exception:
        expected = None
    try:
        got = _as_tuple(entries.decode_entry(raw))
    except ValueError:
        got = None
    if expected is None:
        assert got is None
    else:
        # protobuf accepts a few encodings we refuse (groups), never the other way round
        assert got in (expected, None)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**31 - 1), i32, i32, st.lists(i32, max_size=4), st.integers(0, 1))
def test_header_decodes_like_protobuf(num_shards, producer, min_consumer, bad, endianness):
    h = protos.BundleHeaderProto(num_shards=num_shards, endianness=endianness)
    h.version.producer = producer
    h.version.min_consumer = min_consumer
    h.version.bad_consumers.extend(bad)
    raw = h.SerializeToString()
    got = entries.decode_header(raw)
    assert (got.num_shards, got.endianness, got.producer, got.min_consumer, got.bad_consumers) == \
        (num_shards, endianness, producer, min_consumer, bad)


def test_unpacked_bad_consumers_decode_like_protobuf():
    raw = b"\x08\x01\x1a\x04\x18\x01\x18\x02"  # version { bad_consumers: 1, 2 } unpacked
    ref = protos.BundleHeaderProto()
    ref.ParseFromString(raw)
    assert entries.decode_header(raw).bad_consumers == list(ref.version.bad_consumers) == [1, 2]


@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (2048, 2560), (1,) * 20])
@pytest.mark.parametrize("crc", [0, 1, 0xA282EAD8, 0xFFFFFFFF])
def test_entries_encode_like_protobuf(shape, crc):
    ref = protos.BundleEntryProto(dtype=1, shard_id=3, offset=2**40, size=12, crc32c=crc)
    ref.shape.SetInParent()
    for d in shape:
        ref.shape.dim.add(size=d)
    assert entries.encode_entry(1, shape, 3, 2**40, 12, crc) == ref.SerializeToString(deterministic=True)
    header = protos.BundleHeaderProto(num_shards=5)
    header.version.producer = 1
    assert entries.encode_header(5, 1) == header.SerializeToString(deterministic=True)


@pytest.mark.parametrize("raw", [b"\x08", b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f",
                                 b"\x12\x05\x12\x00", b"\x35\x01\x02", b"\x00\x01", b"\x0b"])
def test_bad_bytes_are_refused(raw):
    with pytest.raises(ValueError):
        entries.decode_entry(raw)
