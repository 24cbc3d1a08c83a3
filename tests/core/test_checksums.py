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


def test_crc32c_without_the_package_init():
    """The compiled module is loaded directly (the package's __init__ imports
    importlib.metadata); it must be the real one: RFC 3720's check value."""
    import subprocess
    import sys

    from ckconv.io import checksums

    assert checksums.crc32c(b"123456789") == 0xE3069283
    assert checksums.crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros
    code = "import sys, ckconv.io.checksums; print('importlib.metadata' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
