"""safetensors files: an 8-byte header length, a JSON header, then raw little-endian bytes.

Reads a single ``.safetensors`` file, a Hugging Face ``*.safetensors.index.json`` sharded
checkpoint, or a directory holding one of those; writes one file or, with
``max_shard_size``, the Hugging Face sharded layout.
"""

from __future__ import annotations

import os
import struct

from ...errors import FormatError
from ...tensormap import TensorMap
from .. import sharding
from .header import MAX_HEADER, build_header  # noqa: F401  (re-exported)
from .writer import Progress, unsupported, write  # noqa: F401  (re-exported)

NAME = "safetensors"
EXTENSIONS = (".safetensors",)


def sniff_file(path: str) -> bool:
    """A plain file whose first bytes are a plausible safetensors header."""
    try:
        if not os.path.isfile(path):
            return False
        size = os.path.getsize(path)
        if size < 10:
            return False
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            return n <= min(size - 8, MAX_HEADER) and f.read(1) == b"{"
    except OSError:
        return False


def _directory_choice(path: str) -> tuple[str, str]:
    from .. import pytorch

    return sharding.pick_in_directory(path, {NAME: sniff_file, pytorch.NAME: pytorch.sniff_file})


def sniff(path: str) -> bool:
    try:
        path = sharding.via_index(path)
        if os.path.isdir(path):
            try:
                return _directory_choice(path)[0] == NAME
            except Exception:
                # Several safetensors files and no index: ours, so read() names them.
                return any(sniff_file(os.path.join(path, n)) for n in os.listdir(path))
        first = sharding.looks_like_index(path)
        if first is not None:
            return sniff_file(first)
        return sniff_file(path)
    except Exception:  # sniffing never raises
        return False


def read(path: str, **options) -> TensorMap:
    from .reader import read_file, read_sharded

    path = sharding.via_index(path)
    if os.path.isdir(path):
        fmt, chosen = _directory_choice(path)
        if fmt != NAME:
            raise FormatError(f"{path}: holds a {fmt} checkpoint ({os.path.basename(chosen)}), "
                              "not safetensors")
        path = chosen
    if sharding.looks_like_index(path) is not None:
        return read_sharded(path)
    return read_file(path)
