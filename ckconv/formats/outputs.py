"""Small helpers shared by the safetensors, PyTorch and HDF5 writers."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..tensormap import TensorMap

import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import WriteError


@contextmanager
def output_directory(path: str) -> Iterator[None]:
    """Create the destination's missing directories (as TF's saver does for a prefix), and
    remove the ones created here again if the write fails or is interrupted."""
    directory = os.path.dirname(os.path.abspath(path))
    missing: list[str] = []
    d = directory
    while d and not os.path.isdir(d) and d != os.path.dirname(d):
        missing.append(d)
        d = os.path.dirname(d)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise WriteError(f"cannot create directory {directory}: {exc.strerror or exc}") from None
    try:
        yield
    except BaseException:
        for d in missing:  # deepest first; stops at the first that is not empty
            try:
                os.rmdir(d)
            except OSError:
                break
        raise


@contextmanager
def os_errors(path: str) -> Iterator[None]:
    """Turn a failed write (disk full, permission denied) into one clear ckconv error that
    names the user's path, not the temporary file being written."""
    try:
        yield
    except OSError as exc:
        raise WriteError(f"writing {path} failed: {reason(exc)}") from None


def reason(exc: OSError) -> str:
    """Why an OS call failed, without the (temporary) file name it was given.

    libhdf5's errors (through h5py) carry no strerror but spell ``errno = 13`` in their text.
    """
    import re

    if exc.strerror:
        return exc.strerror
    code = exc.errno
    if code is None:
        m = re.search(r"errno = (\d+)", str(exc))
        code = int(m.group(1)) if m else None
    return os.strerror(code) if code else "input/output error"


def leave_out(tmap: "TensorMap", bad: list[str], path: str, why: str, skip: bool,
              notes: list[str]) -> "TensorMap":
    """Refuse tensors a target cannot hold, or with ``skip`` drop them with a note.

    ``why`` completes "<path>: <why> <names>", e.g. "safetensors cannot hold".
    """
    if not bad:
        return tmap
    from ..errors import UnsupportedError, listing, plural

    shown = listing(f"{n} ({tmap[n].dtype})" for n in bad)
    if not skip:
        raise UnsupportedError(f"{path}: {why} {shown}",
                               api_hint="skip_unsupported=True leaves them out",
                               cli_hint="pass --skip-unsupported to leave them out")
    tmap = tmap.copy()
    for n in bad:
        del tmap[n]
    notes.append(f"left out {plural(len(bad), 'tensor')}: {why} {shown}")
    return tmap
