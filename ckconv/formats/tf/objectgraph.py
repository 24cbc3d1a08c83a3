"""Readable names for the keys of a TF2 object-based checkpoint, from its object graph.

``_CHECKPOINTABLE_OBJECT_GRAPH`` (docs/formats.md §9) lists every saved object with its
children and attributes. From it:

* model variables get the name Keras reports for them: the attribute's ``full_name``
  (tf_keras ``dense/kernel``, Keras 3 ``sequential/conv/kernel``), or their object path
  when the full name is missing, TF's default ``Variable_N`` or shared by several variables;
* optimizer slots become ``<variable>/.OPTIMIZER_SLOT/<slot>``: legacy optimizers list
  them as slot variables; Keras 3 and the new tf_keras optimizers keep per-variable lists
  (``_momentums``...) that line up with ``_trainable_variables`` or name the variable;
* other optimizer state becomes ``optimizer/<path inside the optimizer>``;
* other attributes keep their object path with the attribute name (``.../table-keys``).

Model variables are told apart from optimizer state by reachability: Keras 3 checkpoints
reach model weights first through ``optimizer/_trainable_variables/N``, so the key alone
cannot tell.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any, Optional

from ...errors import MappingError
from ...tensormap import TensorMap
from .saved_model import variable_name

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
VALUE = "VARIABLE_VALUE"
_DEFAULT_NAME = re.compile(r"^Variable(_\d+)?$")
_SKIP_LISTS = {"_variables", "_trainable_variables"}
#: Name prefix of a second copy of a weight (dropped by the tf2 preset).
DUPLICATE = ".DUPLICATE/"


def parse_graph(tmap: TensorMap) -> Any:
    from .protos import TrackableObjectGraph

    if OBJECT_GRAPH_KEY not in tmap:
        raise MappingError(f"{tmap.source or 'the checkpoint'} has no {OBJECT_GRAPH_KEY}: "
                           "not a TF2 object-based checkpoint (TF1 names are already plain)")
    value = tmap[OBJECT_GRAPH_KEY].numpy()
    raw = value.item() if getattr(value, "shape", None) == () else value.reshape(-1)[0]
    try:
        return TrackableObjectGraph.FromString(bytes(raw))
    except Exception as exc:  # protobuf raises its own DecodeError
        raise MappingError(f"{OBJECT_GRAPH_KEY} does not hold a valid object graph: {exc}") from None


def _bfs(nodes: Any, start: int, blocked: set[int],
         public_only: bool = False) -> dict[int, list[str]]:
    """First-found path (edge names) from ``start`` to each node, not entering ``blocked``
    (nor, with ``public_only``, following an edge whose name starts with ``_``)."""
    paths: dict[int, list[str]] = {start: []}
    queue = deque([start])
    while queue:
        n = queue.popleft()
        for child in nodes[n].children:
            c = child.node_id
            if c in paths or c in blocked or c >= len(nodes):
                continue
            if public_only and child.local_name.startswith("_"):
                continue
            paths[c] = paths[n] + [child.local_name]
            queue.append(c)
    return paths


def _optimizer_nodes(nodes: Any) -> set[int]:
    found = set()
    for i, node in enumerate(nodes):
        names = {c.local_name for c in node.children}
        if node.slot_variables or "_iterations" in names or {"iter", "learning_rate"} <= names:
            found.add(i)
        for child in node.children:
            if child.local_name == "optimizer":
                found.add(child.node_id)
    return found


def _value_attr(node: Any) -> Optional[Any]:
    return next((a for a in node.attributes if a.name == VALUE), None)


def readable_names(tmap: TensorMap) -> dict[str, str]:
    """checkpoint key -> readable name, for every tensor the object graph describes."""
    nodes = parse_graph(tmap).nodes
    optimizers = _optimizer_nodes(nodes)
    model_paths = _bfs(nodes, 0, optimizers)
    all_paths = _bfs(nodes, 0, set())
    variables = {i for i, n in enumerate(nodes) if _value_attr(n) is not None}
    model_vars = sorted(v for v in variables if v in model_paths)
    names: dict[int, str] = _model_names(nodes, model_vars, model_paths, tmap)
    shapes = {k: t.shape for k, t in tmap.items()}

    slots: dict[int, tuple[int, str]] = {}
    for node in nodes:
        for ref in node.slot_variables:
            slots[ref.slot_variable_node_id] = (ref.original_variable_node_id, ref.slot_name)
    for o in sorted(optimizers):
        slots.update(_list_slots(nodes, o, names, shapes, slots))

    result: dict[str, str] = {}
    for i, node in enumerate(nodes):
        for attr in node.attributes:
            if not attr.checkpoint_key:
                continue
            if attr.name == VALUE and i in names:
                name = names[i]
            elif attr.name == VALUE and i in slots and slots[i][0] in names:
                var, slot = slots[i]
                name = f"{names[var]}/.OPTIMIZER_SLOT/{slot}"
            else:
                name = _object_path(nodes, i, all_paths, optimizers)
                if attr.name != VALUE:
                    name += "/" + attr.name
            result[attr.checkpoint_key] = name
    # Attributes saved as several tensors (lookup tables: <key>-keys, <key>-values).
    for key in shapes:
        if key not in result and "/.ATTRIBUTES/" in key:
            base = next((k for k in result if key.startswith(k + "-")), None)
            if base is not None:
                result[key] = result[base] + key[len(base):]
    return result


def _model_names(nodes: Any, model_vars: list[int], paths: dict[int, list[str]],
                 tmap: TensorMap) -> dict[int, str]:
    """Each model variable's name: its own (SavedVariable name, else the attribute's
    ``full_name``) when that is unique, else its object path.

    Keras 3 ``export()`` saves every weight twice, once in a list only private (``_``)
    attributes reach (``_all_variables``). A variable reachable only that way, with the
    scoped name (``model/dense/kernel``), dtype, shape and stored CRC of the one publicly
    reachable variable of that name, is a copy: it is named ``.DUPLICATE/<path>`` for the
    preset to drop. Public variables, or bare names such as ``bias``, are never merged,
    however alike their values (two zero biases of one shape)."""
    saved = _saved_graph(tmap)
    full: dict[int, str] = {}
    for v in model_vars:
        name = variable_name(saved, paths[v]) if saved is not None else None
        full[v] = name or _value_attr(nodes[v]).full_name
    groups: dict[str, list[int]] = {}
    for v in model_vars:
        groups.setdefault(full[v], []).append(v)
    public = _bfs(nodes, 0, set(), public_only=True)
    parents = _parents(nodes)
    names: dict[int, str] = {}
    for f, members in groups.items():
        usable = bool(f) and not _DEFAULT_NAME.match(f)
        shown = [v for v in members if v in public]
        if usable and len(members) == 1:
            names[members[0]] = f
        elif usable and "/" in f and len(shown) == 1 and _copies(nodes, members, tmap):
            for v in members:
                names[v] = f if v == shown[0] else DUPLICATE + "/".join(paths[v])
        else:
            for v in members:
                names[v] = "/".join(_owner_path(v, f, paths, parents))
    return names


def _saved_graph(tmap: TensorMap) -> Optional[list]:
    from .saved_model import SAVED_MODEL_KEY, object_graph

    pb = tmap.extras.get(SAVED_MODEL_KEY)
    return object_graph(pb) if pb else None


def _parents(nodes: Any) -> dict[int, list[tuple[int, str]]]:
    out: dict[int, list[tuple[int, str]]] = {}
    for i, node in enumerate(nodes):
        for child in node.children:
            out.setdefault(child.node_id, []).append((i, child.local_name))
    return out


def _owner_path(v: int, own_name: str, paths: dict[int, list[str]],
                parents: dict[int, list[tuple[int, str]]]) -> list[str]:
    """A variable reachable by several paths is named through the object that calls it by
    its own name (``encoder/kernel``, not an alias such as ``shared``)."""
    last = own_name.rsplit("/", 1)[-1] if own_name else ""
    owners = [(len(paths[p]), paths[p] + [edge]) for p, edge in parents.get(v, [])
              if edge == last and p in paths]
    return min(owners)[1] if owners else paths[v]


def _copies(nodes: Any, members: list[int], tmap: TensorMap) -> bool:
    """True when every member's tensor has the same dtype, shape and stored checksum."""
    seen = set()
    for v in members:
        t = tmap.get(_value_attr(nodes[v]).checkpoint_key)
        crc = getattr(t, "_crc", None)
        if t is None or crc is None:
            return False
        seen.add((t.dtype.name, t.shape, crc, getattr(t, "_size", None)))
    return len(seen) == 1


