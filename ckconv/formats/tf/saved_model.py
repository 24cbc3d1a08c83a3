"""SavedModel directories: ``saved_model.pb`` plus the TF2 checkpoint in ``variables/``.

``tf.saved_model.save`` and Keras 3 ``model.export()`` write::

    DIR/saved_model.pb                          SavedModel{meta_graphs: [MetaGraphDef]}
    DIR/variables/variables.index + .data-*     a TF2 object-based checkpoint
    DIR/assets/, DIR/fingerprint.pb

The weights are the checkpoint; ``saved_model.pb`` adds the ``SavedObjectGraph``
(``MetaGraphDef.object_graph_def``, field 7), whose nodes have the same ids as the
checkpoint's object graph and name each variable (``SavedVariable.name``, e.g. Keras 3's
``model/dense/kernel``). Only those few fields are decoded, by hand: a SavedModel's graph
can be megabytes, and protobuf would parse all of it.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from ...errors import CorruptCheckpointError
from .entries import _fields

#: TensorMap.extras key: the ``saved_model.pb`` of a map read from a SavedModel.
SAVED_MODEL_KEY = "tf.saved_model"
PB = "saved_model.pb"
_BYTES, _VARINT = 2, 0


def variables_prefix(directory: str) -> Optional[str]:
    """The checkpoint prefix of a SavedModel directory, or None if it is not one."""
    prefix = os.path.join(directory, "variables", "variables")
    graph = any(os.path.isfile(os.path.join(directory, f)) for f in (PB, PB + "txt"))
    return prefix if graph and os.path.isfile(prefix + ".index") else None


def pb_for(prefix: str) -> Optional[str]:
    """``DIR/saved_model.pb`` when ``prefix`` is ``DIR/variables/variables``."""
    head, base = os.path.split(prefix)
    if base != "variables" or os.path.basename(head) != "variables":
        return None
    pb = os.path.join(os.path.dirname(head), PB)
    return pb if os.path.isfile(pb) else None


class SavedNode:
    __slots__ = ("children", "variable_name")

    def __init__(self) -> None:
        self.children: dict[str, int] = {}
        self.variable_name: Optional[str] = None  # set for variable nodes


def object_graph(pb_path: str) -> list[SavedNode]:
    """The nodes of the first meta graph's SavedObjectGraph (children and variable names)."""
    try:
        with open(pb_path, "rb") as f:
            data = memoryview(f.read())
    except OSError as exc:
        raise CorruptCheckpointError(f"{pb_path}: cannot read ({exc.strerror})") from None
    try:
        return _object_graph(data)
    except (ValueError, CorruptCheckpointError) as exc:
        raise CorruptCheckpointError(f"{pb_path}: not a readable SavedModel ({exc})") from None


def _first(buf: Any, number: int) -> Optional[Any]:
    return next((v for n, w, v in _fields(buf) if n == number and w == _BYTES), None)


def _object_graph(data: Any) -> list[SavedNode]:
    meta_graph = _first(data, 2)                        # SavedModel.meta_graphs
    graph = _first(meta_graph, 7) if meta_graph is not None else None
    if graph is None:
        raise ValueError("no object graph (a TF1 SavedModel?)")
    nodes = []
    for n, w, obj in _fields(graph):                    # SavedObjectGraph.nodes
        if n != 1 or w != _BYTES:
            continue
        node = SavedNode()
        for n2, w2, v2 in _fields(obj):
            if n2 == 1 and w2 == _BYTES:                 # children: ObjectReference
                node_id, name = 0, ""
                for n3, w3, v3 in _fields(v2):
                    if n3 == 1 and w3 == _VARINT:
                        node_id = v3
                    elif n3 == 2 and w3 == _BYTES:
                        name = bytes(v3).decode("utf-8", "replace")
                node.children[name] = node_id
            elif n2 == 7 and w2 == _BYTES:               # variable: SavedVariable
                node.variable_name = ""
                for n3, w3, v3 in _fields(v2):
                    if n3 == 6 and w3 == _BYTES:
                        node.variable_name = bytes(v3).decode("utf-8", "replace")
        nodes.append(node)
    return nodes


def variable_name(nodes: list[SavedNode], path: list[str]) -> Optional[str]:
    """The SavedVariable name of the node at ``path`` (edge names from the root)."""
    node = 0
    for edge in path:
        if node >= len(nodes) or edge not in nodes[node].children:
            return None
        node = nodes[node].children[edge]
    return nodes[node].variable_name if node < len(nodes) else None
