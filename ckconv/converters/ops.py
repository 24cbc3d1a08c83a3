"""Tensor operations a rule can apply, each with its shape check and its inverse.

Every op works on metadata first (``out_shape`` raises Misfit when the tensor does not fit,
before any data is read) and returns a lazy wrapper from ``apply``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Optional, Union

from .. import dtypes
from ..dtypes import DType
from ..records import record
from ..tensor import Tensor
from .invert import NotInvertible
from .shapes import (NO_PARAMS, Params, Shape, ShapePattern, Unsolvable, parse_dim, resolve,
                     solve_source, unknown_axes)
from .tensors import (CastTensor, ConcatTensor, PermutedTensor, ReorderedTensor,
                      ReshapedTensor, SumTensor, ZerosTensor, split as split_tensor)



class Misfit(Exception):
    """Internal signal: an op does not fit a tensor (the engine adds rule and tensor)."""


class NeedsParam(Misfit):
    """An op that fits once a parameter is set: the rule applies and reports it."""


def _norm_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise Misfit(f"axis {axis} is out of range for a rank-{rank} tensor")
    return axis % rank


@record(frozen=True)
class Permute:
    """Reorder axes; ``transpose`` is the 2-D case (kept apart for its stricter check)."""

    axes: tuple[int, ...]
    transpose: bool = False

    def out_shape(self, shape: Shape, params: Params = NO_PARAMS) -> Shape:
        if self.transpose and len(shape) != 2:
            raise Misfit(f"transpose needs a 2-D tensor, got shape {list(shape)} "
                         "(use permute for other ranks)")
        if len(shape) != len(self.axes):
            raise Misfit(f"permute {list(self.axes)} needs a rank-{len(self.axes)} tensor, "
                         f"got shape {list(shape)}")
        return tuple(shape[a] for a in self.axes)

    def out_pattern(self, pattern: ShapePattern) -> ShapePattern:
        return tuple(pattern[a] for a in self.axes) if len(pattern) == len(self.axes) else pattern

    def apply(self, t: Tensor, params: Params = NO_PARAMS) -> Tensor:
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


_DIM_TOKEN = re.compile(r"d(\d+)|(\d+)|([A-Za-z_]\w*)")


@record(frozen=True)
class Reshape:
    """New shape; entries are ints (one may be -1), products of input dims like ``"d0*d1"``,
    or rule parameters (``"num_heads"``, set with ``--param``)."""

    spec: tuple[Union[int, str], ...]

    def out_shape(self, shape: Shape, params: Params = NO_PARAMS) -> Shape:
        out = [self._entry(e, shape, params) for e in self.spec]
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
    def _entry(e: Union[int, str], shape: Shape, params: Params) -> int:
        if isinstance(e, int):
            return e
        value = 1
        for tok in e.replace(" ", "").split("*"):
            m = _DIM_TOKEN.fullmatch(tok)
            if not m:
                raise Misfit(f"reshape entry {e!r}: expected ints, dims like d0*d1 or "
                             "parameter names")
            if m.group(1) is not None:
                k = int(m.group(1))
                if k >= len(shape):
                    raise Misfit(f"reshape entry {e!r} refers to d{k} of a rank-{len(shape)} tensor")
                value *= shape[k]
            elif m.group(2) is not None:
                value *= int(m.group(2))
            elif m.group(3) in params:
                value *= params[m.group(3)]
            else:
                raise Misfit(f"reshape entry {e!r} needs the parameter {m.group(3)!r}: "
                             f"set it with --param {m.group(3)}=N")
        return value

    def with_params(self, params: Params) -> tuple[Union[int, str], ...]:
        """The spec with parameter names replaced by their values (1 when unset)."""
        out: list[Union[int, str]] = []
        for e in self.spec:
            if isinstance(e, str):
                toks = []
                for tok in e.replace(" ", "").split("*"):
                    m = _DIM_TOKEN.fullmatch(tok)
                    toks.append(str(params.get(tok, 1)) if m and m.group(3) else tok)
                e = "*".join(toks)
            out.append(e)
        return tuple(out)

    def out_pattern(self, pattern: ShapePattern) -> ShapePattern:
        if all(isinstance(d, int) for d in pattern):
            try:
                return self.out_shape(tuple(d for d in pattern if isinstance(d, int)))
            except Misfit:
                pass
        return tuple(e if isinstance(e, int) and e >= 0 else None for e in self.spec)

    def apply(self, t: Tensor, params: Params = NO_PARAMS) -> Tensor:
        return ReshapedTensor(t, self.out_shape(t.shape, params))

    def inverse(self, source_shape: Optional[ShapePattern]) -> "Unreshape":
        source = source_shape
        if source is None:
            raise NotInvertible("reshape can only be reversed when the rule's `shape` gives "
                                "the source's rank and the sizes the reshape folds together")
        # Named sizes and parameters count as known: their values come from the tensor's
        # pattern or --param when the reversed rule runs.
        unknown = unknown_axes(self.with_params({}), [d is not None for d in source])
        if unknown:
            raise NotInvertible("reshape cannot be reversed: source axes "
                                + ", ".join(f"d{a}" for a in unknown) + " are folded "
                                "together and the rule's `shape` gives none of their sizes "
                                "(use a number, or a name set with --param)")
        return Unreshape(self, source)

    def describe(self) -> str:
        return f"reshape{list(self.spec)}"


@record(frozen=True)
class Unreshape:
    """Undo a :class:`Reshape`: the source shape is solved from the sizes the tensor kept
    and the source pattern of the forward rule (numbers, named sizes, parameters)."""

    forward: Reshape
    source: ShapePattern

    def source_shape(self, shape: Shape, params: Params) -> Shape:
        known = [resolve(d, params) for d in self.source]
        try:
            return solve_source(self.forward.with_params(params), known, shape)
        except Unsolvable as exc:
            missing = [str(d) for d in self.source if isinstance(d, str)
                       and resolve(d, params) is None]
            names = sorted({n for d in missing for n in parse_dim(d)[1] if n not in params})
            hint = ("; set " + " ".join(f"--param {n}=N" for n in names)) if names else ""
            raise (NeedsParam if hint else Misfit)(
                f"cannot undo {self.forward.describe()} on shape {list(shape)}: {exc}{hint}") from None

    def out_shape(self, shape: Shape, params: Params = NO_PARAMS) -> Shape:
        return self.source_shape(shape, params)

    def out_pattern(self, pattern: ShapePattern) -> ShapePattern:
        return self.source

    def apply(self, t: Tensor, params: Params = NO_PARAMS) -> Tensor:
        return ReshapedTensor(t, self.source_shape(t.shape, params))

    def inverse(self, source_shape: Optional[ShapePattern]) -> Reshape:
        return self.forward

    def describe(self) -> str:
        return f"reshape{['d' + str(i) if d is None else d for i, d in enumerate(self.source)]}"


@record(frozen=True)
class Cast:
    dtype: DType

    def out_shape(self, shape: Shape, params: Params = NO_PARAMS) -> Shape:
        return shape

    def out_pattern(self, pattern: ShapePattern) -> ShapePattern:
        return pattern

    def check_dtype(self, dtype: DType) -> None:
        if dtype.is_variable_length or self.dtype.is_variable_length:
            raise Misfit(f"cannot cast {dtype} to {self.dtype}")

    def apply(self, t: Tensor, params: Params = NO_PARAMS) -> Tensor:
        return t if t.dtype == self.dtype else CastTensor(t, self.dtype)

    def inverse(self, source_shape: Optional[ShapePattern]) -> "Cast":
        raise NotInvertible("cast loses the original dtype")

    def describe(self) -> str:
        return f"cast[{self.dtype}]"


def parse_cast(name: str) -> Cast:
    return Cast(dtypes.by_name(name))


@record(frozen=True)
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

    def part_shapes(self, shape: Shape) -> list[Shape]:
        axis = _norm_axis(self.axis, len(shape))
        return [shape[:axis] + (n,) + shape[axis + 1:] for n in self.part_sizes(shape)]

    def pieces(self, t: Tensor) -> list[Tensor]:
        axis = _norm_axis(self.axis, len(t.shape))
        return split_tensor(t, axis, self.part_sizes(t.shape))

    def out_pattern(self, pattern: ShapePattern) -> ShapePattern:
        if not pattern:
            return pattern
        axis = self.axis % len(pattern)
        d = pattern[axis]
        # an equal split of a known size has a known part size (the reverse can reshape it)
        part = (d // len(self.parts) if isinstance(d, int) and self.sizes is None
                and d % len(self.parts) == 0 else None)
        return tuple(part if i == axis else d for i, d in enumerate(pattern))

    def inverse(self, source_shape: Optional[ShapePattern]) -> "Merge":
        return Merge(self.axis, self.parts, self.sizes)

    def describe(self) -> str:
        return f"split[axis {self.axis}: {', '.join(self.parts)}]"


@record(frozen=True)
class Merge:
    """Several tensors (one per part name, in ``parts`` order) joined along ``axis``."""

    axis: int
    parts: tuple[str, ...]
    sizes: Optional[tuple[int, ...]] = None

    def out_pattern(self, pattern: ShapePattern) -> ShapePattern:
        if not pattern:
            return pattern
        axis = self.axis % len(pattern)
        return tuple(None if i == axis else d for i, d in enumerate(pattern))

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

    def combine(self, tensors: Sequence[Tensor]) -> Tensor:
        return ConcatTensor(tensors, self.axis % len(tensors[0].shape))

    def inverse(self, source_shape: Optional[ShapePattern]) -> Split:
        return Split(self.axis, self.parts, self.sizes)

    def describe(self) -> str:
        return f"merge[axis {self.axis}: {', '.join(self.parts)}]"


@record(frozen=True)
class Unsum:
    """One tensor into ``parts`` that add up to it: the first part is the tensor, the
    others are zeros of its shape and dtype (a Keras RNN bias -> torch bias_ih + bias_hh).
    The inverse is :class:`Sum`."""

    parts: tuple[str, ...]

    def part_shapes(self, shape: Shape) -> list[Shape]:
        return [shape] * len(self.parts)

    def pieces(self, t: Tensor) -> list[Tensor]:
        return [t] + [ZerosTensor(t.dtype, t.shape) for _ in self.parts[1:]]

    def out_pattern(self, pattern: ShapePattern) -> ShapePattern:
        return pattern

    def inverse(self, source_shape: Optional[ShapePattern]) -> "Sum":
        return Sum(self.parts)

    def describe(self) -> str:
        return f"unsum[{self.parts[0]}; zeros: {', '.join(self.parts[1:])}]"


@record(frozen=True)
class Sum:
    """Several tensors of one shape (one per part name) added element by element.

    Lossy as a step back: reversing gives the first part the sum and the others zeros,
    which is the same model for an RNN's two biases but not the same tensors.
    """

    parts: tuple[str, ...]
    axis: int = 0  # unused; lets the engine treat Sum like Merge

    def out_pattern(self, pattern: ShapePattern) -> ShapePattern:
        return pattern

    def check_parts(self, shapes: Sequence[Shape]) -> None:
        if any(s != shapes[0] for s in shapes):
            raise Misfit(f"parts of shapes {[list(x) for x in shapes]} cannot be added")

    def combine(self, tensors: Sequence[Tensor]) -> Tensor:
        return SumTensor(tensors)

    def inverse(self, source_shape: Optional[ShapePattern]) -> Unsum:
        return Unsum(self.parts)

    def describe(self) -> str:
        return f"sum[{' + '.join(self.parts)}]"


def parse_blocks(spec: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``"z r h -> r z h"`` (or ``"zrh -> rzh"``) -> the block names before and after."""
    m = re.fullmatch(r"\s*([\w ]+?)\s*->\s*([\w ]+?)\s*", spec)
    if not m:
        raise ValueError(f"reorder blocks {spec!r}: expected 'z r h -> r z h'")
    src, dst = (tuple(x.split()) if " " in x.strip() else tuple(x.strip())
                for x in (m.group(1), m.group(2)))
    if sorted(src) != sorted(dst) or len(set(src)) != len(src):
        raise ValueError(f"reorder blocks {spec!r}: both sides must list the same distinct "
                         "blocks")
    return src, dst


