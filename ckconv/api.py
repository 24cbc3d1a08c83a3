"""The library API: load, save, convert."""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

from . import formats, remote
from .errors import FormatError, UsageError
from .tensormap import TensorMap

PathLike = Union[str, "os.PathLike[str]"]

#: TF2's serialized object graph: structure for TF's restore, not a weight.
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


def load(path: PathLike, format: Optional[str] = None, *, step: Optional[int] = None,
         collections: Union[None, str, Sequence[str]] = None, **options: Any) -> TensorMap:
    """Open a checkpoint lazily; the format is sniffed from content unless given.

    Args:
        step: TF only: pick the checkpoint of this global step from a directory (also
            written ``"run_dir@1000"``), see ``ckconv inspect DIR`` for the list.
        collections: TF1 only: keep just the tensors of these graph collections (e.g.
            ``"trainable_variables"``), read from the checkpoint's ``.meta`` file.
    """
    path = os.fspath(path)
    if remote.is_url(path):  # s3://, gs://, hf://...: staged locally (ckconv/remote)
        from .remote.api import load as load_remote

        return load_remote(path, format, step=step, collections=collections, **options)
    options.pop("storage_options", None)
    if format is None and step is not None:
        try:
            fmt = formats.sniff(path)
        except FormatError:
            fmt = "tf"  # "run/model.ckpt" + step names run/model.ckpt-<step>: TF explains
    else:
        fmt = format or formats.sniff(path)
    if step is not None:
        if fmt != "tf":
            raise UsageError(f"{path}: --step/step= selects among TF checkpoints; this is {fmt}")
        options["step"] = step
    tmap = formats.get(fmt).read(path, **options)
    if collections:
        from .surgery import select_collections

        tmap = select_collections(tmap, collections)
    return tmap


def save(tensors: Any, path: PathLike, format: Optional[str] = None, **options: Any) -> list[str]:
    """Write a TensorMap (or a dict of arrays) to ``path``; returns notes for the user.

    The output format comes from ``format`` or else from the extension of ``path``.
    Everything is written to temporary files first and renamed into place at the end.
    """
    path = os.fspath(path)
    if remote.is_url(path):  # written locally, then uploaded (ckconv/remote)
        from .remote.api import save as save_remote

        return save_remote(tensors, path, format, **options)
    options.pop("storage_options", None)
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
            dst_format: Optional[str] = None, step: Optional[int] = None,
            collections: Union[None, str, Sequence[str]] = None, rules: Any = None,
            preset: Union[None, str, Sequence[str]] = None, reverse: bool = False,
            include: Sequence[str] = (), exclude: Sequence[str] = (),
            dtype: Optional[str] = None, keep_optimizer: bool = False,
            **options: Any) -> list[str]:
    """Load ``src`` (see :func:`load` for ``step``/``collections``) and save it as ``dst``.

    ``src`` and ``dst`` may be URLs (``s3://``, ``gs://``, ``hf://``...; ``storage_options``
    passes credentials and endpoints to fsspec, see docs/remote-and-batch.md).

    Name mapping (see :mod:`ckconv.rules`): ``preset`` names then ``rules`` (files or
    ``ckconv.rules.load(...)`` objects) are applied in order, backwards with ``reverse``;
    ``include``/``exclude`` regexes select source names first; ``dtype`` ("bf16", "fp16",
    "fp32") casts floating-point tensors last; ``keep_optimizer`` keeps optimizer state
    that presets drop. Returns notes for the user.
    """
    tmap = load(src, src_format, step=step, collections=collections,
                storage_options=options.get("storage_options"))
    from .converters.catalog import build

    mapping = build(rules, preset, reverse=reverse, include=include, exclude=exclude,
                    dtype=dtype, flags=["keep-optimizer"] if keep_optimizer else [])
    if mapping is not None:
        tmap = tmap.map(mapping)
    return list(tmap.notes) + save(tmap, dst, dst_format, **options)


def _refuse_overwriting_input(tmap: TensorMap, dst: str) -> None:
    real = os.path.realpath(dst)
    stem = real[: -len(".index")] if real.endswith(".index") else real
    for src in tmap.source_files:
        s = os.path.realpath(src)
        if s == real or s == stem + ".index" or s.startswith(stem + ".data-"):
            raise UsageError(f"{dst}: would overwrite the input file {src}")
