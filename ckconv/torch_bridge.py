"""Crossing between torch tensors, numpy arrays and ckconv's lazy tensors, bit-exact.

numpy has no bfloat16 or float8; ml_dtypes does, but torch cannot hand its tensors to
ml_dtypes directly. Every crossing therefore goes through raw bytes: the tensor is viewed as
``uint8`` and the bytes are viewed as the target dtype on the other side. No value is ever
converted, so NaN payloads, -0.0 and subnormals survive.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Optional

from . import dtypes
from .dtypes import DType
from .errors import MissingDependencyError

if TYPE_CHECKING:  # numpy only when values cross: .pt bytes are copied without it
    import numpy as np

    from .tensor import Tensor
    from .tensormap import TensorMap

INSTALL_HINT = "pip install 'ckconv[torch]'"

#: ckconv dtype names that torch has under the same name (``torch.<name>``).
TORCH_NAMES = (
    "float32", "float64", "float16", "bfloat16", "complex64", "complex128", "bool",
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
)


def require_torch() -> Any:
    """Import torch, or explain how to install it."""
    try:
        import torch
    except ImportError:
        raise MissingDependencyError(
            f"PyTorch files need torch, which is not installed: {INSTALL_HINT}") from None
    return torch


def from_torch_dtype(torch_dtype: Any) -> Optional[DType]:
    name = str(torch_dtype).rpartition(".")[2]
    return dtypes.BY_NAME[name] if name in TORCH_NAMES else None


def to_torch_dtype(dt: DType) -> Optional[Any]:
    """The torch dtype for ``dt``, or None if this torch cannot hold it."""
    if dt.name not in TORCH_NAMES:
        return None
    return getattr(require_torch(), dt.name, None)


def raw_bytes(t: Any) -> Any:
    """A 1-D contiguous ``uint8`` torch view of the tensor's C-order bytes (no copy if possible)."""
    torch = require_torch()
    flat = t.detach().contiguous().reshape(-1)
    if flat.stride(-1) != 1:
        # One element (or none) left with its view's stride, e.g. arange(9)[::3][:1]: torch
        # calls it contiguous, yet will not view it as bytes. (Found by fuzzing.)
        flat = flat.clone(memory_format=torch.contiguous_format)
    return flat.view(torch.uint8)


def to_numpy(t: Any, dt: DType) -> np.ndarray:
    """The tensor's values as a numpy array of ``dt.numpy`` (shares memory when it can)."""
    return raw_bytes(t).numpy().view(dt.numpy).reshape(tuple(t.shape))


def to_torch(arr: np.ndarray, dt: DType) -> Any:
    """A torch tensor of ``dt`` holding exactly the bytes of ``arr``."""
    torch = require_torch()
    target = to_torch_dtype(dt)
    if target is None:
        raise ValueError(f"torch cannot hold {dt}")
    import numpy as np

    shape = arr.shape  # before ascontiguousarray, which turns 0-d arrays into 1-d ones
    arr = np.ascontiguousarray(arr)
    raw = arr.reshape(-1).view(np.uint8)
    with warnings.catch_warnings():
        # Arrays read from files can be read-only; torch only reads them while saving.
        warnings.simplefilter("ignore", UserWarning)
        t = torch.from_numpy(raw)
    return t.view(target).reshape(shape)


def tensor_to_torch(t: "Tensor", maps: "Optional[dict[int, Any]]" = None) -> Any:
    """A lazy tensor's values as a torch tensor, memory-mapped from its file when it can be.

    ``maps`` caches one copy-on-write mapping per file descriptor across calls.
    """
    from .errors import UnsupportedError

    target = to_torch_dtype(t.dtype)
    if target is None:
        raise UnsupportedError(f"torch cannot hold {t.dtype} tensors ({t.describe()})")
    region = t.file_region()
    itemsize = t.dtype.itemsize
    if region is not None and itemsize and region.offset % itemsize == 0 and region.size:
        torch = require_torch()
        mapped = _mapping(region.fd, maps)
        if region.check is not None:  # a checksum the source records (TF): verify it
            from .io.blocks import crc32c_parallel

            with memoryview(mapped) as view:
                region.check(crc32c_parallel(view[region.offset:region.offset + region.size]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            raw = torch.frombuffer(mapped, dtype=torch.uint8, count=region.size,
                                   offset=region.offset)
        return raw.view(target).reshape(t.shape)
    plan = t.block_plan() if region is None else None
    if plan is not None:
        # Computed (a transpose, a cast): the blocks land in the torch tensor's own memory.
        from .io.blocks import fill

        torch = require_torch()
        out = torch.empty(tuple(t.shape), dtype=target)
        fill(plan, memoryview(raw_bytes(out).numpy()))
        return out
    return to_torch(t.numpy(), t.dtype)


def _mapping(fd: int, maps: "Optional[dict[int, Any]]") -> Any:
    import mmap

    if maps is not None and fd in maps:
        return maps[fd]
    # Copy-on-write: torch gets a writable tensor, and writing to it never reaches the file.
    mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_COPY)
    if maps is not None:
        maps[fd] = mapped
    return mapped


def map_to_torch(tmap: "TensorMap", skip_unsupported: bool = False) -> "dict[str, Any]":
    """Every tensor of ``tmap`` as a torch tensor; names sharing a tensor share the result."""
    from .errors import UnsupportedError, listing, plural

    bad = [n for n, t in tmap.items() if t.dtype.name not in TORCH_NAMES]
    if bad and not skip_unsupported:
        raise UnsupportedError(f"{tmap.source or 'map'}: torch cannot hold "
                               f"{listing(f'{n} ({tmap[n].dtype})' for n in bad)}",
                               api_hint="torch(skip_unsupported=True) leaves them out")
    if bad:
        tmap.notes.append(f"left out {plural(len(bad), 'tensor')} torch cannot hold: "
                          f"{listing(bad)}")
    skip = set(bad)
    maps: dict[int, Any] = {}
    done: dict[int, Any] = {}
    out: dict[str, Any] = {}
    for name, t in tmap.items():
        if name in skip:
            continue
        if id(t) not in done:
            try:
                done[id(t)] = tensor_to_torch(t, maps)
            except Exception as exc:
                from .errors import CkconvError

                if isinstance(exc, CkconvError) and name not in exc.message:
                    raise type(exc)(f"{tmap.source or 'map'}: tensor {name!r}: {exc.message}",
                                    api_hint=exc.api_hint, cli_hint=exc.cli_hint) from None
                raise
        out[name] = done[id(t)]
    return out
