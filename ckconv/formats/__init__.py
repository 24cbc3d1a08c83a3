"""The format registry: one table row per format, modules imported only when used.

Every format module exposes::

    NAME: str                      # short name used by --from/--to
    EXTENSIONS: tuple[str, ...]    # output extensions that select it
    sniff(path: str) -> bool       # does this path hold my format? (never raises)
    read(path: str, **options) -> TensorMap
    write(tmap: TensorMap, path: str, **options) -> list[str]   # notes for the user

Adding a format is one module plus one row in ``_TABLE``.
"""

from __future__ import annotations

import importlib
import os
import re
from types import ModuleType

from ..errors import FormatError, UsageError

# (name, module, output extensions). Sniffing tries rows in this order.
_TABLE: list[tuple[str, str, tuple[str, ...]]] = [
    ("tf", "ckconv.formats.tf", (".ckpt", ".index")),
    ("safetensors", "ckconv.formats.safetensors", (".safetensors",)),
    ("torch", "ckconv.formats.pytorch", (".pt", ".pth", ".bin")),
    ("hdf5", "ckconv.formats.hdf5", (".h5", ".hdf5")),
]

NAMES: tuple[str, ...] = tuple(row[0] for row in _TABLE)


def get(name: str) -> ModuleType:
    for fmt, module, _ in _TABLE:
        if fmt == name:
            return importlib.import_module(module)
    raise UsageError(f"unknown format {name!r}; known formats: {', '.join(NAMES)}")


_TF_STEP_PREFIX = re.compile(r"\.ckpt-\d+$")  # model.ckpt-1000: the TF Saver's naming


def for_output(path: str) -> str:
    """The format an output path asks for, by its extension."""
    lower = path.lower()
    if _TF_STEP_PREFIX.search(lower):
        return "tf"
    for fmt, _, exts in _TABLE:
        if any(lower.endswith(ext) for ext in exts):
            return fmt
    known = ", ".join(ext for _, _, exts in _TABLE for ext in exts)
    raise UsageError(f"{path}: cannot tell the output format from the extension "
                     f"(known: {known}); use --to FORMAT")


def sniff(path: str) -> str:
    """The format a path holds, decided by its content."""
    for fmt, _, _ in _TABLE:
        if get(fmt).sniff(path):
            return fmt
    raise FormatError(f"{path}: {describe_unknown(path)}")


def describe_unknown(path: str) -> str:
    """Say what an unrecognised path looks like, so the error is actionable."""
    if not os.path.exists(path):
        nearby = checkpoints_nearby(os.path.dirname(path) or ".")
        return "no such file or directory" + (f"; checkpoints nearby: {', '.join(nearby)}"
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
        return ("a Keras 3 .keras archive; extract its model.weights.h5 (e.g. with unzip) "
                "and convert that")
    if names and all(n.endswith(".npy") for n in names):
        return "a NumPy .npz archive"
    return "a zip archive that is not a PyTorch checkpoint"


_WEIGHT_EXTENSIONS = (".safetensors", ".pt", ".pth", ".bin", ".h5", ".hdf5", ".keras", ".ckpt")


def checkpoints_nearby(directory: str, limit: int = 10) -> list[str]:
    """Names in ``directory`` that look like checkpoints, for "did you mean" messages."""
    if not os.path.isdir(directory):
        return []
    from .tf.paths import list_prefixes

    found = [os.path.basename(p) for p in list_prefixes(directory)]
    found += sorted(f for f in os.listdir(directory)
                    if f.lower().endswith(_WEIGHT_EXTENSIONS) and not os.path.isfile(
                        os.path.join(directory, f + ".index")))
    if len(found) > limit:
        found = found[:limit] + [f"... ({len(found) - limit} more)"]
    return found
