"""Tensor operations a rule can apply, each with its shape check and its inverse.

Every op works on metadata first (``out_shape`` raises Misfit when the tensor does not fit,
before any data is read) and returns a lazy wrapper from ``apply``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional, Union

from .. import dtypes
from ..dtypes import DType
from ..tensor import Tensor
from .invert import NotInvertible
from .tensors import CastTensor, PermutedTensor, ReshapedTensor

Shape = tuple[int, ...]
#: A shape pattern: None is "any size".
ShapePattern = tuple[Optional[int], ...]


class Misfit(Exception):
    """Internal signal: an op does not fit a tensor (the engine adds rule and tensor)."""


def _norm_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise Misfit(f"axis {axis} is out of range for a rank-{rank} tensor")
    return axis % rank


@dataclass(frozen=True)
class Permute:
    """Reorder axes; ``transpose`` is the 2-D case (kept apart for its stricter check)."""

    axes: tuple[int, ...]
    transpose: bool = False

    def out_shape(self, shape: Shape) -> Shape:
        if self.transpose and len(shape) != 2:
            raise Misfit(f"transpose needs a 2-D tensor, got shape {list(shape)} "
                         "(use permute for other ranks)")
        if len(shape) != len(self.axes):
            raise Misfit(f"permute {list(self.axes)} needs a rank-{len(self.axes)} tensor, "
                         f"got shape {list(shape)}")
        return tuple(shape[a] for a in self.axes)

    def out_pattern(self, pattern: ShapePattern) -> ShapePattern:
        return tuple(pattern[a] for a in self.axes) if len(pattern) == len(self.axes) else pattern

    def apply(self, t: Tensor) -> Tensor:
        return PermutedTensor(t, self.axes)

    def inverse(self, source_shape: Optional[ShapePattern]) -> "Permute":
        inv = [0] * len(self.axes)
        for i, a in enumerate(self.axes):
            inv[a] = i
        return Permute(tuple(inv), self.transpose)

    def describe(self) -> str:
        return "transpose" if self.transpose else f"permute{list(self.axes)}"


def parse_permute(spec: Union[str, Sequence[int]]) -> Permute:
    """``[3, 2, 0, 1]`` or a layout change such as ``"HWIO -> OIHW"``."""
    if isinstance(spec, str):
        m = re.fullmatch(r"\s*(\w+)\s*->\s*(\w+)\s*", spec)
        if not m or sorted(m.group(1)) != sorted(m.group(2)) or len(set(m.group(1))) != len(m.group(1)):
            raise ValueError(f"permute {spec!r}: expected two layouts of the same distinct "
                             "letters, like 'HWIO -> OIHW'")
        src, dst = m.group(1), m.group(2)
        return Permute(tuple(src.index(c) for c in dst))
    axes = tuple(int(a) for a in spec)
    if sorted(axes) != list(range(len(axes))):
        raise ValueError(f"permute {list(axes)} is not a permutation of 0..{len(axes) - 1}")
    return Permute(axes)


_DIM_TOKEN = re.compile(r"d(\d+)|(\d+)")


@dataclass(frozen=True)
class Reshape:
    """New shape; entries are ints (one may be -1) or products of input dims like ``"d0*d1"``."""

    spec: tuple[Union[int, str], ...]
    #: set when the inverse of a concrete reshape is known
    exact: Optional[Shape] = None

    def out_shape(self, shape: Shape) -> Shape:
        if self.exact is not None:
            out = list(self.exact)
        else:
            out = [self._entry(e, shape) for e in self.spec]
        size = 1
        for d in shape:
            size *= d
        if out.count(-1) == 1:
            rest = 1
            for d in out:
                rest *= d if d != -1 else 1
            if rest == 0 or size % rest:
                raise Misfit(f"cannot reshape {list(shape)} to {list(self.spec)}")
            out[out.index(-1)] = size // rest
        total = 1
        for d in out:
            total *= d
        if total != size or any(d < 0 for d in out):
            raise Misfit(f"cannot reshape {list(shape)} ({size} elements) to {out}")
        return tuple(out)

    @staticmethod
    def _entry(e: Union[int, str], shape: Shape) -> int:
        if isinstance(e, int):
            return e
        value = 1
        for tok in e.replace(" ", "").split("*"):
            m = _DIM_TOKEN.fullmatch(tok)
            if not m:
                raise Misfit(f"reshape entry {e!r}: expected ints or dims like d0*d1")
            if m.group(1) is not None:
                k = int(m.group(1))
                if k >= len(shape):
                    raise Misfit(f"reshape entry {e!r} refers to d{k} of a rank-{len(shape)} tensor")
                value *= shape[k]
            else:
                value *= int(m.group(2))
        return value

    def out_pattern(self, pattern: ShapePattern) -> ShapePattern:
        if all(d is not None for d in pattern):
            try:
                return self.out_shape(tuple(d for d in pattern if d is not None))
            except Misfit:
                pass
        return tuple(e if isinstance(e, int) and e >= 0 else None for e in self.spec)

    def apply(self, t: Tensor) -> Tensor:
        return ReshapedTensor(t, self.out_shape(t.shape))

    def inverse(self, source_shape: Optional[ShapePattern]) -> "Reshape":
        if source_shape is None or any(d is None for d in source_shape):
            raise NotInvertible("reshape can only be reversed when the rule's `shape` gives "
                                "the source shape exactly")
        exact = tuple(d for d in source_shape if d is not None)
        return Reshape(exact, exact)

    def describe(self) -> str:
        return f"reshape{list(self.exact or self.spec)}"


@dataclass(frozen=True)
class Cast:
    dtype: DType

    def out_shape(self, shape: Shape) -> Shape:
        return shape

    def out_pattern(self, pattern: ShapePattern) -> ShapePattern:
        return pattern

    def check_dtype(self, dtype: DType) -> None:
        if dtype.is_variable_length or self.dtype.is_variable_length:
            raise Misfit(f"cannot cast {dtype} to {self.dtype}")

    def apply(self, t: Tensor) -> Tensor:
        return t if t.dtype == self.dtype else CastTensor(t, self.dtype)

    def inverse(self, source_shape: Optional[ShapePattern]) -> "Cast":
        raise NotInvertible("cast loses the original dtype")

    def describe(self) -> str:
        return f"cast[{self.dtype}]"


def parse_cast(name: str) -> Cast:
    return Cast(dtypes.by_name(name))


@dataclass(frozen=True)
class Split:
    """One tensor into ``parts`` along ``axis`` (equal sizes unless ``sizes`` is given)."""

    axis: int
    parts: tuple[str, ...]
    sizes: Optional[tuple[int, ...]] = None

    def part_sizes(self, shape: Shape) -> tuple[int, ...]:
        axis = _norm_axis(self.axis, len(shape))
        n = shape[axis]
        if self.sizes is not None:
            if sum(self.sizes) != n:
                raise Misfit(f"split sizes {list(self.sizes)} do not add up to {n} "
                             f"(axis {self.axis} of shape {list(shape)})")
            return self.sizes
        if n % len(self.parts):
            raise Misfit(f"cannot split axis {self.axis} of shape {list(shape)} into "
                         f"{len(self.parts)} equal parts")
        return (n // len(self.parts),) * len(self.parts)

    def out_pattern(self, pattern: ShapePattern) -> ShapePattern:
        if not pattern:
            return pattern
        axis = self.axis % len(pattern)
        return tuple(None if i == axis else d for i, d in enumerate(pattern))

    def inverse(self, source_shape: Optional[ShapePattern]) -> "Merge":
        return Merge(self.axis, self.parts, self.sizes)

    def describe(self) -> str:
        return f"split[axis {self.axis}: {', '.join(self.parts)}]"


@dataclass(frozen=True)
class Merge:
    """Several tensors (one per part name, in ``parts`` order) joined along ``axis``."""

    axis: int
    parts: tuple[str, ...]
    sizes: Optional[tuple[int, ...]] = None

    def out_pattern(self, pattern: ShapePattern) -> ShapePattern:
        return Split.out_pattern(self, pattern)  # type: ignore[arg-type]

    def check_parts(self, shapes: Sequence[Shape]) -> None:
        first = shapes[0]
        axis = _norm_axis(self.axis, len(first))
        for s in shapes[1:]:
            if len(s) != len(first) or any(a != b for i, (a, b) in enumerate(zip(s, first))
                                           if i != axis):
                raise Misfit(f"parts of shapes {[list(x) for x in shapes]} cannot be joined "
                             f"along axis {self.axis}")
        if self.sizes is not None and tuple(s[axis] for s in shapes) != self.sizes:
            raise Misfit(f"parts have sizes {[s[axis] for s in shapes]} along axis "
                         f"{self.axis}, the rule says {list(self.sizes)}")

    def inverse(self, source_shape: Optional[ShapePattern]) -> Split:
        return Split(self.axis, self.parts, self.sizes)

    def describe(self) -> str:
        return f"merge[axis {self.axis}: {', '.join(self.parts)}]"


Op = Union[Permute, Reshape, Cast, Split, Merge]
