"""safetensors files: an 8-byte header length, a JSON header, then raw little-endian bytes.

Reads a single ``.safetensors`` file, a Hugging Face ``*.safetensors.index.json`` sharded
checkpoint, or a directory holding one of those; writes one file or, with
``max_shard_size``, the Hugging Face sharded layout.
"""

from __future__ import annotations

import os
import struct

from ...tensormap import TensorMap
from .. import hub_weight_sniffers, sharding
from .header import MAX_HEADER
from .writer import write  # the registry calls formats.safetensors.write

NAME = "safetensors"


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


def sniff(path: str) -> bool:
    return sharding.sniff_weights(path, NAME, hub_weight_sniffers())


def output_files(path: str) -> list[str]:
    """The files whose existence means a checkpoint is at ``path``: it or its index."""
    from .writer import DEFAULT_NAME

    base = sharding.output_base(path, DEFAULT_NAME)
    return [base, sharding.index_name(base)]


def read(path: str, **options) -> TensorMap:
    from .reader import read_file

    return sharding.read_weights(path, NAME, "safetensors", read_file, hub_weight_sniffers())
