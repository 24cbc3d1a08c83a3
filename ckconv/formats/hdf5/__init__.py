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
from ...errors import UsageError
from ...tensormap import TensorMap
from ..outputs import leave_out, os_errors, output_directory
from .files import SIGNATURE, open_file, read_handle, write_file

NAME = "hdf5"
LAYOUTS = ("generic", "keras")


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


def output_files(path: str) -> list[str]:
    return [path]


def read(path: str, **options: Any) -> TensorMap:
    return read_handle(open_file(path), path)


def write(tmap: TensorMap, path: str, *, skip_unsupported: bool = False, progress: Any = None,
          max_shard_size: Optional[int] = None, h5_layout: Optional[str] = None,
          **options: Any) -> list[str]:
    from . import keras
    from .storage import can_store

    if max_shard_size is not None:
        raise UsageError(f"{path}: HDF5 output is a single file; a maximum shard size applies "
                         "to safetensors, torch and tf outputs")
    _check_keras3_destination(tmap, path, h5_layout)
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
    with output_directory(path), os_errors(path), AtomicFiles() as files:
        notes += write_file(tmap, files.path(path), path, layout, progress)
    return notes


def _check_keras3_destination(tmap: TensorMap, path: str, h5_layout: Optional[str]) -> None:
    """A ``.weights.h5`` destination is for Keras 3, which loads only its own layout: the
    generic layout is that layout when every name is a Keras 3 variable path
    (``layers/dense/vars/0``); anything else would be a file Keras 3 refuses."""
    if not path.endswith(".weights.h5") or h5_layout is not None:
        return
    if tmap.extras.get("ckconv.like") is not None:
        return  # shaped after a template the target model wrote
    import re

    odd = [n for n in tmap if not re.search(r"(^|/)vars/\d+$", n)]
    if odd:
        raise UsageError(f"{path}: a Keras 3 .weights.h5 file holds Keras 3 variable paths "
                         f"(layers/<layer>/vars/<i>), and {odd[0]!r} is not one",
                         api_hint="shape the map like= a .weights.h5 the target model saved, "
                         "or map names with preset='keras-to-keras3'",
                         cli_hint="convert --like a .weights.h5 the target model saved, or "
                         "with --preset keras-to-keras3 (from Keras 2 names)")

