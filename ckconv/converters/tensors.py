"""Lazy layout transforms: each wraps a Tensor and applies when the values are read.

Nothing here reads data up front: shapes and dtypes are computed from the wrapped
tensor's metadata, so a mapped 50 GB checkpoint costs nothing until a writer streams it.
Each transform describes its bytes as a :class:`~ckconv.io.blocks.BlockPlan`: writers compute
and write the blocks on two threads, ``numpy()`` and ``torch()`` compute them into the
result's memory (:func:`ckconv.converters.sources.computed`).

Transposes and float casts run in the compiled kernels when they were built
(:mod:`ckconv.converters.native`), without importing numpy; everything else, and those
two without the kernels, in numpy (:mod:`ckconv.converters.kernels`), imported where an
array is made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Optional

from ..dtypes import DType
from ..io.blocks import BlockPlan, borrow, even_blocks, give_back, offsets_of
from ..tensor import CHUNK, Tensor
from . import native
from .sources import Elements, WholeSource, computed, whole_source

if TYPE_CHECKING:
    import numpy as np


class PermutedTensor(Tensor):
    """``base`` with its axes reordered (``axes[i]`` is the source axis of output axis i)."""

    def __init__(self, base: Tensor, axes: Sequence[int]):
        self.base = base
        self.axes = tuple(axes)
        super().__init__(base.dtype, tuple(base.shape[a] for a in self.axes))

    def _load(self) -> "np.ndarray":
        import numpy as np

        return computed(self, lambda: np.ascontiguousarray(self.base.numpy().transpose(self.axes)))

    def block_plan(self) -> Optional[BlockPlan]:
        if len(self.shape) < 2 or self.nbytes == 0 or self.dtype.is_variable_length:
            return None
        source = whole_source(self.base)
        compiled, cut = native.NATIVE, native.transpose_cut(self.axes)
        if compiled is not None and cut is not None:
            # The 2-D transpose of a rows x cols matrix: blocks of whole rows of its output.
            item = self.dtype.itemsize
            rows = _product(self.base.shape[:cut])
            cols = self.size // rows
            sizes = even_blocks(self.nbytes, rows * item)
            starts = offsets_of(sizes)

            def fill_compiled(i: int, view: memoryview) -> None:
                compiled.transpose(source.view, view, rows, cols, item, starts[i] // (rows * item))

            return BlockPlan(sizes, fill_compiled, close=source.close, check=source.check)
        from . import kernels
        import numpy as np

        out_rows = self.shape[1:]
        row = self.nbytes // self.shape[0]
        raw = kernels.raw_dtype(self.dtype.itemsize)
        sizes = even_blocks(self.nbytes, row)
        starts = offsets_of(sizes)

        def fill(i: int, view: memoryview) -> None:
            out = np.frombuffer(view, dtype=raw).reshape((-1,) + out_rows)
            kernels.permute_rows(source.array, self.axes, out, starts[i] // row)

        return BlockPlan(sizes, fill, close=source.close, check=source.check)

    def describe(self) -> str:
        return f"permute{list(self.axes)}({self.base.describe()})"


class ReshapedTensor(Tensor):
    """``base`` with a new shape of the same size; C-order bytes are unchanged."""

    def __init__(self, base: Tensor, shape: Sequence[int]):
        self.base = base
        super().__init__(base.dtype, tuple(shape))

    def _load(self) -> "np.ndarray":
        return self.base.numpy().reshape(self.shape)

    def iter_bytes(self, chunk: int = CHUNK) -> Iterator[memoryview]:
        # A reshape never moves bytes, so the base can stream without a copy.
        return self.base.iter_bytes(chunk)

    def file_region(self):  # type: ignore[no-untyped-def]
        return self.base.file_region()  # the same bytes: copied by the kernel, mapped by torch

    def block_plan(self) -> Optional[BlockPlan]:
        return self.base.block_plan()

    def describe(self) -> str:
        return f"reshape{list(self.shape)}({self.base.describe()})"


class CastTensor(Tensor):
    """``base`` converted to another dtype (numpy/ml_dtypes rounding: nearest even)."""

    def __init__(self, base: Tensor, dtype: DType):
        self.base = base
        super().__init__(dtype, base.shape)

    def _load(self) -> "np.ndarray":
        return computed(self, lambda: self.base.numpy().astype(self.dtype.numpy))

    def block_plan(self) -> Optional[BlockPlan]:
        if self.nbytes == 0 or self.dtype.is_variable_length or self.base.dtype.is_variable_length:
            return None
        name = native.cast_name(self.base.dtype.name, self.dtype.name)
        if name is not None:
            return self._compiled_plan(name)
        from . import kernels
        import numpy as np

        pair = (self.base.dtype.name, self.dtype.name)
        kernel = kernels.FAST.get(pair)
        scratch = kernels.scratch_words(*pair)
        src_raw, out_raw = kernels.raw_dtype(self.base.dtype.itemsize), kernels.raw_dtype(self.dtype.itemsize)
        # The numpy dtypes only for the generic cast: bfloat16's comes from ml_dtypes, whose
        # import (registering its types with numpy) costs more than a whole fast cast.
        src_dt = out_dt = None
        if kernel is None:
            src_dt, out_dt = np.dtype(self.base.dtype.numpy), np.dtype(self.dtype.numpy)
        elements, sizes, starts = self._blocks(mapped=False)
        item = self.dtype.itemsize

        def fill(i: int, view: memoryview) -> None:
            first = starts[i] // item
            count = sizes[i] // item
            source = borrow(count * src_raw.itemsize)
            extra = borrow(count * 4 * scratch) if scratch else None
            try:
                src = elements.read(first, first + count, source)
                out = np.frombuffer(view, dtype=out_raw)
                if kernel is None:
                    kernels.cast_values(src.view(src_dt), out.view(out_dt))
                elif extra is not None:
                    kernel(src, out, np.frombuffer(extra, dtype=np.uint32, count=count * scratch))
                else:
                    kernel(src, out)
            finally:
                give_back(source)
                if extra is not None:
                    give_back(extra)

        return BlockPlan(sizes, fill, elements.finish, elements.close)

    def _blocks(self, mapped: bool) -> "tuple[Elements, list[int], list[int]]":
        """The source's elements, and the output's block sizes and starts."""
        sizes = even_blocks(self.nbytes, self.dtype.itemsize)
        return Elements(self.base, mapped=mapped), sizes, offsets_of(sizes)

    def _compiled_plan(self, name: str) -> BlockPlan:
        compiled = native.NATIVE
        assert compiled is not None
        elements, sizes, starts = self._blocks(mapped=True)
        item = self.dtype.itemsize

        def fill(i: int, view: memoryview) -> None:
            first = starts[i] // item
            count = sizes[i] // item
            src = elements.read_bytes(first, first + count, bytearray())
            try:
                compiled.cast(name, src, view)
            finally:
                src.release()

        return BlockPlan(sizes, fill, elements.finish, elements.close)

    def describe(self) -> str:
        return f"cast[{self.dtype}]({self.base.describe()})"


class _SharedSource:
    """The array behind the parts of one split, read once while its parts are consumed.

    Writers read the parts of a split one after another; caching the source until every
    part has been read avoids reading (and checksumming) it once per part, and dropping it
    afterwards keeps memory flat.
    """

    def __init__(self, base: Tensor, parts: int):
        self.base = base
        self._pending = set(range(parts))
        self._source: Optional[WholeSource] = None
        self._verified = False

    def open(self) -> WholeSource:
        if self._source is None:
            self._source = whole_source(self.base)
            self._verified = False
        return self._source

    def verify(self) -> None:
        """The source's checksum, checked once for all parts (by the first to finish)."""
        if self._source is not None and not self._verified:
            self._source.check()
            self._verified = True

    def release(self, part: int) -> None:
        self._pending.discard(part)
        if not self._pending and self._source is not None:
            source, self._source = self._source, None
            source.close()


