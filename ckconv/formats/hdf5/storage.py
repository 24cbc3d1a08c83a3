"""How each ckconv dtype is stored in an HDF5 dataset, and the lazy dataset tensor.

HDF5 has no bfloat16, float8 or 4-bit types: their bits are stored as unsigned integers of
the same width, with the attribute ``ckconv_dtype`` naming the real type. The attribute
also marks TF's quantized types (``qint8`` is stored as ``int8``). Strings are variable-
length HDF5 strings; HDF5 strings end at a NUL byte, so a string tensor with a NUL in
any element is stored as variable-length ``uint8`` sequences instead (attribute
``ckconv_dtype = "string"``). Nothing is converted, so every value round-trips bit-exact.

Fast paths: a dataset stored as one contiguous, unfiltered block of exactly ckconv's raw
little-endian bytes is read beside libhdf5 through a plain descriptor of the file (its
:meth:`H5Tensor.file_region` lets writers have the kernel copy it). Written files get such
datasets for every non-empty fixed-size tensor: libhdf5 creates them allocated but never
filled, and :class:`RawWrites` copies the bytes in after libhdf5 has closed the file.
Everything else (chunks, filters, big-endian, strings...) goes through h5py.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any, Optional

import numpy as np

from ... import dtypes
from ...dtypes import DType
from ...errors import CkconvError, CorruptCheckpointError, UnsupportedError
from ...io.streaming import FileRegion, copy_tensor, iter_region
from ...tensor import CHUNK, Tensor

ATTR_DTYPE = "ckconv_dtype"
_NATIVE_KINDS = "biufc"
# numpy types HDF5 has a type for (ml_dtypes' float8 also report kind "f", so match exactly).
_NATIVE = frozenset(np.dtype(n) for n in (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128"))


def stored_numpy(dt: DType) -> np.dtype:
    """The numpy dtype a fixed-size ckconv dtype is written as."""
    if not dt.from_ml_dtypes and dt.numpy in _NATIVE:
        return dt.numpy
    return np.dtype(f"<u{dt.itemsize}")  # ml_dtypes types: keep the bits (unimported)


def needs_attr(dt: DType) -> bool:
    """Whether the stored type alone would be read back as another dtype."""
    return dt.from_ml_dtypes or dt.numpy not in _NATIVE or dtypes.from_numpy(dt.numpy) != dt


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
    """One open h5py file shared by the tensors read from it (closed with them).

    Beside libhdf5's handle it keeps, opened on first use, a plain read-only descriptor
    of the same file: datasets stored as raw bytes are read and copied through it without
    libhdf5 (see :meth:`H5Tensor.file_region`).
    """

    def __init__(self, handle: Any):
        self.handle = handle
        self.path: str = handle.filename
        self._fd: Optional[int] = None
        self._fd_tried = False

    def fd(self) -> Optional[int]:
        """The plain descriptor, or None if the file cannot be reopened as the same file."""
        if not self._fd_tried:
            self._fd_tried = True
            self._fd = _reopen(self.handle)
        return self._fd

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        self.handle.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _reopen(handle: Any) -> Optional[int]:
    """Open the file libhdf5 has open, checking it is the same file and not a renamed-over one.

    Only the default single-file driver keeps dataset offsets as plain file offsets.
    """
    try:
        if handle.driver != "sec2":
            return None
        theirs = os.fstat(handle.id.get_vfd_handle())
        fd = os.open(handle.filename, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError, TypeError, RuntimeError):
        return None
    mine = os.fstat(fd)
    if (mine.st_dev, mine.st_ino) != (theirs.st_dev, theirs.st_ino):
        os.close(fd)
        return None
    return fd


def raw_offset(ds: Any, dt: DType, nbytes: int) -> Optional[int]:
    """The file offset of ``ds``'s bytes if they are exactly ckconv's raw bytes of ``dt``.

    That is: one contiguous block (no chunks, filters or external files), allocated, of
    exactly ``nbytes``, whose stored type is the little-endian type ckconv would write for
    ``dt`` (an equal HDF5 type, so no conversion would happen on read). None otherwise.
    """
    import h5py

    if dt.is_variable_length or nbytes == 0:
        return None
    plist = ds.id.get_create_plist()
    if (plist.get_layout() != h5py.h5d.CONTIGUOUS or plist.get_nfilters()
            or plist.get_external_count()):
        return None
    if not ds.id.get_type().equal(h5py.h5t.py_create(_little(stored_numpy(dt)))):
        return None  # big-endian, other bit layout, bool of another enum...
    if ds.id.get_storage_size() != nbytes:
        return None
    return ds.id.get_offset()  # None: never written, reads as the fill value


def _little(npdt: np.dtype) -> np.dtype:
    return npdt.newbyteorder("<") if npdt.byteorder in "=>" else npdt


_UNKNOWN: Any = object()


class H5Tensor(Tensor):
    """A dataset of an open file, read on demand.

    Readers pass the dataset they listed as ``ds``: its storage is inspected while it is
    open rather than looked up again later (an h5py lookup is not free, and a checkpoint
    has thousands of datasets; docs/performance.md).
    """

    def __init__(self, file: H5File, path: str, dtype: DType, shape: tuple[int, ...],
                 ds: Any = None):
        super().__init__(dtype, shape)
        self._file = file
        self._path = path
        self._offset: Optional[int] = _UNKNOWN if ds is None else self._raw_offset(ds)
        self._region: Optional[FileRegion] = _UNKNOWN

    def _ds(self) -> Any:
        return self._file.handle[self._path]

    def _corrupt(self, what: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(f"{self._file.path}: dataset {self._path}: {what}")

    def file_region(self) -> Optional[FileRegion]:
        """The dataset's bytes in the file, if stored as ckconv's raw layout (see raw_offset)."""
        if self._region is _UNKNOWN:
            self._region = self._find_region()
        return self._region

    def _raw_offset(self, ds: Any) -> Optional[int]:
        from .safety import h5_errors

        with h5_errors(self._file.path, self._path):
            return raw_offset(ds, self.dtype, self.nbytes)

    def _find_region(self) -> Optional[FileRegion]:
        if self.dtype.is_variable_length or self.nbytes == 0:
            return None
        if self._offset is _UNKNOWN:
            self._offset = self._raw_offset(self._ds())
        offset = self._offset
        fd = self._file.fd() if offset is not None else None
        if offset is None or fd is None:
            return None
        size = os.fstat(fd).st_size
        if offset + self.nbytes > size:  # mapping past the end would kill the process
            raise self._corrupt(f"its {self.nbytes:,} bytes at offset {offset:,} lie past the "
                                f"end of the file ({size:,} bytes)")
        return FileRegion(fd, offset, self.nbytes, corrupt=self._corrupt)

    def _load(self) -> np.ndarray:
        from .safety import h5_errors

        filename = self._file.path
        with h5_errors(filename, self._path):  # damaged data: our error
            region = self.file_region()
            if region is not None:
                out = np.empty(self.shape, dtype=self.dtype.numpy)
                _read_into(region, memoryview(out.reshape(-1).view(np.uint8)))
                return out
            ds = self._ds()
            if self.dtype.is_variable_length:
                return _strings(ds, self.shape)  # probed when the file was opened (safety.py)
            out = np.empty(self.shape, dtype=stored_numpy(self.dtype))
            if out.size:
                ds.read_direct(out)  # HDF5 converts big-endian files to the requested order
            return out.view(self.dtype.numpy)

    def iter_bytes(self, chunk: int = CHUNK) -> Iterator[memoryview]:
        # Small tensors go through numpy() in one piece, except ml_dtypes' types: their
        # stored bits need no numpy type of theirs (nor ml_dtypes' ~0.8 s import).
        small = self.nbytes <= chunk and not self.dtype.from_ml_dtypes
        if self.dtype.is_variable_length or small:
            yield from super().iter_bytes(chunk)
            return
        region = self.file_region()
        if region is not None:
            yield from _region_chunks(region, chunk)
            return
        from .safety import h5_errors

        with h5_errors(self._file.path, self._path):
            ds = self._ds()
            stored = stored_numpy(self.dtype)
            for sel in slabs(self.shape, self.dtype.itemsize, chunk):
                part = np.empty(_slab_shape(self.shape, sel), dtype=stored)
                ds.read_direct(part, source_sel=sel)
                yield memoryview(part.reshape(-1).view(np.uint8))

    def describe(self) -> str:
        return f"{self._file.path}:{self._path}"

    def stored_extents(self) -> list[tuple[str, int]]:
        # only when the listing already found a contiguous dataset's offset: no file access
        if self._offset is _UNKNOWN or self._offset is None:
            return []
        return [(self._file.path, self._offset + self.nbytes)]


def _read_into(region: FileRegion, out: memoryview) -> None:
    """Fill ``out`` from the region with pread (the file may have shrunk since it was checked)."""
    done = 0
    while done < len(out):
        n = os.preadv(region.fd, [out[done:]], region.offset + done)
        if n == 0:
            raise _truncated(region, f"{len(out) - done:,} bytes missing at offset "
                                     f"{region.offset + done:,}")
        done += n


def _region_chunks(region: FileRegion, chunk: int) -> Iterator[memoryview]:
    """The region's bytes in views of at most ``chunk`` bytes, each valid until the next."""
    try:
        for view in iter_region(region.fd, region.offset, region.size, chunk):
            if len(view) <= chunk:
                yield view
                continue
            # iter_region hands out whole pages or small regions in one piece: split them.
            for start in range(0, len(view), chunk):
                part = view[start:start + chunk]
                yield part
                try:
                    part.release()  # lets iter_region unmap its window at once
                except BufferError:  # the consumer kept an array on it: GC unmaps later
                    pass
    except EOFError as exc:
        raise _truncated(region, str(exc)) from None


