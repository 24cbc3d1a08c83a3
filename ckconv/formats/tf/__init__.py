"""TensorFlow V2 checkpoints (``tf.train.Saver``, ``tf.train.Checkpoint``, Keras 2 TF format)."""

from __future__ import annotations

import os

from ...errors import CkconvError, FormatError
from ...tensormap import TensorMap
from . import paths
from .table import has_magic

NAME = "tf"
EXTENSIONS = (".ckpt", ".index")


def sniff(path: str) -> bool:
    try:
        prefix = paths.resolve_prefix(path)
    except CkconvError:
        return os.path.isdir(path)  # a directory of several checkpoints: ours, with an error
    if prefix is not None:
        return True  # an existing <prefix>.index: damaged or not, the TF reader explains
    # A legacy V1 checkpoint is a bare SSTable file: claim it to give a precise error.
    return os.path.isfile(path) and has_magic(path)


def read(path: str, **options) -> TensorMap:
    from .bundle import read_bundle

    prefix = paths.resolve_prefix(path)
    if prefix is None:
        if os.path.isfile(path) and has_magic(path):
            raise FormatError(f"{path}: a TF V1 checkpoint (SavedTensorSlices); only V2 "
                              "checkpoints (.index + .data files) are supported")
        raise FormatError(paths.missing_message(path))
    return read_bundle(prefix)


def output_prefix(path: str) -> str:
    return path[: -len(".index")] if path.endswith(".index") else path


def write(tmap: TensorMap, path: str, *, max_shard_size=None, progress=None,
          skip_unsupported: bool = False, **options) -> list[str]:
    from .bundle_writer import write_bundle

    notes: list[str] = []
    if skip_unsupported:
        bad = [n for n, t in tmap.items() if t.dtype.tf is None or t.dtype.name == "variant"]
        if bad:
            tmap = tmap.copy()
            for n in bad:
                del tmap[n]
            notes.append(f"left out {len(bad)} tensor(s) TF cannot hold: {', '.join(bad[:5])}")
    return notes + write_bundle(tmap, output_prefix(path), max_shard_size=max_shard_size,
                                progress=progress)
