"""Where transforms read their input from, and how their results are materialised.

A transform's source is usually a tensor that lies in a file unchanged (``file_region()``).
Then nothing is read ahead: a transpose maps the whole source (it needs all of it for any
block of output), an elementwise cast reads each block's source range into a buffer that
stays in the CPU cache, and the source's checksum (TF) is computed on the way and checked
once every block is done. Any other source is materialised with ``numpy()`` first.
"""

from __future__ import annotations

import mmap
import os
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

from ..dtypes import DType
from ..io.blocks import fill
from ..io.checksums import CRC32C, combine, crc32c
from ..io.streaming import SMALL

if TYPE_CHECKING:
    from ..io.streaming import FileRegion
    from ..tensor import Tensor


def raw_array(arr: np.ndarray, dtype: DType) -> np.ndarray:
    """``arr``'s bits in C order as unsigned integers of the element's size (copies move
    bits, never values: NaN payloads and -0.0 survive any dtype)."""
    from .kernels import raw_dtype

    shape = arr.shape
    arr = np.ascontiguousarray(arr)
    return arr.reshape(-1).view(raw_dtype(dtype.itemsize)).reshape(shape)


def computed(t: "Tensor", fallback: Callable[[], np.ndarray]) -> np.ndarray:
    """``t``'s values, computed block by block on two threads into a new array; by
    ``fallback`` for what has no plan (strings, 0-d and empty tensors)."""
    plan = t.block_plan()
    if plan is None:
        return fallback()
    out = np.empty(t.shape, dtype=t.dtype.numpy)
    if out.nbytes:
        fill(plan, memoryview(out.reshape(-1).view(np.uint8)))
    return out


class WholeSource:
    """All of a tensor's bits as an array, mapped from its file when they lie there."""

    def __init__(self, array: np.ndarray, check: Optional[Callable[[], None]] = None,
                 mapped: Optional[mmap.mmap] = None):
        self.array = array
        self._check = check
        self._mapped = mapped

    def check(self) -> None:
        """Verify the source's checksum (TF); any time, once is enough."""
        if self._check is not None:
            self._check()

    def close(self) -> None:
        mapped, self._mapped = self._mapped, None
        self.array = np.empty(0)
        self._check = None
        if mapped is not None:
            try:
                mapped.close()
            except BufferError:  # a view is still alive somewhere: let GC unmap it
                pass


def whole_source(t: "Tensor") -> WholeSource:
    from .kernels import raw_dtype

    region = t.file_region()
    if region is None or region.size <= SMALL or region.size != t.nbytes:
        return WholeSource(raw_array(t.numpy(), t.dtype))
    start = region.offset - region.offset % mmap.ALLOCATIONGRANULARITY
    skip = region.offset - start
    mapped = mmap.mmap(region.fd, skip + region.size, offset=start, prot=mmap.PROT_READ,
                       flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
    array = np.frombuffer(mapped, dtype=raw_dtype(t.dtype.itemsize), count=t.size,
                          offset=skip).reshape(t.shape)
    check = None
    if region.check is not None:
        verify = region.check

        def check() -> None:
            with memoryview(mapped) as view:
                verify(crc32c(view[skip:skip + region.size]))

    return WholeSource(array, check, mapped)


class Elements:
    """A tensor's elements read range by range (elementwise transforms)."""

    def __init__(self, t: "Tensor"):
        from .kernels import raw_dtype

        self.itemsize = t.dtype.itemsize
        self.raw = raw_dtype(self.itemsize)
        region = t.file_region()
        self.region: Optional[FileRegion] = region if (
            region is not None and region.size == t.nbytes and region.size > SMALL) else None
        self.flat = None if self.region is not None else raw_array(t.numpy(), t.dtype).reshape(-1)
        self._sums: dict[int, tuple[int, int]] = {}  # first byte -> (crc32c, length)

    def read(self, first: int, stop: int, into: bytearray) -> np.ndarray:
        """Elements ``first`` to ``stop`` (raw bits), read into ``into`` if from a file."""
        if self.flat is not None:
            return self.flat[first:stop]
        region = self.region
        assert region is not None
        nbytes = (stop - first) * self.itemsize
        view = memoryview(into)[:nbytes]
        pos, offset = 0, region.offset + first * self.itemsize
        while pos < nbytes:
            n = os.preadv(region.fd, [view[pos:]], offset + pos)
            if n <= 0:
                what = f"data file is truncated ({nbytes - pos} bytes missing at {offset + pos})"
                raise region.corrupt(what) if region.corrupt else EOFError(what)
            pos += n
        if region.check is not None:
            self._sums[first * self.itemsize] = (crc32c(view), nbytes)
        return np.frombuffer(into, dtype=self.raw, count=stop - first)

    def finish(self) -> None:
        region = self.region
        if region is None or region.check is None:
            return
        crc, pos = 0, 0
        for start in sorted(self._sums):
            part, length = self._sums[start]
            if start != pos:
                raise AssertionError("a block of the source was not read")
            crc = combine(crc, part, length, CRC32C)
            pos += length
        region.check(crc)

    def close(self) -> None:
        self._sums.clear()
