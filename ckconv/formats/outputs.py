"""Small helpers shared by the safetensors, PyTorch and HDF5 writers."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..tensormap import TensorMap

import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import UsageError


def make_parent(path: str) -> None:
    """Create the destination's directory, as TF's saver does for a checkpoint prefix."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create directory {directory}: {exc.strerror or exc}") from None


@contextmanager
def os_errors(path: str) -> Iterator[None]:
    """Turn a failed write (disk full, permission denied) into one clear ckconv error."""
    try:
        yield
    except OSError as exc:
        raise UsageError(f"writing {path} failed: {exc.strerror or exc}") from None


def leave_out(tmap: "TensorMap", bad: list[str], path: str, why: str, skip: bool,
              notes: list[str]) -> "TensorMap":
    """Refuse tensors a target cannot hold, or with ``skip`` drop them with a note.

    ``why`` completes "<path>: <why> <names>", e.g. "safetensors cannot hold".
    """
    if not bad:
        return tmap
    from ..errors import UnsupportedError

    shown = ", ".join(f"{n} ({tmap[n].dtype})" for n in bad[:5])
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    if not skip:
        raise UnsupportedError(f"{path}: {why} {shown}{more}; pass --skip-unsupported to leave "
                               "them out")
    tmap = tmap.copy()
    for n in bad:
        del tmap[n]
    notes.append(f"left out {len(bad)} tensor(s): {why} {shown}{more}")
    return tmap
