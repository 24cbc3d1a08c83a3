"""The meeting point of every format: an ordered, lazy mapping name -> tensor.

Readers fill a :class:`TensorMap` with :class:`Tensor` objects that know their dtype,
shape and size from the file's index alone; bytes are read (and checksums verified) only
when a writer or the user asks for them. Writers consume the map one tensor at a time, so
a checkpoint larger than memory streams through.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Optional

from . import dtypes
from .dtypes import DType
from .errors import UnsupportedError

if TYPE_CHECKING:  # numpy is imported where values are touched, keeping start-up light
    import numpy as np

    from .streaming import FileRegion

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
        (:func:`ckconv.streaming.copy_tensor`); None means "stream :meth:`iter_bytes`".
        """
        return None

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


class TensorMap(MutableMapping[str, Tensor]):
    """Ordered name -> :class:`Tensor` mapping plus a small str -> str metadata dict.

    ``source`` names the file the map was read from (for messages); ``notes`` collects
    human-readable remarks produced while reading (the CLI shows them, the library never
    prints).
    """

    def __init__(self, tensors: Optional[Mapping[str, Any]] = None,
                 metadata: Optional[Mapping[str, str]] = None,
                 source: str = "", format: str = ""):
        self._tensors: dict[str, Tensor] = {}
        self.metadata: dict[str, str] = dict(metadata or {})
        self.source = source
        self.format = format
        self.notes: list[str] = []
        #: Files the map reads from (a writer must never overwrite them).
        self.source_files: list[str] = []
        #: Extra structured data a reader wants to pass along (e.g. the TF object graph).
        self.extras: dict[str, Any] = {}
        if tensors:
            for name, value in tensors.items():
                self[name] = value

    @classmethod
    def from_any(cls, tensors: Any) -> "TensorMap":
        if isinstance(tensors, TensorMap):
            return tensors
        if isinstance(tensors, Mapping):
            return cls(tensors)
        raise UnsupportedError(f"expected a TensorMap or a dict of arrays, got {type(tensors).__name__}")

    def resolve(self, name: str) -> Optional[str]:
        """The stored name ``name`` designates, or None.

        An exact match wins; otherwise a TF tensor name with output index 0 (``w1:0``, as in
        ``get_tensor_by_name``) designates the variable's checkpoint name ``w1``.
        """
        if name in self._tensors:
            return name
        if isinstance(name, str) and name.endswith(":0") and name[:-2] in self._tensors:
            return name[:-2]
        return None

    def __getitem__(self, name: str) -> Tensor:
        key = self.resolve(name)
        if key is None:
            raise KeyError(name)
        return self._tensors[key]

    def __setitem__(self, name: str, value: Any) -> None:
        if not isinstance(name, str):
            raise UnsupportedError(f"tensor names must be str, got {type(name).__name__}: {name!r}")
        self._tensors[self.resolve(name) or name] = as_tensor(value)

    def __delitem__(self, name: str) -> None:
        key = self.resolve(name)
        if key is None:
            raise KeyError(name)
        del self._tensors[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    # The dict's own views: Mapping's generic ones go through __getitem__ (and name
    # resolution) once per tensor, which shows with 20,000 tensors.
    def items(self):  # type: ignore[override]
        return self._tensors.items()

    def values(self):  # type: ignore[override]
        return self._tensors.values()

    def __len__(self) -> int:
        return len(self._tensors)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self._tensors.values())

    def copy(self) -> "TensorMap":
        new = TensorMap(metadata=self.metadata, source=self.source, format=self.format)
        new._tensors = dict(self._tensors)
        new.notes = list(self.notes)
        new.source_files = list(self.source_files)
        new.extras = dict(self.extras)
        return new

    def to_numpy(self) -> "dict[str, np.ndarray]":
        """Materialise every tensor (reads everything into memory)."""
        return {name: t.numpy() for name, t in self._tensors.items()}

    def map(self, rules: Any) -> "TensorMap":
        """New map with name-mapping rules applied (``ckconv.rules.load(...)`` or a file); lazy."""
        from .rules import apply

        return apply(self, rules)

    # Surgery for migration scripts (ckconv/surgery.py). rename/select/drop return a new
    # map sharing the lazy tensors; assign* change this map in place, like TF variables.
    def rename(self, pattern: Any, repl: Any = None, *, count: int = 0,
               strict: bool = True) -> "TensorMap":
        """New map with names rewritten by ``re.sub(pattern, repl, name)`` or a {old: new} dict."""
        from .surgery import rename

        return rename(self, pattern, repl, count=count, strict=strict)

    def select(self, *patterns: Any, collection: Any = None, strict: bool = True) -> "TensorMap":
        """New map with the tensors whose whole name matches a pattern, or in a TF1 collection."""
        from .surgery import select

        return select(self, *patterns, collection=collection, strict=strict)

    def drop(self, *patterns: Any, collection: Any = None, strict: bool = True) -> "TensorMap":
        """New map without the tensors whose whole name matches a pattern or collection."""
        from .surgery import drop

        return drop(self, *patterns, collection=collection, strict=strict)

    def assign(self, name: str, value: Any) -> "TensorMap":
        """Set a tensor's values (same shape; array, Tensor or function of the old values)."""
        from .surgery import assign

        return assign(self, name, value)

    def assign_add(self, name: str, delta: Any) -> "TensorMap":
        """Add ``delta`` to a tensor, lazily (TF's ``Variable.assign_add``)."""
        from .surgery import assign_add

        return assign_add(self, name, delta)

    def assign_sub(self, name: str, delta: Any) -> "TensorMap":
        """Subtract ``delta`` from a tensor, lazily (TF's ``Variable.assign_sub``)."""
        from .surgery import assign_sub

        return assign_sub(self, name, delta)

    @property
    def collections(self) -> dict[str, list[str]]:
        """TF1 collection name -> the tensors of this map it holds ({} without a ``.meta``)."""
        from .formats.tf.meta import meta_for

        graph = meta_for(self)
        if graph is None:
            return {}
        return {c.name: graph.keys_of([c.key], self) for c in graph.collections.values()}

    def __repr__(self) -> str:
        src = f" from {self.source}" if self.source else ""
        return f"<TensorMap{src}: {len(self)} tensors, {self.nbytes} bytes>"
