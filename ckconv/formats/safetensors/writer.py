"""Writing safetensors: header first, then each tensor's bytes streamed in order.

safetensors cannot share storage between names. Names that hold the very same tensor
(tied weights read from PyTorch or HDF5 hard links) are written once; the others are left
out with a note and recorded in the ``ckconv_tied`` metadata entry, which ckconv's reader
uses to restore them. With ``max_shard_size`` the output follows the Hugging Face sharded
layout (see :mod:`ckconv.formats.sharding`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Optional

from ...errors import CkconvError, UnsupportedError
from ...io.blocks import BlockWriter
from ...io.streaming import SMALL, copy_tensor, reserve_rest
from ...tensormap import TensorMap
from .. import sharding
from ..outputs import leave_out
from .header import METADATA_KEY, TIED_KEY, build_header

Progress = Optional[Callable[[int], None]]
DEFAULT_NAME = "model.safetensors"


def unsupported(tmap: TensorMap) -> list[str]:
    """Names of tensors safetensors cannot hold."""
    return [name for name, t in tmap.items() if t.dtype.safetensors is None]


def drop_unsupported(tmap: TensorMap, path: str, skip: bool, notes: list[str]) -> TensorMap:
    return leave_out(tmap, unsupported(tmap), path, "safetensors cannot hold", skip, notes)


def split_tied(tmap: TensorMap) -> tuple[TensorMap, dict[str, str]]:
    """Keep the first name of each tensor object; return the others as alias -> kept name."""
    first: dict[int, str] = {}
    tied: dict[str, str] = {}
    for name, t in tmap.items():
        if id(t) in first:
            tied[name] = first[id(t)]
        else:
            first[id(t)] = name
    if not tied:
        return tmap, tied
    out = tmap.copy()
    for name in tied:
        del out[name]
    return out, tied


def _write_one(tmap: TensorMap, path: str, metadata: dict[str, str], progress: Progress) -> None:
    with open(path, "wb") as f:
        f.write(build_header(tmap, metadata, _placement(tmap)))
        f.flush()
        reserve_rest(f, tmap.nbytes)
        # The header fixed every tensor's place: computed tensors are written by the block
        # writer's threads while this one goes on with the next tensors.
        with BlockWriter(f.fileno()) as blocks:
            for name, t in tmap.items():
                written = copy_tensor(t, f, progress=progress, blocks=blocks,
                                      reserved=True).nbytes
                if written != t.nbytes:
                    raise CkconvError(f"tensor {name!r} produced {written} bytes, expected "
                                      f"{t.nbytes}")
            f.flush()
        if progress:
            progress(blocks.take_progress())


def _placement(tmap: TensorMap) -> Optional[int]:
    """Where the data would start if the first large tensor lay where its source has it;
    every later tensor packed after it in the same order then keeps its placement too.
    None for small outputs: they keep the reference writer's layout."""
    relative = 0
    for t in tmap.values():
        if t.nbytes > SMALL:
            region = t.file_region()
            return None if region is None else region.offset - relative
        relative += t.nbytes
    return None


def write(tmap: TensorMap, path: str, *, skip_unsupported: bool = False,
          progress: Progress = None, max_shard_size: "int | str | None" = None,
          **options) -> list[str]:
    notes: list[str] = []
    base = sharding.output_base(path, DEFAULT_NAME)
    tmap = drop_unsupported(tmap, base, skip_unsupported, notes)
    if METADATA_KEY in tmap:
        raise UnsupportedError(f"{base}: a tensor named {METADATA_KEY!r} cannot be stored in "
                               "safetensors (the name is reserved for the header's metadata)")
    tmap, tied = split_tied(tmap)
    if tied:
        shown = ", ".join(f"{a} (= {k})" for a, k in list(tied.items())[:5])
        notes.append(f"safetensors cannot share storage: wrote {len(tied)} tied tensor(s) once "
                     f"and left out the duplicate name(s) {shown}; ckconv restores them on "
                     f"reading (metadata {TIED_KEY})")
    metadata = {str(k): str(v) for k, v in tmap.metadata.items()}
    metadata.pop(TIED_KEY, None)
    metadata.setdefault("format", "pt")  # Hugging Face loaders insist on this key
    if tmap.format:
        metadata.setdefault("source_format", tmap.format)

    def write_one(names: list[str], tmp: str, final: str) -> None:
        members = set(names)
        shard_tied = {a: k for a, k in tied.items() if k in members}
        meta = dict(metadata, **({TIED_KEY: json.dumps(shard_tied)} if shard_tied else {}))
        _write_one(tmap.subset(names), tmp, meta, progress)

    return notes + sharding.write_sharded(tmap, path, DEFAULT_NAME, max_shard_size, write_one)