class SliceTensor(Tensor):
    """Part ``index`` of a split: ``base[start:stop]`` along ``axis``."""

    def __init__(self, source: _SharedSource, index: int, axis: int, start: int, stop: int):
        self.source = source
        self.index = index
        self.axis = axis
        self.start = start
        self.stop = stop
        shape = list(source.base.shape)
        shape[axis] = stop - start
        super().__init__(source.base.dtype, tuple(shape))

    def _load(self) -> "np.ndarray":
        return computed(self, self._slice)

    def _slice(self) -> "np.ndarray":
        import numpy as np

        region = [slice(None)] * len(self.shape)
        region[self.axis] = slice(self.start, self.stop)
        return np.ascontiguousarray(self.source.base.numpy()[tuple(region)])

    def block_plan(self) -> Optional[BlockPlan]:
        if self.nbytes == 0 or self.dtype.is_variable_length:
            return None
        arr = self.source.open().array
        region = [slice(None)] * arr.ndim
        region[self.axis] = slice(self.start, self.stop)
        plan = _rows_plan(self, arr[tuple(region)])
        plan.check = self.source.verify
        plan.close = lambda: self.source.release(self.index)
        return plan

    def describe(self) -> str:
        return f"slice[axis {self.axis}: {self.start}:{self.stop}]({self.source.base.describe()})"


