"""Comparing two checkpoints tensor by tensor: how a user proves a migration right.

Names only in A or only in B, dtype and shape mismatches, and per-tensor maximum absolute
and relative difference. Tensors are read one pair at a time; identical bytes are
recognised without converting anything, so an exact comparison streams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import zip_longest

from ..errors import listing, plural
from ..tensor import Tensor
from ..tensormap import TensorMap


@dataclass(frozen=True)
class TensorDiff:
    name: str
    #: "equal", "differs", "dtype", "shape"
    status: str
    dtype_a: str
    dtype_b: str
    shape_a: tuple[int, ...]
    shape_b: tuple[int, ...]
    max_abs: float = 0.0
    max_rel: float = 0.0
    #: elements outside the tolerance (or unequal, for strings)
    mismatched: int = 0


@dataclass
class DiffReport:
    atol: float
    rtol: float
    only_a: list[tuple[str, str, tuple[int, ...]]] = field(default_factory=list)
    only_b: list[tuple[str, str, tuple[int, ...]]] = field(default_factory=list)
    tensors: list[TensorDiff] = field(default_factory=list)
    #: Structure entries (not weights) left out of the comparison, e.g. TF2's object graph.
    skipped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return render(self)

    def __bool__(self) -> bool:
        """True when equal, so that ``assert ckconv.diff(a, b)`` reads naturally."""
        return self.equal

    @property
    def equal(self) -> bool:
        """True when both hold the same names, dtypes, shapes and values within tolerance."""
        return not self.only_a and not self.only_b and all(
            t.status == "equal" for t in self.tensors)

    def count(self, status: str) -> int:
        return sum(1 for t in self.tensors if t.status == status)

    def summary(self) -> str:
        compared = len(self.tensors)
        worst_abs = max((t.max_abs for t in self.tensors), default=0.0)
        worst_rel = max((t.max_rel for t in self.tensors), default=0.0)
        verdict = "EQUAL" if self.equal else "DIFFERENT"
        tol = ("exact" if self.atol == 0 and self.rtol == 0
               else f"atol={self.atol:g}, rtol={self.rtol:g}")
        skipped = (f"; not compared (structure, not weights): {listing(self.skipped)}"
                   if self.skipped else "")
        return (f"{verdict} ({tol}): {plural(compared, 'tensor')} in both: "
                f"{self.count('equal')} equal, {self.count('differs')} differ, "
                f"{plural(self.count('dtype'), 'dtype mismatch', 'dtype mismatches')}, "
                f"{plural(self.count('shape'), 'shape mismatch', 'shape mismatches')}; "
                f"{len(self.only_a)} only in A, {len(self.only_b)} only in B; "
                f"max abs diff {worst_abs:.6g}, max rel diff {worst_rel:.6g}{skipped}")


def diff(a: TensorMap, b: TensorMap, *, atol: float = 0.0, rtol: float = 0.0,
         structure: bool = False) -> DiffReport:
    """Compare every tensor of ``a`` with the same-named tensor of ``b``.

    Values are equal when ``|a - b| <= atol + rtol * |b|`` element-wise (NaN equals NaN,
    infinities must match); with the default zero tolerances they must be identical.
    Entries that are a format's structure rather than weights (TF2's
    ``_CHECKPOINTABLE_OBJECT_GRAPH``) are compared only with ``structure=True``.
    """
    a, b = TensorMap.from_any(a), TensorMap.from_any(b)
    report = DiffReport(atol, rtol)
    if not structure:
        from ..formats import structure_keys

        keys = structure_keys()
        report.skipped = sorted({n for n in list(a) + list(b) if n in keys})
        if report.skipped:
            a = a.subset([n for n in a if n not in keys])
            b = b.subset([n for n in b if n not in keys])
    for name, t in a.items():
        if name not in b:
            report.only_a.append((name, str(t.dtype), t.shape))
    for name, t in b.items():
        if name not in a:
            report.only_b.append((name, str(t.dtype), t.shape))
    for name, ta in a.items():
        if name in b:
            report.tensors.append(compare(name, ta, b[name], atol, rtol))
    return report


def compare(name: str, ta: Tensor, tb: Tensor, atol: float = 0.0, rtol: float = 0.0) -> TensorDiff:
    base = dict(name=name, dtype_a=str(ta.dtype), dtype_b=str(tb.dtype),
                shape_a=ta.shape, shape_b=tb.shape)
    if ta.shape != tb.shape:
        return TensorDiff(status="shape", **base)  # type: ignore[arg-type]
    same_dtype = ta.dtype == tb.dtype
    if same_dtype and not ta.dtype.is_variable_length and _same_bytes(ta, tb):
        return TensorDiff(status="equal", **base)  # type: ignore[arg-type]
    max_abs, max_rel, bad = _values(ta, tb, atol, rtol)
    status = "dtype" if not same_dtype else ("equal" if bad == 0 else "differs")
    return TensorDiff(status=status, max_abs=max_abs, max_rel=max_rel, mismatched=bad,
                      **base)  # type: ignore[arg-type]


def _same_bytes(ta: Tensor, tb: Tensor) -> bool:
    """Compare the raw byte streams chunk by chunk (chunk sizes may differ per side)."""
    def stream(t: Tensor):
        for chunk in t.iter_bytes():
            yield bytes(chunk)

    buf_a = buf_b = b""
    it_a, it_b = stream(ta), stream(tb)
    for ca, cb in zip_longest(it_a, it_b, fillvalue=b""):
        buf_a += ca
        buf_b += cb
        n = min(len(buf_a), len(buf_b))
        if buf_a[:n] != buf_b[:n]:
            return False
        buf_a, buf_b = buf_a[n:], buf_b[n:]
    return buf_a == buf_b


#: Elements compared at a time: keeps the float64 temporaries in cache and memory flat.
_BLOCK = 1 << 18


def _values(ta: Tensor, tb: Tensor, atol: float, rtol: float) -> tuple[float, float, int]:
    """(max abs diff, max rel diff, elements outside tolerance) of two same-shape tensors."""
    import numpy as np

    xa, xb = ta.numpy().reshape(-1), tb.numpy().reshape(-1)
    if ta.dtype.is_variable_length or tb.dtype.is_variable_length:
        if ta.dtype.is_variable_length != tb.dtype.is_variable_length:
            return math.inf, math.inf, max(xa.size, 1)
        bad = sum(1 for u, v in zip(xa, xb) if u != v)
        return (0.0 if bad == 0 else math.inf), (0.0 if bad == 0 else math.inf), bad
    kind = np.complex128 if np.iscomplexobj(xa) or np.iscomplexobj(xb) else np.float64
    max_abs = max_rel = 0.0
    bad = 0
    for start in range(0, xa.size, _BLOCK):
        fa = _as(xa[start:start + _BLOCK], kind)
        fb = _as(xb[start:start + _BLOCK], kind)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            delta = np.abs(fa - fb)
            special = ~np.isfinite(delta)
            if special.any():
                # NaN equals NaN and an infinity equals itself; any other NaN/inf is "inf off".
                same = (fa == fb) | (np.isnan(fa) & np.isnan(fb))
                delta[special] = np.where(same[special], 0.0, np.inf)
            mag = np.abs(fb)
            limit = atol + rtol * np.where(np.isfinite(mag), mag, 0.0) if rtol else atol
            bad += int(np.count_nonzero(delta > limit))
            max_abs = max(max_abs, float(delta.max()))
            off = delta > 0
            if off.any():
                max_rel = max(max_rel, float((delta[off] / mag[off]).max()))
    return max_abs, max_rel, bad


def _as(block: "object", kind: "object") -> "object":
    try:
        return block.astype(kind)  # type: ignore[attr-defined]
    except (TypeError, ValueError):  # sub-byte ml_dtypes types: compare their bit patterns
        return _bits(block).astype(kind)


def _bits(arr: "object") -> "object":
    """Same-width unsigned view of a type numpy cannot convert (ml_dtypes sub-byte types)."""
    import numpy as np

    a = np.asarray(arr)
    return a.view(np.dtype(f"u{a.dtype.itemsize}"))


def render(report: DiffReport, *, names_a: str = "A", names_b: str = "B",
           verbose: bool = True) -> str:
    """Human-readable lines: one per difference, then the summary line."""
    lines: list[str] = []
    if verbose:
        for name, dt, shape in report.only_a:
            lines.append(f"only in {names_a}: {name}  {dt} {list(shape)}")
        for name, dt, shape in report.only_b:
            lines.append(f"only in {names_b}: {name}  {dt} {list(shape)}")
        for t in report.tensors:
            if t.status == "shape":
                lines.append(f"shape: {t.name}  {list(t.shape_a)} vs {list(t.shape_b)}")
            elif t.status == "dtype":
                lines.append(f"dtype: {t.name}  {t.dtype_a} vs {t.dtype_b}  "
                             f"max abs {t.max_abs:.6g}  max rel {t.max_rel:.6g}")
            elif t.status == "differs":
                lines.append(f"differs: {t.name}  {t.dtype_a} {list(t.shape_a)}  "
                             f"max abs {t.max_abs:.6g}  max rel {t.max_rel:.6g}  "
                             f"({t.mismatched} element(s) out of tolerance)")
    lines.append(report.summary())
    return "\n".join(lines)

