"""Lazy layout transforms: each wraps a Tensor and applies when the values are read.

Nothing here reads data up front: shapes and dtypes are computed from the wrapped
tensor's metadata, so a mapped 50 GB checkpoint costs nothing until a writer streams it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Optional

import numpy as np

from ..dtypes import DType
from ..tensor import CHUNK, Tensor


class PermutedTensor(Tensor):
    """``base`` with its axes reordered (``axes[i]`` is the source axis of output axis i)."""

    def __init__(self, base: Tensor, axes: Sequence[int]):
        self.base = base
        self.axes = tuple(axes)
        super().__init__(base.dtype, tuple(base.shape[a] for a in self.axes))

    def _load(self) -> np.ndarray:
        # Writers want C order; a transposed view would be copied later anyway.
        return np.ascontiguousarray(self.base.numpy().transpose(self.axes))

    def describe(self) -> str:
        return f"permute{list(self.axes)}({self.base.describe()})"


class ReshapedTensor(Tensor):
    """``base`` with a new shape of the same size; C-order bytes are unchanged."""

    def __init__(self, base: Tensor, shape: Sequence[int]):
        self.base = base
        super().__init__(base.dtype, tuple(shape))

    def _load(self) -> np.ndarray:
        return self.base.numpy().reshape(self.shape)

    def iter_bytes(self, chunk: int = CHUNK) -> Iterator[memoryview]:
        # A reshape never moves bytes, so the base can stream without a copy.
        return self.base.iter_bytes(chunk)

    def describe(self) -> str:
        return f"reshape{list(self.shape)}({self.base.describe()})"


class CastTensor(Tensor):
    """``base`` converted to another dtype (numpy/ml_dtypes rounding: nearest even)."""

    def __init__(self, base: Tensor, dtype: DType):
        self.base = base
        super().__init__(dtype, base.shape)

    def _load(self) -> np.ndarray:
        return self.base.numpy().astype(self.dtype.numpy)

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
        self._array: Optional[np.ndarray] = None

    def get(self, part: int) -> np.ndarray:
        arr = self._array if self._array is not None else self.base.numpy()
        self._pending.discard(part)
        self._array = arr if self._pending else None
        return arr


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

    def _load(self) -> np.ndarray:
        arr = self.source.get(self.index)
        region = [slice(None)] * arr.ndim
        region[self.axis] = slice(self.start, self.stop)
        return np.ascontiguousarray(arr[tuple(region)])

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

    def _load(self) -> np.ndarray:
        return np.concatenate([p.numpy() for p in self.parts], axis=self.axis)

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

    def _load(self) -> np.ndarray:
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

    def _load(self) -> np.ndarray:
        out = self.parts[0].numpy()
        for p in self.parts[1:]:
            arr = p.numpy()
            if np.any(arr != 0) or np.any(np.isnan(arr) if arr.dtype.kind in "fc" else False):
                out = out + arr
        return np.ascontiguousarray(out)

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

    def _load(self) -> np.ndarray:
        arr = self.base.numpy()
        blocks = np.split(arr, len(self.order), axis=self.axis)
        return np.ascontiguousarray(np.concatenate([blocks[i] for i in self.order],
                                                   axis=self.axis))

    def describe(self) -> str:
        return f"reorder[axis {self.axis}: {list(self.order)}]({self.base.describe()})"
