"""How each ckconv dtype is stored in an HDF5 dataset, and the lazy dataset tensor.

HDF5 has no bfloat16, float8 or 4-bit types: their bits are stored as unsigned integers of
the same width, with the attribute ``ckconv_dtype`` naming the real type. The attribute
also marks TF's quantized types (``qint8`` is stored as ``int8``). Strings are variable-
length HDF5 strings; HDF5 strings end at a NUL byte, so a string tensor with a NUL in
any element is stored as variable-length ``uint8`` sequences instead (attribute
``ckconv_dtype = "string"``). Nothing is converted, so every value round-trips bit-exact.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, Optional

import numpy as np

from ... import dtypes
from ...dtypes import DType
from ...errors import CkconvError, UnsupportedError
from ...tensormap import CHUNK, Tensor

ATTR_DTYPE = "ckconv_dtype"
_NATIVE_KINDS = "biufc"
# numpy types HDF5 has a type for (ml_dtypes' float8 also report kind "f", so match exactly).
_NATIVE = frozenset(np.dtype(n) for n in (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128"))


def stored_numpy(dt: DType) -> np.dtype:
    """The numpy dtype a fixed-size ckconv dtype is written as."""
    if dt.numpy in _NATIVE:
        return dt.numpy
    return np.dtype(f"<u{dt.itemsize}")  # ml_dtypes types: keep the bits


def needs_attr(dt: DType) -> bool:
    """Whether the stored type alone would be read back as another dtype."""
    return dt.numpy not in _NATIVE or dtypes.from_numpy(dt.numpy) != dt


def can_store(dt: DType) -> bool:
    return dt.name != "variant"


def _attr_str(value: Any) -> Optional[str]:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    return None


def dtype_of(ds: Any) -> Optional[DType]:
    """The ckconv dtype of an h5py dataset, or None if ckconv cannot represent it."""
    import h5py

    named = _attr_str(ds.attrs.get(ATTR_DTYPE))
    h5dt = ds.dtype
    if named in dtypes.BY_NAME:
        dt = dtypes.BY_NAME[named]
        if dt.is_variable_length:
            if h5py.check_string_dtype(h5dt) or h5py.check_vlen_dtype(h5dt) == np.uint8:
                return dt
        elif h5dt.kind in _NATIVE_KINDS and h5dt.itemsize == dt.itemsize:
            return dt
        # The attribute does not fit the data (another tool's attribute?): ignore it.
    if h5py.check_string_dtype(h5dt) is not None or h5dt.kind == "S":
        return dtypes.STRING
    if h5dt.kind in _NATIVE_KINDS:
        try:
            return dtypes.from_numpy(h5dt.newbyteorder("<"))
        except CkconvError:  # float128 and the like
            return None
    return None


def slabs(shape: tuple[int, ...], itemsize: int, chunk: int) -> Iterator[tuple]:
    """Selections covering ``shape`` in C order, each at most ``chunk`` bytes if possible.

    Each selection fixes the leading axes and takes a run of rows along one axis, so its
    bytes are contiguous in the C-order stream.
    """
    if not shape:
        yield ()
        return
    inner = itemsize
    axis = len(shape) - 1
    while axis > 0 and inner * shape[axis] <= chunk:
        inner *= shape[axis]
        axis -= 1
    rows = max(1, chunk // inner) if inner <= chunk else 1
    for lead in itertools.product(*(range(d) for d in shape[:axis])):
        for start in range(0, shape[axis], rows):
            yield lead + (slice(start, min(start + rows, shape[axis])),)


def _slab_shape(shape: tuple[int, ...], sel: tuple) -> tuple[int, ...]:
    n = len(sel)
    last = sel[-1] if sel else None
    head = (last.stop - last.start,) if isinstance(last, slice) else ()
    return head + shape[n:]


class H5File:
    """One open h5py file shared by the tensors read from it (closed with them)."""

    def __init__(self, handle: Any):
        self.handle = handle

    def __del__(self) -> None:
        try:
            self.handle.close()
        except Exception:
            pass


class H5Tensor(Tensor):
    def __init__(self, file: H5File, path: str, dtype: DType, shape: tuple[int, ...]):
        super().__init__(dtype, shape)
        self._file = file
        self._path = path

    def _ds(self) -> Any:
        return self._file.handle[self._path]

    def _load(self) -> np.ndarray:
        from .safety import h5_errors, memory_ceiling

        filename = self._file.handle.filename
        with h5_errors(filename, self._path):  # damaged data: our error
            ds = self._ds()
            if self.dtype.is_variable_length:
                with memory_ceiling(filename):  # libhdf5 trusts vlen lengths: see safety.py
                    return _strings(ds, self.shape)
            out = np.empty(self.shape, dtype=stored_numpy(self.dtype))
            if out.size:
                ds.read_direct(out)  # HDF5 converts big-endian files to the requested order
            return out.view(self.dtype.numpy)

    def iter_bytes(self, chunk: int = CHUNK) -> Iterator[memoryview]:
        if self.dtype.is_variable_length or self.nbytes <= chunk:
            yield from super().iter_bytes(chunk)
            return
        from .safety import h5_errors

        with h5_errors(self._file.handle.filename, self._path):
            ds = self._ds()
            stored = stored_numpy(self.dtype)
            for sel in slabs(self.shape, self.dtype.itemsize, chunk):
                part = np.empty(_slab_shape(self.shape, sel), dtype=stored)
                ds.read_direct(part, source_sel=sel)
                yield memoryview(part.reshape(-1).view(np.uint8))

    def describe(self) -> str:
        return f"{self._file.handle.filename}:{self._path}"


def _strings(ds: Any, shape: tuple[int, ...]) -> np.ndarray:
    value = ds[()]
    if shape == ():  # a scalar dataset gives the element itself, which may be an array
        raw = np.empty((), dtype=object)
        raw[()] = value
    else:
        raw = np.asarray(value, dtype=object).reshape(shape)
    out = np.empty(shape, dtype=object)
    flat_in, flat_out = raw.reshape(-1), out.reshape(-1)
    for i, v in enumerate(flat_in):
        if isinstance(v, np.ndarray):  # vlen uint8
            v = v.tobytes()
        elif isinstance(v, str):
            v = v.encode("utf-8")
        flat_out[i] = bytes(v)
    return out


def write_dataset(group: Any, name: str, t: Tensor, progress: Any = None) -> Any:
    """Create dataset ``name`` in ``group`` holding ``t``, streaming large tensors by slab."""
    import h5py

    dt = t.dtype
    if not can_store(dt):
        raise UnsupportedError(f"HDF5 output cannot hold {dt} tensors")
    if dt.is_variable_length:
        values = t.numpy()
        flat = [bytes(v) for v in values.reshape(-1)]
        if any(b"\x00" in v for v in flat):
            vlen = h5py.vlen_dtype(np.uint8)
            ds = group.create_dataset(name, shape=t.shape, dtype=vlen)
            data = np.empty(len(flat), dtype=object)
            for i, v in enumerate(flat):
                data[i] = np.frombuffer(v, dtype=np.uint8)
            if flat:
                ds[...] = data.reshape(t.shape)
            ds.attrs[ATTR_DTYPE] = dt.name
        else:
            try:
                for v in flat:
                    v.decode("utf-8")
                encoding = "utf-8"
            except UnicodeDecodeError:
                encoding = "ascii"  # tagged ascii, holds any bytes but NUL
            ds = group.create_dataset(name, shape=t.shape, dtype=h5py.string_dtype(encoding))
            if flat:
                data = np.empty(len(flat), dtype=object)
                data[:] = flat
                ds[...] = data.reshape(t.shape)
        if progress:
            progress(sum(len(v) for v in flat))
        return ds
    stored = stored_numpy(dt)
    ds = group.create_dataset(name, shape=t.shape, dtype=stored)
    if needs_attr(dt):
        ds.attrs[ATTR_DTYPE] = dt.name
    if t.size == 0:
        return ds
    if t.nbytes <= CHUNK:
        arr = np.ascontiguousarray(t.numpy()).reshape(-1).view(stored).reshape(t.shape)
        ds.write_direct(arr)
        if progress:
            progress(t.nbytes)
        return ds
    stream = _Bytes(t.iter_bytes())
    for sel in slabs(t.shape, dt.itemsize, CHUNK):
        shape = _slab_shape(t.shape, sel)
        count = 1
        for d in shape:
            count *= d
        part = np.frombuffer(stream.take(count * dt.itemsize), dtype=stored).reshape(shape)
        ds.write_direct(part, dest_sel=sel)
        if progress:
            progress(part.nbytes)
    stream.finish(t)
    return ds


class _Bytes:
    """Regroups a stream of byte chunks (each valid only until the next) into exact sizes."""

    def __init__(self, chunks: Iterator[memoryview]):
        self._chunks = chunks
        self._buf = bytearray()

    def take(self, n: int) -> bytearray:
        while len(self._buf) < n:
            nxt = next(self._chunks, None)
            if nxt is None:
                raise CkconvError(f"tensor stream ended early (wanted {n - len(self._buf)} more bytes)")
            self._buf += nxt  # copies: the producer may reuse its buffer
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def finish(self, t: Tensor) -> None:
        if self._buf or next(self._chunks, None) is not None:
            raise CkconvError(f"tensor {t!r} produced more bytes than its shape holds")