def split(base: Tensor, axis: int, sizes: Sequence[int]) -> list[Tensor]:
    """Lazy parts of ``base`` along ``axis`` with the given sizes (which must sum up)."""
    source = _SharedSource(base, len(sizes))
    parts: list[Tensor] = []
    start = 0
    for i, n in enumerate(sizes):
        parts.append(SliceTensor(source, i, axis, start, start + n))
        start += n
    return parts


class ConcatTensor(Tensor):
    """Several tensors joined along ``axis`` (a merge)."""

    def __init__(self, parts: Sequence[Tensor], axis: int):
        self.parts = list(parts)
        self.axis = axis
        shape = list(self.parts[0].shape)
        shape[axis] = sum(p.shape[axis] for p in self.parts)
        super().__init__(self.parts[0].dtype, tuple(shape))

    def _load(self) -> "np.ndarray":
        import numpy as np

        return computed(self, lambda: np.concatenate([p.numpy() for p in self.parts], axis=self.axis))

    def block_plan(self) -> Optional[BlockPlan]:
        if self.nbytes == 0 or self.dtype.is_variable_length or len(self.shape) == 0:
            return None
        sources = [whole_source(p) for p in self.parts]
        check, close = _all(sources)
        return _joined_plan(self, [src.array for src in sources], self.axis, check, close)

    def iter_bytes(self, chunk: int = CHUNK) -> Iterator[memoryview]:
        if self.axis == 0:
            # Along the first axis C-order bytes are the parts' bytes one after another.
            for p in self.parts:
                yield from p.iter_bytes(chunk)
        else:
            yield from super().iter_bytes(chunk)

    def describe(self) -> str:
        inner = ", ".join(p.describe() for p in self.parts)
        return f"concat[axis {self.axis}]({inner})"


class ZerosTensor(Tensor):
    """A tensor of zeros that no file holds (created by a rule: torch's ``bias_hh`` beside
    a Keras RNN's single bias, BatchNorm's ``num_batches_tracked``)."""

    def _load(self) -> "np.ndarray":
        import numpy as np

        return np.zeros(self.shape, dtype=self.dtype.numpy)

    def describe(self) -> str:
        return f"zeros[{self.dtype}]{list(self.shape)}"


class SumTensor(Tensor):
    """Parts of one shape added element by element.

    A part that is all zeros is skipped rather than added: then summing the parts an
    ``unsum`` made gives the original bits back (``-0.0 + 0.0`` would be ``+0.0``).
    """

    def __init__(self, parts: Sequence[Tensor]):
        self.parts = list(parts)
        super().__init__(self.parts[0].dtype, self.parts[0].shape)

    def _load(self) -> "np.ndarray":
        return computed(self, self._sum)

    def _sum(self) -> "np.ndarray":
        import numpy as np

        out = self.parts[0].numpy()
        for p in self.parts[1:]:
            arr = p.numpy()
            if np.any(arr != 0) or np.any(np.isnan(arr) if arr.dtype.kind in "fc" else False):
                out = out + arr
        return np.ascontiguousarray(out)

    def block_plan(self) -> Optional[BlockPlan]:
        import numpy as np

        if self.nbytes == 0 or self.dtype.is_variable_length or len(self.shape) == 0:
            return None
        first = self.parts[0].numpy()
        added = []
        for p in self.parts[1:]:
            arr = p.numpy()
            if np.any(arr != 0) or np.any(np.isnan(arr) if arr.dtype.kind in "fc" else False):
                added.append(arr)
        dt = np.dtype(self.dtype.numpy)
        row = self.nbytes // self.shape[0]
        sizes = even_blocks(self.nbytes, row)
        starts = offsets_of(sizes)

        def fill(i: int, view: memoryview) -> None:
            out = np.frombuffer(view, dtype=dt).reshape((-1,) + self.shape[1:])
            r0, r1 = starts[i] // row, starts[i] // row + out.shape[0]
            if not added:
                np.copyto(out, first[r0:r1])
                return
            np.add(first[r0:r1], added[0][r0:r1], out=out)
            for arr in added[1:]:
                np.add(out, arr[r0:r1], out=out)

        return BlockPlan(sizes, fill)

    def describe(self) -> str:
        return " + ".join(p.describe() for p in self.parts)


