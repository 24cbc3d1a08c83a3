"""Reading ``torch.save`` zip archives without torch, tensors streamed from the file.

A zip ``.pt`` holds ``<archive>/data.pkl`` (the pickled state dict), ``<archive>/byteorder``
and one stored member ``<archive>/data/<key>`` per storage. :mod:`.zip_archive` finds where
each member's bytes lie, :mod:`.unpickle` turns the pickle into plain containers of
:class:`~.unpickle.TensorRef` views, and every view becomes a :class:`TorchZipTensor` that
knows its byte range: a contiguous tensor is a plain region of the file, which writers copy
file to file (:meth:`TorchZipTensor.file_region`) without the bytes passing through Python.

What this reader does not understand (a global outside its allow-list, a big-endian
archive) raises :class:`NeedsTorch`, so the caller can fall back to torch's own safe loader.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Optional

from ... import dtypes
from ...dtypes import DType
from ...errors import CorruptCheckpointError, UnsupportedError
from ...io.streaming import FileRegion, SourceFile, iter_region
from ...tensor import CHUNK, Tensor
from ...tensormap import TensorMap
from ... import torch_bridge as bridge
from . import objects, quantized, unpickle, zip_archive
from .flatten import Converted, add_flattened
from .numpy_pickles import NumpyArray
from .placeholders import Placeholder, Refused
from .unpickle import NeedsTorch, QTensorRef, Storage, TensorRef

if TYPE_CHECKING:  # numpy is imported when values are asked for, not to stream bytes
    import numpy as np

__all__ = ["NeedsTorch", "TorchZipTensor", "is_torch_zip", "read_file"]

#: A data.pkl describes tensors, it does not hold them: even a model with a million
#: tensors has a pickle of a few hundred MiB at most.
MAX_PICKLE_BYTES = 512 << 20
#: Walking the unpickled object (flattening, notes) is linear in its size counted as a
#: tree; a pickle can make that exponential by sharing sub-objects, so it is bounded.
MAX_OBJECT_NODES = 5_000_000
MAX_OBJECT_DEPTH = 200
#: numpy's limit on dimensions.
MAX_DIMS = 64
#: A view may repeat its storage's bytes (a stride of 0, as ``expand`` makes), but not
#: beyond this many times the file's size (plus a small allowance): more would cost memory
#: out of all proportion to the file once materialised.
EXPANSION_FACTOR = 16
EXPANSION_ALLOWANCE = 16 << 20


def is_torch_zip(path: str) -> bool:
    """The file starts like a zip archive (torch.save writes a local header first)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


