"""ckconv: convert deep-learning checkpoints between TensorFlow, PyTorch, safetensors and HDF5.

>>> import ckconv
>>> weights = ckconv.load("run/model.ckpt-1000")      # lazy: nothing read yet
>>> weights["dense/kernel"].numpy()                    # reads and verifies one tensor
>>> ckconv.save(weights, "model.safetensors")

Submodules are imported on first use so that ``import ckconv`` stays fast and never
pulls in numpy-heavy code, torch, h5py or tensorflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (CkconvError, CorruptCheckpointError, FormatError, MappingError,
                     MissingDependencyError, OutputExistsError, UnsupportedError, UsageError,
                     WriteError)

__version__ = "0.1.0"

__all__ = [
    "load", "save", "convert", "convert_many", "diff", "rules", "TensorMap", "Tensor",
    "CkconvError", "CorruptCheckpointError", "FormatError", "MappingError",
    "MissingDependencyError", "OutputExistsError", "UnsupportedError", "UsageError",
    "WriteError", "__version__",
]

_LAZY = {
    "load": ("ckconv.api", "load"),
    "save": ("ckconv.api", "save"),
    "convert": ("ckconv.api", "convert"),
    "convert_many": ("ckconv.batch", "convert_many"),  # any concurrent.futures.Executor
    "TensorMap": ("ckconv.tensormap", "TensorMap"),
    "Tensor": ("ckconv.tensor", "Tensor"),
    "diff": ("ckconv.api", "diff"),
    "rules": ("ckconv.converters", ""),  # ckconv.rules.load(...): the rule engine's API
}

if TYPE_CHECKING:
    from . import converters as rules
    from .api import convert, diff, load, save
    from .batch import convert_many
    from .tensor import Tensor
    from .tensormap import TensorMap


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'ckconv' has no attribute {name!r}") from None
    import importlib

    value = importlib.import_module(module)
    value = getattr(value, attr) if attr else value
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