class ReorderedTensor(Tensor):
    """``base`` with ``axis`` cut into equal blocks, block i of the result being block
    ``order[i]`` of the base (RNN gate order)."""

    def __init__(self, base: Tensor, axis: int, order: Sequence[int]):
        self.base = base
        self.axis = axis
        self.order = tuple(order)
        super().__init__(base.dtype, base.shape)

    def _load(self) -> "np.ndarray":
        return computed(self, self._reorder)

    def _reorder(self) -> "np.ndarray":
        import numpy as np

        blocks = np.split(self.base.numpy(), len(self.order), axis=self.axis)
        return np.ascontiguousarray(np.concatenate([blocks[i] for i in self.order],
                                                   axis=self.axis))

    def block_plan(self) -> Optional[BlockPlan]:
        import numpy as np

        if self.nbytes == 0 or self.dtype.is_variable_length:
            return None
        source = whole_source(self.base)
        pieces = np.split(source.array, len(self.order), axis=self.axis)
        return _joined_plan(self, [pieces[i] for i in self.order], self.axis, source.check,
                            source.close)

    def describe(self) -> str:
        return f"reorder[axis {self.axis}: {list(self.order)}]({self.base.describe()})"


# ------------------------------------------------------------------------ plan helpers


def _all(sources: Sequence[WholeSource]) -> "tuple[Callable[[], None], Callable[[], None]]":
    """check and close for a plan reading several sources."""

    def check() -> None:
        for src in sources:
            src.check()

    def close() -> None:
        for src in sources:
            src.close()

    return check, close


def _product(sizes: Sequence[int]) -> int:
    out = 1
    for n in sizes:
        out *= n
    return out


class _Stacked:
    """Arrays joined along their first axis, sliced by rows without joining them."""

    def __init__(self, arrays: "Sequence[np.ndarray]"):
        self.arrays = [a for a in arrays if a.shape[0]]
        self.starts = offsets_of([a.shape[0] for a in self.arrays])

    def copy_rows(self, out: "np.ndarray", r0: int) -> None:
        import numpy as np

        r1 = r0 + out.shape[0]
        for arr, start in zip(self.arrays, self.starts):
            lo, hi = max(r0, start), min(r1, start + arr.shape[0])
            if lo < hi:
                np.copyto(out[lo - r0:hi - r0], arr[lo - start:hi - start])


def _rows_plan(t: Tensor, rows: "np.ndarray | _Stacked") -> BlockPlan:
    """Blocks of whole output rows (first axis) copied from ``rows`` (a strided view, or
    arrays joined along the first axis)."""
    from . import kernels
    import numpy as np

    raw = kernels.raw_dtype(t.dtype.itemsize)
    shape = t.shape if t.shape else (1,)
    row = t.nbytes // shape[0]
    sizes = even_blocks(t.nbytes, row)
    starts = offsets_of(sizes)

    def fill(i: int, view: memoryview) -> None:
        import numpy as np

        out = np.frombuffer(view, dtype=raw).reshape((-1,) + shape[1:])
        r0 = starts[i] // row
        if isinstance(rows, _Stacked):
            rows.copy_rows(out, r0)
        else:
            np.copyto(out, rows.reshape(shape)[r0:r0 + out.shape[0]])

    return BlockPlan(sizes, fill)


def _joined_plan(t: Tensor, arrays: "Sequence[np.ndarray]", axis: int,
                 check: Callable[[], None], close: Callable[[], None]) -> BlockPlan:
    """Blocks of ``arrays`` (raw bits) joined along ``axis``, whole output rows at a time."""
    from . import kernels
    import numpy as np

    if axis == 0:
        plan = _rows_plan(t, _Stacked(arrays))
        plan.check, plan.close = check, close
        return plan
    raw = kernels.raw_dtype(t.dtype.itemsize)
    row = t.nbytes // t.shape[0]
    sizes = even_blocks(t.nbytes, row)
    starts = offsets_of(sizes)

    def fill(i: int, view: memoryview) -> None:
        import numpy as np

        out = np.frombuffer(view, dtype=raw).reshape((-1,) + t.shape[1:])
        r0 = starts[i] // row
        at = [slice(None)] * out.ndim
        pos = 0
        for arr in arrays:
            at[axis] = slice(pos, pos + arr.shape[axis])
            np.copyto(out[tuple(at)], arr[r0:r0 + out.shape[0]])
            pos += arr.shape[axis]

    return BlockPlan(sizes, fill, close=close, check=check)
