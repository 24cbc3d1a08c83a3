"""TensorFlow's masking of CRC-32C values, as stored in tables and bundle entries.

The checksum itself is the core's (:func:`ckconv.io.checksums.crc32c`); TF stores it
masked so that CRCs of data that itself holds CRCs stay strong.
"""

from __future__ import annotations

from ...io.checksums import crc32c

__all__ = ["crc32c", "mask", "unmask"]

_MASK_DELTA = 0xA282EAD8


def mask(crc: int) -> int:
    """Rotate right by 15 bits and add a constant."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF
