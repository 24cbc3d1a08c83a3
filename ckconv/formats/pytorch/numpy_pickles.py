"""numpy arrays, dtypes and scalars inside a pickle, rebuilt without running numpy's pickle code.

How numpy pickles them (``pickletools.dis`` of numpy 1.x and 2.x output, protocol 2)::

    numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b"b")         # numpy 2: numpy._core
      BUILD (version, shape, dtype, is_fortran, raw bytes)
    numpy.dtype("f8", False, True)  BUILD (3, "<", None, None, None, -1, -1, 0)
    numpy.core.multiarray.scalar(dtype, raw bytes)

Protocol 5 pickles may use ``numpy.core.numeric._frombuffer(buffer, dtype, shape, order)``.
Arrays of numbers and booleans become :class:`NumpyArray` records (tensors once read);
scalars become Python numbers (a ``best_acc`` is a value, not a weight). Arrays of objects,
strings, records or dates are not data ckconv converts: they are left out with a note.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from .placeholders import Malformed

#: Kinds of numpy dtype that are numbers: bool, signed, unsigned, float, complex.
NUMERIC_KINDS = "biufc"
MAX_DIMS = 64


class NumpyDType:
    """A ``numpy.dtype`` as pickled: its type string, then its byte order from BUILD."""

    __slots__ = ("code", "byteorder", "structured", "_built")

    def __init__(self, code: Any, align: Any = False, copy: Any = True):
        if not isinstance(code, str) or len(code) > 16:
            raise Malformed(f"numpy.dtype({code!r})")
        self.code, self.byteorder, self.structured, self._built = code, "=", False, False

    def __setstate__(self, state: Any) -> None:
        if self._built or not isinstance(state, tuple) or len(state) < 2:
            raise Malformed(f"numpy dtype state {state!r:.60}")
        order = state[1]
        if order not in ("<", ">", "|", "="):
            raise Malformed(f"numpy dtype byte order {order!r:.20}")
        self.byteorder = order
        # Fields, names or a sub-array (state[2:5]) make a record type: not plain numbers.
        self.structured = any(v is not None for v in state[2:5])
        self._built = True

    @property
    def kind(self) -> str:
        return self.code[:1] if not self.structured else "V"

    def numpy(self) -> Any:
        """The numpy dtype (numbers only), native or with the pickled byte order."""
        import numpy as np

        if self.kind not in NUMERIC_KINDS or not self.code[1:].isdigit():
            raise Malformed(f"numpy dtype {self.code!r} is not a number type")
        try:
            dt = np.dtype(self.code)
        except TypeError:
            raise Malformed(f"numpy dtype {self.code!r}") from None
        return dt.newbyteorder(">") if self.byteorder == ">" else dt.newbyteorder("<")

    def __repr__(self) -> str:
        return f"dtype({self.code!r})"

    def __reduce__(self) -> Any:
        raise TypeError("stand-ins are not picklable")


class NdarrayClass:
    """``numpy.ndarray`` itself: only ever the first argument of ``_reconstruct``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "numpy.ndarray"

    def __reduce__(self) -> Any:
        raise TypeError("stand-ins are not picklable")


class NumpyArray:
    """A pickled numpy array: dtype, shape and its bytes (as they were in the pickle)."""

    __slots__ = ("dtype", "shape", "fortran", "raw", "_built")

    def __init__(self) -> None:
        self.dtype: Optional[NumpyDType] = None
        self.shape: tuple[int, ...] = (0,)
        self.fortran = False
        self.raw: Any = b""
        self._built = False

    def __setstate__(self, state: Any) -> None:
        if self._built or not isinstance(state, tuple) or len(state) not in (4, 5):
            raise Malformed("numpy array state is not (version, shape, dtype, fortran, data)")
        shape, dtype, fortran, raw = state[-4:]
        self._set(shape, dtype, bool(fortran), raw)

    def _set(self, shape: Any, dtype: Any, fortran: bool, raw: Any) -> None:
        if not isinstance(dtype, NumpyDType):
            raise Malformed(f"numpy array dtype is {type(dtype).__name__}")
        if isinstance(shape, list):
            shape = tuple(shape)
        if not isinstance(shape, tuple) or len(shape) > MAX_DIMS or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise Malformed(f"numpy array shape {shape!r:.60}")
        self.dtype, self.shape, self.fortran, self.raw, self._built = dtype, shape, fortran, raw, True

    @property
    def is_data(self) -> bool:
        """Numbers held as bytes of the right length (object arrays hold a list instead)."""
        if not self._built or self.dtype is None or self.dtype.kind not in NUMERIC_KINDS:
            return False
        try:
            itemsize = self.dtype.numpy().itemsize
        except Malformed:
            return False
        return isinstance(self.raw, (bytes, bytearray)) and \
            len(self.raw) == math.prod(self.shape) * itemsize

    def array(self) -> Any:
        """The values as a C-order, little-endian numpy array (a copy of the pickled bytes)."""
        import numpy as np

        dt = self.dtype.numpy()  # type: ignore[union-attr]
        arr = np.frombuffer(bytes(self.raw), dtype=dt).reshape(
            self.shape, order="F" if self.fortran else "C")
        return np.ascontiguousarray(arr).astype(dt.newbyteorder("<"), copy=False)

    def __repr__(self) -> str:
        code = self.dtype.code if self.dtype is not None else "?"
        return f"ndarray({code}, shape={list(self.shape)})"

    def __reduce__(self) -> Any:
        raise TypeError("stand-ins are not picklable")


def reconstruct(cls: Any, shape: Any = (0,), typecode: Any = b"b") -> NumpyArray:
    # Subclasses (np.matrix, a masked array's data) hold numbers all the same.
    from .placeholders import Placeholder

    if not (isinstance(cls, NdarrayClass) or isinstance(cls, type) and issubclass(cls, Placeholder)):
        raise Malformed(f"numpy _reconstruct of {type(cls).__name__}")
    return NumpyArray()


def scalar(dtype: Any, raw: Any = None) -> Any:
    """A numpy scalar as the Python number it holds."""
    if not isinstance(dtype, NumpyDType) or not isinstance(raw, (bytes, bytearray)):
        raise Malformed("numpy scalar without a dtype and bytes")
    import numpy as np

    dt = dtype.numpy()
    if len(raw) != dt.itemsize:
        raise Malformed(f"numpy scalar of {len(raw)} bytes for {dtype.code}")
    return np.frombuffer(bytes(raw), dtype=dt)[0].item()


def frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any = "C") -> NumpyArray:
    """``numpy.core.numeric._frombuffer`` (protocol 5, in-band buffers)."""
    if isinstance(buffer, memoryview):
        buffer = buffer.tobytes()
    arr = NumpyArray()
    arr._set(shape, dtype, order == "F", buffer)
    return arr


def _dtype(*args: Any) -> NumpyDType:
    # A function, not the class: NEWOBJ (which needs a type) must not make one uninitialised.
    return NumpyDType(*args)


GLOBALS: dict[tuple[str, str], Any] = {("numpy", "ndarray"): NdarrayClass(),
                                       ("numpy", "dtype"): _dtype}
for _core in ("numpy.core", "numpy._core"):
    GLOBALS.update({(f"{_core}.multiarray", "_reconstruct"): reconstruct,
                    (f"{_core}.multiarray", "scalar"): scalar,
                    (f"{_core}.numeric", "_frombuffer"): frombuffer})