@record(frozen=True)
class Reorder:
    """Cut ``axis`` into equal blocks and put them in a new order (RNN gate blocks:
    Keras GRU z, r, h -> torch r, z, n). ``order[i]`` is the source block of block i."""

    axis: int
    order: tuple[int, ...]
    labels: tuple[str, ...] = ()

    def out_shape(self, shape: Shape, params: Params = NO_PARAMS) -> Shape:
        axis = _norm_axis(self.axis, len(shape))
        if shape[axis] % len(self.order):
            raise Misfit(f"axis {self.axis} of shape {list(shape)} does not divide into "
                         f"{len(self.order)} blocks")
        return shape

    def out_pattern(self, pattern: ShapePattern) -> ShapePattern:
        return pattern

    def apply(self, t: Tensor, params: Params = NO_PARAMS) -> Tensor:
        self.out_shape(t.shape)
        return ReorderedTensor(t, self.axis % len(t.shape), self.order)

    def inverse(self, source_shape: Optional[ShapePattern]) -> "Reorder":
        inv = [0] * len(self.order)
        for i, src in enumerate(self.order):
            inv[src] = i
        labels = tuple(self.labels[i] for i in self.order) if self.labels else ()
        return Reorder(self.axis, tuple(inv), labels)

    def describe(self) -> str:
        if self.labels:
            after = " ".join(self.labels[i] for i in self.order)
            return f"reorder[axis {self.axis}: {' '.join(self.labels)} -> {after}]"
        return f"reorder[axis {self.axis}: {list(self.order)}]"


def parse_reorder(value: object) -> Reorder:
    """``{ axis = 0, blocks = "z r h -> r z h" }``."""
    if not isinstance(value, dict) or set(value) - {"axis", "blocks"} or "blocks" not in value:
        raise ValueError('reorder must be a table like { axis = 0, blocks = "z r h -> r z h" }')
    axis = value.get("axis", 0)
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise ValueError("reorder.axis must be an integer")
    src, dst = parse_blocks(str(value["blocks"]))
    return Reorder(axis, tuple(src.index(b) for b in dst), src)


#: Ops that turn one tensor into several named parts, and those that join parts into one.
Splitting = Union[Split, Unsum]
Joining = Union[Merge, Sum]
Op = Union[Permute, Reshape, Unreshape, Cast, Split, Merge, Unsum, Sum, Reorder]
