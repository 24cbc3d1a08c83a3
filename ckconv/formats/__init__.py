"""The format registry: one row per format, the only source of format facts.

Every format package exposes::

    NAME: str                      # short name used by --from/--to
    sniff(path: str) -> bool       # does this path hold my format? (never raises)
    read(path: str, **options) -> TensorMap
    write(tmap: TensorMap, path: str, **options) -> list[str]   # notes for the user

and gets one :class:`Format` row in ``FORMATS``: which output names select it, which of
its entries are structure rather than weights, whether it can be the weight file of a
Hugging Face folder. The CLI's format choices, the output-extension table, directory
resolution and the tests' format tables all come from here. Adding a format is one
package plus one row. Modules are imported only when a row is used.
"""

from __future__ import annotations

import importlib
import os
import re
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple, Optional

from ..errors import FormatError, UsageError, listing

if TYPE_CHECKING:
    from ..tensormap import TensorMap


class Format(NamedTuple):
    """What the rest of ckconv may know about a format without importing it."""

    name: str
    module: str
    #: Output extensions that select this format (lower case).
    extensions: tuple[str, ...]
    #: A regex (searched in the lower-cased path) for other output names that select it.
    output_pattern: Optional[str] = None
    #: Entry names that are this format's structure, not weights: other formats leave
    #: them out (with a note) and ``diff`` compares weights only.
    structure: tuple[str, ...] = ()
    #: Whether a single file of this format can hold a Hugging Face folder's weights
    #: (``model.safetensors``, ``pytorch_model.bin``), sharded with an index JSON.
    hub_weights: bool = False
    #: Whether any map can be written in it (a ``.keras`` archive needs a template's config).
    writes_any: bool = True


# Sniffing tries rows in this order.
FORMATS: tuple[Format, ...] = (
    Format("tf", "ckconv.formats.tf", (".ckpt", ".index"),
           output_pattern=r"\.ckpt-\d+$",  # model.ckpt-1000: the TF Saver's naming
           structure=("_CHECKPOINTABLE_OBJECT_GRAPH",)),  # TF2's object graph
    Format("safetensors", "ckconv.formats.safetensors", (".safetensors",), hub_weights=True),
    Format("torch", "ckconv.formats.pytorch", (".pt", ".pth", ".bin"), hub_weights=True),
    Format("hdf5", "ckconv.formats.hdf5", (".h5", ".hdf5")),
    # Keras 3 .keras: a zip of config.json, metadata.json and the weights' HDF5 file.
    Format("keras", "ckconv.formats.hdf5.archive", (".keras",), writes_any=False),
)

NAMES: tuple[str, ...] = tuple(f.name for f in FORMATS)


def row(name: str) -> Format:
    for f in FORMATS:
        if f.name == name:
            return f
    raise UsageError(f"unknown format {name!r}; known formats: {', '.join(NAMES)}")


def get(name: str) -> ModuleType:
    """The format's package, imported on first use."""
    return importlib.import_module(row(name).module)


def for_output(path: str) -> str:
    """The format an output path asks for, by its name."""
    lower = path.lower()
    for f in FORMATS:
        if f.output_pattern and re.search(f.output_pattern, lower):
            return f.name
    for f in FORMATS:
        if lower.endswith(f.extensions):
            return f.name
    known = ", ".join(ext for f in FORMATS for ext in f.extensions)
    raise UsageError(f"{path}: cannot tell the output format from the extension "
                     f"(known: {known})", api_hint="name it with format=",
                     cli_hint="name it with --to FORMAT")


def existing_outputs(fmt: str, path: str) -> list[str]:
    """The files of a checkpoint already at ``path`` that writing ``fmt`` there replaces."""
    module = get(fmt)
    candidates = module.output_files(path) if hasattr(module, "output_files") else [path]
    return [p for p in candidates if os.path.lexists(p)]


def output_extensions() -> tuple[str, ...]:
    return tuple(ext for f in FORMATS for ext in f.extensions)


def structure_keys(other_than: Optional[str] = None) -> set[str]:
    """Names that are some format's structure (not weights), except ``other_than``'s."""
    return {k for f in FORMATS if f.name != other_than for k in f.structure}


def foreign_structure(tmap: "TensorMap", target: str) -> list[str]:
    """Structure entries of ``tmap`` that the ``target`` format does not carry."""
    keys = structure_keys(other_than=target)
    return [n for n in tmap if n in keys]


