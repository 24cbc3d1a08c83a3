"""Checksums of the core I/O layer: CRC-32C, CRC-32, and joining CRCs of adjacent ranges.

CRC-32C (Castagnoli) guards TF bundles and SSTables, CRC-32 (zlib's) guards zip members.
:func:`combine` gives crc(A + B) from crc(A), crc(B) and len(B), which lets two threads
checksum different parts of one tensor (streaming.copy_tensor). A CRC is
linear over GF(2): appending B to A multiplies A's CRC by x^(8*len(B)) modulo the
polynomial, then adds B's CRC (the initial and final inversions cancel out). The power of
x is built from the squares x^(2^k) mod P, so a combine costs ~O(log len) small products.
Works for any reflected 32-bit CRC: zlib's CRC-32 and the CRC-32C of TF checkpoints.
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from typing import Any


def _crc32c_extension() -> Any:
    """The crc32c package's compiled module, loaded without the package's ``__init__``:
    that asks importlib.metadata for its own version, which imports the email package
    and costs every conversion more start-up than all of ckconv's own modules. Falls back
    to the ordinary import for any other layout of the package."""
    import importlib.machinery
    import importlib.util
    import os
    import sys

    try:
        spec = importlib.util.find_spec("crc32c")
        if spec is not None and spec.origin and "crc32c._crc32c" not in sys.modules:
            folder = os.path.dirname(spec.origin)
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                path = os.path.join(folder, "_crc32c" + suffix)
                if os.path.exists(path):
                    loader = importlib.machinery.ExtensionFileLoader("crc32c._crc32c", path)
                    ext_spec = importlib.util.spec_from_file_location("crc32c._crc32c", path,
                                                                      loader=loader)
                    if ext_spec is not None:
                        module = importlib.util.module_from_spec(ext_spec)
                        loader.exec_module(module)
                        return module
    except (ImportError, OSError):
        pass
    import crc32c

    return crc32c


_crc32c_package = _crc32c_extension()

CRC32 = 0xEDB88320   # zlib / zip, bit-reflected
CRC32C = 0x82F63B78  # Castagnoli (TF, iSCSI), bit-reflected
_TOP = 1 << 31       # x^0 in the reflected representation


def crc32c(data: Any, crc: int = 0) -> int:
    """CRC-32C of ``data``, continuing from ``crc`` (the CRC of everything before it)."""
    return _crc32c_package.crc32c(data, crc)


def crc32(data: Any, crc: int = 0) -> int:
    """zlib's CRC-32 of ``data``, continuing from ``crc``."""
    return zlib.crc32(data, crc)


#: The checksum function for each polynomial, for code that is given a polynomial.
FUNCTIONS = {CRC32: crc32, CRC32C: crc32c}


def _multiply(a: int, b: int, poly: int) -> int:
    """a * b modulo the polynomial, both operands reflected."""
    product = 0
    bit = _TOP
    while a:
        if a & bit:
            product ^= b
            a ^= bit
        bit >>= 1
        b = (b >> 1) ^ poly if b & 1 else b >> 1
    return product


@lru_cache(maxsize=None)
def _squares(poly: int) -> tuple[int, ...]:
    """x^(2^k) mod P for k = 0..63."""
    out = [_TOP >> 1]  # x^1
    for _ in range(63):
        out.append(_multiply(out[-1], out[-1], poly))
    return tuple(out)


def combine(crc_a: int, crc_b: int, len_b: int, poly: int) -> int:
    """The CRC of A followed by B, given crc(A), crc(B) and the byte length of B."""
    if len_b <= 0:
        return crc_a
    squares = _squares(poly)
    shift = _TOP
    bits = len_b * 8
    k = 0
    while bits:
        if bits & 1:
            shift = _multiply(squares[k], shift, poly)
        bits >>= 1
        k += 1
    return _multiply(shift, crc_a, poly) ^ crc_b
