"""Checkpoint surgery for migration scripts: rename, drop, select, assign.

These back the :class:`~ckconv.tensormap.TensorMap` methods of the same names. Two kinds:

* ``rename``/``select``/``drop`` derive a **new** map (the tensors are shared, nothing is
  read), so ``encoder = full.select("encoder/.*")`` leaves ``full`` as it was;
* ``assign``/``assign_add``/``assign_sub`` change the map **in place**, like TF's
  ``Variable.assign*`` change a variable, and return it for chaining.

Values stay lazy: an assignment from a callable, a Tensor or an addition is a wrapper that
computes when a writer (or ``.numpy()``) asks. As in TF, an assigned value must have the
tensor's shape (``validate_shape=True``) and is converted to its dtype only when that loses
no kind of information (no float -> int, no out-of-range integers).
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Any, Callable, Iterable, Union

import numpy as np

from .errors import MappingError, UsageError
from .groups import collections_of
from .tensor import ArrayTensor, Tensor

if TYPE_CHECKING:
    from .tensormap import TensorMap

Pattern = Union[str, "re.Pattern[str]"]
Names = Union[None, str, Iterable[str]]

def _missing(tmap: "TensorMap", name: str, what: str) -> MappingError:
    close = difflib.get_close_matches(name, list(tmap), n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    return MappingError(f"{what}: no tensor named {name!r} in {tmap.source or 'the map'}{hint}")


def _key(tmap: "TensorMap", name: str, what: str) -> str:
    key = tmap.resolve(name)
    if key is None:
        raise _missing(tmap, name, what)
    return key


# ---------------------------------------------------------------------------------- names

def _matcher(pattern: Pattern) -> Callable[[str], bool]:
    if isinstance(pattern, re.Pattern):
        return lambda name: pattern.fullmatch(name) is not None
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise MappingError(f"bad pattern {pattern!r}: {exc}") from None
    return lambda name: name == pattern or rx.fullmatch(name) is not None


def _as_list(names: Names) -> list[str]:
    if names is None:
        return []
    return [names] if isinstance(names, str) else list(names)


def matching(tmap: "TensorMap", patterns: Iterable[Pattern], collections: Names = None,
             strict: bool = True, what: str = "select") -> list[str]:
    """Names of ``tmap`` (in order) that a pattern fully matches or a collection holds.

    A pattern is an exact name (``w1`` or TF's ``w1:0``) or a regular expression that must
    match the whole name (``encoder/.*``). With ``strict``, a pattern or collection that
    selects nothing is an error: in a migration script that is almost always a typo.
    """
    hits: dict[str, None] = {}
    for pattern in patterns:
        exact = tmap.resolve(pattern) if isinstance(pattern, str) else None
        found = [exact] if exact is not None else [n for n in tmap if _matcher(pattern)(n)]
        if strict and not found:
            shown = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
            raise _missing(tmap, shown, f"{what}: pattern {shown!r} matches nothing;")
        hits.update(dict.fromkeys(found))
    colls = _as_list(collections)
    if colls:
        source = collections_of(tmap, "selecting by collection")
        for name in colls:
            found = source.keys_of([name], tmap, "selecting by collection")
            if strict and not found:
                size = source.size(name)
                raise UsageError(f"{tmap.source}: collection {name!r} has {size} entr"
                                 f"{'y' if size == 1 else 'ies'}, none of them a tensor of "
                                 "this checkpoint (a Saver does not save local variables)")
            hits.update(dict.fromkeys(found))
    return [n for n in tmap if n in hits]


def select(tmap: "TensorMap", *patterns: Pattern, collection: Names = None,
           strict: bool = True) -> "TensorMap":
    """A new map with only the matching tensors (see :func:`matching`)."""
    if not patterns and collection is None:
        raise UsageError("select: give at least one name, pattern or collection")
    keep = set(matching(tmap, patterns, collection, strict, "select"))
    return _derive(tmap, [(n, n) for n in tmap if n in keep])


def drop(tmap: "TensorMap", *patterns: Pattern, collection: Names = None,
         strict: bool = True) -> "TensorMap":
    """A new map without the matching tensors (see :func:`matching`)."""
    gone = set(matching(tmap, patterns, collection, strict, "drop"))
    return _derive(tmap, [(n, n) for n in tmap if n not in gone])


def rename(tmap: "TensorMap", pattern: Union[Pattern, dict], repl: Union[str, Callable, None] = None,
           *, count: int = 0, strict: bool = True) -> "TensorMap":
    """A new map with names rewritten by ``re.sub(pattern, repl, name, count)``.

    ``pattern`` may instead be a dict of exact ``{old: new}`` names. The order of tensors is
    kept. Two tensors ending up with one name is a MappingError naming both.
    """
    if isinstance(pattern, dict):
        if repl is not None:
            raise UsageError("rename: give either a {old: new} dict or a pattern and a replacement")
        table = {_key(tmap, old, "rename"): new for old, new in pattern.items()}
        pairs = [(n, table.get(n, n)) for n in tmap]
    else:
        if repl is None:
            raise UsageError("rename: a pattern needs a replacement")
        try:
            rx = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern)
            pairs = [(n, rx.sub(repl, n, count=count)) for n in tmap]
        except (re.error, IndexError) as exc:
            raise MappingError(f"rename: bad pattern or replacement {pattern!r} -> {repl!r}: "
                               f"{exc}") from None
        if strict and all(old == new for old, new in pairs) and not any(
                rx.search(n) for n in tmap):
            shown = rx.pattern
            raise MappingError(f"rename: pattern {shown!r} matches no tensor name of "
                               f"{tmap.source or 'the map'}")
    seen: dict[str, str] = {}
    for old, new in pairs:
        if not isinstance(new, str) or not new:
            raise MappingError(f"rename: {old!r} would get the invalid name {new!r}")
        if new in seen:
            raise MappingError(f"rename: {seen[new]!r} and {old!r} would both be named {new!r}")
        seen[new] = old
    return _derive(tmap, pairs)


def _derive(tmap: "TensorMap", pairs: list[tuple[str, str]]) -> "TensorMap":
    new = tmap.copy()
    new._tensors = {dst: tmap._tensors[src] for src, dst in pairs}
    return new


# ----------------------------------------------------------------------------- assignment

class DerivedTensor(Tensor):
    """A value computed from other tensors when read; shape and dtype are promised upfront."""

    def __init__(self, like: Tensor, compute: Callable[[], Any], what: str):
        super().__init__(like.dtype, like.shape)
        self._compute = compute
        self._what = what

    def describe(self) -> str:
        return self._what

    def _load(self) -> np.ndarray:
        arr = np.asarray(self._compute())
        if arr.shape != self.shape:
            raise MappingError(f"{self._what}: produced shape {list(arr.shape)}, the tensor has "
                               f"shape {list(self.shape)}")
        return _cast(arr, self, self._what)


def _cast(arr: np.ndarray, like: Tensor, what: str) -> np.ndarray:
    """Convert values to ``like``'s dtype when no kind of information is lost (TF's rule)."""
    dt = like.dtype
    if dt.is_variable_length:
        if arr.dtype.kind not in "OSU":
            raise MappingError(f"{what}: {arr.dtype} values cannot be stored in a {dt.name} tensor")
        return ArrayTensor(arr, dt).numpy()
    target = np.dtype(dt.numpy)
    if arr.dtype == target:
        return arr
    order = "biufc"  # each kind converts without loss of kind to the ones after it
    src_kind, tgt_kind = arr.dtype.kind, _kind(dt.name)
    same_ints = src_kind in "iu" and tgt_kind in "iu"
    if src_kind not in order or (order.index(src_kind) > order.index(tgt_kind) and not same_ints):
        raise MappingError(f"{what}: {arr.dtype} values cannot be stored in a {dt.name} tensor "
                           "without losing information; convert them explicitly first")
    with np.errstate(invalid="ignore", over="ignore"):
        out = arr.astype(target)
    if tgt_kind in "biu" and not np.array_equal(out.astype(arr.dtype), arr):
        raise MappingError(f"{what}: values out of the range of {dt.name}")
    return out


def _kind(name: str) -> str:
    """numpy-style kind of a ckconv dtype (ml_dtypes' types report kind 'V')."""
    if name == "bool":
        return "b"
    if name.startswith(("uint", "quint")):
        return "u"
    if name.startswith(("int", "qint")):
        return "i"
    return "c" if name.startswith("complex") else "f"


def _value(target: Tensor, value: Any, what: str) -> Tensor:
    if isinstance(value, Tensor):
        if value.shape != target.shape:
            raise MappingError(f"{what}: value has shape {list(value.shape)}, the tensor has "
                               f"shape {list(target.shape)}")
        if value.dtype == target.dtype:
            return value
        return DerivedTensor(target, value.numpy, f"{what} (from {value.describe()})")
    arr = np.asarray(value)
    if arr.shape != target.shape:
        raise MappingError(f"{what}: value has shape {list(arr.shape)}, the tensor has shape "
                           f"{list(target.shape)} (shapes must match, as in TF's assign)")
    return ArrayTensor(_cast(arr, target, what), target.dtype)


def assign(tmap: "TensorMap", name: str, value: Any) -> "TensorMap":
    """Set tensor ``name`` to ``value`` (array-like, Tensor, or a function of the old values)."""
    key = _key(tmap, name, "assign")
    target = tmap[key]
    what = f"assign {key!r}"
    if callable(value) and not isinstance(value, Tensor):
        fn = value
        tmap[key] = DerivedTensor(target, lambda: fn(target.numpy()), f"{what} (function of "
                                  f"{target.describe()})")
    else:
        tmap[key] = _value(target, value, what)
    return tmap


def _arith(tmap: "TensorMap", name: str, delta: Any, sign: int, op: str) -> "TensorMap":
    key = _key(tmap, name, op)
    target = tmap[key]
    what = f"{op} {key!r}"
    if target.dtype.is_variable_length or np.dtype(target.dtype.numpy).kind in "bO":
        raise MappingError(f"{what}: {target.dtype.name} tensors have no arithmetic")
    d = _value(target, delta, what)

    def compute() -> np.ndarray:
        # Computed in the tensor's dtype: integers wrap around as TF's kernels do.
        a, b = target.numpy(), d.numpy()
        with np.errstate(over="ignore"):
            return a + b if sign > 0 else a - b

    tmap[key] = DerivedTensor(target, compute, f"{what} ({target.describe()})")
    return tmap


def assign_add(tmap: "TensorMap", name: str, delta: Any) -> "TensorMap":
    """Add ``delta`` (the tensor's shape) to tensor ``name``, lazily."""
    return _arith(tmap, name, delta, +1, "assign_add")


def assign_sub(tmap: "TensorMap", name: str, delta: Any) -> "TensorMap":
    """Subtract ``delta`` (the tensor's shape) from tensor ``name``, lazily."""
    return _arith(tmap, name, delta, -1, "assign_sub")


def select_collections(tmap: "TensorMap", collections: Names) -> "TensorMap":
    """``load(..., collections=...)``: keep the tensors of TF1 collections."""
    names = _as_list(collections)
    if not names:
        return tmap
    what = "selecting by collection"
    keep = collections_of(tmap, what).keys_of(names, tmap, what)
    if not keep:
        shown = ", ".join(names)
        raise UsageError(f"{tmap.source}: collection{'s' if len(names) > 1 else ''} {shown} "
                         "hold no tensor of this checkpoint (a Saver does not save local "
                         "variables)")
    out = _derive(tmap, [(n, n) for n in keep])
    left = len(tmap) - len(keep)
    out.notes = list(tmap.notes) + [
        f"kept {len(keep)} tensor(s) of collection{'s' if len(names) > 1 else ''} "
        f"{', '.join(names)}; left out {left}"]
    return out



def tf_name_regex(pattern: str) -> str:
    """A name regex that also accepts TF's tensor spelling: ``w1:0`` selects ``w1`` too.

    ``:0`` ends a TF tensor name, so the rewritten pattern is anchored at the end; names
    that really end in ``:0`` (Keras HDF5 weights) still match.
    """
    for suffix in (":0$", ":0"):
        if pattern.endswith(suffix) and not pattern.endswith("\\" + suffix):
            return pattern[: -len(suffix)] + "(?::0)?$"
    return pattern
