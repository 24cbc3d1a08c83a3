"""Shared by the pickle tests: the fixtures under tests/fixtures/pickles and torch's bytes."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

PICKLES = Path(__file__).resolve().parents[1] / "fixtures" / "pickles"


def pickle_fixture(name: str) -> str:
    return str(PICKLES / name)


def oracle(path: str) -> Any:
    """What torch itself gives for the file, running its pickled code (our own fixtures)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, weights_only=False, map_location="cpu")


def raw(value: Any) -> bytes:
    """C-order little-endian bytes of a torch tensor or numpy array."""
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    import torch

    flat = value.detach().reshape(-1).clone(memory_format=torch.contiguous_format)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def assert_same(tmap: Any, want: dict[str, Any]) -> None:
    """Names in order, shapes and bytes of every tensor equal what torch gave."""
    assert list(tmap) == list(want)
    for name, value in want.items():
        got = tmap[name]
        assert got.shape == tuple(value.shape), name
        assert got.numpy().tobytes() == raw(value), name