def _truncated(region: FileRegion, detail: str) -> Exception:
    what = f"file is truncated ({detail})"
    return region.corrupt(what) if region.corrupt else EOFError(what)


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


class RawWrites:
    """Tensor bytes to write straight into the file once libhdf5 has laid it out and closed it.

    A fixed-size tensor's dataset is created contiguous, with its space allocated at once
    and never filled (:func:`write_dataset`), so libhdf5 writes only metadata and the
    dataset's offset is known. :meth:`run` then copies each tensor to its offset with
    :func:`ckconv.io.streaming.copy_tensor`: a kernel file-to-file copy when the source lies
    in a file, no libhdf5 conversion buffers and no pass through numpy either way. Running
    after the file is closed guarantees libhdf5 cannot write over the bytes afterwards.
    """

    def __init__(self) -> None:
        self._items: list[tuple[int, Tensor, str]] = []

    def add(self, offset: int, tensor: Tensor, dataset: str) -> None:
        self._items.append((offset, tensor, dataset))

    def __len__(self) -> int:
        return len(self._items)

    def run(self, temp: str, path: str, progress: Any = None) -> None:
        """Write every tensor into ``temp`` (the closed HDF5 file, to become ``path``)."""
        if not self._items:
            return
        with open(temp, "r+b") as f:
            for offset, tensor, dataset in self._items:
                f.seek(offset)
                copied = copy_tensor(tensor, f, progress=progress)
                if copied.nbytes != tensor.nbytes:  # more would have overwritten the next one
                    raise CorruptCheckpointError(
                        f"{path}: dataset {dataset}: tensor {tensor.describe()} produced "
                        f"{copied.nbytes} bytes, expected {tensor.nbytes} for "
                        f"{tensor.dtype.name} {list(tensor.shape)}")


