"""CRC-32C (Castagnoli) with TensorFlow's masking, as stored in tables and bundle entries."""

from __future__ import annotations

import crc32c as _crc32c

_MASK_DELTA = 0xA282EAD8


def crc32c(data, crc: int = 0) -> int:
    """CRC-32C of ``data``, continuing from ``crc`` (the CRC of everything before it)."""
    return _crc32c.crc32c(data, crc)


def mask(crc: int) -> int:
    """Rotate right by 15 bits and add a constant, so CRCs of CRC-bearing data stay strong."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF
