"""Crossing between torch tensors and numpy arrays, bit-exact for every dtype both can name.

numpy has no bfloat16 or float8; ml_dtypes does, but torch cannot hand its tensors to
ml_dtypes directly. Every crossing therefore goes through raw bytes: the tensor is viewed as
``uint8`` and the bytes are viewed as the target dtype on the other side. No value is ever
converted, so NaN payloads, -0.0 and subnormals survive.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Optional

from ... import dtypes
from ...dtypes import DType
from ...errors import MissingDependencyError

if TYPE_CHECKING:  # numpy only when values cross: .pt bytes are copied without it
    import numpy as np

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
