"""Unpickling a ``torch.save`` state dict without torch and without running anything.

``data.pkl`` is a protocol-2 pickle. What it holds for a tensor, as written by torch 2.x
(checked with ``pickletools.dis`` on real ``torch.save`` output)::

    torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
                                    backward_hooks[, metadata])
    torch._utils._rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad,
                                    backward_hooks, dtype[, metadata])

``storage`` is a persistent id ``('storage', storage_type, key, location, numel)``: the bytes
are the archive member ``data/<key>``. Dtypes with a legacy typed storage class
(``torch.FloatStorage``...) use v2, and ``numel`` counts elements; the others (uint16/32/64,
float8...) use v3 with ``torch.storage.UntypedStorage``, ``numel`` counting bytes, and the
dtype pickled as the global ``torch.<name>``. ``backward_hooks`` is an empty
``collections.OrderedDict``; ``metadata`` appears only for conjugate/negative views.
``nn.Parameter`` wraps a tensor in ``_rebuild_parameter(data, requires_grad, hooks)``, or in
``_rebuild_parameter_with_state(..., state)`` when it carries Python attributes.

:class:`RestrictedUnpickler` resolves only those globals, plus the few plain containers a
state dict holds (``OrderedDict``, sets, ``torch.Size``, ``bytes``), to inert stand-ins. Any
other global raises :class:`NeedsTorch`: the caller can then hand the file to
``torch.load(weights_only=True)``, whose allow-list is wider, or refuse it. The pickle is
scanned with :mod:`pickletools` first, because the C unpickler allocates whatever a length
or memo index claims before finding out the data is not there.
"""

from __future__ import annotations

import io
import pickle
import pickletools
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Optional

from ... import torch_bridge as bridge
from . import numpy_pickles
from . import placeholders as _placeholders
from .placeholders import Malformed
from .storage_types import STORAGE_DTYPES


#: Storages of quantized tensors: their bytes are the integer values (``int_repr()``).
QUANTIZED_STORAGES = {"QInt8Storage": "qint8", "QUInt8Storage": "quint8",
                      "QInt32Storage": "qint32", "QUInt4x2Storage": "quint4x2",
                      "QUInt2x4Storage": "quint2x4"}
#: quantized dtype -> the dtype of its integer values (None: packed, several per byte)
QUANTIZED_VALUES = {"qint8": "int8", "quint8": "uint8", "qint32": "int32", "quint4x2": None,
                    "quint2x4": None}
QSCHEMES = ("per_tensor_affine", "per_channel_affine", "per_channel_affine_float_qparams")

#: torch dtypes ckconv cannot represent but which may appear (their tensors are left out
#: with a note, as the torch path does; the rest of the file still converts)
FOREIGN_DTYPES = frozenset(
    ["complex32", "bits8", "bits16", "bits1x8", "bits2x4", "bits4x2", "float8_e8m0fnu",
     "float4_e2m1fn_x2", *QUANTIZED_VALUES] + [f"int{i}" for i in range(1, 8)] + [f"uint{i}" for i in range(1, 8)])

KNOWN_DTYPES = frozenset(bridge.TORCH_NAMES) | FOREIGN_DTYPES


class NeedsTorch(Exception):
    """The pickle references something outside the allow-list (``what`` names it)."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what




class _Inert:
    """Stand-ins refuse BUILD (``__setstate__``): a pickle must not overwrite their fields."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise Malformed(f"BUILD applied to {self!r}")

    def __reduce__(self) -> Any:
        raise TypeError("stand-ins are not picklable")


class StorageType(_Inert):
    """Stands in for ``torch.FloatStorage``... (dtype set) or ``UntypedStorage`` (dtype None)."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: Optional[str]):
        self.name = name
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class DTypeRef(_Inert):
    """Stands in for a ``torch.<dtype>`` object."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class Device(_Inert):
    """Stands in for ``torch.device`` (a checkpoint may record where it trained)."""

    __slots__ = ("type", "index")

    def __init__(self, type: Any, index: Any = None):
        if not isinstance(type, str) or not (index is None or isinstance(index, int)):
            raise Malformed(f"torch.device{(type, index)!r}")
        self.type = type
        self.index = index

    def __repr__(self) -> str:
        if self.index is None:
            return f"device(type={self.type!r})"
        return f"device(type={self.type!r}, index={self.index})"


