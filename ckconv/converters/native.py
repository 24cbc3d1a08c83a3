"""ckconv's compiled kernels (``_native.c`` beside this module), when they were built.

They are optional: a build without a C compiler leaves them out, and numpy computes the
same bytes (:mod:`ckconv.converters.kernels`). With them, a transpose or a float cast
neither imports numpy nor walks the data more than once. ``CKCONV_NATIVE=0`` in the
environment turns them off (the tests run both paths and compare them).
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Optional


def _load() -> Optional[ModuleType]:
    if os.environ.get("CKCONV_NATIVE", "1") == "0":
        return None
    try:
        from . import _native
    except ImportError:
        return None
    return _native


#: The compiled module, or None; read at call time, so tests can switch it off.
NATIVE: Optional[ModuleType] = _load()


def cast_name(source: str, target: str) -> Optional[str]:
    """The compiled kernel's name for a cast between two dtypes, if there is one."""
    if NATIVE is None:
        return None
    name = f"{source}>{target}"
    return name if name in NATIVE.casts() else None


def transpose_cut(axes: tuple[int, ...]) -> Optional[int]:
    """``cut`` when the permutation moves the axes from ``cut`` on in front of the others
    ([a, b, c] -> [c, a, b] and the like): the same bytes as the 2-D transpose of a
    (product of the first ``cut`` sizes) x (product of the rest) matrix."""
    n = len(axes)
    for cut in range(1, n):
        if axes == tuple(range(cut, n)) + tuple(range(cut)):
            return cut
    return None
