"""Where transforms read their input from, and how their results are materialised.

A transform's source is usually a tensor that lies in a file unchanged (``file_region()``).
Then nothing is read ahead: a transpose maps the whole source (it needs all of it for any
block of output), an elementwise cast reads each block's source range into a buffer that
stays in the CPU cache, and the source's checksum (TF) is computed on the way and checked
once every block is done. Any other source is materialised with ``numpy()`` first.

numpy is imported only where an array is made: the compiled kernels
(:mod:`ckconv.converters.native`) take the mapped bytes as they are.
"""

from __future__ import annotations

import mmap
import os
from typing import TYPE_CHECKING, Callable, Optional

from ..dtypes import DType
from ..io.blocks import fill
from ..io.checksums import CRC32C, combine, crc32c
from ..io.streaming import SMALL

if TYPE_CHECKING:
    import numpy as np

    from ..io.streaming import FileRegion
    from ..tensor import Tensor


def raw_array(arr: np.ndarray, dtype: DType) -> np.ndarray:
    """``arr``'s bits in C order as unsigned integers of the element's size (copies move
    bits, never values: NaN payloads and -0.0 survive any dtype)."""
    import numpy as np

    from .kernels import raw_dtype

    shape = arr.shape
    arr = np.ascontiguousarray(arr)
    return arr.reshape(-1).view(raw_dtype(dtype.itemsize)).reshape(shape)


def computed(t: "Tensor", fallback: Callable[[], np.ndarray]) -> np.ndarray:
    """``t``'s values, computed block by block on two threads into a new array; by
    ``fallback`` for what has no plan (strings, 0-d and empty tensors)."""
    import numpy as np

    plan = t.block_plan()
    if plan is None:
        return fallback()
    out = np.empty(t.shape, dtype=t.dtype.numpy)
    if out.nbytes:
        fill(plan, memoryview(out.reshape(-1).view(np.uint8)))
    return out


class WholeSource:
    """All of a tensor's bits, mapped from its file when they lie there: as raw bytes
    (``view``, for the compiled kernels) or as an array of unsigned integers of the
    element's size in the tensor's shape (``array``, for numpy; made on first use)."""

    def __init__(self, t: "Tensor", view: memoryview, check: Optional[Callable[[], None]] = None,
                 mapped: Optional[mmap.mmap] = None, array: "Optional[np.ndarray]" = None):
        self.view = view
        self._tensor = t
        self._array = array
        self._check = check
        self._mapped = mapped

    @property
    def array(self) -> "np.ndarray":
        if self._array is None:
            import numpy as np

            from .kernels import raw_dtype

            t = self._tensor
            self._array = np.frombuffer(self.view, dtype=raw_dtype(t.dtype.itemsize),
                                        count=t.size).reshape(t.shape)
        return self._array

    def check(self) -> None:
        """Verify the source's checksum (TF); any time, once is enough."""
        if self._check is not None:
            self._check()

    def close(self) -> None:
        mapped, self._mapped = self._mapped, None
        self._array = None
        self._check = None
        if mapped is not None:
            _unmap(mapped, self.view)


def _map(region: "FileRegion") -> "tuple[mmap.mmap, memoryview]":
    """A read-only mapping of ``region``'s file around it, and a view of the region's bytes.

    Not populated up front: pages are mapped as the block threads first touch them (the
    kernel maps their neighbours along), which spreads that work over both threads."""
    start = region.offset - region.offset % mmap.ALLOCATIONGRANULARITY
    skip = region.offset - start
    mapped = mmap.mmap(region.fd, skip + region.size, offset=start, prot=mmap.PROT_READ,
                       flags=mmap.MAP_SHARED)
    return mapped, memoryview(mapped)[skip:skip + region.size]


def _unmap(mapped: mmap.mmap, view: memoryview) -> None:
    try:
        view.release()
        mapped.close()
    except BufferError:  # a view is still alive somewhere: let GC unmap it
        pass


def whole_source(t: "Tensor") -> WholeSource:
    region = t.file_region()
    if region is None or region.size <= SMALL or region.size != t.nbytes:
        arr = raw_array(t.numpy(), t.dtype)
        return WholeSource(t, memoryview(arr.reshape(-1).view("u1")), array=arr)
    mapped, view = _map(region)
    check = None
    if region.check is not None:
        verify = region.check

        def check() -> None:
            verify(crc32c(view))

    return WholeSource(t, view, check, mapped)


class Elements:
    """A tensor's elements read range by range (elementwise transforms).

    From a file, the range is read with ``preadv`` into a buffer that stays in the CPU
    cache (``read``: numpy's kernels make several passes over it), or taken straight from
    a mapping of the tensor (``read_bytes`` with ``mapped=True``: the compiled kernels make
    one pass, so copying the bytes first would only double the memory traffic). Either
    way the range's CRC-32C is taken on the way, for :meth:`finish` to verify.
    """

    def __init__(self, t: "Tensor", mapped: bool = False):
        self.itemsize = t.dtype.itemsize
        region = t.file_region()
        self.region: Optional[FileRegion] = region if (
            region is not None and region.size == t.nbytes and region.size > SMALL) else None
        self.flat = None if self.region is not None else raw_array(t.numpy(), t.dtype).reshape(-1)
        self._sums: dict[int, tuple[int, int]] = {}  # first byte -> (crc32c, length)
        self._map: "Optional[tuple[mmap.mmap, memoryview]]" = None
        if mapped and self.region is not None:
            self._map = _map(self.region)

    def read(self, first: int, stop: int, into: bytearray) -> "np.ndarray":
        """Elements ``first`` to ``stop`` (raw bits), read into ``into`` if from a file."""
        if self.flat is not None:
            return self.flat[first:stop]
        import numpy as np

        from .kernels import raw_dtype

        self.read_bytes(first, stop, into)
        return np.frombuffer(into, dtype=raw_dtype(self.itemsize), count=stop - first)

    def read_bytes(self, first: int, stop: int, into: bytearray) -> memoryview:
        """The bytes of elements ``first`` to ``stop``, read into ``into`` if from a file."""
        if self.flat is not None:
            return memoryview(self.flat[first:stop].view("u1"))
        region = self.region
        assert region is not None
        nbytes = (stop - first) * self.itemsize
        if self._map is not None:
            view = self._map[1][first * self.itemsize:first * self.itemsize + nbytes]
            if region.check is not None:
                self._sums[first * self.itemsize] = (crc32c(view), nbytes)
            return view
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
        return view

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
        if self._map is not None:
            mapped, self._map = self._map, None
            _unmap(*mapped)
