"""HDF5 files (h5py): the generic one-dataset-per-tensor layout and Keras weight files.

Reading: a Keras legacy weights file (``layer_names`` attribute at the root or in
``model_weights``) is read in Keras order (:mod:`.keras`); any other HDF5 file, Keras 3
``.weights.h5`` included, with the generic layout (:mod:`.generic`).

Writing: ``h5_layout="generic"`` (the default) or ``"keras"`` (a legacy weights file that
``tf_keras`` ``model.load_weights()`` accepts). A map read from a Keras legacy file is
written back as one unless asked otherwise. h5py is imported only when a file is opened.

Tensor bytes of plain contiguous datasets bypass libhdf5 both ways (:mod:`.storage`), so
memory stays flat and a conversion costs about a file copy.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from ...io.atomic import AtomicFiles
from ...errors import CorruptCheckpointError, FormatError, UsageError
from ...tensormap import TensorMap
from ..outputs import leave_out, make_parent, os_errors

NAME = "hdf5"
EXTENSIONS = (".h5", ".hdf5")
LAYOUTS = ("generic", "keras")

SIGNATURE = b"\x89HDF\r\n\x1a\n"


def sniff(path: str) -> bool:
    """The HDF5 signature at offset 0, 512, 1024, 2048... (after an optional user block)."""
    try:
        if not os.path.isfile(path):
            return False
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            offset = 0
            while offset + len(SIGNATURE) <= size:
                f.seek(offset)
                if f.read(len(SIGNATURE)) == SIGNATURE:
                    return True
                offset = 512 if offset == 0 else offset * 2
        return False
    except OSError:
        return False


def _open(path: str) -> Any:
    import h5py

    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise FormatError(f"{path}: no such file") from None
    except Exception as exc:  # OSError mostly; RuntimeError/ValueError on some damage
        raise CorruptCheckpointError(f"{path}: HDF5 library cannot open it ({exc})") from None


def read(path: str, **options: Any) -> TensorMap:
    return read_handle(_open(path), path)


def read_handle(handle: Any, path: str, region: Optional[tuple[int, int]] = None) -> TensorMap:
    """Read an open h5py file (closed with its tensors, or at once on failure); ``region``
    (offset, size) when the HDF5 file is part of ``path`` (a ``.keras`` archive)."""
    from .generic import read_generic
    from .keras import read_keras, weights_group

    from .safety import h5_errors, memory_ceiling, scan

    try:
        with h5_errors(path), memory_ceiling(path):
            scan(handle, path, region)  # links out of the file, absurd shapes: before anything is listed
            group = weights_group(handle)
            if group is not None:
                return read_keras(handle, group, path)
            return read_generic(handle, path)
    except Exception:
        handle.close()
        raise


#: Large datasets start on multiples of this, where the tensors of many sources lie too (TF
#: bundles of round-sized tensors, files ckconv wrote): the kernel then copies whole
#: page-cache folios (streaming.PLACEMENT). libhdf5 aligns every object above one size,
#: so only datasets of 16 times this or more are aligned, keeping the padding within
#: streaming.padding_budget.
_ALIGNMENT = 256 << 10


def write(tmap: TensorMap, path: str, *, skip_unsupported: bool = False, progress: Any = None,
          max_shard_size: Optional[int] = None, h5_layout: Optional[str] = None,
          **options: Any) -> list[str]:
    from . import keras
    from .storage import can_store

    if max_shard_size is not None:
        raise UsageError(f"{path}: HDF5 output is a single file; --max-shard-size applies to "
                         "safetensors, torch and tf outputs")
    layout = h5_layout or ("keras" if keras.EXTRAS_KEY in tmap.extras else "generic")
    if layout not in LAYOUTS:
        raise UsageError(f"unknown HDF5 layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    notes: list[str] = []
    if layout == "keras":
        tmap = leave_out(tmap, keras.unsupported(tmap), path,
                         "a Keras weights file holds plain numpy dtypes only, not",
                         skip_unsupported, notes)
    else:
        tmap = leave_out(tmap, [n for n, t in tmap.items() if not can_store(t.dtype)], path,
                         "HDF5 cannot hold", skip_unsupported, notes)
    make_parent(path)
    with os_errors(path), AtomicFiles() as files:
        notes += write_file(tmap, files.path(path), path, layout, progress)
    return notes


def write_file(tmap: TensorMap, temp: str, path: str, layout: str, progress: Any = None) -> list[str]:
    """Write the HDF5 file ``temp`` (renamed to ``path`` by the caller): in the layout of
    the template the map was shaped after (``--like``), else in ``layout``."""
    import h5py

    from . import keras
    from .generic import write_generic
    from .storage import RawWrites

    like = tmap.extras.get("ckconv.like")
    raw = RawWrites()  # tensor bytes go in after libhdf5 has laid out and closed the file
    with h5py.File(temp, "w", track_order=True, alignment_threshold=16 * _ALIGNMENT,
                   alignment_interval=_ALIGNMENT) as handle:
        if like is not None and like.format in ("hdf5", "keras"):
            from .template import write_like_h5

            with template_handle(like) as source:
                h5paths = {n: t._path for n, t in like.tmap.items() if hasattr(t, "_path")}
                notes = write_like_h5(tmap, handle, source, h5paths, progress, raw)
        elif layout == "keras":
            notes = keras.write_keras(tmap, handle, progress, raw)
        else:
            notes = write_generic(tmap, handle, progress, raw)
    raw.run(temp, path, progress)
    return notes


def template_handle(like: Any) -> Any:
    """The template's HDF5 file, opened again for its structure (inside a .keras archive too)."""
    if like.format == "keras":
        from .archive import open_weights

        return open_weights(like.path)
    return _open(like.path)
