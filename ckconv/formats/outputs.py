"""Small helpers shared by the safetensors, PyTorch and HDF5 writers."""

from __future__ import annotations

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
