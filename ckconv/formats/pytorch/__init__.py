"""PyTorch ``torch.save`` files: ``.pt`` / ``.pth`` / ``.bin`` state dicts, Lightning ``.ckpt``.

Recognised by content: a zip archive holding ``<name>/data.pkl`` (the format since torch 1.6)
or a pickle that starts with torch's legacy magic number. Hugging Face sharded checkpoints
(``pytorch_model.bin.index.json``) read as one map. Zip archives are read without torch
(:mod:`.torchzip_reader`); torch is an optional dependency, imported only for legacy files
and for the rare archive that ckconv's own reader hands over to ``torch.load``.
"""

from __future__ import annotations

import os

from ...errors import CkconvError
from ...tensormap import TensorMap
from .. import hub_weight_sniffers, sharding
from .storage_types import LEGACY_MAGIC as _LEGACY_MAGIC

NAME = "torch"


def sniff_file(path: str) -> bool:
    """A single ``torch.save`` file, judged by its bytes (never raises)."""
    try:
        if not os.path.isfile(path):
            return False
        with open(path, "rb") as f:
            head = f.read(len(_LEGACY_MAGIC))
        if head.startswith(_LEGACY_MAGIC):
            return True
        if not head.startswith(b"PK\x03\x04"):
            return False
        return any(n == "data.pkl" or n.endswith("/data.pkl") for n in _member_names(path))
    except Exception:
        return False


def _member_names(path: str) -> list[str]:
    """The archive's member names, by ckconv's own directory parser: importing zipfile
    would slow down the start of every run (docs/performance.md). A directory the parser
    refuses is listed by zipfile, so that a damaged torch file is still recognised and the
    reader names the damage."""
    from .zip_archive import member_names

    try:
        with open(path, "rb") as f:
            return member_names(f.fileno(), path)
    except CkconvError:
        import zipfile

        with zipfile.ZipFile(path) as z:
            return z.namelist()


def sniff(path: str) -> bool:
    return sharding.sniff_weights(path, NAME, hub_weight_sniffers())


def output_files(path: str) -> list[str]:
    """The files whose existence means a checkpoint is at ``path``: it or its index."""
    from .writer import DEFAULT_NAME

    base = sharding.output_base(path, DEFAULT_NAME)
    return [base, sharding.index_name(base)]


def read(path: str, **options) -> TensorMap:
    from .reader import read_file

    # dequantize=True: quantized tensors as float32 values (docs/pytorch-quantized.md);
    # skip_unsupported=True: what pickled modules hold beyond state_dict() is left out
    dequantize = bool(options.get("dequantize", False))
    skip = bool(options.get("skip_unsupported", False))
    return sharding.read_weights(path, NAME, "a PyTorch one",
                                 lambda p: read_file(p, dequantize, skip), hub_weight_sniffers())


def write(tmap: TensorMap, path: str, **options) -> list[str]:
    from .writer import write as write_torch

    return write_torch(tmap, path, **options)