@dataclass(frozen=True, eq=False)
class Storage:
    """A storage of the archive: member ``data/<key>`` holding ``nbytes`` bytes."""

    key: str
    type: StorageType
    numel: int

    @property
    def nbytes(self) -> int:
        if self.type.dtype is None:
            return self.numel  # an UntypedStorage counts bytes
        return self.numel * itemsize(self.type.dtype)

    def __repr__(self) -> str:
        return f"{self.type!r}(key={self.key!r}, numel={self.numel})"

    def __setstate__(self, state: Any) -> None:  # BUILD would bypass frozen=True
        raise Malformed(f"BUILD applied to {self!r}")


@dataclass(frozen=True, eq=False)
class TensorRef:
    """A tensor as the pickle describes it: a strided view of a storage."""

    storage: Storage
    dtype: str  # torch's name for the element type
    storage_offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def __repr__(self) -> str:
        return f"tensor(torch.{self.dtype}, shape={list(self.shape)})"

    def __setstate__(self, state: Any) -> None:
        raise Malformed(f"BUILD applied to {self!r}")


_ITEMSIZES = {
    "float32": 4, "float64": 8, "float16": 2, "bfloat16": 2, "complex64": 8, "complex128": 16,
    "bool": 1, "int8": 1, "int16": 2, "int32": 4, "int64": 8, "uint8": 1, "uint16": 2,
    "uint32": 4, "uint64": 8, "float8_e4m3fn": 1, "float8_e5m2": 1, "float8_e4m3fnuz": 1,
    "float8_e5m2fnuz": 1, "complex32": 4, "bits8": 1, "bits16": 2, "bits1x8": 1, "bits2x4": 1,
    "bits4x2": 1, "float8_e8m0fnu": 1, "float4_e2m1fn_x2": 1, "qint8": 1, "quint8": 1,
    "qint32": 4, "quint4x2": 1, "quint2x4": 1,
}


def itemsize(dtype: str) -> int:
    """Bytes per element of a torch dtype name (sub-byte integers are stored one per byte)."""
    return _ITEMSIZES.get(dtype, 1)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _ints(v: Any, what: str) -> tuple[int, ...]:
    if not isinstance(v, tuple) or not all(_is_int(d) for d in v):
        raise Malformed(f"{what} is {v!r}, not a tuple of integers")
    return v


def _tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, dtype: str) -> TensorRef:
    if not isinstance(storage, Storage):
        raise Malformed(f"tensor storage is {type(storage).__name__}, not a storage")
    if not _is_int(storage_offset):
        raise Malformed(f"storage offset is {storage_offset!r}")
    shape, strides = _ints(size, "tensor size"), _ints(stride, "tensor stride")
    if len(shape) != len(strides):
        raise Malformed(f"size {shape} and stride {strides} differ in length")
    return TensorRef(storage, dtype, storage_offset, shape, strides)


def _no_metadata(metadata: Any) -> None:
    # Conjugate / negative views store the values before conjugation or negation: only
    # torch knows how to apply them.
    if metadata is not None and metadata != {}:
        keys = ", ".join(map(str, metadata)) if isinstance(metadata, dict) else repr(metadata)
        raise NeedsTorch(f"tensor metadata ({keys})")


def _no_more(func: str, extra: tuple) -> None:
    # Arguments a later torch may add: torch knows what they mean, ckconv does not.
    if extra:
        raise NeedsTorch(f"{len(extra)} more argument(s) to torch._utils.{func}")


def rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any,
                      requires_grad: Any = False, backward_hooks: Any = None,
                      metadata: Any = None, *extra: Any) -> TensorRef:
    _no_more("_rebuild_tensor_v2", extra)
    _no_metadata(metadata)
    if not isinstance(storage, Storage) or storage.type.dtype is None:
        raise Malformed("_rebuild_tensor_v2 needs a typed storage")
    return _tensor(storage, storage_offset, size, stride, storage.type.dtype)


def rebuild_tensor_v3(storage: Any, storage_offset: Any, size: Any, stride: Any,
                      requires_grad: Any, backward_hooks: Any, dtype: Any,
                      metadata: Any = None, *extra: Any) -> TensorRef:
    _no_more("_rebuild_tensor_v3", extra)
    _no_metadata(metadata)
    if not isinstance(dtype, DTypeRef):
        raise Malformed(f"_rebuild_tensor_v3 dtype is {dtype!r}")
    if not isinstance(storage, Storage) or storage.type.dtype is not None:
        raise Malformed("_rebuild_tensor_v3 needs an untyped storage")
    return _tensor(storage, storage_offset, size, stride, dtype.name)


def rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None,
                      state: Any = None, *extra: Any) -> TensorRef:
    _no_more("_rebuild_parameter", extra)
    # A Parameter is its tensor for ckconv; Python attributes set on it are not weights.
    if not isinstance(data, (TensorRef, QTensorRef)):
        raise Malformed(f"parameter data is {type(data).__name__}, not a tensor")
    return data


class QScheme(_Inert):
    """Stands in for ``torch.per_tensor_affine`` and the other quantization schemes."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"torch.{self.name}"


@dataclass(frozen=True, eq=False)
class QTensorRef:
    """A quantized tensor: its integer values (a view of a storage) and how to scale them.

    ``scale`` / ``zero_point`` are numbers for ``per_tensor_affine`` and 1-D tensors (one
    entry per slice along ``axis``) for the per-channel schemes.
    """

    values: TensorRef
    qdtype: str  # qint8, quint8, qint32...
    scheme: str
    scale: Any
    zero_point: Any
    axis: Optional[int]

    def __repr__(self) -> str:
        return f"tensor(torch.{self.qdtype}, {self.scheme}, shape={list(self.values.shape)})"

    def __setstate__(self, state: Any) -> None:
        raise Malformed(f"BUILD applied to {self!r}")


def _qparams(params: Any, shape: tuple[int, ...]) -> tuple[str, Any, Any, Optional[int]]:
    if not isinstance(params, tuple) or not params or not isinstance(params[0], QScheme):
        raise Malformed(f"quantizer parameters {_short(params)}")
    scheme = params[0].name
    if scheme == "per_tensor_affine":
        if len(params) != 3 or not isinstance(params[1], (int, float)) or not _is_int(params[2]):
            raise Malformed(f"per-tensor quantizer parameters {_short(params)}")
        return scheme, float(params[1]), params[2], None
    if len(params) != 4 or not _is_int(params[3]):
        raise Malformed(f"per-channel quantizer parameters {_short(params)}")
    _, scales, zero_points, axis = params
    if not 0 <= axis < len(shape):
        raise Malformed(f"quantization axis {axis} of a {len(shape)}-d tensor")
    for what, t in (("scales", scales), ("zero points", zero_points)):
        if not isinstance(t, TensorRef) or t.shape != (shape[axis],):
            raise Malformed(f"per-channel {what} {_short(t)} for {shape[axis]} channels")
    return scheme, scales, zero_points, axis


def rebuild_qtensor(storage: Any, storage_offset: Any, size: Any, stride: Any,
                    quantizer_params: Any, requires_grad: Any = False,
                    backward_hooks: Any = None, *extra: Any) -> QTensorRef:
    _no_more("_rebuild_qtensor", extra)
    if not isinstance(storage, Storage) or storage.type.dtype not in QUANTIZED_VALUES:
        raise Malformed("_rebuild_qtensor needs a quantized storage")
    qdtype = storage.type.dtype
    values = _tensor(storage, storage_offset, size, stride, QUANTIZED_VALUES[qdtype] or qdtype)
    scheme, scale, zero_point, axis = _qparams(quantizer_params, values.shape)
    return QTensorRef(values, qdtype, scheme, scale, zero_point, axis)


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    # Protocol 2 pickles ``bytes`` as _codecs.encode(str, "latin1"); no other use is allowed
    # (other codecs include compressors).
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise NeedsTorch(f"_codecs.encode with {encoding!r}")
    return text.encode("latin1")


def _bytearray(*args: Any) -> bytearray:
    # bytearray(n) would allocate n bytes: only the (str, "latin1") / bytes forms are allowed.
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytearray(args[0])
    if len(args) == 2:
        return bytearray(_encode(*args))
    if not args:
        return bytearray()
    raise Malformed(f"bytearray{args!r}")


def _complex(real: Any = 0.0, imag: Any = 0.0) -> complex:
    if not all(isinstance(v, (int, float)) for v in (real, imag)):
        raise Malformed(f"complex({real!r}, {imag!r})")
    return complex(real, imag)


def _size(dims: Any = ()) -> tuple[int, ...]:
    return _ints(tuple(dims) if isinstance(dims, list) else dims, "torch.Size")


_CALLABLES: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
    ("torch._utils", "_rebuild_qtensor"): rebuild_qtensor,
    ("torch._utils", "_rebuild_parameter_with_state"): rebuild_parameter,
    ("torch", "Size"): _size,
    ("torch", "device"): lambda *args: Device(*args),  # a function: NEWOBJ needs a type
    ("_codecs", "encode"): _encode,
}
for _module in ("builtins", "__builtin__"):  # protocol 2 writes Python 2 module names
    _CALLABLES.update({(_module, "set"): set, (_module, "frozenset"): frozenset,
                       (_module, "slice"): slice, (_module, "complex"): _complex,
                       (_module, "bytearray"): _bytearray})


def allowed_global(module: str, name: str) -> Any:
    """The stand-in for ``module.name``, or raise :class:`NeedsTorch`."""
    found = _CALLABLES.get((module, name))
    if found is not None:
        return found
    if module == "torch" and name in STORAGE_DTYPES:
        return StorageType(name, STORAGE_DTYPES[name])
    if module == "torch" and name in QUANTIZED_STORAGES:
        return StorageType(name, QUANTIZED_STORAGES[name])
    if module == "torch" and name in QSCHEMES:
        return QScheme(name)
    if (module, name) in (("torch.storage", "UntypedStorage"), ("torch", "UntypedStorage")):
        return StorageType("UntypedStorage", None)
    if module == "torch" and name in KNOWN_DTYPES:
        return DTypeRef(name)
    raise NeedsTorch(f"the global {module}.{name}")


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the allow-listed globals; storages become :class:`Storage` records.

    With ``placeholders`` (the default), a global outside the allow-list is not an error:
    numpy's array pickling gets stand-ins (:mod:`.numpy_pickles`), torch's own tensor
    internals still raise :class:`NeedsTorch`, names that can only run code raise
    :class:`~.placeholders.Refused`, and every other class becomes an inert
    :class:`~.placeholders.Placeholder`. Nothing named by the pickle is ever imported.
    """

    def __init__(self, data: bytes, placeholders: bool = True):
        super().__init__(io.BytesIO(data))
        self.storages: dict[str, Storage] = {}
        self._placeholders = placeholders
        self._classes = _placeholders.ClassTable()

    def find_class(self, module: str, name: str) -> Any:
        if not (isinstance(module, str) and isinstance(name, str)):
            raise Malformed("a global whose name is not a string")
        try:
            return allowed_global(module, name)
        except NeedsTorch:
            if not self._placeholders or _placeholders.needs_torch(module, name):
                raise
        found = numpy_pickles.GLOBALS.get((module, name))
        if found is not None:
            return found
        return _placeholders.resolve(module, name, self._classes)

    def persistent_load(self, pid: Any) -> Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise Malformed(f"persistent id {_short(pid)} is not a storage")
        _, stype, key, location, numel = pid
        if not isinstance(stype, StorageType):
            raise Malformed(f"storage type {_short(stype)} is not a storage class")
        if not isinstance(key, str) or not isinstance(location, str) or not _is_int(numel) \
                or numel < 0:
            raise Malformed(f"persistent id {_short(pid)}")
        known = self.storages.get(key)
        if known is None:
            known = self.storages[key] = Storage(key, stype, numel)
        elif known.type.dtype != stype.dtype or known.numel != numel:
            raise Malformed(f"storage {key!r} is described twice, differently")
        return known


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}


def prescan(data: bytes) -> None:
    """Check the pickle's claimed lengths and memo indexes before the C unpickler sees it.

    pickletools reads counted strings with ``read(n)`` on an in-memory file, which returns
    what is there, so a false claim costs nothing and raises ValueError here. Memo indexes
    are bounded by the pickle's size, since a real pickler numbers them from 0 upwards.
    """
    limit = len(data)
    for op, arg, _pos in pickletools.genops(io.BytesIO(data)):
        if op.name in _MEMO_PUTS and isinstance(arg, int) and arg > limit:
            raise pickle.UnpicklingError(f"memo index {arg} in a {limit}-byte pickle")
        if op.name == "FRAME" and isinstance(arg, int) and arg > limit:
            raise pickle.UnpicklingError(f"frame of {arg} bytes in a {limit}-byte pickle")

