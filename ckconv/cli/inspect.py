"""What ``ckconv inspect`` prints: a table (or JSON) of tensors, read from the index only."""

from __future__ import annotations

import argparse
import json
from typing import Any, Mapping, Optional, Sequence

from ..errors import UsageError
from ..tensormap import TensorMap


def _rows(tmap: TensorMap) -> list[tuple[str, str, str, int]]:
    return [(name, str(t.dtype), "[" + ", ".join(map(str, t.shape)) + "]", t.nbytes)
            for name, t in tmap.items()]


def render_table(tmap: TensorMap, extra: Optional[Mapping[str, str]] = None,
                 extra_head: str = "collections") -> str:
    """The tensor table; ``extra`` adds a last column (name -> text), e.g. TF1 collections."""
    rows = _rows(tmap)
    head = ("name", "dtype", "shape", "bytes")
    widths = [max([len(head[i])] + [len(str(r[i])) for r in rows]) for i in range(3)]
    tail = f"  {extra_head}" if extra is not None else ""
    lines = [f"{head[0]:<{widths[0]}}  {head[1]:<{widths[1]}}  {head[2]:<{widths[2]}}  {head[3]:>12}{tail}"]
    for name, dtype, shape, nbytes in rows:
        tail = f"  {extra.get(name, '')}" if extra is not None else ""
        lines.append(f"{name:<{widths[0]}}  {dtype:<{widths[1]}}  {shape:<{widths[2]}}  "
                     f"{nbytes:>12,}{tail}".rstrip())
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


def _capped(arr: Any, limit: int) -> tuple[Any, bool]:
    """The first ``limit`` values (flattened) when there are more; ``limit`` 0: all."""
    if limit and arr.size > limit:
        return arr.reshape(-1)[:limit], True
    return arr, False


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


def render_json(tmap: TensorMap, values: Sequence[str] = (),
                extra: Optional[Mapping[str, Any]] = None,
                per_tensor: Optional[Mapping[str, Mapping[str, Any]]] = None,
                max_values: int = 0) -> str:
    """JSON of the listing; ``extra`` adds top-level keys, ``per_tensor`` keys to tensor entries."""
    doc: dict[str, Any] = {
        "source": tmap.source,
        "format": tmap.format,
        "metadata": tmap.metadata,
        "count": len(tmap),
        "total_bytes": sum(t.nbytes for t in tmap.values()),
        "tensors": [{"name": n, "dtype": d, "shape": list(tmap[n].shape), "bytes": b}
                    for n, d, _s, b in _rows(tmap)],
        "notes": tmap.notes,
    }
    placeholders = tmap.extras.get("torch_placeholders")
    if placeholders:  # objects of classes a pickle named but ckconv did not load
        doc["placeholders"] = placeholders
    if per_tensor:
        for entry in doc["tensors"]:
            entry.update(per_tensor.get(entry["name"], {}))
    if extra:
        doc.update(extra)
    if values:
        doc["values"] = {}
        for name in values:
            arr, cut = _capped(_values(tmap, name), max_values)
            doc["values"][name] = _jsonable(arr)
            if cut:
                doc.setdefault("values_cut", {})[name] = (
                    f"first {max_values} of {tmap[name].size} values (row-major); "
                    "--max-values 0 prints all")
    return json.dumps(doc, indent=2, allow_nan=True)


def run_inspect(args: argparse.Namespace) -> int:
    from .remote import is_url, run_inspect as run_remote

    if is_url(args.src):  # mirrored with headers only, then inspected here (cli/remote.py)
        return run_remote(args, run_inspect)
    from .. import api
    from ..formats.tf import inspect as tfi
    from .convert import note

    if args.max_values < 0:
        raise UsageError("--max-values must be 0 (all) or more")
    history = tfi.history_for(args.src, args.src_format)  # a TF run directory: its checkpoints
    if history and args.step is None and "@" not in args.src and tfi.ambiguous(history):
        why = ("no 'checkpoint' state file marks the latest checkpoint; inspect one with "
               "--step N, DIR@N or its prefix")
        if args.json:
            print(json.dumps({"source": args.src, "history": tfi.history_json(history),
                              "tensors": None, "notes": [why]}, indent=2))
        else:
            print(tfi.render_history(history, args.src))
            note(args, [why])
        return 0
    tmap = api.load(args.src, args.src_format, step=args.step, collections=args.collection,
                    dequantize=args.dequantize, skip_unsupported=True)  # inspect lists, notes
    from ..io.extents import check_extents

    check_extents(tmap)  # inspect reads no tensor bytes: a stat per file finds a cut-off one
    graph = tfi.meta_info(tmap)
    if args.json:
        extra: dict = {}
        per_tensor = None
        if history:
            extra["history"] = tfi.history_json(history, tmap.source)
        if graph is not None:
            extra["meta"] = graph.summary(tmap)
            per_tensor = {n: {"collections": c} for n, c in graph.membership(tmap).items()}
        print(render_json(tmap, args.values, extra, per_tensor, args.max_values))
        return 0
    if history:
        print(tfi.render_history(history, args.src, tmap.source) + "\n")
    print(render_table(tmap, tfi.collections_column(tmap, graph) if graph else None))
    if graph is not None:
        print(tfi.render_meta(tmap, graph))
    for name in args.values:
        print(render_values(tmap, name))
    note(args, tmap.notes)
    return 0
