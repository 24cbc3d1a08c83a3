"""What ``ckconv inspect`` prints: a table (or JSON) of tensors, read from the index only."""

from __future__ import annotations

import json
from typing import Sequence

from .errors import UsageError
from .tensormap import TensorMap


def _rows(tmap: TensorMap) -> list[tuple[str, str, str, int]]:
    return [(name, str(t.dtype), "[" + ", ".join(map(str, t.shape)) + "]", t.nbytes)
            for name, t in tmap.items()]


def render_table(tmap: TensorMap) -> str:
    rows = _rows(tmap)
    head = ("name", "dtype", "shape", "bytes")
    widths = [max([len(head[i])] + [len(str(r[i])) for r in rows]) for i in range(3)]
    lines = [f"{head[0]:<{widths[0]}}  {head[1]:<{widths[1]}}  {head[2]:<{widths[2]}}  {head[3]:>12}"]
    for name, dtype, shape, nbytes in rows:
        lines.append(f"{name:<{widths[0]}}  {dtype:<{widths[1]}}  {shape:<{widths[2]}}  {nbytes:>12,}")
    total = sum(r[3] for r in rows)
    lines.append(f"{len(rows)} tensors, {total:,} bytes ({tmap.format or 'unknown'} format: "
                 f"{tmap.source})")
    return "\n".join(lines)


def _values(tmap: TensorMap, name: str):
    if name not in tmap:
        raise UsageError(f"{tmap.source}: no tensor named {name!r}")
    return tmap[name].numpy()


def render_values(tmap: TensorMap, name: str) -> str:
    import numpy as np

    arr = _values(tmap, name)
    if arr.dtype == object:
        body = repr(arr.tolist())
    else:
        body = np.array2string(arr, threshold=100)
    return f"{name} =\n{body}"


def _jsonable(arr) -> object:
    import numpy as np

    if arr.dtype == object:
        return [b.decode("utf-8", "backslashreplace") if isinstance(b, bytes) else str(b)
                for b in arr.reshape(-1)]
    if arr.dtype.kind in "biu":
        return arr.tolist()
    if arr.dtype.kind == "c":
        return np.stack([arr.real, arr.imag], axis=-1).astype(np.float64).tolist()
    return arr.astype(np.float64).tolist()  # float16/bfloat16/float8/int4 included


def render_json(tmap: TensorMap, values: Sequence[str] = ()) -> str:
    doc = {
        "source": tmap.source,
        "format": tmap.format,
        "metadata": tmap.metadata,
        "count": len(tmap),
        "total_bytes": sum(t.nbytes for t in tmap.values()),
        "tensors": [{"name": n, "dtype": d, "shape": list(tmap[n].shape), "bytes": b}
                    for n, d, _s, b in _rows(tmap)],
        "notes": tmap.notes,
    }
    if values:
        doc["values"] = {name: _jsonable(_values(tmap, name)) for name in values}
    return json.dumps(doc, indent=2, allow_nan=True)
