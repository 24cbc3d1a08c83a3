"""safetensors files: an 8-byte header length, a JSON header, then raw little-endian bytes."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from typing import Optional

from ..atomic import AtomicFiles
from ..errors import CkconvError, UnsupportedError
from ..tensormap import TensorMap

NAME = "safetensors"
EXTENSIONS = (".safetensors",)

# The safetensors library refuses headers above 100 MB; so do we, before allocating.
MAX_HEADER = 100_000_000

Progress = Optional[Callable[[int], None]]


def sniff(path: str) -> bool:
    try:
        size = os.path.getsize(path)
        if not os.path.isfile(path) or size < 10:
            return False
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            return n <= min(size - 8, MAX_HEADER) and f.read(1) == b"{"
    except OSError:
        return False


def read(path: str, **options) -> TensorMap:
    raise UnsupportedError(f"{path}: reading safetensors arrives with a later release")


def unsupported(tmap: TensorMap) -> list[str]:
    """Names of tensors safetensors cannot hold."""
    return [name for name, t in tmap.items() if t.dtype.safetensors is None]


def build_header(tmap: TensorMap, metadata: dict[str, str]) -> bytes:
    """The JSON header, padded with spaces to a multiple of 8 bytes like the reference writer."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, t in tmap.items():
        end = offset + t.nbytes
        header[name] = {"dtype": t.dtype.safetensors, "shape": list(t.shape),
                        "data_offsets": [offset, end]}
        offset = end
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-(len(raw) + 8) % 8)
    return struct.pack("<Q", len(raw)) + raw


def write(tmap: TensorMap, path: str, *, skip_unsupported: bool = False,
          progress: Progress = None, **options) -> list[str]:
    notes: list[str] = []
    bad = unsupported(tmap)
    if bad:
        shown = ", ".join(f"{n} ({tmap[n].dtype})" for n in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        if not skip_unsupported:
            raise UnsupportedError(f"{path}: safetensors cannot hold {shown}{more}; "
                                   "pass --skip-unsupported to leave them out")
        tmap = tmap.copy()
        for name in bad:
            del tmap[name]
        notes.append(f"left out {len(bad)} tensor(s) safetensors cannot hold: {shown}{more}")
    metadata = {str(k): str(v) for k, v in tmap.metadata.items()}
    metadata.setdefault("format", "pt")  # Hugging Face loaders insist on this key
    if tmap.format:
        metadata.setdefault("source_format", tmap.format)
    with AtomicFiles() as files:
        with open(files.path(path), "wb") as f:
            f.write(build_header(tmap, metadata))
            for name, t in tmap.items():
                written = 0
                for chunk in t.iter_bytes():
                    f.write(chunk)
                    written += len(chunk)
                    if progress:
                        progress(len(chunk))
                if written != t.nbytes:
                    raise CkconvError(f"tensor {name!r} produced {written} bytes, "
                                           f"expected {t.nbytes}")
    return notes
