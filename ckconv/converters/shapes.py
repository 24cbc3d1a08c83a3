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
#: No parameters.
NO_PARAMS: Params = {}

_NAME = re.compile(r"[A-Za-z_]\w*")


class Unsolvable(Exception):
    """Internal signal: the sizes a reshape needs are not known (the message says which)."""


def parse_dim(entry: str) -> tuple[int, tuple[str, ...]]:
    """``"4*u"`` -> (4, ("u",)), ``"c*m"`` -> (1, ("c", "m")); ValueError otherwise."""
    factor, found = 1, []
    for tok in entry.replace(" ", "").split("*"):
        if tok.isdigit():
            factor *= int(tok)
        elif _NAME.fullmatch(tok) and not re.fullmatch(r"d\d+", tok):
            found.append(tok)
        else:
            found = []
            break
    if not found:
        raise ValueError(f"shape entry {entry!r}: expected a size, -1, \"*\", a name like "
                         "\"u\" or a product like \"4*u\" or \"c*m\" (d0, d1... are reserved)")
    return factor, tuple(found)


def bind(pattern: ShapePattern, shape: Shape, known: Params) -> Optional[dict[str, int]]:
    """The named sizes if ``shape`` fits ``pattern`` (starting from ``known``), else None.

    An entry binds a name seen for the first time when the entry's other factors are
    known; an entry with two new names cannot be checked and does not match.
    """
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
        factor, found = parse_dim(want)
        unknown = [n for n in found if n not in out]
        for n in found:
            factor *= out.get(n, 1)
        if not unknown:
            if factor != have:
                return None
        elif len(unknown) > 1 or factor == 0 or have % factor:
            return None
        else:
            out[unknown[0]] = have // factor
    return out


def resolve(dim: Dim, params: Params) -> Optional[int]:
    """A pattern entry's size when it is known (an int, or names with values)."""
    if dim is None or isinstance(dim, int):
        return dim
    factor, found = parse_dim(dim)
    for n in found:
        if n not in params:
            return None
        factor *= params[n]
    return factor


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
