"""The model order of a TF checkpoint's variables, and the top-level layer of each.

A bundle lists its keys sorted, which is not the model's order. Two things tell it:

* a TF2 object graph (``_CHECKPOINTABLE_OBJECT_GRAPH``): walking it depth-first from the
  root, children in the order they were tracked, except that numbered children
  (``layer_with_weights-10``, ``layer-3``, Keras 3's ``_operations/10``) go by their
  number. The top-level layer of a variable is its path up to the first numbered child;
  its name is the component of the variables' Keras names that names the layer
  (``gru/gru_cell/kernel`` -> ``gru``, Keras 3 ``sequential/d0/kernel`` -> ``d0``) when
  they all agree, and unknown for a nested model (tf_keras names its weights after the
  inner layers: ``dense/kernel`` inside layer ``inner``);
* a TF1 ``.meta`` graph: the order of its ``variables`` collection (creation order).

Optimizer state is not part of the model and gets no place.
"""

from __future__ import annotations

import re
from typing import Any

from ...tensormap import TensorMap
from ..places import Place, Places, layer_of_name
from .objectgraph import OBJECT_GRAPH_KEY, VALUE, _optimizer_nodes, parse_graph
from .paths import META_PATH_KEY

_NUMBERED = re.compile(r"^(?:(layer_with_weights|layer)-)?(\d+)$")


def places_for(tmap: TensorMap) -> Places:
    """The :class:`Places` of a TF checkpoint just read (computed on first use)."""
    tensors = dict(tmap.items())
    if OBJECT_GRAPH_KEY in tensors:
        return Places("the TF2 object graph", lambda: _graph_places(tmap, tensors))
    return Places("the .meta graph's variable order", lambda: _meta_places(tmap, tensors))


def _sorted_children(node: Any) -> list[Any]:
    """Numbered children by number (the proto lists them as tracked), the rest as listed."""
    indexed = list(enumerate(node.children))

    def key(item: tuple[int, Any]) -> tuple:
        i, child = item
        m = _NUMBERED.match(child.local_name)
        return (0, m.group(1) or "", int(m.group(2))) if m else (1, "", i)

    return [c for _, c in sorted(indexed, key=key)]


def _graph_places(tmap: TensorMap, tensors: dict[str, Any]) -> list[tuple[Any, Place]]:
    nodes = parse_graph(tmap).nodes
    blocked = _optimizer_nodes(nodes)
    seen: set[int] = set()
    found: list[tuple[str, tuple[str, ...], str]] = []  # (key, layer path, full name)

    def walk(n: int, path: tuple[str, ...], layer: tuple[str, ...]) -> None:
        if n in seen or n in blocked or n >= len(nodes):
            return
        seen.add(n)
        for attr in nodes[n].attributes:
            if attr.name == VALUE and attr.checkpoint_key in tensors:
                found.append((attr.checkpoint_key, layer or path[:-1], attr.full_name))
        for child in _sorted_children(nodes[n]):
            if child.local_name == "save_counter" and not path:
                continue
            sub = path + (child.local_name,)
            # The first numbered child on the way ends the top-level layer's path.
            numbered = bool(_NUMBERED.match(child.local_name))
            walk(child.node_id, sub, layer or (sub if numbered else ()))

    walk(0, (), ())
    by_layer: dict[tuple[str, ...], list[str]] = {}
    for _, layer, full in found:
        by_layer.setdefault(layer, []).append(full)
    names = _layer_names(by_layer)
    layer_rank = {layer: i for i, layer in enumerate(by_layer)}
    out = []
    for i, (key, layer, full) in enumerate(found):
        name, named = names[layer]
        out.append((tensors[key], Place((layer_rank[layer], i), name, named, full or None)))
    return out


def _layer_names(by_layer: dict[tuple[str, ...], list[str]]) -> dict[tuple[str, ...], tuple[str, bool]]:
    """Each layer's name: the component of its weights' Keras names that they share.

    tf_keras and Keras 3 functional models name weights ``<layer>/...``; Keras 3
    Sequential ``<model>/<layer>/...``, so when every weight starts with one component,
    the next one names the layers. A layer whose weights disagree (a nested model in
    tf_keras) or whose name another layer has too is named by its path.
    """
    split = {layer: [f.split("/") for f in fulls] for layer, fulls in by_layer.items()}
    everyone = [p for parts in split.values() for p in parts]
    depth = 0
    if len(split) > 1 and all(len(p) > 2 for p in everyone) and len({p[0] for p in everyone}) == 1:
        depth = 1
    guess: dict[tuple[str, ...], str] = {}
    for layer, parts in split.items():
        heads = {p[depth] for p in parts if len(p) > depth + 1}
        if len(heads) == 1 and all(len(p) > depth + 1 for p in parts):
            guess[layer] = heads.pop()
    counts: dict[str, int] = {}
    for g in guess.values():
        counts[g] = counts.get(g, 0) + 1
    return {layer: (guess[layer], True) if layer in guess and counts[guess[layer]] == 1
            else ("/".join(layer), False) for layer in split}


def _meta_places(tmap: TensorMap, tensors: dict[str, Any]) -> list[tuple[Any, Place]]:
    from .meta import meta_for

    if not tmap.extras.get(META_PATH_KEY):
        return []
    try:
        graph = meta_for(tmap)
    except Exception:  # a damaged .meta must not stop a conversion that only wants order
        return []
    coll = graph.collections.get("variables") if graph is not None else None
    if coll is None:
        return []
    out = []
    layers: dict[str, int] = {}
    for i, var in enumerate(coll.variables):
        t = tensors.get(var.key)
        if t is None or var.partition:
            continue
        layer = layer_of_name(var.key)
        rank = layers.setdefault(layer, len(layers))
        out.append((t, Place((rank, i), layer, True, var.key)))
    return out
