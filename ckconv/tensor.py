"""A lazy tensor: dtype and shape from a file's index now, values on demand.

Readers subclass :class:`Tensor`; :class:`ArrayTensor` holds values already in memory.
Bytes are read (and checksums verified) only when a writer or the user asks for them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Optional

from . import dtypes
from .dtypes import DType
from .errors import UnsupportedError

if TYPE_CHECKING:  # numpy is imported where values are touched, keeping start-up light
    import numpy as np

    from .io.blocks import BlockPlan
    from .io.streaming import FileRegion

#: Chunk size for raw byte streaming: large enough to amortise Python overhead,
#: small enough that memory stays flat.
CHUNK = 8 << 20


class Tensor:
    """A lazy tensor: metadata now, values on demand.

    Subclasses implement :meth:`_load`. :meth:`iter_bytes` may be overridden to stream
    raw little-endian bytes without building an array.
    """

    dtype: DType
    shape: tuple[int, ...]

    def __init__(self, dtype: DType, shape: tuple[int, ...]):
        self.dtype = dtype
        self.shape = tuple(shape)

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes the values occupy (fixed-size types; for strings, the sum of lengths)."""
        return self.size * self.dtype.itemsize

    def numpy(self) -> "np.ndarray":
        """Read, verify and return the values as a numpy array (C order, little-endian)."""
        return self._load()

    def _load(self) -> "np.ndarray":
        raise NotImplementedError

    def torch(self) -> Any:
        """The values as a ``torch.Tensor`` (needs torch).

        Zero-copy where the file holds the tensor's exact bytes at an offset its element
        size divides (safetensors, TF bundles, PyTorch zips, contiguous HDF5): the file is
        memory-mapped copy-on-write, so the tensor is writable and pages are read on first
        touch. Anything else (a transform, a cast, a byte-swapped source) is computed.
        """
        from .torch_bridge import tensor_to_torch

        return tensor_to_torch(self)

    def __array__(self, dtype: Any = None, copy: Any = None) -> "np.ndarray":
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype)

    def iter_bytes(self, chunk: int = CHUNK) -> Iterator[memoryview]:
        """Yield the C-order little-endian bytes of a fixed-size tensor, in order."""
        if self.dtype.is_variable_length:
            raise UnsupportedError(f"{self.dtype} tensors have no fixed byte layout")
        import numpy as np

        arr = np.ascontiguousarray(self.numpy())
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        view = memoryview(arr.reshape(-1).view(np.uint8))
        for start in range(0, len(view), chunk):
            yield view[start:start + chunk]

    def file_region(self) -> Optional["FileRegion"]:
        """Where this tensor's exact C-order little-endian bytes lie in a file, if they do.

        Readers override this so writers can have the kernel copy the bytes file to file
        (:func:`ckconv.io.streaming.copy_tensor`); None means "stream :meth:`iter_bytes`".
        """
        return None

    def block_plan(self) -> Optional["BlockPlan"]:
        """This tensor's bytes as blocks computed on demand, for tensors that compute them
        (transposes, casts, splits): writers then compute and write blocks on two threads
        (:mod:`ckconv.io.blocks`). None means "no plan": the bytes lie in a file
        (:meth:`file_region`) or come from :meth:`iter_bytes`."""
        return None

    def stored_extents(self) -> list[tuple[str, int]]:
        """(file, offset where this tensor's stored bytes end) for each file holding them,
        as the index or header says, known without reading: lets ``ckconv inspect`` notice a
        truncated file with one stat (:mod:`ckconv.io.extents`). Empty when unknown."""
        return []

    def describe(self) -> str:
        """Where the values come from, for error messages and ``--dry-run``."""
        return type(self).__name__

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.dtype} {list(self.shape)}>"


class ArrayTensor(Tensor):
    """A tensor whose values are already in memory."""

    def __init__(self, array: Any, dtype: Optional[DType] = None):
        import numpy as np

        arr = np.asarray(array)
        if arr.dtype.kind in ("S", "U"):
            arr = _to_bytes_objects(arr)
        dt = dtype or dtypes.from_numpy(arr.dtype)
        if dt.is_variable_length:
            arr = _to_bytes_objects(arr)
        elif arr.dtype != dt.numpy:
            arr = arr.astype(dt.numpy)
        super().__init__(dt, tuple(int(d) for d in arr.shape))
        self._array = arr

    def _load(self) -> "np.ndarray":
        return self._array

    def describe(self) -> str:
        return "in memory"


def _to_bytes_objects(arr: "np.ndarray") -> "np.ndarray":
    import numpy as np

    out = np.empty(arr.shape, dtype=object)
    flat_in = arr.reshape(-1)
    flat_out = out.reshape(-1)
    for i, v in enumerate(flat_in):
        if isinstance(v, str):
            v = v.encode("utf-8")
        elif isinstance(v, np.bytes_):
            v = bytes(v)
        elif not isinstance(v, bytes):
            raise UnsupportedError(f"string tensor element of type {type(v).__name__} is not bytes or str")
        flat_out[i] = v
    return out


def as_tensor(value: Any) -> Tensor:
    """Wrap a numpy array (or anything array-like) unless it already is a Tensor."""
    if isinstance(value, Tensor):
        return value
    return ArrayTensor(value)