def hub_weight_sniffers() -> dict[str, "object"]:
    """``{format: sniff_file}`` for formats that can be a Hugging Face folder's weights,
    in sniffing order (safetensors before PyTorch: it runs no code)."""
    return {f.name: get(f.name).sniff_file for f in FORMATS if f.hub_weights}


def sniff(path: str) -> str:
    """The format a path holds, decided by its content."""
    for f in FORMATS:
        if get(f.name).sniff(path):
            return f.name
    raise FormatError(f"{path}: {describe_unknown(path)}")


def describe_unknown(path: str) -> str:
    """Say what an unrecognised path looks like, so the error is actionable."""
    if not os.path.exists(path):
        directory = os.path.dirname(path) or "."
        nearby = checkpoints_nearby(directory, limit=1000)
        import difflib

        close = difflib.get_close_matches(os.path.basename(path), nearby, n=3, cutoff=0.5)
        if close:
            return ("no such file or directory; did you mean "
                    f"{listing(os.path.join(directory, c) for c in close)}?")
        return "no such file or directory" + (f"; checkpoints nearby: {listing(nearby)}"
                                              if nearby else "")
    if os.path.isdir(path):
        return "directory holds no checkpoint ckconv can read"
    size = os.path.getsize(path)
    if size == 0:
        return "file is empty; not a checkpoint"
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        kind = _zip_kind(path)
    elif head[:1] == b"\x80":
        kind = ("a Python pickle that is not a PyTorch checkpoint (ckconv reads torch.save "
                "files and never unpickles other objects)")
    elif head.startswith(b"\x89HDF"):
        kind = "an HDF5 file"
    elif head.startswith(b"\x93NUMPY"):
        kind = "a NumPy .npy array"
    elif _v1_start(head):
        kind = ("the start of a TF V1 checkpoint whose end (the table footer) is missing: "
                "truncated? copy or download it again")
    elif head.startswith(b"GGUF"):
        kind = "a GGUF file (llama.cpp)"
    elif head.lstrip()[:1] in (b"{", b"["):
        from .sharding import looks_like_index

        first = looks_like_index(path)
        kind = (f"a shard index whose first shard {os.path.basename(first)} is missing or "
                "unreadable" if first else "a JSON/text file")
    elif all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        kind = "a text file"
    else:
        kind = f"unrecognised binary data (starts with {head[:8].hex(' ')})"
    return f"not a checkpoint of any known format ({kind}, {size} bytes)"


def _v1_start(head: bytes) -> bool:
    """A V1 checkpoint's first table entry: the header, key "" (shared 0, key length 0),
    whose value starts with SavedTensorSlices.meta (field 1, length-delimited)."""
    if head[:2] != b"\x00\x00":
        return False
    pos = 2
    while pos < len(head) and head[pos] & 0x80:
        pos += 1
    return 2 < pos + 1 < len(head) and head[pos + 1] == 0x0A


def _zip_kind(path: str) -> str:
    import zipfile

    with open(path, "rb") as f:  # the end-of-central-directory record: within 64 KiB + 22
        f.seek(0, 2)
        f.seek(max(0, f.tell() - (1 << 16) - 22))
        if b"PK\x05\x06" not in f.read():
            return "a truncated zip archive (its end-of-central-directory record is missing)"

    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except Exception:  # zipfile also raises UnicodeDecodeError, NotImplementedError...
        return "a damaged zip archive"
    if "model.weights.h5" in names:
        return ("a Keras 3 .keras archive whose model.weights.h5 is not a stored HDF5 file; "
                "extract it (e.g. with unzip) and convert that")
    if names and all(n.endswith(".npy") for n in names):
        return "a NumPy .npz archive"
    return "a zip archive that is not a PyTorch checkpoint"




def checkpoints_nearby(directory: str, limit: int = 10) -> list[str]:
    """Names in ``directory`` that look like checkpoints, for "did you mean" messages."""
    if not os.path.isdir(directory):
        return []
    from .tf.paths import list_prefixes

    found = [os.path.basename(p) for p in list_prefixes(directory)]
    prefixes = set(found)
    found += sorted(f for f in os.listdir(directory)
                    if f.lower().endswith(output_extensions()) and not os.path.isfile(
                        os.path.join(directory, f + ".index"))
                    and not (f.endswith(".index") and f[: -len(".index")] in prefixes))
    return found[:limit]
