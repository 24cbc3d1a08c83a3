"""TF V1 checkpoints (``SavedTensorSlices``): one SSTable file per shard, tensors inside it.

Written by TensorFlow before 0.12 and by ``tf.compat.v1.train.Saver(write_version=V1)``
(many TF-slim model-zoo files): ``model.ckpt`` or ``model.ckpt-N``, or with a sharded
Saver ``model.ckpt-N-00000-of-00002`` ... (the ``checkpoint`` file then records
``model.ckpt-N-?????-of-00002``). See docs/formats-tf-v1.md. In each file:

* key ``""``: ``SavedTensorSlices{meta}`` listing the tensors whose slices this file holds
  (name, shape, dtype, slices) and the format version;
* every other key: ``EncodeTensorNameSlice(name, slice)`` (the slice keys of V2 bundles,
  :mod:`.slices`) with ``SavedTensorSlices{data: SavedSlice{name, slice, TensorProto}}``.

Only the header is read when the map is built; a tensor's block is read (and its CRC-32C
checked) when its values are asked for. The blocks' CRCs are the only checksums V1 has.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from ... import dtypes
from ...dtypes import DType
from ...errors import CkconvError, CorruptCheckpointError, FormatError, UnsupportedError
from ...tensor import Tensor
from ...tensormap import TensorMap
from . import slices, tensor_proto
from .entries import Extent, _decode_slice, _fields, _int32, _int64
from .table import Table, has_magic

if TYPE_CHECKING:
    import numpy as np

_SHARD = re.compile(r"^(.*)-(\d{5,}|\?{5,})-of-(\d{5,})$")
_MAX_RANK = 254
_MAX_SHARDS = 100_000
_BYTES = 2


# -- which files ----------------------------------------------------------------------------

def resolve(path: str) -> Optional[list[str]]:
    """The files of the V1 checkpoint ``path`` designates (some may be missing), or None.

    ``path`` may be the file, one shard, the ``-?????-of-N`` pattern the state file records,
    the prefix the Saver was given, or a directory whose ``checkpoint`` file names one.
    """
    if "\0" in path:
        return None  # no file has such a name (a state file may record one: found by fuzzing)
    if path.endswith(".index") or os.path.isfile(path + ".index"):
        return None  # a V2 checkpoint: TF itself prefers V2 when both exist
    if os.path.isdir(path):
        return _from_directory(path)
    m = _SHARD.match(path)
    if m:
        files = _shard_names(m.group(1), m.group(3))
        return files if files and any(_is_v1_file(f) for f in files) else None
    if os.path.exists(path):  # a file of another format: no directory listing for it
        return [path] if _is_v1_file(path) else None
    return _shards_of_prefix(path)


def _is_v1_file(path: str) -> bool:
    return os.path.isfile(path) and not path.endswith(".index") and has_magic(path)


def _shard_names(base: str, total: str) -> Optional[list[str]]:
    n = int(total)
    if not 0 < n <= _MAX_SHARDS:
        return None
    width = len(total)
    return [f"{base}-{i:0{width}d}-of-{total}" for i in range(n)]


def _shards_of_prefix(prefix: str) -> Optional[list[str]]:
    directory, base = os.path.split(prefix)
    try:
        names = os.listdir(directory or ".")
    except OSError:
        return None
    totals = sorted({m.group(3) for m in map(_SHARD.match, names)
                     if m and m.group(1) == base and m.group(2).isdigit()})
    if len(totals) != 1:
        return None  # none, or several shard counts: not one checkpoint
    files = _shard_names(prefix, totals[0])
    return files if files and any(_is_v1_file(f) for f in files) else None


def _from_directory(directory: str) -> Optional[list[str]]:
    from .state import read_state

    try:
        state = read_state(directory)
    except CkconvError:  # an unreadable state file: the V2 path reports it
        return None
    if state is None:
        return None
    recorded = state.latest
    candidate = recorded if os.path.isabs(recorded) else os.path.join(directory, recorded)
    # A copied run directory keeps absolute paths of another machine: look beside the file.
    beside = os.path.join(directory, os.path.basename(recorded.replace("\\", "/")))
    for path in (candidate, beside):
        files = resolve(path) if not os.path.isdir(path) else None
        if files:
            return files
    return None


def select_step(path: str, step: int) -> Optional[list[str]]:
    """The files of the V1 checkpoint of global step ``step`` that ``path`` (a run
    directory, a save path such as ``run/model.ckpt``, or that step's checkpoint)
    designates, or None."""
    for files in _candidates(path, step):
        if _step_of(base_prefix(files)) == step:
            return files
    return None


def steps(path: str) -> list[int]:
    """The global steps of the V1 checkpoints in a run directory (for error messages)."""
    found = {_step_of(base_prefix(f)) for f in _candidates(path, None)}
    return sorted(s for s in found if s is not None)


def _candidates(path: str, step: Optional[int]) -> list[list[str]]:
    if os.path.isdir(path):
        names = [os.path.join(path, n) for n in sorted(os.listdir(path))]
        from .state import read_state

        try:
            state = read_state(path)
        except CkconvError:
            state = None
        if state is not None:  # listed ones too, possibly by another machine's path
            names += [os.path.join(path, os.path.basename(p.replace("\\", "/")))
                      for p in state.all_paths]
    else:
        names = [path] + ([f"{path}-{step}", f"{path}-{step:08d}"] if step is not None else [])
    out = []
    for name in names:
        files = None if os.path.isdir(name) else resolve(name)
        if files and files not in out:
            out.append(files)
    return out


def _step_of(prefix: str) -> Optional[int]:
    m = re.search(r"-(\d+)$", os.path.basename(prefix))
    return int(m.group(1)) if m else None


def base_prefix(files: list[str]) -> str:
    """The save path without a shard suffix (``.meta`` files are named after it)."""
    m = _SHARD.match(files[0])
    return m.group(1) if m else files[0]


# -- the header -----------------------------------------------------------------------------

@dataclass
class SliceMeta:
    name: str
    dtype: int
    shape: tuple[int, ...]
    unknown_rank: bool
    slices: list[list[Extent]] = field(default_factory=list)


def _shape(buf: Any) -> tuple[tuple[int, ...], bool]:
    dims: list[int] = []
    unknown = False
    for number, wire, value in _fields(buf):
        if number == 2 and wire == _BYTES:
            size = 0
            for n2, w2, v2 in _fields(value):
                if n2 == 1 and w2 == 0:
                    size = _int64(v2)
            dims.append(size)
        elif number == 3 and wire == 0:
            unknown = value != 0
    return tuple(dims), unknown


def decode_meta(buf: Any) -> tuple[list[SliceMeta], tuple[int, int, list[int]]]:
    """SavedTensorSlices.meta: the tensors listed and (producer, min_consumer, bad_consumers)."""
    metas: list[SliceMeta] = []
    version = (0, 0, [])
    found = False
    for number, wire, value in _fields(buf):
        if number != 1 or wire != _BYTES:
            continue
        found = True
        for n2, w2, v2 in _fields(value):
            if n2 == 1 and w2 == _BYTES:
                metas.append(_slice_meta(v2))
            elif n2 == 2 and w2 == _BYTES:
                version = _version(v2)
    if not found:
        raise ValueError("no SavedTensorSliceMeta in the header")
    return metas, version


def _slice_meta(buf: Any) -> SliceMeta:
    meta = SliceMeta("", 0, (), False)
    for number, wire, value in _fields(buf):
        if number == 1 and wire == _BYTES:
            meta.name = bytes(value).decode("utf-8", "surrogateescape")
        elif number == 2 and wire == _BYTES:
            meta.shape, meta.unknown_rank = _shape(value)
        elif number == 3 and wire == 0:
            meta.dtype = _int32(value)
        elif number == 4 and wire == _BYTES:
            meta.slices.append(_decode_slice(value))
    return meta


def _version(buf: Any) -> tuple[int, int, list[int]]:
    producer = min_consumer = 0
    bad: list[int] = []
    for number, wire, value in _fields(buf):
        if number == 1 and wire == 0:
            producer = _int32(value)
        elif number == 2 and wire == 0:
            min_consumer = _int32(value)
        elif number == 3 and wire == 0:
            bad.append(_int32(value))
    return producer, min_consumer, bad


# -- tensors --------------------------------------------------------------------------------

@dataclass
class _Part:
    table: Table
    key: bytes
    extents: list[tuple[int, int]]          # as stored: (start, length or slices.FULL)
    region: tuple[slice, ...]
    shape: tuple[int, ...]


class V1Tensor(Tensor):
    """A tensor of a V1 checkpoint: one or more slices, each a TensorProto in some file."""

    def __init__(self, name: str, dtype: DType, shape: tuple[int, ...], parts: list[_Part]):
        super().__init__(dtype, shape)
        self.name = name
        self._parts = parts

    def describe(self) -> str:
        files = sorted({p.table.path for p in self._parts})
        return f"{', '.join(files)} ({len(self._parts)} slice{'s' if len(self._parts) != 1 else ''})"

    def _corrupt(self, part: _Part, what: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(f"{part.table.path}: tensor {self.name!r} slice "
                                      f"{_fmt(part.extents)}: {what}")

    def _part_values(self, part: _Part) -> "np.ndarray":
        if not tensor_proto.supported(self.dtype):
            raise UnsupportedError(f"{part.table.path}: tensor {self.name!r} has TF dtype "
                                   f"{self.dtype}, which ckconv cannot decode")
        raw = part.table.get(part.key)
        if raw is None:
            raise self._corrupt(part, "missing from the file (the header lists it)")
        try:
            proto = _saved_slice(raw, self.name)
            return tensor_proto.decode(proto, self.dtype, math.prod(part.shape))
        except ValueError as exc:
            raise self._corrupt(part, f"bad value ({exc})") from None

    def _load(self) -> "np.ndarray":
        import numpy as np

        if len(self._parts) == 1 and self._parts[0].shape == self.shape:
            return self._part_values(self._parts[0]).reshape(self.shape)
        # Every slice is decoded (and its size checked) before the whole tensor's memory is
        # taken: the shape of a damaged header must not decide how much is allocated.
        values = [self._part_values(p) for p in self._parts]
        out = np.empty(self.shape, dtype=self.dtype.numpy)
        for part, v in zip(self._parts, values):
            out[part.region] = v.reshape(part.shape)
        return out


def _saved_slice(raw: Any, name: str) -> Any:
    """The TensorProto of ``SavedTensorSlices.data`` (checking it names this tensor)."""
    data = None
    for number, wire, value in _fields(raw):
        if number == 2 and wire == _BYTES:
            data = value
    if data is None:
        raise ValueError("entry holds no SavedSlice")
    proto, stored_name = None, None
    for number, wire, value in _fields(data):
        if number == 1 and wire == _BYTES:
            stored_name = bytes(value).decode("utf-8", "surrogateescape")
        elif number == 3 and wire == _BYTES:
            proto = value
    if stored_name != name:
        raise ValueError(f"the slice is stored under the name {stored_name!r}")
    return b"" if proto is None else proto


def _fmt(extents: list[tuple[int, int]]) -> str:
    return ":".join("-" if n == slices.FULL else f"{s},{n}" for s, n in extents) or "(scalar)"


# -- reading --------------------------------------------------------------------------------

def read(files: list[str]) -> TensorMap:
    """A lazy map of every tensor in the V1 checkpoint made of ``files`` (all its shards)."""
    tables = []
    for path in files:
        try:
            size = os.path.getsize(path)
        except OSError:
            present = [os.path.basename(f) for f in files if os.path.isfile(f)]
            raise CorruptCheckpointError(
                f"{path}: shard of a V1 checkpoint is missing ({len(files)} shards expected; "
                f"present: {', '.join(present) or 'none'})") from None
        tables.append(Table.open_lazy(path, size))
    specs: dict[str, tuple[int, tuple[int, ...], list[tuple[Table, list[Extent]]]]] = {}
    for table in tables:
        for meta in _header(table):
            known = specs.setdefault(meta.name, (meta.dtype, meta.shape, []))
            if known[:2] != (meta.dtype, meta.shape):
                raise CorruptCheckpointError(
                    f"{table.path}: tensor {meta.name!r} is {_dtype(meta.dtype)} "
                    f"{list(meta.shape)} here but {_dtype(known[0])} {list(known[1])} in "
                    "another shard")
            known[2].extend((table, sl) for sl in meta.slices)
    tmap = TensorMap(source=base_prefix(files), format="tf")
    for name in sorted(specs, key=lambda n: n.encode("utf-8", "surrogateescape")):
        dtype, shape, parts = specs[name]
        tmap._tensors[name] = _tensor(name, _dtype(dtype), shape, parts)
    tmap.source_files = list(files)
    return tmap


def _header(table: Table) -> list[SliceMeta]:
    first = table.first()
    if first is None or first[0] != b"":
        raise CorruptCheckpointError(f"{table.path}: V1 checkpoint has no header entry")
    value = first[1]
    if bytes(value[:1]) == b"\x08":  # BundleHeaderProto starts with num_shards (field 1, varint)
        raise FormatError(f"{table.path}: this is the .index file of a V2 checkpoint; name "
                          "its prefix (without .index) and keep its .data-* files beside it")
    try:
        metas, (producer, min_consumer, bad) = decode_meta(value)
    except (ValueError, CorruptCheckpointError) as exc:
        raise CorruptCheckpointError(f"{table.path}: unparseable V1 checkpoint header "
                                     f"({exc})") from None
    if producer < 0 or min_consumer > 1 or 1 in bad:
        raise CorruptCheckpointError(
            f"{table.path}: checkpoint version (producer {producer}, min consumer "
            f"{min_consumer}) is newer than this reader supports")
    for meta in metas:
        _check_meta(meta, table.path)
    return metas


def _check_meta(meta: SliceMeta, path: str) -> None:
    shape = meta.shape
    if meta.unknown_rank or len(shape) > _MAX_RANK or (shape and min(shape) < 0):
        raise CorruptCheckpointError(f"{path}: tensor {meta.name!r} has an invalid shape")
    if math.prod(shape) >= 2 ** 63:
        raise CorruptCheckpointError(f"{path}: tensor {meta.name!r} has an absurd shape "
                                     f"{list(shape)}")
    if not meta.slices:
        raise CorruptCheckpointError(f"{path}: tensor {meta.name!r} lists no slices")


def _dtype(number: int) -> DType:
    dt = dtypes.BY_TF.get(number)
    if dt is None:  # keep the tensor listable; reading it raises a clear error
        dt = DType(f"tf_dtype_{number}", "object", 0, number, None)
    return dt


def _tensor(name: str, dtype: DType, shape: tuple[int, ...],
            stored: list[tuple[Table, list[Extent]]]) -> V1Tensor:
    parts: list[_Part] = []
    covered = 0
    for table, sl in stored:
        where = f"{table.path}: slice {_fmt([(e.start, e.length or 0) for e in sl])} of {name!r}"
        if len(sl) != len(shape):
            raise CorruptCheckpointError(f"{where} has rank {len(sl)}, the tensor has rank "
                                         f"{len(shape)}")
        extents = [(e.start, slices.FULL if e.length is None else e.length) for e in sl]
        bounds = slices.bounds(extents, shape)
        if bounds is None:
            raise CorruptCheckpointError(f"{where} does not fit its shape {list(shape)}")
        part_shape = tuple(hi - lo for lo, hi in bounds)
        covered += math.prod(part_shape)
        key = slices.encode_slice_key(name.encode("utf-8", "surrogateescape"), extents)
        parts.append(_Part(table, key, extents, tuple(slice(lo, hi) for lo, hi in bounds),
                           part_shape))
    try:
        overlap = slices.first_overlap([p.region for p in parts], shape)
    except ValueError as exc:
        raise CorruptCheckpointError(f"{stored[0][0].path}: tensor {name!r}: {exc}") from None
    if overlap is not None:
        part = parts[overlap]
        raise CorruptCheckpointError(f"{part.table.path}: slice {_fmt(part.extents)} of "
                                     f"{name!r} overlaps another slice")
    total = math.prod(shape)
    if covered != total:
        raise CorruptCheckpointError(f"{stored[0][0].path}: the slices of tensor {name!r} cover "
                                     f"{covered} of its {total} elements (is a shard missing?)")
    return V1Tensor(name, dtype, shape, parts)
