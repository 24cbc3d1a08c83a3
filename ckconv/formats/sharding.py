"""Hugging Face sharded checkpoints: ``<stem>-00001-of-0000N.<ext>`` plus an index JSON.

The layout is the one ``transformers`` ``save_pretrained`` and ``huggingface_hub`` produce::

    model-00001-of-00002.safetensors
    model-00002-of-00002.safetensors
    model.safetensors.index.json   {"metadata": {"total_size": N}, "weight_map": {name: file}}

(``pytorch_model-0000i-of-0000N.bin`` + ``pytorch_model.bin.index.json`` for PyTorch.) The
shard names are derived from the destination the user gave: ``out/x.safetensors`` becomes
``out/x-00001-of-00003.safetensors`` and ``out/x.safetensors.index.json``, exactly as Hugging
Face derives them from its default ``model.safetensors``. When everything fits in one shard, a
single file is written at the destination and no index, as Hugging Face does.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Optional

from ..errors import CorruptCheckpointError, FormatError, UsageError
from ..io.atomic import TEMP_MARKER, AtomicFiles
from ..sizes import parse_size
from ..tensormap import TensorMap
from .outputs import os_errors, output_directory

#: ``TensorMap.extras`` key: names a shard's reader derived rather than found stored (tied
#: names restored from metadata). They are kept although the weight map does not list them.
DERIVED_NAMES = "sharding.derived_names"

INDEX_SUFFIX = ".index.json"
# An index is small (a line per tensor); refusing huge files keeps a stray JSON from eating memory.
MAX_INDEX_BYTES = 256 << 20
# Preferred names when a directory is given, in order (safetensors first: it runs no code).
PREFERRED_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
# A Hugging Face model directory also holds training_args.bin and the like: the default
# weight file names win over "exactly one file of the format".
PREFERRED_FILES = ("model.safetensors", "pytorch_model.bin")
_SHARD_NAME = re.compile(r"-\d{5}-of-\d{5}$")


def shard_name(base: str, number: int, total: int) -> str:
    """``dir/model.safetensors`` -> ``dir/model-00002-of-00003.safetensors`` (number is 1-based)."""
    head, tail = os.path.split(base)
    stem, ext = os.path.splitext(tail)
    return os.path.join(head, f"{stem}-{number:05d}-of-{total:05d}{ext}")


def index_name(base: str) -> str:
    return base + INDEX_SUFFIX


def output_base(path: str, default_name: str) -> str:
    """The destination file: ``path`` itself, or ``default_name`` inside a directory."""
    if path.endswith(("/", os.sep)) or os.path.isdir(path):
        return os.path.join(path, default_name)
    return path


def check_size(max_shard_size: "int | str | None") -> Optional[int]:
    """The shard size in bytes (an int, or a string such as ``"2GB"``), or None."""
    if max_shard_size is None:
        return None
    return parse_size(max_shard_size)


def refuse_overwriting(tmap: "TensorMap", outputs: Sequence[str]) -> None:
    """A sharded write names files beside DST: none of them may be an input file."""
    sources = {os.path.realpath(p) for p in tmap.source_files}
    for out in outputs:
        if os.path.realpath(out) in sources:
            raise UsageError(f"{out}: would overwrite an input file")


def plan(units: Sequence[tuple[Sequence[str], int]], max_size: int) -> list[list[str]]:
    """Split ``units`` (names that must stay together, their byte size) into shards.

    Sequential, like Hugging Face: a shard is closed when the next unit would push it past
    ``max_size``; a unit larger than ``max_size`` gets a shard of its own. Order is kept.
    """
    shards: list[list[str]] = []
    current: list[str] = []
    size = 0
    for names, nbytes in units:
        if current and size + nbytes > max_size:
            shards.append(current)
            current, size = [], 0
        current.extend(names)
        size += nbytes
    if current or not shards:
        shards.append(current)
    return shards


def write_index(path: str, weight_map: dict[str, str], total_size: int) -> None:
    """Write the index JSON the way ``transformers`` does (2-space indent, trailing newline).

    The weight map keeps the checkpoint's tensor order rather than sorting it, so reading
    the sharded checkpoint back gives the original order; loaders treat it as a dict.
    """
    doc = {"metadata": {"total_size": total_size}, "weight_map": weight_map}
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def read_index(path: str) -> tuple[dict[str, str], dict[str, str]]:
    """The ``weight_map`` (name -> shard file path) and extra string metadata of an index."""
    try:
        size = os.path.getsize(path)
        if size > MAX_INDEX_BYTES:
            raise CorruptCheckpointError(f"{path}: {size} bytes is too large for a shard index")
        with open(path, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
    except OSError as exc:
        raise FormatError(f"{path}: cannot read shard index ({exc.strerror})") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptCheckpointError(f"{path}: shard index is not valid JSON ({exc})") from None
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in weight_map.items()):
        raise CorruptCheckpointError(f"{path}: not a shard index (needs a \"weight_map\" object "
                                     "mapping tensor names to shard file names)")
    directory = os.path.dirname(path)
    resolved = {name: os.path.join(directory, fname) for name, fname in weight_map.items()}
    meta = doc.get("metadata")
    metadata = {str(k): str(v) for k, v in meta.items()
                if k != "total_size" and isinstance(v, (str, int, float))} if isinstance(meta, dict) else {}
    return resolved, metadata


def shard_files(weight_map: dict[str, str], index_path: str) -> list[str]:
    """The distinct shard files of an index, in file-name order; all must exist."""
    files = sorted(set(weight_map.values()))
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        shown = ", ".join(os.path.basename(f) for f in missing[:5])
        raise CorruptCheckpointError(f"{index_path}: {len(missing)} shard file(s) named in the "
                                     f"index are missing: {shown}")
    return files


def via_index(path: str) -> str:
    """``x.safetensors`` that does not exist but ``x.safetensors.index.json`` does: the index.

    So the DST of a sharded conversion can be given back as SRC unchanged.
    """
    if not os.path.exists(path) and os.path.isfile(index_name(path)):
        return index_name(path)
    return path


def looks_like_index(path: str) -> Optional[str]:
    """If ``path`` is a shard index, the first shard file it names (for content sniffing)."""
    try:
        if not os.path.isfile(path) or os.path.getsize(path) > MAX_INDEX_BYTES:
            return None
        with open(path, "rb") as f:
            if f.read(64).lstrip()[:1] != b"{":
                return None
        weight_map, _ = read_index(path)
    except Exception:  # sniffing never raises
        return None
    return next(iter(sorted(set(weight_map.values()))), None)


def _listing(directory: str) -> list[str]:
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(n for n in names if TEMP_MARKER not in n and not n.startswith("."))


def pick_in_directory(directory: str, sniffers: dict[str, Callable[[str], bool]]) -> tuple[str, str]:
    """Which checkpoint a directory holds: ``(format, path)``; FormatError if unclear.

    Preference: ``model.safetensors.index.json``, ``pytorch_model.bin.index.json``, any other
    single ``*.index.json``, then ``model.safetensors`` or a single ``.safetensors`` file, then
    ``pytorch_model.bin`` or a single PyTorch file. ``sniffers`` maps format names to
    ``sniff(path)`` functions, so that files are judged by content.
    """
    names = _listing(directory)
    indexes = [n for n in names if n.endswith(INDEX_SUFFIX)]
    ordered = [n for n in PREFERRED_INDEXES if n in indexes] + [
        n for n in indexes if n not in PREFERRED_INDEXES]
    for n in ordered:
        first = looks_like_index(os.path.join(directory, n))
        if first is None:
            continue
        for fmt, sniff in sniffers.items():
            if sniff(first):
                return fmt, os.path.join(directory, n)
    for fmt, sniff in sniffers.items():
        found = [n for n in names if not n.endswith(".json") and not _SHARD_NAME.search(
            os.path.splitext(n)[0]) and sniff(os.path.join(directory, n))]
        preferred = [n for n in PREFERRED_FILES if n in found]
        if len(found) == 1 or preferred:
            return fmt, os.path.join(directory, (preferred or found)[0])
        if len(found) > 1:
            raise FormatError(f"{directory}: holds {len(found)} {fmt} files and no shard index; "
                              f"name one of: {', '.join(found)}")
    raise FormatError(f"{directory}: holds no safetensors or PyTorch checkpoint")


def read_sharded(index_path: str, fmt: str, read_file: Callable[[str], TensorMap]) -> TensorMap:
    """One map over every shard an index names, each read with ``read_file``.

    Order: shard files in name order, each in its own order. Every name in the weight map
    must be in the shard it points to; tensors a shard holds beyond the map are left out
    with a note, as Hugging Face loaders ignore them. Metadata: the shards' (first one
    wins), then the index's.
    """
    weight_map, index_meta = read_index(index_path)
    tmap = TensorMap(source=index_path, format=fmt)
    tmap.source_files.append(index_path)
    metadata: dict[str, str] = {}
    extra: list[str] = []
    for fpath in shard_files(weight_map, index_path):
        shard = read_file(fpath)
        derived = shard.extras.get(DERIVED_NAMES, ())
        for name, t in shard.items():
            if weight_map.get(name) == fpath or (name in derived and name not in weight_map):
                tmap[name] = t
            else:
                extra.append(name)
        tmap.notes.extend(f"{os.path.basename(fpath)}: {n}" for n in shard.notes)
        for k, v in shard.metadata.items():
            metadata.setdefault(k, v)
        tmap.source_files.append(fpath)
    _check_weight_map(tmap, weight_map, extra, index_path)
    metadata.update(index_meta)
    tmap.metadata = metadata
    return tmap


#: Writes the named tensors of a map to a (temporary) file path: (names, path, final path).
WriteOne = Callable[[list[str], str, str], None]


def write_sharded(tmap: TensorMap, path: str, default_name: str, max_shard_size: "int | str | None",
                  write_one: WriteOne, units: Optional[Sequence[tuple[Sequence[str], int]]] = None,
                  ) -> list[str]:
    """Write ``tmap`` to ``path`` as one file, or in the Hugging Face sharded layout when it
    exceeds ``max_shard_size``; returns notes.

    ``units`` are groups of names that must share a shard (tied names), with their bytes;
    by default one per tensor. Every file is written under a temporary name and renamed at
    the end, the index last, so a reader never sees an index naming a missing shard.
    """
    max_size = check_size(max_shard_size)
    base = output_base(path, default_name)
    if units is None:
        units = [([n], t.nbytes) for n, t in tmap.items()]
    total = sum(size for _, size in units)
    if max_size is None or total <= max_size:
        refuse_overwriting(tmap, [base])
        with output_directory(base), os_errors(base), AtomicFiles() as files:
            write_one(list(tmap), files.path(base), base)
        return []
    shards = plan(units, max_size)
    names = [shard_name(base, i + 1, len(shards)) for i in range(len(shards))]
    index = index_name(base)
    refuse_overwriting(tmap, names + [index])
    weight_map: dict[str, str] = {}
    with output_directory(base), os_errors(index), AtomicFiles() as files:
        for shard, fname in zip(shards, names):
            write_one(shard, files.path(fname), fname)
            weight_map.update({n: os.path.basename(fname) for n in shard})
        write_index(files.path(index), weight_map, total)  # last: see AtomicFiles
    return [f"wrote {len(shards)} shards ({os.path.basename(names[0])} ...) and "
            f"{os.path.basename(index)}"]


def _check_weight_map(tmap: "TensorMap", weight_map: dict[str, str], extra: list[str],
                      index_path: str) -> None:
    """Every name of the weight map must have been found in its shard; names a shard holds
    beyond the map are left out with a note, as Hugging Face loaders ignore them."""
    missing = [n for n in weight_map if n not in tmap]
    if missing:
        shown = ", ".join(f"{n!r} ({os.path.basename(weight_map[n])})" for n in missing[:5])
        raise CorruptCheckpointError(f"{index_path}: {len(missing)} tensor(s) in the weight map "
                                     f"are not in their shard: {shown}")
    if extra:
        tmap.notes.append(f"left out {len(extra)} tensor(s) present in shards but not in the "
                          f"index weight map: {', '.join(extra[:5])}")


# -- the one way PyTorch and safetensors resolve what a user pointed at ----------------

Sniffers = dict[str, Callable[[str], bool]]


def sniff_weights(path: str, fmt: str, sniffers: Sniffers) -> bool:
    """Whether ``path`` (a weight file, a sharded index, or a directory holding either) is
    of format ``fmt``. ``sniffers`` are the registry's ``hub_weight_sniffers()``: a folder's
    weights may be of any of those formats. Never raises: sniffing only answers yes or no."""
    sniff_file = sniffers[fmt]
    try:
        path = via_index(path)
        if os.path.isdir(path):
            try:
                return pick_in_directory(path, sniffers)[0] == fmt
            except Exception:
                # Several weight files and no index: ours, so read() names them.
                return any(sniff_file(os.path.join(path, n)) for n in os.listdir(path))
        first = looks_like_index(path)
        return sniff_file(first if first is not None else path)
    except Exception:
        return False


def resolve_weights(path: str, fmt: str, label: str, sniffers: Sniffers) -> tuple[str, bool]:
    """The file to read for ``path`` and whether it is a sharded index; ``label`` names the
    format in the error for a directory holding another format's weights."""
    path = via_index(path)
    if os.path.isdir(path):
        found, chosen = pick_in_directory(path, sniffers)
        if found != fmt:
            raise FormatError(f"{path}: holds a {found} checkpoint ({os.path.basename(chosen)}), "
                              f"not {label}")
        path = chosen
    return path, looks_like_index(path) is not None


def read_weights(path: str, fmt: str, label: str, read_file: Callable[[str], TensorMap],
                 sniffers: Sniffers) -> TensorMap:
    """Read what a user pointed at (a weight file, a sharded index, or a directory holding
    either) with the format's ``read_file``; one implementation for every such format."""
    path, is_index = resolve_weights(path, fmt, label, sniffers)
    return read_sharded(path, fmt, read_file) if is_index else read_file(path)
