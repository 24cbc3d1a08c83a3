"""The safetensors header: an 8-byte little-endian length, then a JSON object.

The JSON maps each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets
relative to the end of the header) plus an optional ``"__metadata__"`` str -> str object.
:func:`read_header` checks everything the safetensors library checks before a single tensor
byte is trusted: the length is sane for the file, the JSON is an object, every size matches
dtype x shape, and the data regions tile the rest of the file exactly, without gaps,
overlaps or trailing bytes.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any, Optional

from ...io.streaming import padding_budget, placement_pad

from ... import dtypes
from ...dtypes import DType
from ...errors import CorruptCheckpointError, FormatError, UnsupportedError
from ...records import record
from ...tensormap import TensorMap

# The safetensors library refuses headers above 100 MB; so do we, before allocating.
MAX_HEADER = 100_000_000
METADATA_KEY = "__metadata__"
#: Metadata key under which ckconv records names it de-duplicated (alias -> kept name).
TIED_KEY = "ckconv_tied"


@record(frozen=True)
class Entry:
    name: str
    dtype: DType
    shape: tuple[int, ...]
    begin: int  # absolute file offsets
    end: int


@record
class Header:
    path: str
    entries: list[Entry]  # in file order
    metadata: dict[str, str]
    file_size: int


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def read_header(path: str) -> Header:
    """Parse and validate the header of ``path`` (reads the header only)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise CorruptCheckpointError(f"{path}: {size} bytes is too short for a safetensors file")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER or n > size - 8:
                raise CorruptCheckpointError(
                    f"{path}: header length {n} is impossible (file has {size} bytes, "
                    f"limit {MAX_HEADER}); the file is truncated or not safetensors")
            raw = f.read(n)
    except OSError as exc:
        raise FormatError(f"{path}: cannot read ({exc.strerror})") from None
    if len(raw) < n:
        raise CorruptCheckpointError(f"{path}: truncated header")
    if raw[:1] != b"{":
        raise CorruptCheckpointError(f"{path}: header does not start with '{{'")
    try:
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptCheckpointError(f"{path}: header is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise CorruptCheckpointError(f"{path}: header is not a JSON object")
    metadata = doc.pop(METADATA_KEY, None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CorruptCheckpointError(f"{path}: {METADATA_KEY} must map strings to strings")
    data_start = 8 + n
    entries = [_entry(path, name, info, data_start) for name, info in doc.items()]
    entries.sort(key=lambda e: (e.begin, e.end))
    _check_tiling(path, entries, data_start, size)
    return Header(path, entries, dict(metadata), size)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _entry(path: str, name: str, info: Any, data_start: int) -> Entry:
    where = f"{path}: tensor {name!r}"
    if not isinstance(info, dict):
        raise CorruptCheckpointError(f"{where}: entry is not an object")
    code, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(code, str):
        raise CorruptCheckpointError(f"{where}: missing dtype")
    if not isinstance(shape, list) or not all(_is_int(d) for d in shape):
        raise CorruptCheckpointError(f"{where}: shape must be a list of non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)
            and offsets[0] <= offsets[1]):
        raise CorruptCheckpointError(f"{where}: data_offsets must be [begin, end] with begin <= end")
    dt = dtypes.BY_SAFETENSORS.get(code)
    if dt is None:
        raise UnsupportedError(f"{where}: safetensors dtype {code} is not supported by ckconv "
                               f"(known: {', '.join(dtypes.BY_SAFETENSORS)})")
    count = 1
    for d in shape:
        count *= d
    if offsets[1] - offsets[0] != count * dt.itemsize:
        raise CorruptCheckpointError(
            f"{where}: {dt} {shape} needs {count * dt.itemsize} bytes but data_offsets "
            f"{offsets} span {offsets[1] - offsets[0]}")
    return Entry(name, dt, tuple(shape), data_start + offsets[0], data_start + offsets[1])


def _check_tiling(path: str, entries: list[Entry], data_start: int, size: int) -> None:
    pos = data_start
    for e in entries:
        if e.begin != pos:
            what = "overlaps the previous tensor" if e.begin < pos else "leaves a gap before it"
            raise CorruptCheckpointError(
                f"{path}: tensor {e.name!r} starts at data offset {e.begin - data_start}, which "
                f"{what} (expected {pos - data_start})")
        pos = e.end
    if pos != size:
        if pos > size:
            raise CorruptCheckpointError(
                f"{path}: truncated: the header describes {pos - data_start} bytes of tensor data "
                f"but the file holds {size - data_start}")
        raise CorruptCheckpointError(
            f"{path}: {size - pos} unexpected bytes after the last tensor")


def build_header(tmap: TensorMap, metadata: dict[str, str], source_start: Optional[int] = None) -> bytes:
    """The JSON header, padded with spaces to a multiple of 8 bytes like the reference writer.

    ``source_start``: where the data would start if the tensors lay as they do in their
    source file. The header is then padded so that the data keeps that placement
    (streaming.placement_pad) and the kernel can copy whole page-cache folios; the padding
    is trailing JSON whitespace, which every safetensors reader skips.
    """
    header: dict = {METADATA_KEY: metadata} if metadata else {}
    offset = 0
    for name, t in tmap.items():
        end = offset + t.nbytes
        header[name] = {"dtype": t.dtype.safetensors, "shape": list(t.shape),
                        "data_offsets": [offset, end]}
        offset = end
    try:
        raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        # A TF key that is not UTF-8 reaches us surrogate-escaped; JSON headers must be UTF-8.
        bad = [n for n in header if not _is_utf8(n)]
        raise UnsupportedError(f"tensor name {bad[0] if bad else '?'!r} is not valid UTF-8, "
                               "which safetensors headers require; rename it") from None
    pad = None
    if source_start is not None and source_start % 8 == 0:  # data must start 8-aligned
        pad = placement_pad(source_start, 8 + len(raw), padding_budget(offset))
    raw += b" " * (-(len(raw) + 8) % 8 if pad is None else pad)
    return struct.pack("<Q", len(raw)) + raw


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False
