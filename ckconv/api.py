"""The library API: load, save, convert."""

from __future__ import annotations

import os
from typing import Any, Optional, Union

from . import formats
from .errors import UsageError
from .tensormap import TensorMap

PathLike = Union[str, "os.PathLike[str]"]

#: TF2's serialized object graph: structure for TF's restore, not a weight.
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


def load(path: PathLike, format: Optional[str] = None, **options: Any) -> TensorMap:
    """Open a checkpoint lazily; the format is sniffed from content unless given."""
    path = os.fspath(path)
    fmt = format or formats.sniff(path)
    return formats.get(fmt).read(path, **options)


def save(tensors: Any, path: PathLike, format: Optional[str] = None, **options: Any) -> list[str]:
    """Write a TensorMap (or a dict of arrays) to ``path``; returns notes for the user.

    The output format comes from ``format`` or else from the extension of ``path``.
    Everything is written to temporary files first and renamed into place at the end.
    """
    path = os.fspath(path)
    tmap = TensorMap.from_any(tensors)
    fmt = format or formats.for_output(path)
    notes: list[str] = []
    if fmt != "tf" and OBJECT_GRAPH_KEY in tmap:
        tmap = tmap.copy()
        del tmap[OBJECT_GRAPH_KEY]
        notes.append(f"left out {OBJECT_GRAPH_KEY} (TF object-graph structure, not a weight)")
    _refuse_overwriting_input(tmap, path)
    notes += formats.get(fmt).write(tmap, path, **options)
    return notes


def convert(src: PathLike, dst: PathLike, *, src_format: Optional[str] = None,
            dst_format: Optional[str] = None, **options: Any) -> list[str]:
    """Load ``src`` and save it as ``dst``; returns notes for the user."""
    tmap = load(src, src_format)
    return list(tmap.notes) + save(tmap, dst, dst_format, **options)


def _refuse_overwriting_input(tmap: TensorMap, dst: str) -> None:
    real = os.path.realpath(dst)
    stem = real[: -len(".index")] if real.endswith(".index") else real
    for src in tmap.source_files:
        s = os.path.realpath(src)
        if s == real or s == stem + ".index" or s.startswith(stem + ".data-"):
            raise UsageError(f"{dst}: would overwrite the input file {src}")
