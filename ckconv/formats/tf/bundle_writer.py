"""Write a TensorMap as a TensorFlow V2 checkpoint (tensor bundle).

Output: ``<prefix>.data-SSSSS-of-NNNNN`` shards holding the raw tensor bytes in TensorMap
order, ``<prefix>.index`` (a sorted table mapping each name to a ``BundleEntryProto``), and
an updated ``checkpoint`` state file. For the same tensors in the same order the data and
index files are byte-identical to what TF's ``SaveV2`` writes (docs/formats.md §2-§5).

Values are streamed one tensor at a time, fixed-size tensors chunk by chunk, so memory
stays bounded by one chunk (one string tensor for strings) plus the small index.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Mapping, Optional, Union

from ...io.atomic import AtomicFiles
from ...errors import CorruptCheckpointError, UnsupportedError, UsageError
from ...sizes import parse_size
from ...io.blocks import BlockWriter, Pending
from ...io.streaming import SMALL, copy_tensor, padding_budget, placement_pad
from ...tensor import Tensor
from ...tensormap import TensorMap
from . import entries
from .crc import crc32c, mask
from ..outputs import os_errors, output_directory
from .table_writer import TableWriter
from .varint import encode as varint

HEADER_KEY = b""
#: kTensorBundleVersion; min_consumer stays 0 (omitted), as TF writes it.
BUNDLE_VERSION = 1
#: TensorShape refuses more dimensions than this (TF's TensorShape::MaxDimensions()).
MAX_RANK = 254
_STRING_TF = 7
_VARIANT_TF = 21
_RESOURCE_TF = 20

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def index_filename(prefix: str) -> str:
    return f"{prefix}.index"


def data_filename(prefix: str, shard_id: int, num_shards: int) -> str:
    # %05d is a minimum width in TF too: more than 99999 shards just widens the field.
    return f"{prefix}.data-{shard_id:05d}-of-{num_shards:05d}"


@dataclass
class _Item:
    """One tensor on its way to disk."""

    name: str
    key: bytes
    tensor: Tensor
    shard: int = 0


def write_bundle(tmap: Union[TensorMap, Mapping[str, Any]], prefix: str, *,
                 max_shard_size: Union[int, str, None] = None,
                 progress: Optional[Callable[[int], None]] = None,
                 update_state: Optional[bool] = None) -> list[str]:
    """Write ``tmap`` as the checkpoint ``prefix`` and record it in the ``checkpoint`` file.

    Args:
        tmap: the tensors; their order is the order of the bytes in the data files.
        prefix: checkpoint path prefix, e.g. ``out/model.ckpt-100`` (not a file by itself).
        max_shard_size: bytes per data file (int or a string such as ``"2GB"``); a new shard
            starts when the next tensor would push the current one past it, and a tensor
            larger than the limit gets a shard of its own. Default: a single shard.
        progress: called with the number of bytes after each chunk written.
        update_state: record the checkpoint as the latest in its directory's ``checkpoint``
            file. None (the default) does so only where that file is missing or already names
            it; False never; True always. A training run's state file is never repointed
            without being asked.

    Returns:
        Human-readable notes about what was written.

    Raises:
        UnsupportedError: a name or dtype TF cannot store (nothing is written).
        UsageError: a bad prefix or shard size.
    """
    tmap = TensorMap.from_any(tmap)
    prefix = _check_prefix(prefix)
    _refuse_overwriting_input(tmap, prefix)
    limit = _check_limit(max_shard_size)
    # Validate everything before the first byte is written, so a refusal leaves no trace.
    items = [_check_tensor(name, tmap[name]) for name in tmap]
    seen: set[bytes] = set()
    for item in items:
        if item.key in seen:
            raise UnsupportedError(f"tensor {item.name!r}: duplicate name")
        seen.add(item.key)
    num_shards = _plan_shards(items, limit) if limit is not None else 1

    entries: dict[bytes, bytes] = {}
    total = 0
    with output_directory(prefix), os_errors(prefix):
        with AtomicFiles() as files:
            # Commit order: every data shard before the index that makes the checkpoint visible.
            data_paths = [files.path(data_filename(prefix, i, num_shards)) for i in range(num_shards)]
            index_path = files.path(index_filename(prefix))
            for shard_id, path in enumerate(data_paths):
                # Computed tensors are written by the block writer's threads while this one
                # goes on; their checksums are known when it closes, before the index.
                placed: list[tuple[_Item, int, int, Union[int, Pending]]] = []
                with open(path, "wb") as f, BlockWriter(f.fileno()) as blocks:
                    offset = 0
                    for item in items:
                        if item.shard != shard_id:
                            continue
                        pad = _placement_padding(item.tensor, offset)
                        if pad:
                            f.write(bytes(pad))
                            offset += pad
                        size, crc = _write_tensor(f, item, progress, blocks)
                        placed.append((item, offset, size, crc))
                        offset += size
                    f.flush()
                    total += offset
                if progress:
                    progress(blocks.take_progress())
                for item, at, size, crc in placed:
                    if not isinstance(crc, int):
                        crc = mask(crc.result().crc32c)
                    entries[item.key] = _entry_bytes(item.tensor, shard_id, at, size, crc)
            with open(index_path, "wb") as f:
                table = TableWriter(f)
                table.add(HEADER_KEY, header_bytes(num_shards))
                for key in sorted(entries):  # bytewise order of the UTF-8 names, as TF's std::map
                    table.add(key, entries[key])
                table.finish()
        from .state import record_latest

        return record_latest(prefix, update_state)


def header_bytes(num_shards: int) -> bytes:
    """The value of the header entry: LITTLE endianness (the default, hence omitted)."""
    return entries.encode_header(num_shards, BUNDLE_VERSION)


def _entry_bytes(tensor: Tensor, shard_id: int, offset: int, size: int, crc: int) -> bytes:
    return entries.encode_entry(tensor.dtype.tf, tensor.shape, shard_id, offset, size, crc)


def _check_prefix(prefix: Any) -> str:
    try:
        prefix = os.fspath(prefix)
    except TypeError:
        raise UsageError(f"checkpoint prefix must be a path, got {type(prefix).__name__}") from None
    if isinstance(prefix, bytes):
        prefix = os.fsdecode(prefix)
    if not prefix or not os.path.basename(prefix) or os.path.isdir(prefix):
        raise UsageError(f"checkpoint prefix {prefix!r} must name a file prefix such as "
                         "'out/model.ckpt', not a directory")
    return prefix


def _refuse_overwriting_input(tmap: TensorMap, prefix: str) -> None:
    """None of the files the checkpoint ``prefix`` consists of may be an input file."""
    stem = os.path.realpath(prefix)
    for src in tmap.source_files:
        real = os.path.realpath(src)
        if real in (stem, stem + ".index") or real.startswith(stem + ".data-"):
            raise UsageError(f"{prefix}: would overwrite the input file {src}")


def _check_limit(max_shard_size: Union[int, str, None]) -> Optional[int]:
    if max_shard_size is None:
        return None
    limit = parse_size(max_shard_size)
    if limit <= 0:
        raise UsageError(f"max_shard_size must be positive, got {max_shard_size!r}")
    return limit


def _check_tensor(name: str, tensor: Tensor) -> _Item:
    """Refuse what TF cannot store, naming the tensor."""
    if not isinstance(name, str):
        raise UnsupportedError(f"tensor {name!r}: names must be str")
    if name == "":
        raise UnsupportedError("tensor '': TF checkpoints cannot hold an empty tensor name "
                               "(the empty key is the bundle header)")
    try:
        key = name.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsupportedError(f"tensor {name!r}: name is not valid Unicode (lone surrogate?); "
                               "TF tools decode checkpoint keys as UTF-8") from None
    dt = tensor.dtype
    if dt.tf == _VARIANT_TF:
        raise UnsupportedError(f"tensor {name!r}: variant tensors cannot be written "
                               "(their payload needs TF's C++ variant encoders)")
    if dt.tf is None or dt.tf in (0, _RESOURCE_TF) or dt.tf >= 100:
        raise UnsupportedError(f"tensor {name!r}: dtype {dt.name} cannot be stored in a TF checkpoint")
    if dt.is_variable_length and dt.tf != _STRING_TF:
        raise UnsupportedError(f"tensor {name!r}: dtype {dt.name} has no TF byte layout")
    if len(tensor.shape) > MAX_RANK or any(d < 0 for d in tensor.shape):
        raise UnsupportedError(f"tensor {name!r}: shape {list(tensor.shape)} is not a valid TF "
                               f"shape (at most {MAX_RANK} non-negative dimensions)")
    return _Item(name, key, tensor)


def _plan_shards(items: list[_Item], limit: int) -> int:
    """Assign consecutive runs of tensors to shards; return the number of shards."""
    shard = 0
    used = 0
    for item in items:
        size = _disk_size(item)
        pad = _placement_padding(item.tensor, used)  # the padding the writer will put here
        # An empty tensor never forces a new shard, even after an oversized one.
        if used > 0 and size > 0 and used + pad + size > limit:
            shard += 1
            used = 0
            pad = _placement_padding(item.tensor, 0)
        item.shard = shard
        used += pad + size
    return shard + 1


def _disk_size(item: _Item) -> int:
    t = item.tensor
    if not t.dtype.is_variable_length:
        return t.size * t.dtype.itemsize
    # Strings: the size needs the lengths, so the values are read here and again when
    # written; reading twice keeps memory bounded to one string tensor at a time.
    elems = _string_elements(item)
    return sum(len(varint(len(e))) + len(e) for e in elems) + 4


def _placement_padding(t: Tensor, offset: int) -> int:
    """The zeros to write before a large tensor at ``offset`` so it keeps its source's
    placement (streaming.placement_pad), letting the kernel copy whole page-cache folios.
    TF's own BundleWriter pads between tensors likewise when asked for data alignment:
    readers go by each entry's offset. Sources laid out like the output (TF to TF,
    in-memory arrays) need no padding, so their output stays byte-identical to SaveV2's."""
    if t.dtype.is_variable_length or t.nbytes <= SMALL:
        return 0
    region = t.file_region()
    pad = placement_pad(region.offset, offset, padding_budget(t.nbytes)) if region else None
    return pad or 0


