"""Layouts TF 2.21 on x86 never writes but a reader must handle: big-endian bundles and
Snappy-compressed index blocks. Each is derived here from a real TF-made fixture, and the
expected values are what TF's own reader returned for the original."""

from __future__ import annotations

import os
import shutil
import struct

import numpy as np
import pytest

import ckconv
from ckconv.formats.tf import protos
from ckconv.formats.tf.crc import crc32c, mask
from ckconv.formats.tf.table import Table
from ckconv.formats.tf.table_writer import TableWriter
from tests.helpers import assert_bit_exact, expected_array, fixture_prefix, manifest


def _swap_elements(raw: bytes, itemsize: int, is_complex: bool) -> bytes:
    if itemsize == 1:
        return raw
    width = itemsize // 2 if is_complex else itemsize
    return np.frombuffer(raw, dtype=f"<u{width}").byteswap().tobytes()


def _big_endian_string_payload(values: list[bytes]) -> tuple[bytes, int]:
    """A string tensor as a big-endian host's TF writes it (lengths checksummed as u32be)."""
    lengths = b"".join(_varint(len(v)) for v in values)
    len_crc = 0
    for v in values:
        len_crc = crc32c(struct.pack(">I", len(v)), len_crc)
    checksum = struct.pack(">I", mask(len_crc))
    crc = crc32c(checksum, len_crc)
    for v in values:
        crc = crc32c(v, crc)
    return lengths + checksum + b"".join(values), crc


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _rewrite_big_endian(src_prefix: str, dst_prefix: str) -> None:
    items = list(Table.open(src_prefix + ".index").items())
    header = protos.BundleHeaderProto()
    header.ParseFromString(items[0][1])
    header.endianness = protos.BIG
    src_data = open(src_prefix + ".data-00000-of-00001", "rb").read()
    out_data = bytearray()
    entries = [(b"", header.SerializeToString())]
    for key, value in items[1:]:
        e = protos.BundleEntryProto()
        e.ParseFromString(value)
        raw = src_data[e.offset:e.offset + e.size]
        dt = ckconv.dtypes.BY_TF[e.dtype]
        if dt.name == "string":
            values = ckconv.load(src_prefix)[key.decode()].numpy().reshape(-1).tolist()
            raw, crc = _big_endian_string_payload(values)
        else:
            raw = _swap_elements(raw, dt.itemsize, dt.numpy.kind == "c")
            crc = crc32c(raw)
        e.offset, e.size, e.crc32c = len(out_data), len(raw), mask(crc)
        out_data += raw
        entries.append((key, e.SerializeToString()))
    with open(dst_prefix + ".data-00000-of-00001", "wb") as f:
        f.write(out_data)
    with open(dst_prefix + ".index", "wb") as f:
        w = TableWriter(f)
        for k, v in entries:
            w.add(k, v)
        w.finish()


@pytest.mark.parametrize("fixture", ["dtypes", "strings"])
def test_big_endian_bundle_is_swapped(tmp_path, fixture):
    dst = str(tmp_path / "be")
    _rewrite_big_endian(fixture_prefix(fixture), dst)
    data = open(dst + ".data-00000-of-00001", "rb").read()
    assert data != open(fixture_prefix(fixture) + ".data-00000-of-00001", "rb").read()
    tmap = ckconv.load(dst)
    for key, entry in manifest(fixture)["tensors"].items():
        assert_bit_exact(tmap[key].numpy(), expected_array(entry), key)
        if not tmap[key].dtype.is_variable_length:
            assert b"".join(bytes(c) for c in tmap[key].iter_bytes()) == \
                expected_array(entry).tobytes(), key


class _SnappyTableWriter(TableWriter):
    """Stores every block Snappy-compressed (type 1), as a generic LevelDB writer may."""

    def _write_block(self, contents: bytes) -> bytes:
        import cramjam

        from ckconv.formats.tf.table_writer import encode_handle

        packed = bytes(cramjam.snappy.compress_raw(contents))
        trailer = bytes([1]) + struct.pack("<I", mask(crc32c(bytes([1]), crc32c(packed))))
        self._f.write(packed + trailer)
        handle = encode_handle(self._offset, len(packed))
        self._offset += len(packed) + 5
        return handle


def test_snappy_compressed_index_blocks(tmp_path):
    pytest.importorskip("cramjam")
    src = fixture_prefix("dtypes")
    dst = str(tmp_path / "snappy")
    shutil.copy(src + ".data-00000-of-00001", dst + ".data-00000-of-00001")
    with open(dst + ".index", "wb") as f:
        w = _SnappyTableWriter(f)
        for k, v in Table.open(src + ".index").items():
            w.add(k, v)
        w.finish()
    assert open(dst + ".index", "rb").read() != open(src + ".index", "rb").read()
    tmap = ckconv.load(dst)
    for key, entry in manifest("dtypes")["tensors"].items():
        assert_bit_exact(tmap[key].numpy(), expected_array(entry), key)


def test_unknown_block_type_is_corruption(tmp_path):
    src = fixture_prefix("strings")
    dst = str(tmp_path / "bad")
    shutil.copy(src + ".data-00000-of-00001", dst + ".data-00000-of-00001")
    raw = bytearray(open(src + ".index", "rb").read())
    # The first data block's trailer follows its contents: find it through the footer's index.
    first_size = os.path.getsize(src + ".index")
    table = Table.open(src + ".index")
    off, size = 0, None
    for _k, handle in table._entries(table.read_block(*table._footer_handles(), "index"), "index"):
        from ckconv.formats.tf import varint
        off, pos = varint.decode(handle, 0, len(handle))
        size, _ = varint.decode(handle, pos, len(handle))
        break
    raw[off + size] = 7
    raw[off + size + 1:off + size + 5] = struct.pack("<I", mask(crc32c(bytes([7]), crc32c(bytes(raw[off:off + size])))))
    open(dst + ".index", "wb").write(raw)
    assert len(raw) == first_size
    with pytest.raises(ckconv.CorruptCheckpointError, match="bad block type 7"):
        ckconv.load(dst)
