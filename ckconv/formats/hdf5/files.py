"""Reading and writing one HDF5 file through h5py: shared by ``.h5`` files and the HDF5
file inside a Keras 3 ``.keras`` archive. h5py is imported only when a file is opened."""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

from ...errors import CorruptCheckpointError, FormatError
from ...tensormap import TensorMap

SIGNATURE = b"\x89HDF\r\n\x1a\n"


def open_file(path: str) -> Any:
    import h5py

    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise FormatError(f"{path}: no such file") from None
    except Exception as exc:  # OSError mostly; RuntimeError/ValueError on some damage
        raise CorruptCheckpointError(f"{path}: HDF5 library cannot open it ({exc})") from None


def read_handle(handle: Any, path: str, region: Optional[tuple[int, int]] = None) -> TensorMap:
    """Read an open h5py file (closed with its tensors, or at once on failure); ``region``
    (offset, size) when the HDF5 file is part of ``path`` (a ``.keras`` archive)."""
    from .generic import read_generic
    from .keras import read_keras, weights_group

    from .safety import h5_errors, probe_variable_length, scan

    try:
        with h5_errors(path):
            # Links out of the file, absurd shapes, hostile heaps: before anything is listed.
            if scan(handle, path, region):
                probe_variable_length(path, handle,
                                      region[1] if region else os.path.getsize(path))
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


def write_file(tmap: TensorMap, temp: str, path: str, layout: str, progress: Any = None,
               open_template: Optional[Callable[[str], Any]] = None) -> list[str]:
    """Write the HDF5 file ``temp`` (renamed to ``path`` by the caller): in the layout of
    the template the map was shaped after (``--like``; ``open_template`` opens its HDF5
    file again for its structure), else in ``layout``."""
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

            with (open_template or open_file)(like.path) as source:
                h5paths = {n: t._path for n, t in like.tmap.items() if hasattr(t, "_path")}
                notes = write_like_h5(tmap, handle, source, h5paths, progress, raw)
        elif layout == "keras":
            notes = keras.write_keras(tmap, handle, progress, raw)
        else:
            notes = write_generic(tmap, handle, progress, raw)
    raw.run(temp, path, progress)
    return notes