def write_dataset(group: Any, name: str, t: Tensor, progress: Any = None,
                  raw: Optional[RawWrites] = None) -> Any:
    """Create dataset ``name`` in ``group`` holding ``t``.

    With ``raw``, a non-empty fixed-size tensor only gets its space allocated and is queued
    there, to be written after the file is closed; otherwise it is streamed in by slab.
    """
    dt = t.dtype
    if not can_store(dt):
        raise UnsupportedError(f"HDF5 output cannot hold {dt} tensors")
    if dt.is_variable_length:
        return _write_strings(group, name, t, progress)
    if raw is not None and t.size:
        ds = _allocate(group, name, t)
        offset = raw_offset(ds, dt, t.nbytes)
        if offset is not None:
            raw.add(offset, t, ds.name)
            return ds
        # h5py drops the creation properties of scalar datasets (nothing is allocated yet):
        # a few bytes, written through h5py.
        _fill(ds, t, progress)
        return ds
    ds = group.create_dataset(name, shape=t.shape, dtype=stored_numpy(dt))
    _tag(ds, dt)
    _fill(ds, t, progress)
    return ds


def _allocate(group: Any, name: str, t: Tensor) -> Any:
    """A contiguous dataset whose space exists now and that libhdf5 will never fill."""
    import h5py

    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.CONTIGUOUS)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)  # the offset is fixed at creation
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)  # no zeros written only to be overwritten
    ds = group.create_dataset(name, shape=t.shape, dtype=_little(stored_numpy(t.dtype)),
                              dcpl=dcpl)
    _tag(ds, t.dtype)
    return ds


def _tag(ds: Any, dt: DType) -> None:
    if needs_attr(dt):
        ds.attrs[ATTR_DTYPE] = dt.name


def _fill(ds: Any, t: Tensor, progress: Any) -> None:
    """Write a fixed-size tensor through h5py, by slab when large."""
    dt = t.dtype
    stored = stored_numpy(dt)
    if t.size == 0:
        return
    if t.nbytes <= CHUNK:
        arr = np.ascontiguousarray(t.numpy()).reshape(-1).view(stored).reshape(t.shape)
        ds.write_direct(arr)
        if progress:
            progress(t.nbytes)
        return
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


def _write_strings(group: Any, name: str, t: Tensor, progress: Any) -> Any:
    import h5py

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
        ds.attrs[ATTR_DTYPE] = t.dtype.name
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
