"""The library API: load, save, convert, diff."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from . import formats, remote
from .errors import FormatError, OutputExistsError, UsageError, listing
from .tensormap import TensorMap

if TYPE_CHECKING:
    from .converters.diff import DiffReport

PathLike = Union[str, "os.PathLike[str]"]


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

        return load_remote(path, format, read_local=load, step=step, collections=collections,
                           **options)
    options.pop("storage_options", None)
    _refuse_step_of_other_formats(path, format, step)
    if format is None and step is not None:
        try:
            fmt = formats.sniff(path)
        except FormatError:
            fmt = "tf"  # "run/model.ckpt" + step names run/model.ckpt-<step>: TF explains
    else:
        fmt = format or formats.sniff(path)
    if step is not None:
        if fmt != "tf":
            raise UsageError(f"{path}: a step selects among TF checkpoints; this is a {fmt} "
                             "checkpoint")
        options["step"] = step
    tmap = formats.get(fmt).read(path, **options)
    if collections:
        from .surgery import select_collections

        tmap = select_collections(tmap, collections)
    return tmap


def _refuse_step_of_other_formats(path: str, format: Optional[str], step: Optional[int]) -> None:
    """``sd.pt@3`` asks for a step of a file that has none: the same usage error as
    ``step=3`` on it, not "no such file"."""
    import re

    m = re.fullmatch(r"(.+)@(\d+)", path) if step is None and not os.path.exists(path) else None
    if m is None or not os.path.isfile(m.group(1)):
        return
    fmt = format or formats.sniff(m.group(1))
    if fmt != "tf":
        raise UsageError(f"{path}: a step selects among TF checkpoints; {m.group(1)} is a "
                         f"{fmt} checkpoint")


def save(tensors: Any, path: PathLike, format: Optional[str] = None, *,
         overwrite: bool = True, **options: Any) -> list[str]:
    """Write a TensorMap (or a dict of arrays) to ``path``; returns notes for the user.

    The output format comes from ``format`` or else from the name of ``path``. Everything
    is written to temporary files first and renamed into place at the end. With
    ``overwrite=False`` an existing checkpoint at ``path`` is an OutputExistsError.
    Format options: ``max_shard_size`` (bytes or ``"2GB"``), ``skip_unsupported``,
    ``h5_layout`` (HDF5), ``update_state`` (TF: record the checkpoint as the latest in an
    existing ``checkpoint`` file).
    """
    path = os.fspath(path)
    if remote.is_url(path):  # written locally, then uploaded (ckconv/remote)
        from .remote.api import save as save_remote

        return save_remote(tensors, path, format, write_local=save, overwrite=overwrite,
                           **options)
    options.pop("storage_options", None)
    tmap = TensorMap.from_any(tensors)
    fmt = format or formats.for_output(path)
    if not overwrite:
        existing = formats.existing_outputs(fmt, path)
        if existing:
            raise OutputExistsError(f"{listing(existing)} already exists",
                                    api_hint="overwrite=True replaces it",
                                    cli_hint="pass --force to replace it")
    notes: list[str] = []
    structure = formats.foreign_structure(tmap, fmt)
    if structure:  # e.g. TF2's object graph: structure for TF's restore, not a weight
        tmap = tmap.subset([n for n in tmap if n not in structure])
        notes.append(f"left out {listing(structure)} (checkpoint structure, not a weight; "
                     f"{fmt} does not carry it)")
    _refuse_overwriting_input(tmap, path)
    notes += formats.get(fmt).write(tmap, path, **options)
    return notes


def convert(src: PathLike, dst: PathLike, *, src_format: Optional[str] = None,
            dst_format: Optional[str] = None, step: Optional[int] = None,
            collections: Union[None, str, Sequence[str]] = None, rules: Any = None,
            preset: Union[None, str, Sequence[str]] = None, reverse: bool = False,
            include: Sequence[str] = (), exclude: Sequence[str] = (),
            dtype: Optional[str] = None, keep_optimizer: bool = False,
            like: Any = None, **options: Any) -> list[str]:
    """Load ``src`` (see :func:`load` for ``step``/``collections``) and save it as ``dst``.

    ``src`` and ``dst`` may be URLs (``s3://``, ``gs://``, ``hf://``...; ``storage_options``
    passes credentials and endpoints to fsspec, see docs/remote-and-batch.md).

    Name mapping (see :mod:`ckconv.rules`): ``preset`` names then ``rules`` (files or
    ``ckconv.rules.load(...)`` objects) are applied in order, backwards with ``reverse``;
    ``include``/``exclude`` regexes select source names first; ``dtype`` ("bf16", "fp16",
    "fp32") casts floating-point tensors last; ``keep_optimizer`` keeps optimizer state
    that presets drop. ``like`` (a path or TensorMap of a checkpoint the target model
    saved) shapes the output after it: its names, order, dtypes, shapes and format
    structure, with the values of ``src`` (see :mod:`ckconv.converters.like`). Other
    options go to :func:`save`. Returns notes for the user.
    """
    # Reading options: dequantize (PyTorch quantized tensors) is for the reader only;
    # skip_unsupported is for both (a reader may also meet what it cannot represent).
    read_options = {k: options[k] for k in ("dequantize", "skip_unsupported") if k in options}
    options.pop("dequantize", None)
    tmap = load(src, src_format, step=step, collections=collections,
                storage_options=options.get("storage_options"), **read_options)
    tmap = mapped(tmap, rules=rules, preset=preset, reverse=reverse, include=include,
                  exclude=exclude, dtype=dtype, keep_optimizer=keep_optimizer)
    if like is not None:
        from .converters.like import like as shape_like

        tmap = shape_like(tmap, like)
        dst_format = format_like(os.fspath(dst), dst_format, tmap)
    return list(tmap.notes) + save(tmap, dst, dst_format, **options)


def format_like(dst: str, dst_format: Optional[str], tmap: TensorMap) -> str:
    """The output format of a map shaped ``like`` a template: the template's own."""
    want = tmap.format
    if not want:  # an in-memory template: DST decides
        return dst_format or formats.for_output(dst)
    asked = dst_format
    if asked is None:
        try:
            asked = formats.for_output(dst)
        except UsageError:  # no telling extension (a TF prefix such as out/ckpt-1)
            asked = want
    if asked != want:
        raise UsageError(f"{dst}: the template is a {want} checkpoint, so the output is one "
                         f"too; choose a {want} destination (not {asked})")
    return want


