"""The TF1 parts of ``ckconv inspect``: a directory's checkpoint history and the ``.meta`` graph.

Kept apart from :mod:`ckconv.cli.inspect` (which knows only TensorMaps) so that inspecting a
safetensors file never touches TF code.
"""

from __future__ import annotations

import os
import time
from typing import Any, Optional

from ...errors import CkconvError
from ...tensormap import TensorMap


def history_for(src: str, src_format: Optional[str] = None) -> Optional[list]:
    """The checkpoint history when ``src`` is (or is ``DIR@STEP`` of) a TF directory, else None."""
    if src_format not in (None, "tf"):
        return None
    from .history import list_history
    from .paths import split_step

    base, _ = split_step(src)
    if not os.path.isdir(base):
        return None
    from . import v1

    if v1.resolve(base) is not None:
        return None  # the history lists V2 checkpoints; a V1 run directory shows its tensors
    try:
        entries = list_history(base)
    except CkconvError:
        return None  # e.g. an unparseable 'checkpoint' file: loading the source explains
    return entries or None


def ambiguous(entries: list) -> bool:
    """Several checkpoints and nothing (no state file) saying which one is the latest."""
    return not any(e.listed for e in entries) and sum(e.exists for e in entries) > 1


def _when(t: Optional[float]) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t is not None else "-"


def render_history(entries: list, directory: str, selected: Optional[str] = None) -> str:
    """A table of the checkpoints of ``directory``, oldest step first."""
    rows = []
    footnotes = set()
    # The ">" marker only helps when there is a choice.
    sel = os.path.realpath(selected) if selected and len(entries) > 1 else None
    for e in entries:
        step = "-" if e.step is None else str(e.step)
        if e.step_source == "global_step":
            step += "*"
            footnotes.add("* step read from the checkpoint's global_step tensor (none in the name)")
        status = []
        if e.latest:
            status.append("latest")
        if not e.exists:
            status.append("missing: listed in 'checkpoint' but not on disk")
        elif not e.listed and any(x.listed for x in entries):
            status.append("not listed in 'checkpoint'")
        if e.has_meta:
            status.append(".meta")
        when = _when(e.time) + (f" ({e.time_source})" if e.time is not None else "")
        size = f"{e.size:,}" if e.size is not None else "-"
        mark = ">" if sel and e.exists and os.path.realpath(e.prefix) == sel else " "
        rows.append((mark, step, e.name, size, when, ", ".join(status)))
    head = (" ", "step", "checkpoint", "bytes", "saved", "")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [f"checkpoints in {directory}:"]
    for r in [head, *rows]:
        lines.append(f"{r[0]} {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:>{widths[3]}}  "
                     f"{r[4]:<{widths[4]}}  {r[5]}".rstrip())
    if any(e.time_source == "state" for e in entries):
        footnotes.add("(state): time recorded in the 'checkpoint' file")
    if any(e.time_source == "mtime" for e in entries):
        footnotes.add("(mtime): modification time of the .index file")
    if sel:
        footnotes.add("> the checkpoint shown below")
    lines += sorted(footnotes)
    return "\n".join(lines)


def history_json(entries: list, selected: Optional[str] = None) -> list[dict[str, Any]]:
    sel = os.path.realpath(selected) if selected else None
    out = []
    for e in entries:
        doc = e.to_json()
        doc["selected"] = bool(sel and e.exists and os.path.realpath(e.prefix) == sel)
        out.append(doc)
    return out


def meta_info(tmap: TensorMap) -> Optional[Any]:
    """The parsed ``.meta`` of a TF checkpoint map, or None (never for other formats)."""
    if tmap.format != "tf":
        return None
    from .meta import meta_for

    return meta_for(tmap)


def collections_column(tmap: TensorMap, graph: Any) -> dict[str, str]:
    return {name: ", ".join(colls) for name, colls in graph.membership(tmap).items()}


def render_meta(tmap: TensorMap, graph: Any) -> str:
    colls = ", ".join(f"{c.name} ({len(graph.keys_of([c.key], tmap))}/{c.size})"
                      for c in sorted(graph.collections.values(), key=lambda c: c.name))
    lines = [f"graph {os.path.basename(graph.path)}: {graph.op_count:,} ops of "
             f"{len(graph.op_types)} types"
             + (f", written by TensorFlow {graph.tensorflow_version}"
                if graph.tensorflow_version else "")]
    lines.append(f"collections (tensors here/entries): {colls or 'none'}")
    if graph.saver:
        s = graph.saver
        lines.append(f"saver: {s['version']}, max_to_keep {s['max_to_keep']}"
                     + (", sharded" if s["sharded"] else ""))
    return "\n".join(lines)
