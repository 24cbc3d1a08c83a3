"""CRC-32C (Castagnoli) with TensorFlow's masking, as stored in tables and bundle entries."""

from __future__ import annotations

from typing import Any, Callable

_MASK_DELTA = 0xA282EAD8


def _load_crc32c() -> Callable[..., int]:
    """The hardware-accelerated CRC-32C function of the ``crc32c`` package.

    The package's ``__init__`` imports ``importlib.metadata`` only to set ``__version__``,
    which costs ~40 ms, more than the rest of ckconv's start-up; so its compiled core is
    loaded directly when it can be found, and the package is imported normally otherwise.
    """
    import importlib.machinery
    import importlib.util
    import os

    spec = importlib.util.find_spec("crc32c")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, "_crc32c" + suffix)
            if os.path.isfile(path):
                core_spec = importlib.util.spec_from_file_location("crc32c._crc32c", path)
                if core_spec and core_spec.loader:
                    module = importlib.util.module_from_spec(core_spec)
                    core_spec.loader.exec_module(module)
                    return module.crc32c
    import crc32c as package

    return package.crc32c


_crc32c: Callable[..., int] = _load_crc32c()


def crc32c(data: Any, crc: int = 0) -> int:
    """CRC-32C of ``data``, continuing from ``crc`` (the CRC of everything before it)."""
    return _crc32c(data, crc)


def mask(crc: int) -> int:
    """Rotate right by 15 bits and add a constant, so CRCs of CRC-bearing data stay strong."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF
