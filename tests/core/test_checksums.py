"""ckconv.io.checksums (CRC-32C, CRC-32, combine) against zlib's CRC-32 and the crc32c package (the oracles)."""

from __future__ import annotations

import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from ckconv.io.checksums import CRC32, CRC32C, combine
from ckconv.io.checksums import crc32c


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.binary(max_size=3000))
def test_combine_equals_the_crc_of_the_concatenation(a, b):
    assert combine(zlib.crc32(a), zlib.crc32(b), len(b), CRC32) == zlib.crc32(a + b)
    assert combine(crc32c(a), crc32c(b), len(b), CRC32C) == crc32c(a + b)


def test_long_second_part():
    a, b = b"head", bytes(range(256)) * 40000  # 10 MB: a long shift
    assert combine(zlib.crc32(a), zlib.crc32(b), len(b), CRC32) == zlib.crc32(a + b)
    assert combine(crc32c(a), crc32c(b), len(b), CRC32C) == crc32c(a + b)