def _write_tensor(f: BinaryIO, item: _Item, progress: Optional[Callable[[int], None]] = None,
                  blocks: Optional[BlockWriter] = None) -> "tuple[int, Union[int, Pending]]":
    """Append one tensor's bytes; return (size, masked CRC for its entry), or (size, the
    pending plan whose CRC-32C that will be) when ``blocks`` computes it."""
    if item.tensor.dtype.is_variable_length:
        return _write_strings(f, item)
    t = item.tensor
    expected = t.size * t.dtype.itemsize
    copied = copy_tensor(t, f, crc32c=True, progress=progress, blocks=blocks)
    if copied.nbytes != expected:
        raise CorruptCheckpointError(
            f"tensor {item.name!r} ({t.describe()}): produced {copied.nbytes} bytes, expected "
            f"{expected} for {t.dtype.name} {list(t.shape)}")
    if copied.pending is not None:
        return copied.nbytes, copied.pending
    return copied.nbytes, mask(copied.crc32c)


def _write_strings(f: BinaryIO, item: _Item) -> tuple[int, int]:
    """docs/formats.md §5.4: varint64 lengths, masked length checksum, then the bytes.

    The entry CRC runs over each length as a fixed-width LE integer (u32, or u64 for a
    string over 4 GiB, for compatibility with TF's old 32-bit lengths), then the 4 stored
    checksum bytes, then the string bytes.
    """
    elems = _string_elements(item)
    lengths = bytearray()
    crc = 0
    for e in elems:
        n = len(e)
        lengths += varint(n)
        crc = crc32c(_U32.pack(n) if n <= 0xFFFFFFFF else _U64.pack(n), crc)
    checksum = _U32.pack(mask(crc))
    crc = crc32c(checksum, crc)
    f.write(lengths)
    f.write(checksum)
    size = len(lengths) + 4
    for e in elems:
        f.write(e)
        crc = crc32c(e, crc)
        size += len(e)
    return size, mask(crc)


def _string_elements(item: _Item) -> list[bytes]:
    t = item.tensor
    import numpy as np

    arr = np.asarray(t.numpy())
    if arr.size != t.size:
        raise CorruptCheckpointError(f"tensor {item.name!r} ({t.describe()}): has {arr.size} "
                                     f"elements, expected {t.size} for shape {list(t.shape)}")
    out: list[bytes] = []
    for v in arr.reshape(-1):  # row-major, as TF lays strings out
        if isinstance(v, (bytes, bytearray, memoryview, np.bytes_)):
            out.append(bytes(v))
        elif isinstance(v, str):
            try:
                out.append(v.encode("utf-8"))
            except UnicodeEncodeError:
                raise UnsupportedError(f"tensor {item.name!r}: string element is not valid Unicode") from None
        else:
            raise UnsupportedError(f"tensor {item.name!r}: string element of type "
                                   f"{type(v).__name__} is not bytes")
    return out
