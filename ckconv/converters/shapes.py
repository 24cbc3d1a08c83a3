"""Shape patterns with named sizes, and undoing a reshape from the sizes it kept.

A pattern entry is ``None`` (any size), an int, or a named size: ``"u"`` binds the size
the first time it is seen and must repeat after that, ``"4*u"`` is four times it. A name
that is also a rule parameter (``--param num_heads=8``) starts out bound to that value, so
patterns both check tensors and carry sizes that a tensor alone cannot tell (the number of
attention heads folded into ``[3*d, d]``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Optional, Union

Shape = tuple[int, ...]
Dim = Union[None, int, str]
ShapePattern = tuple[Dim, ...]
Params = Mapping[str, int]

_NAMED = re.compile(r"\s*(?:(\d+)\s*\*\s*)?([A-Za-z_]\w*)\s*(?:\*\s*(\d+)\s*)?")


class Unsolvable(Exception):
    """Internal signal: the sizes a reshape needs are not known (the message says which)."""


def parse_dim(entry: str) -> tuple[int, str]:
    """``"4*u"`` -> (4, "u"); raises ValueError for anything but ``[k*]name[*k]``."""
    m = _NAMED.fullmatch(entry)
    if not m or (m.group(1) and m.group(3)) or re.fullmatch(r"d\d+", m.group(2)):
        raise ValueError(f"shape entry {entry!r}: expected a size, -1, \"*\", a name "
                         "like \"u\" or a multiple like \"4*u\" (d0, d1... are reserved)")
    return int(m.group(1) or m.group(3) or 1), m.group(2)


def names(pattern: Optional[ShapePattern]) -> list[str]:
    return [parse_dim(d)[1] for d in pattern or () if isinstance(d, str)]


def bind(pattern: ShapePattern, shape: Shape, known: Params) -> Optional[dict[str, int]]:
    """The named sizes if ``shape`` fits ``pattern`` (starting from ``known``), else None."""
    if len(pattern) != len(shape):
        return None
    out = dict(known)
    for want, have in zip(pattern, shape):
        if want is None:
            continue
        if isinstance(want, int):
            if want != have:
                return None
            continue
        factor, name = parse_dim(want)
        if name in out:
            if out[name] * factor != have:
                return None
        elif have % factor:
            return None
        else:
            out[name] = have // factor
    return out


def resolve(dim: Dim, params: Params) -> Optional[int]:
    """A pattern entry's size when it is known (an int, or a name with a value)."""
    if dim is None or isinstance(dim, int):
        return dim
    factor, name = parse_dim(dim)
    return factor * params[name] if name in params else None


def product_groups(spec: Sequence[Union[int, str]], rank: int) -> list[tuple[int, list[int]]]:
    """For each entry of a reshape spec: (constant factor, source axes it multiplies).

    ``-1`` takes the source axes no other entry names. Param names count as constants
    of unknown value and are not allowed here (the caller resolves them first).
    """
    groups: list[tuple[int, list[int]]] = []
    named: set[int] = set()
    rest = None
    for i, e in enumerate(spec):
        if e == -1:
            rest = i
            groups.append((1, []))
            continue
        if isinstance(e, int):
            groups.append((e, []))
            continue
        factor, axes = 1, []
        for tok in e.replace(" ", "").split("*"):
            if re.fullmatch(r"d\d+", tok):
                axes.append(int(tok[1:]))
            else:
                factor *= int(tok)
        named.update(axes)
        groups.append((factor, axes))
    if rest is not None:
        groups[rest] = (1, [a for a in range(rank) if a not in named])
    return groups


def solve_source(spec: Sequence[Union[int, str]], source: Sequence[Optional[int]],
                 out: Shape) -> Shape:
    """The shape a reshape by ``spec`` was applied to, given the shape it produced.

    ``source`` holds the source sizes known in advance (None where unknown). Each output
    entry multiplies some source axes; an entry with one unknown axis gives that axis by
    division, and the total size gives the last one. Raises Unsolvable naming the axes
    that stay unknown.
    """
    sizes = list(source)
    groups = product_groups(spec, len(sizes))
    if len(groups) != len(out):
        raise Unsolvable(f"the reshape gives rank {len(groups)}, the tensor has rank {len(out)}")
    total = 1
    for d in out:
        total *= d
    progress = True
    while progress:
        progress = False
        for (factor, axes), have in zip(groups, out):
            unknown = [a for a in axes if sizes[a] is None]
            if len(unknown) != 1:
                continue
            rest = factor
            for a in axes:
                rest *= sizes[a] if sizes[a] is not None else 1
            if rest == 0 or have % rest:
                raise Unsolvable(f"size {have} is not a multiple of {rest}")
            sizes[unknown[0]] = have // rest
            progress = True
    unknown = [a for a, s in enumerate(sizes) if s is None]
    if len(unknown) == 1:
        rest = 1
        for s in sizes:
            rest *= s if s is not None else 1
        if rest == 0 or total % rest:
            raise Unsolvable(f"{total} elements do not divide by {rest}")
        sizes[unknown[0]] = total // rest
        unknown = []
    if unknown:
        raise Unsolvable("source axes " + ", ".join(f"d{a}" for a in unknown)
                         + " are folded together and none of their sizes is known")
    result = tuple(s for s in sizes if s is not None)
    for (factor, axes), have in zip(groups, out):
        want = factor
        for a in axes:
            want *= result[a]
        if want != have:
            raise Unsolvable(f"the reshape gives {want} for an axis of size {have}")
    return result


def unknown_axes(spec: Sequence[Union[int, str]], known: Sequence[bool]) -> list[int]:
    """The source axes :func:`solve_source` could not find, knowing which sizes it gets."""
    have = list(known)
    progress = True
    while progress:
        progress = False
        for _, axes in product_groups(spec, len(have)):
            unknown = [a for a in axes if not have[a]]
            if len(unknown) == 1:
                have[unknown[0]] = True
                progress = True
    missing = [a for a, k in enumerate(have) if not k]
    return [] if len(missing) <= 1 else missing
