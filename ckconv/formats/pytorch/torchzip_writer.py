"""torch's zip serialization format, written without torch and streamed tensor by tensor.

What ``torch.load`` reads, as found in files written by ``torch.save`` (torch 2.13):

* A zip archive of stored (uncompressed) members, all under one folder; ``torch.save``
  names it ``archive`` when given a file object, and so do we. Members: ``data.pkl`` (the
  pickled object), ``byteorder`` (``little``), ``.storage_alignment`` (``64``), one
  ``data/<key>`` per storage holding its raw bytes, ``version`` (``3``) and
  ``.data/serialization_id`` (40 random decimal digits). Every member's data starts on a
  64-byte boundary, padded with an extra field in the local header, so that
  ``mmap=True`` can map storages in place.
* A protocol-2 pickle of a dict name -> ``torch._utils._rebuild_tensor_v2(storage,
  storage_offset, size, stride, requires_grad, collections.OrderedDict())``. The storage
  is a persistent id ``('storage', torch.<Kind>Storage, key, 'cpu', numel)``. Dtypes that
  have no typed storage class (unsigned 16/32/64-bit integers, float8) use
  ``_rebuild_tensor_v3`` instead, with ``torch.storage.UntypedStorage``, numel counted in
  bytes, and the dtype (``torch.uint16``...) as a seventh argument.

``torch.save`` also writes ``.format_version`` = ``1``, which promises miniz's exact layout
(a data descriptor after every member) so that torch may compute storage offsets instead
of reading them; this writer patches CRCs into the local headers instead, so it leaves the
record out and torch reads each offset from its header, as for files of older torch.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Optional

from ...dtypes import DType
from ...errors import CorruptCheckpointError, UnsupportedError
from ...io.streaming import SMALL, copy_tensor, padding_budget, placement_pad
from ...tensor import Tensor
from .storage_types import TYPED_STORAGES, UNTYPED_DTYPES
from .zip_archive import (CENTRAL, CENTRAL_SIG, EOCD, EOCD_SIG, LOCAL, LOCAL_SIG, ZIP64_EOCD,
                          ZIP64_EOCD_SIG, ZIP64_EXTRA_ID, ZIP64_LOCATOR, ZIP64_LOCATOR_SIG)

Progress = Optional[Callable[[int], None]]

ARCHIVE = "archive"
ALIGNMENT = 64
#: Sizes and offsets from this value up need ZIP64 fields (0xFFFFFFFF marks "see ZIP64").
ZIP64_LIMIT = 0xFFFFFFFF



def can_hold(dt: DType) -> bool:
    return dt.name in TYPED_STORAGES or dt.name in UNTYPED_DTYPES


@dataclass(eq=False)  # identity: one object per storage, shared by tied names
class Storage:
    """One ``data/<key>`` member: the tensor whose bytes it holds."""

    key: str
    tensor: Tensor


# --------------------------------------------------------------------------- the pickle


def contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """C-order strides in elements; torch counts a zero-length dimension as length 1."""
    strides = []
    step = 1
    for dim in reversed(shape):
        strides.append(step)
        step *= max(dim, 1)
    return tuple(reversed(strides))


class _Opcodes:
    """Protocol-2 pickle opcodes written by hand.

    ``pickle.Pickler`` checks every global it names by importing it, so it cannot name
    ``torch.*`` without torch. Globals and repeated strings are memoized, as a pickler would,
    which keeps the pickle of a model with thousands of tensors small.
    """

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")  # PROTO 2
        self._memo: dict[object, int] = {}

    def _put(self, key: object) -> None:
        index = len(self._memo)
        self._memo[key] = index
        self.out += b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index)

    def _get(self, key: object) -> bool:
        index = self._memo.get(key)
        if index is None:
            return False
        self.out += b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index)
        return True

    def global_(self, module: str, name: str) -> None:
        if not self._get((module, name)):
            self.out += b"c" + f"{module}\n{name}\n".encode("ascii")
            self._put((module, name))

    def text(self, value: str, memo: bool = False) -> None:
        if memo and self._get(value):
            return
        data = value.encode("utf-8", "surrogatepass")  # as pickle does for any str
        self.out += b"X" + struct.pack("<I", len(data)) + data
        if memo:
            self._put(value)

    def integer(self, n: int) -> None:
        if 0 <= n < 0x100:
            self.out += b"K" + bytes([n])
        elif 0 <= n < 0x10000:
            self.out += b"M" + struct.pack("<H", n)
        elif -0x80000000 <= n < 0x80000000:
            self.out += b"J" + struct.pack("<i", n)
        else:  # LONG1: little-endian two's complement, one spare bit for the sign
            data = n.to_bytes(n.bit_length() // 8 + 1, "little", signed=True)
            self.out += b"\x8a" + bytes([len(data)]) + data

    def int_tuple(self, values: Sequence[int]) -> None:
        if not values:
            self.out += b")"  # EMPTY_TUPLE
            return
        if len(values) > 3:
            self.out += b"("  # MARK
        for v in values:
            self.integer(v)
        self.out += b"t" if len(values) > 3 else b"\x85\x86\x87"[len(values) - 1:len(values)]

    def tensor(self, storage: Storage) -> None:
        """A rebuilt tensor owning all of ``storage``; tied names get the same object back."""
        if self._get(storage):
            return
        t = storage.tensor
        typed = TYPED_STORAGES.get(t.dtype.name)
        self.global_("torch._utils", "_rebuild_tensor_v2" if typed else "_rebuild_tensor_v3")
        self.out += b"(("  # MARK of the arguments, MARK of the persistent id
        self.text("storage", memo=True)
        if typed:
            self.global_("torch", typed)
        else:
            self.global_("torch.storage", "UntypedStorage")
        self.text(storage.key)
        self.text("cpu", memo=True)
        self.integer(t.size if typed else t.nbytes)  # untyped storages count bytes
        self.out += b"tQ"  # TUPLE, BINPERSID
        self.integer(0)  # storage offset
        self.int_tuple(t.shape)
        self.int_tuple(contiguous_strides(t.shape))
        self.out += b"\x89"  # requires_grad = False
        self.global_("collections", "OrderedDict")
        self.out += b")R"  # backward hooks: OrderedDict()
        if not typed:
            self.global_("torch", t.dtype.name)
        self.out += b"tR"  # TUPLE of the arguments, REDUCE
        self._put(storage)


def state_dict_pickle(entries: Sequence[tuple[str, Storage]]) -> bytes:
    """The protocol-2 pickle of ``{name: tensor}`` in the order given (dtypes ``can_hold``)."""
    ops = _Opcodes()
    ops.out += b"}"  # EMPTY_DICT
    batch = 1000  # SETITEMS per 1000 items, as pickle does: the unpickler's stack stays short
    for start in range(0, len(entries), batch):
        ops.out += b"("
        for name, storage in entries[start:start + batch]:
            ops.text(name)
            ops.tensor(storage)
        ops.out += b"u"  # SETITEMS
    ops.out += b"."  # STOP
    return bytes(ops.out)


# --------------------------------------------------------------------------- the zip archive

_CRC_FIELD = 14                             # offset of the CRC-32 in a local header
_DOS_DATE = (0 << 9) | (1 << 5) | 1          # 1980-01-01, 00:00: output is reproducible
_PADDING_ID = 0x4246                         # the extra field id torch pads with ("FB")
_VERSION = 20                                # 2.0: stored members, folders
_VERSION64 = 45                              # 4.5: ZIP64


def _extra_padding(base: int, source: Optional[int], budget: int) -> int:
    """The size of the padding field for data that would start at ``base``: enough to keep
    the source's placement when the source is ALIGNMENT-aligned, else to reach the next
    ALIGNMENT boundary as torch does. A field is either absent or at least 4 bytes long."""
    if source is not None and source % ALIGNMENT == 0:
        pad = placement_pad(source, base, budget)
        if pad is not None and 0 < pad < 4:  # too short for a field: place the data 4 bytes on
            pad = placement_pad(source, base + 4, budget - 4)
            pad = None if pad is None else pad + 4
        if pad is not None:
            return pad
    pad = -base % ALIGNMENT
    return pad + ALIGNMENT if 0 < pad < 4 else pad


@dataclass
class Member:
    name: bytes
    header_offset: int
    data_offset: int
    size: int
    zip64: bool
    crc: int = 0


class ZipStreamWriter:
    """Appends stored members to a seekable file, then the central directory.

    A member's size is known before its bytes are written (a tensor's size comes from its
    shape), so the local header is complete but for the CRC-32, patched in afterwards:
    no data descriptors, and every header tells the truth on its own.
    """

    def __init__(self, f: BinaryIO, zip64_limit: int = ZIP64_LIMIT):
        self._f = f
        self._limit = zip64_limit
        self.members: list[Member] = []

    def begin(self, name: str, size: int, source: Optional[int] = None) -> Member:
        """Write the local header so the data that follows starts on an ALIGNMENT boundary.

        ``source``: the offset of the data in its source file. When it is itself on an
        ALIGNMENT boundary, the data keeps its placement (streaming.placement_pad) as far
        as an extra field can pad, so the kernel can copy whole page-cache folios.
        """
        offset = self._f.tell()
        raw = name.encode("utf-8")
        zip64 = size >= self._limit
        extra = struct.pack("<2H2Q", ZIP64_EXTRA_ID, 16, size, size) if zip64 else b""
        base = offset + LOCAL.size + len(raw) + len(extra)
        pad = _extra_padding(base, source, min(padding_budget(size), 0xFFFF - len(extra)))
        if pad:
            extra += struct.pack("<2H", _PADDING_ID, pad - 4) + b"Z" * (pad - 4)
        small = 0xFFFFFFFF if zip64 else size
        self._f.write(LOCAL.pack(LOCAL_SIG, _VERSION64 if zip64 else _VERSION, 0, 0, 0,
                                  _DOS_DATE, 0, small, small, len(raw), len(extra)))
        self._f.write(raw + extra)
        data_offset = offset + LOCAL.size + len(raw) + len(extra)
        return Member(raw, offset, data_offset, size, zip64)

    def end(self, member: Member, crc: int) -> None:
        end = self._f.tell()
        self._f.seek(member.header_offset + _CRC_FIELD)
        self._f.write(struct.pack("<I", crc))
        self._f.seek(end)
        member.crc = crc
        self.members.append(member)

    def add_bytes(self, name: str, data: bytes) -> None:
        member = self.begin(name, len(data))
        self._f.write(data)
        self.end(member, zlib.crc32(data))

    def finish(self) -> None:
        """Write the central directory (and its ZIP64 records when anything overflows)."""
        start = self._f.tell()
        for m in self.members:
            self._f.write(self._central(m))
        size = self._f.tell() - start
        count = len(self.members)
        size_over, start_over = size >= self._limit, start >= self._limit
        if count >= 0xFFFF or size_over or start_over:
            end64 = self._f.tell()
            self._f.write(ZIP64_EOCD.pack(ZIP64_EOCD_SIG, ZIP64_EOCD.size - 12, _VERSION64, _VERSION64,
                                      0, 0, count, count, size, start))
            self._f.write(ZIP64_LOCATOR.pack(ZIP64_LOCATOR_SIG, 0, end64, 1))
        entries = min(count, 0xFFFF)
        self._f.write(EOCD.pack(EOCD_SIG, 0, 0, entries, entries,
                                0xFFFFFFFF if size_over else size,
                                0xFFFFFFFF if start_over else start, 0))

    def _central(self, m: Member) -> bytes:
        # ZIP64 fields hold only the values whose 32-bit field says 0xFFFFFFFF, in this order.
        fields = [m.size, m.size] if m.zip64 else []
        far = m.header_offset >= self._limit
        if far:
            fields.append(m.header_offset)
        extra = struct.pack(f"<2H{len(fields)}Q", ZIP64_EXTRA_ID, 8 * len(fields), *fields) \
            if fields else b""
        version = _VERSION64 if extra else _VERSION
        small = 0xFFFFFFFF if m.zip64 else m.size
        return CENTRAL.pack(CENTRAL_SIG, version, version, 0, 0, 0, _DOS_DATE, m.crc, small,
                             small, len(m.name), len(extra), 0, 0, 0, 0,
                             0xFFFFFFFF if far else m.header_offset) + m.name + extra


# --------------------------------------------------------------------------- a whole file


def storages(items: Sequence[tuple[str, Tensor]]) -> list[tuple[str, Storage]]:
    """Pair every name with its storage; names holding the same Tensor object share one."""
    by_tensor: dict[int, Storage] = {}
    out = []
    for name, t in items:
        storage = by_tensor.get(id(t))
        if storage is None:
            storage = by_tensor[id(t)] = Storage(str(len(by_tensor)), t)
        out.append((name, storage))
    return out


def write_state_dict(f: BinaryIO, items: Sequence[tuple[str, Tensor]], *, display: str,
                     progress: Progress = None, zip64_limit: Optional[int] = None) -> None:
    """Write ``items`` to the seekable binary file ``f`` as a ``torch.save`` state dict.

    ``display`` names the file in messages (``f`` is usually a temporary file).
    """
    for name, t in items:
        if not can_hold(t.dtype):  # the writer leaves these out first; never write a lie
            raise UnsupportedError(f"{display}: PyTorch cannot hold {name} ({t.dtype})")
    entries = storages(items)
    zf = ZipStreamWriter(f, ZIP64_LIMIT if zip64_limit is None else zip64_limit)
    zf.add_bytes(f"{ARCHIVE}/data.pkl", state_dict_pickle(entries))
    zf.add_bytes(f"{ARCHIVE}/byteorder", b"little")
    zf.add_bytes(f"{ARCHIVE}/.storage_alignment", str(ALIGNMENT).encode())
    written: set[int] = set()
    for name, storage in entries:
        if id(storage) not in written:
            written.add(id(storage))
            _copy_storage(zf, f, name, storage, display, progress)
    zf.add_bytes(f"{ARCHIVE}/version", b"3\n")
    zf.add_bytes(f"{ARCHIVE}/.data/serialization_id", _serialization_id())
    zf.finish()


def _copy_storage(zf: ZipStreamWriter, f: BinaryIO, name: str, storage: Storage, display: str,
                  progress: Progress) -> None:
    t = storage.tensor
    region = t.file_region() if t.nbytes > SMALL else None
    member = zf.begin(f"{ARCHIVE}/data/{storage.key}", t.nbytes,
                      region.offset if region else None)
    copied = copy_tensor(t, f, crc32=True, progress=progress)
    # The header already states the size the shape implies: a source that yields another
    # count would leave a zip whose offsets lie.
    in_file = f.tell() - member.data_offset
    if copied.nbytes != t.nbytes or in_file != t.nbytes:
        raise CorruptCheckpointError(
            f"{display}: tensor {name} ({t.describe()}) yielded {copied.nbytes} bytes, but "
            f"{t.dtype} {list(t.shape)} holds {t.nbytes}")
    zf.end(member, copied.crc32)


def _serialization_id() -> bytes:
    """Two random 64-bit numbers as 20 decimal digits each: what torch records per save."""
    return "".join(f"{int.from_bytes(os.urandom(8), 'little'):020d}" for _ in range(2)).encode()
