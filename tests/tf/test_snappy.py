"""ckconv's own Snappy block decoder, against cramjam's compressor as an independent oracle."""

from __future__ import annotations

import os
import random
import struct

import pytest

from ckconv.errors import CorruptCheckpointError
from ckconv.formats.tf import snappy
from ckconv.formats.tf.crc import crc32c, mask
from ckconv.formats.tf.table import Table
from ckconv.formats.tf.varint import encode as varint


def _cases() -> list[bytes]:
    rnd = random.Random(7)
    out = [b"", b"a", b"ab" * 40, bytes(range(256)) * 3, os.urandom(70000) * 3]
    for n in (59, 60, 61, 255, 256, 257, 65535, 65536, 65537):
        out.append(bytes(rnd.randrange(256) for _ in range(n)))  # literal length widths
    for _ in range(200):
        n = rnd.randrange(1, 3000)
        unit = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 20)))
        out.append((unit * (n // len(unit) + 1))[:n])
    return out


def test_cramjam_output_decodes_bit_exact():
    cramjam = pytest.importorskip("cramjam")
    for data in _cases():
        packed = bytes(cramjam.snappy.compress_raw(data))
        assert snappy.decompress(packed, 22 * len(packed)) == data


def _literal(data: bytes) -> bytes:
    n = len(data) - 1
    if n < 60:
        return bytes([n << 2]) + data
    width = (n.bit_length() + 7) // 8
    return bytes([(59 + width) << 2]) + n.to_bytes(width, "little") + data


def test_every_element_kind_by_hand():
    # literal "abcdefgh", then: 1-byte-offset copy (len 4, off 8), 2-byte (len 3, off 2,
    # overlapping), 4-byte (len 5, off 12)
    body = _literal(b"abcdefgh")
    body += bytes([0b001 | (0 << 2) | (0 << 5), 8])               # "abcd"
    body += bytes([0b10 | (2 << 2)]) + struct.pack("<H", 2)         # "cdc"
    body += bytes([0b11 | (4 << 2)]) + struct.pack("<I", 12)        # "defgh"
    want = b"abcdefgh" + b"abcd" + b"cdc" + b"defgh"
    # offsets are counted back from the current end: check against a plain model
    out = bytearray(b"abcdefgh")
    for off, n in ((8, 4), (2, 3), (12, 5)):
        for _ in range(n):
            out.append(out[-off])
    assert bytes(out) == want
    assert snappy.decompress(varint(len(want)) + body, 1000) == want
    long = bytes(range(200)) * 400  # 80,000 bytes: a 3-byte literal length
    assert snappy.decompress(varint(len(long)) + _literal(long), 10 ** 6) == long


@pytest.mark.parametrize("blob, match", [
    (b"", "preamble"),
    (b"\xff\xff\xff\xff\xff\x01", "preamble"),
    (varint(4) + bytes([3 << 2]) + b"ab", "literal of 4 bytes runs past"),
    (varint(4) + bytes([61 << 2]) + b"\x01", "literal length runs past"),
    (varint(2) + _literal(b"abcd"), "output overrun"),
    (varint(6) + _literal(b"ab") + bytes([0b10 | (3 << 2)]) + b"\x03\x00", "before the start"),
    (varint(6) + _literal(b"ab") + bytes([0b10 | (3 << 2)]) + b"\x00\x00", "before the start"),
    (varint(6) + _literal(b"ab") + bytes([0b10 | (9 << 2)]) + b"\x01\x00", "output overrun"),
    (varint(6) + _literal(b"ab") + bytes([0b11]) + b"\x01\x00", "copy offset runs past"),
    (varint(6) + _literal(b"ab") + bytes([0b01]), "copy offset runs past"),
    (varint(9) + _literal(b"ab"), "decompressed to 2 bytes"),
    (varint(10 ** 6) + _literal(b"ab"), "more than"),
])
def test_damaged_blocks_are_refused(blob, match):
    with pytest.raises(CorruptCheckpointError, match=match):
        snappy.decompress(blob, 1000)


def _one_block_table(contents: bytes, block_type: int) -> bytes:
    def block(body: bytes, t: int) -> bytes:
        return body + bytes([t]) + struct.pack("<I", mask(crc32c(bytes([t]), crc32c(body))))

    empty = b"\x00\x00\x00\x00\x01\x00\x00\x00"
    data = block(contents, block_type)
    meta = block(empty, 0)
    handle = varint(0) + varint(len(contents))
    index_body = b"\x00\x01" + varint(len(handle)) + b"x" + handle + empty
    index = block(index_body, 0)
    footer = (varint(len(data)) + varint(len(empty)) + varint(len(data) + len(meta))
              + varint(len(index_body))).ljust(40, b"\0") + bytes.fromhex("57fb808b247547db")
    return data + meta + index + footer


def test_table_names_file_and_block_of_a_bad_snappy_block():
    entries = b"\x00\x01\x02k" + b"vv" + b"\x00\x00\x00\x00\x01\x00\x00\x00"
    good = varint(len(entries)) + _literal(entries)
    assert list(Table("t.index", _one_block_table(good, 1)).items()) == [(b"k", b"vv")]
    bad = varint(len(entries)) + _literal(entries[:5]) + bytes([0b10 | (3 << 2)]) + b"\x09\x00"
    with pytest.raises(CorruptCheckpointError,
                       match=r"^t\.index: corrupted Snappy-compressed data block at offset 0 "
                             r"\(copy at byte \d+ reaches 9 bytes back"):
        list(Table("t.index", _one_block_table(bad, 1)).items())
