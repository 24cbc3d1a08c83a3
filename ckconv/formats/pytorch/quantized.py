"""Quantized tensors (``torch.ao.quantization``) as plain tensors, or dequantized to float32.

A quantized tensor ``w`` becomes (see docs/pytorch-quantized.md):

======================  =====================================================================
``w``                   the integer values, ``w.int_repr()``: int8 (qint8), uint8 (quint8),
                        int32 (qint32)
``w.scale``             float64: 0-d ``w.q_scale()`` (per tensor), or 1-D
                        ``w.q_per_channel_scales()`` (float32 for ``float_qparams``)
``w.zero_point``        int64: 0-d ``w.q_zero_point()``, or 1-D ``w.q_per_channel_zero_points()``
                        (float32 for ``per_channel_affine_float_qparams``)
``w.axis``              int64 0-d ``w.q_per_channel_axis()`` (per-channel schemes only)
======================  =====================================================================

With ``dequantize=True`` the four become one float32 tensor ``w`` equal to
``w.dequantize()`` bit for bit. torch's CPU kernels compute it differently per scheme, and
so does ckconv (each checked against torch 2.13 for every integer type, with qint32 values
up to 2**31): per-tensor affine as ``float32(int32(q) - int32(zero_point)) *
float32(scale)``; per-channel affine as ``(float32(q) - float32(zero_point))`` times the
float64 scale, rounded once to float32; float-qparams all in float32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

from ... import dtypes
from ...tensor import ArrayTensor, Tensor

if TYPE_CHECKING:
    import numpy as np

SUFFIXES = ("scale", "zero_point", "axis")
SCHEMES = ("per_tensor_affine", "per_channel_affine", "per_channel_affine_float_qparams")


class DequantizedTensor(Tensor):
    """float32 values of a quantized tensor, computed when read."""

    def __init__(self, values: Tensor, scheme: str, scale: Any, zero_point: Any,
                 axis: Optional[int]):
        super().__init__(dtypes.BY_NAME["float32"], values.shape)
        self._values, self._scheme, self._axis = values, scheme, axis
        self._scale, self._zero_point = scale, zero_point

    def _params(self, p: Any) -> "np.ndarray":
        import numpy as np

        arr = p.numpy() if isinstance(p, Tensor) else np.asarray(p)
        if self._axis is None:
            return arr
        shape = [1] * len(self.shape)
        shape[self._axis] = -1
        return arr.reshape(shape)

    def _load(self) -> "np.ndarray":
        import numpy as np

        q = self._values.numpy()
        scale, zp = self._params(self._scale), self._params(self._zero_point)
        if self._scheme == "per_channel_affine":
            # float32 difference, times the float64 scale, rounded once to float32
            diff = q.astype(np.float32) - zp.astype(np.float32)
            return (diff.astype(np.float64) * scale.astype(np.float64)).astype(np.float32)
        if self._scheme == "per_tensor_affine":
            # int32 difference (wrapping, as C++ int arithmetic on qint32 does), then float32
            with np.errstate(over="ignore"):
                diff = (q.astype(np.int32) - zp.astype(np.int32)).astype(np.float32)
            return diff * scale.astype(np.float32)
        return (q.astype(np.float32) - zp.astype(np.float32)) * scale.astype(np.float32)

    def describe(self) -> str:
        return f"dequantized ({self._scheme}) {self._values.describe()}"


def _scalar(value: Any, dtype: str) -> ArrayTensor:
    import numpy as np

    return ArrayTensor(np.array(value, dtype=dtype))


Entry = tuple[str, Optional[tuple], Callable[[], Tensor]]


def entries(name: str, values: Callable[[], Tensor], key: Optional[tuple], scheme: str,
            scale: Any, zero_point: Any, axis: Optional[int], dequantize: bool,
            param: Callable[[Any], Tensor]) -> list[Entry]:
    """The map entries ``(name, tie key, factory)`` for one quantized tensor.

    ``values`` makes the integer-values tensor, ``param`` turns a per-channel scale or
    zero-point reference into a tensor; per-tensor ones are Python numbers.
    """
    def scale_t() -> Tensor:
        return _scalar(scale, "float64") if axis is None else param(scale)

    def zp_t() -> Tensor:
        return _scalar(zero_point, "int64") if axis is None else param(zero_point)

    if dequantize:
        deq_key = None if key is None else key + ("dequantized",)
        return [(name, deq_key, lambda: DequantizedTensor(values(), scheme, scale_t(), zp_t(),
                                                           axis))]
    out: list[Entry] = [(name, key, values), (f"{name}.scale", None, scale_t),
                        (f"{name}.zero_point", None, zp_t)]
    if axis is not None:
        out.append((f"{name}.axis", None, lambda: _scalar(axis, "int64")))
    return out


def torch_entries(name: str, t: Any, dequantize: bool,
                  make: Callable[[Any], Tensor]) -> list[Entry]:
    """:func:`entries` for a quantized tensor loaded by torch (legacy files, fallback)."""
    import torch

    scheme = str(t.qscheme()).rpartition(".")[2]
    if scheme == "per_tensor_affine":
        scale, zp, axis = t.q_scale(), t.q_zero_point(), None
    else:
        scale, zp = t.q_per_channel_scales(), t.q_per_channel_zero_points()
        axis = t.q_per_channel_axis()
    if dequantize:
        return [(name, None, lambda: make(t.dequantize()))]
    values = t.int_repr()

    def param(p: Any) -> Tensor:
        return make(p) if isinstance(p, torch.Tensor) else _scalar(p, "float64")

    return entries(name, lambda: make(values), None, scheme, scale, zp, axis, False, param)