def _object_path(nodes: Any, i: int, paths: dict[int, list[str]], optimizers: set[int]) -> str:
    """``optimizer/<path below the first optimizer on the way>``, or the plain object path."""
    path = paths.get(i)
    if path is None:
        return f"node_{i}"
    node = 0
    for k, edge in enumerate(path):
        node = next(c.node_id for c in nodes[node].children if c.local_name == edge)
        if node in optimizers:
            return "/".join(["optimizer"] + path[k + 1:])
    return "/".join(path)


def _is_list(node: Any) -> bool:
    return bool(node.children) and all(c.local_name.isdigit() for c in node.children)


def _list_slots(nodes: Any, opt: int, names: dict[int, str], shapes: dict[str, tuple],
                known: dict[int, tuple[int, str]]) -> dict[int, tuple[int, str]]:
    """Slots kept as per-variable lists (Keras 3, new tf_keras optimizers)."""
    children = {c.local_name: c.node_id for c in nodes[opt].children}
    trainable: list[int] = []
    if "_trainable_variables" in children:
        trainable = [c.node_id for c in nodes[children["_trainable_variables"]].children]
    out: dict[int, tuple[int, str]] = {}
    for list_name, list_node in children.items():
        if list_name in _SKIP_LISTS or not _is_list(nodes[list_node]):
            continue
        members = [c.node_id for c in nodes[list_node].children]
        if any(m in names or m in known or _value_attr(nodes[m]) is None for m in members):
            continue
        aligned = len(members) == len(trainable) and all(t in names for t in trainable)
        for k, m in enumerate(members):
            full = _value_attr(nodes[m]).full_name
            owner = trainable[k] if aligned else _owner_by_name(full, names)
            if owner is None or _shape(nodes, m, shapes) != _shape(nodes, owner, shapes):
                continue
            out[m] = (owner, _slot_name(full, names[owner], list_name))
    return out


def _shape(nodes: Any, i: int, shapes: dict[str, tuple]) -> Optional[tuple]:
    attr = _value_attr(nodes[i])
    return shapes.get(attr.checkpoint_key) if attr is not None else None


def _owner_by_name(full: str, names: dict[int, str]) -> Optional[int]:
    best: Optional[int] = None
    for v, name in names.items():
        if full.endswith("/" + name) or ("_" + name.replace("/", "_") + "_") in "_" + full.split("/", 1)[-1]:
            if best is None or len(name) > len(names[best]):
                best = v
    return best


def _slot_name(full: str, var_name: str, list_name: str) -> str:
    """The slot's own name as the optimizer gave it (``m``, ``momentum``), else from the list."""
    if full.endswith("/" + var_name):
        head = full[: -len(var_name) - 1]
        return head.rsplit("/", 1)[-1]
    tail = full.split("/", 1)[-1]
    prefix = var_name.replace("/", "_") + "_"
    if tail.startswith(prefix) and len(tail) > len(prefix):
        return tail[len(prefix):]
    name = list_name.lstrip("_")
    return name[:-3] + "y" if name.endswith("ies") else name.rstrip("s") or name