def mapped(tmap: TensorMap, *, rules: Any = None, preset: Union[None, str, Sequence[str]] = None,
           reverse: bool = False, include: Sequence[str] = (), exclude: Sequence[str] = (),
           dtype: Optional[str] = None, keep_optimizer: bool = False) -> TensorMap:
    """``tmap`` with the rules a conversion asks for applied (itself when none are)."""
    if not (rules or preset or reverse or include or exclude or dtype):
        return tmap  # a plain conversion: the rule engine (and numpy) is never imported
    from .converters.catalog import build

    mapping = build(rules, preset, reverse=reverse, include=include, exclude=exclude,
                    dtype=dtype, flags=["keep-optimizer"] if keep_optimizer else [])
    return tmap if mapping is None else tmap.map(mapping)


def diff(a: Union[PathLike, TensorMap, dict], b: Union[PathLike, TensorMap, dict], *,
         atol: float = 0.0, rtol: float = 0.0, structure: bool = False) -> "DiffReport":
    """Compare two checkpoints (paths in any formats, TensorMaps or dicts of arrays).

    Weights only, unless ``structure=True`` (TF2's object graph is structure). The report
    is truthy when equal and prints as ``ckconv diff`` does.
    """
    from .converters.diff import diff as compare

    return compare(_as_map(a), _as_map(b), atol=atol, rtol=rtol, structure=structure)


def _as_map(value: Any) -> TensorMap:
    if isinstance(value, (str, os.PathLike)):
        return load(value)
    return TensorMap.from_any(value)


def _refuse_overwriting_input(tmap: TensorMap, dst: str) -> None:
    """The destination itself must not be an input file (formats that write several files
    check their other names themselves)."""
    real = os.path.realpath(dst)
    for src in tmap.source_files:
        if os.path.realpath(src) == real:
            raise UsageError(f"{dst}: would overwrite the input file {src}")