class TorchZipTensor(Tensor):
    """A strided view of a storage member of a torch zip archive."""

    def __init__(self, file: SourceFile, name: str, data_offset: int, ref: TensorRef, dt: DType):
        super().__init__(dt, ref.shape)
        self._file = file
        self._name = name
        self._ref = ref
        item = dt.itemsize
        # Byte offset of element [0, 0, ...] in the file; strides are in elements.
        self._start = data_offset + ref.storage_offset * item
        self._contiguous = _is_c_contiguous(ref.shape, ref.stride)

    @property
    def contiguous(self) -> bool:
        return self._contiguous

    def _corrupt(self, what: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(f"{self._file.path}: tensor {self._name!r}: {what}")

    def _read(self, offset: int, size: int) -> bytearray:
        buf = bytearray(size)  # writable, so torch.from_numpy needs no copy or warning
        try:
            self._file.read_into(offset, memoryview(buf))
        except CorruptCheckpointError as exc:
            raise self._corrupt(str(exc).removeprefix(f"{self._file.path}: ")) from None
        return buf

    def _load(self) -> "np.ndarray":
        import numpy as np

        np_dtype = self.dtype.numpy
        if self.size == 0:
            return np.empty(self.shape, dtype=np_dtype)
        item = self.dtype.itemsize
        if self._contiguous:
            buf = self._read(self._start, self.nbytes)
            return np.frombuffer(buf, dtype=np_dtype).reshape(self.shape)
        # Read the span the view touches once, then let numpy gather the elements.
        span = _last_index(self._ref.shape, self._ref.stride) + 1
        base = np.frombuffer(self._read(self._start, span * item), dtype=np_dtype)
        view = np.lib.stride_tricks.as_strided(
            base, shape=self.shape, strides=tuple(s * item for s in self._ref.stride),
            writeable=False)
        return np.ascontiguousarray(view)

    def iter_bytes(self, chunk: int = CHUNK) -> Iterator[memoryview]:
        """Stream the bytes; each view is valid only until the next one is requested."""
        if not self._contiguous:
            yield from super().iter_bytes(chunk)
            return
        if self.nbytes == 0:
            return
        try:  # the archive checks proved the region lies inside the file
            yield from iter_region(self._file.fd(), self._start, self.nbytes, chunk)
        except EOFError as exc:
            raise self._corrupt(f"file shrank after it was opened ({exc})") from None

    def file_region(self) -> Optional[FileRegion]:
        if not self._contiguous:
            return None
        return FileRegion(self._file.fd(), self._start, self.nbytes, corrupt=self._corrupt)

    def stored_extents(self) -> list[tuple[str, int]]:
        if self.size == 0:
            return []
        span = _last_index(self._ref.shape, self._ref.stride) + 1
        return [(self._file.path, self._start + span * self.dtype.itemsize)]

    def describe(self) -> str:
        if self._contiguous:
            return f"{self._file.path} [{self._start}:{self._start + self.nbytes}]"
        return (f"{self._file.path}: strided view (stride {list(self._ref.stride)}) of storage "
                f"{self._ref.storage.key}")


def _is_c_contiguous(shape: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    expected = 1
    for dim, step in zip(reversed(shape), reversed(stride)):
        if dim == 0:
            return True  # no elements: any strides describe the same (empty) bytes
        if dim != 1 and step != expected:
            return False
        expected *= dim
    return True


def _last_index(shape: tuple[int, ...], stride: tuple[int, ...]) -> int:
    """Index (in elements, from the view's first element) of the last element it touches."""
    return sum((d - 1) * s for d, s in zip(shape, stride))


def _check_view(path: str, name: str, ref: TensorRef, dt: DType, record_size: int,
                file_size: int) -> None:
    """The view must lie inside its storage, and its storage inside its archive member."""
    def bad(what: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(f"{path}: tensor {name!r}: {what}")

    storage = ref.storage
    if storage.nbytes > record_size:
        raise bad(f"storage {storage.key!r} claims {storage.nbytes} bytes but its archive "
                  f"member holds {record_size}")
    if len(ref.shape) > MAX_DIMS:
        raise bad(f"{len(ref.shape)} dimensions (at most {MAX_DIMS} are supported)")
    if any(d < 0 for d in ref.shape) or any(s < 0 for s in ref.stride) or ref.storage_offset < 0:
        raise bad(f"negative size, stride or offset (size {list(ref.shape)}, stride "
                  f"{list(ref.stride)}, offset {ref.storage_offset})")
    numel = math.prod(ref.shape)
    if numel == 0:
        return
    end = (ref.storage_offset + _last_index(ref.shape, ref.stride) + 1) * dt.itemsize
    if end > storage.nbytes:
        raise bad(f"view (offset {ref.storage_offset}, size {list(ref.shape)}, stride "
                  f"{list(ref.stride)}) ends at byte {end} of a {storage.nbytes}-byte storage")
    nbytes = numel * dt.itemsize
    if nbytes > max(storage.nbytes, EXPANSION_FACTOR * file_size + EXPANSION_ALLOWANCE):
        raise bad(f"view repeats a {storage.nbytes}-byte storage into {nbytes} bytes")


def _archive_prefix(directory: zip_archive.Directory) -> str:
    """``<archive>/`` holding data.pkl: torch names the archive after the first member."""
    path = directory.path
    if not directory.order:
        raise CorruptCheckpointError(f"{path}: empty zip archive (no data.pkl)")
    first = directory.order[0]
    if "/" in first and first.split("/", 1)[0] + "/data.pkl" in directory.members:
        return first.split("/", 1)[0] + "/"
    for name in directory.order:
        if name == "data.pkl" or (name.endswith("/data.pkl") and name.count("/") == 1):
            return name[:-len("data.pkl")]
    raise CorruptCheckpointError(f"{path}: zip archive without a data.pkl; not a torch.save file")


def _member_bytes(fd: int, path: str, member: zip_archive.Member) -> bytes:
    data = os.pread(fd, member.size, member.data_offset)
    if len(data) != member.size:
        raise CorruptCheckpointError(f"{path}: member {member.name!r} ends early")
    if zlib.crc32(data) != member.crc32:
        raise CorruptCheckpointError(f"{path}: member {member.name!r} fails its CRC-32 check")
    return data


def unpickle_data(path: str, data: bytes, unpickler_class: Any = None
                  ) -> tuple[Any, dict[str, Storage]]:
    """Unpickle ``data`` (a checked copy of data.pkl) into stand-ins, errors as ckconv's."""
    try:
        unpickler = (unpickler_class or unpickle.RestrictedUnpickler)(data)
        unpickle.prescan(data)
        return unpickler.load(), unpickler.storages
    except NeedsTorch:
        raise
    except Refused as exc:
        raise UnsupportedError(
            f"{path}: loading this pickle would run code stored in the file (it references "
            f"{_printable(exc.what)}); ckconv never runs pickled code, and nothing was "
            "executed") from None
    except unpickle.Malformed as exc:
        raise CorruptCheckpointError(f"{path}: data.pkl does not describe tensors the way "
                                     f"torch.save does ({exc})") from None
    except Exception as exc:  # pickle raises many types on damage; stand-ins raise TypeError...
        msg = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise CorruptCheckpointError(f"{path}: data.pkl is damaged ({type(exc).__name__}: "
                                     f"{msg})") from None


def _printable(text: str) -> str:
    return text.encode("unicode_escape").decode("ascii")[:120]


def check_object_size(path: str, obj: Any, pickle_size: int) -> None:
    """Refuse object graphs whose flattening (and repr in notes) would explode.

    Counted as a tree, an object has about as many nodes as its pickle has opcodes, unless
    sub-objects are shared (memo references); a real checkpoint shares a few, a hostile
    pickle shares them to multiply its size exponentially.
    """
    budget = min(MAX_OBJECT_NODES, 64 * pickle_size + 100_000)
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        value, depth = stack.pop()
        budget -= 1
        if budget < 0 or depth > MAX_OBJECT_DEPTH:
            what = "deeply nested" if depth > MAX_OBJECT_DEPTH else "large"
            raise CorruptCheckpointError(f"{path}: data.pkl holds an implausibly {what} object")
        if isinstance(value, Mapping):
            stack.extend((v, depth + 1) for kv in value.items() for v in kv)
        elif isinstance(value, (list, tuple, set, frozenset)):
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, Placeholder):
            stack.extend((v, depth + 1) for v in value.children())


def is_tensor(value: Any) -> bool:
    """What the flattening rule treats as a tensor: storage views, quantized tensors and
    numpy arrays of numbers."""
    return isinstance(value, (TensorRef, QTensorRef)) or \
        isinstance(value, NumpyArray) and value.is_data


def add_tensors(obj: Any, path: str, file: SourceFile, locate: Callable[[str], tuple[int, int]],
                tmap: TensorMap, dequantize: bool, skip_unsupported: bool) -> None:
    """Add the tensors of an unpickled object to ``tmap``; ``locate(storage key)`` gives
    ``(offset in the file, size)`` of a storage's bytes."""
    def plain(name: str, ref: TensorRef) -> Converted:
        dt = dtypes.BY_NAME[ref.dtype] if ref.dtype in bridge.TORCH_NAMES else None
        if dt is None:
            return f"{name} (torch.{ref.dtype}, strided)"
        data_offset, record_size = locate(ref.storage.key)
        _check_view(path, name, ref, dt, record_size, file.size)
        key = None
        if math.prod(ref.shape):
            key = (ref.storage.key, ref.storage_offset, ref.shape, ref.stride, ref.dtype)
        return key, lambda: TorchZipTensor(file, name, data_offset, ref, dt)

    def param(name: str, ref: Any) -> Tensor:
        got = plain(name, ref)
        if isinstance(got, str) or isinstance(got, list):
            raise CorruptCheckpointError(f"{path}: tensor {name!r}: quantization parameters "
                                         f"of an unexpected type ({got})")
        return got[1]()

    def convert(name: str, value: Any) -> Converted:
        if isinstance(value, NumpyArray):
            return ("numpy", id(value)), lambda: _numpy_tensor(path, name, value)
        if isinstance(value, TensorRef):
            return plain(name, value)
        got = plain(name, value.values)
        if isinstance(got, str) or isinstance(got, list):
            return f"{name} (torch.{value.qdtype}, {value.scheme})"
        key, make = got
        return quantized.entries(name, make, key, value.scheme, value.scale, value.zero_point,
                                 value.axis, dequantize, lambda ref: param(name, ref))

    modules: list[tuple[str, str]] = []
    elsewhere: list[objects.Elsewhere] = []
    try:
        obj = objects.resolve_modules(obj, is_tensor, modules, elsewhere)
    except unpickle.Malformed as exc:
        raise CorruptCheckpointError(f"{path}: data.pkl holds a module that torch could not "
                                     f"have saved ({exc})") from None
    found = objects.find_placeholders(obj, is_tensor)
    add_flattened(tmap, obj, is_tensor, convert)
    packed = [e for e in elsewhere if e[3] == objects.PACKED]
    if packed and not skip_unsupported:
        where = ", ".join(f"{w} ({c}: {n})" for w, c, n, _ in packed[:4])
        raise UnsupportedError(
            f"{path}: pickled module(s) hold {sum(e[2] for e in packed)} tensor(s) packed "
            f"their own way, which ckconv cannot name as state_dict() would: {where}; pass "
            "--skip-unsupported (skip_unsupported=True) to leave them out, or save the "
            "model's state_dict() instead")
    tmap.notes.extend(objects.placeholder_notes(modules, found, elsewhere))
    if found:
        tmap.extras["torch_placeholders"] = [{"where": w, "class": c, "tensors": n}
                                             for w, c, n in found]


def _numpy_tensor(path: str, name: str, arr: NumpyArray) -> Tensor:
    from ...tensor import ArrayTensor

    try:
        values = arr.array()
        # Named directly (numpy's names are ckconv's for these types): looking a numpy
        # dtype up would build the whole table, importing ml_dtypes.
        return ArrayTensor(values, dtypes.BY_NAME[values.dtype.name])
    except Exception as exc:  # a dtype numpy knows but ckconv has no name for
        raise UnsupportedError(f"{path}: numpy array {name!r} ({arr!r}) has a type ckconv "
                               f"cannot represent ({exc})") from None


def _read(fd: int, path: str, tmap: TensorMap, dequantize: bool,
          skip_unsupported: bool) -> None:
    directory = zip_archive.read_directory(fd, path)
    if any(n.endswith("/constants.pkl") for n in directory.order):
        raise UnsupportedError(f"{path}: a TorchScript archive (torch.jit.save); ckconv reads "
                               "state dicts saved with torch.save, not scripted modules")
    prefix = _archive_prefix(directory)
    header = [prefix + "data.pkl"]
    if prefix + "byteorder" in directory.members:  # torch < 1.10 did not write it: little
        header.append(prefix + "byteorder")
    located = zip_archive.locate(fd, directory, header)
    pkl = located[prefix + "data.pkl"]
    if len(header) == 2:
        order = _member_bytes(fd, path, located[prefix + "byteorder"])
        if order == b"big":
            raise NeedsTorch("big-endian data (byteorder \"big\")")
        if order != b"little":
            raise CorruptCheckpointError(f"{path}: byteorder record holds {order[:20]!r}")
    if pkl.size > MAX_PICKLE_BYTES:
        raise CorruptCheckpointError(f"{path}: data.pkl of {pkl.size} bytes is implausibly large")
    obj, storages = unpickle_data(path, _member_bytes(fd, path, pkl))
    check_object_size(path, obj, pkl.size)
    records = [prefix + "data/" + key for key in storages]
    missing = [r for r in records if r not in directory.members]
    if missing:
        raise CorruptCheckpointError(f"{path}: {len(missing)} storage record(s) named in data.pkl "
                                     f"are not in the archive: {', '.join(missing[:3])}")
    # Located together with the pickle so that no two members may overlap.
    members = zip_archive.locate(fd, directory, header + records)

    def locate(key: str) -> tuple[int, int]:
        member = members[prefix + "data/" + key]
        return member.data_offset, member.size

    add_tensors(obj, path, SourceFile(path, directory.file_size), locate, tmap, dequantize,
                skip_unsupported)


def read_file(path: str, dequantize: bool = False, skip_unsupported: bool = False) -> TensorMap:
    """Read a torch zip archive; raises NeedsTorch for what only torch can load.

    ``dequantize``: quantized tensors become float32 values instead of their integer
    values plus ``.scale`` / ``.zero_point`` / ``.axis`` entries. ``skip_unsupported``:
    tensors pickled modules hold outside their parameters and buffers are left out with a
    note instead of failing the read.
    """
    tmap = TensorMap(source=path, format="torch")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise CorruptCheckpointError(f"{path}: cannot open ({exc.strerror})") from None
    try:
        _read(fd, path, tmap, dequantize, skip_unsupported)
    except OSError as exc:
        raise CorruptCheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    tmap.source_files.append(path)
    return tmap
