"""Truncation check without reading data: where each tensor ends, against file sizes.

Readers know from an index or header where every tensor's bytes end
(:meth:`ckconv.tensor.Tensor.stored_extents`); one ``stat`` per file then tells whether a
file was cut short (an interrupted copy or download), which ``ckconv inspect``, reading no
tensor bytes, would otherwise never notice.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Optional

from ..errors import CorruptCheckpointError
from ..tensor import Tensor


def first_truncated(tensors: Mapping[str, Tensor]) -> Optional[str]:
    """A one-line description of the first tensor lying beyond its file's end, or None."""
    sizes: dict[str, Optional[int]] = {}
    beyond: list[tuple[int, str, str]] = []  # (end, file, tensor) of tensors past their file
    for name, t in tensors.items():
        for path, end in t.stored_extents():
            if path not in sizes:
                try:
                    sizes[path] = os.stat(path).st_size
                except OSError:
                    sizes[path] = None  # a missing file is the reader's error to report
            size = sizes[path]
            if size is not None and end > size:
                beyond.append((end, path, name))
                break
    if not beyond:
        return None
    end, path, name = min(beyond)  # the first one in the file: where the cut begins to show
    n = len(beyond) - 1
    more = f" ({n} more tensor{' lies' if n == 1 else 's lie'} past it too)" if n else ""
    return (f"{path}: truncated: tensor {name!r} ends at byte {end:,} but the file has "
            f"{sizes[path]:,} bytes{more}; copy or download it again")


def check_extents(tensors: Mapping[str, Tensor]) -> None:
    """Raise CorruptCheckpointError naming the file and first tensor past its end."""
    msg = first_truncated(tensors)
    if msg is not None:
        raise CorruptCheckpointError(msg)
