"""Where each weight sits in its model: its top-level layer and its position.

Keras loads legacy ``.h5`` weights by position, and ``--like`` pairs what names leave
unmatched in order, so both need the model's order of layers and weights. A file's own
order is often not it: TF bundles sort their keys (``layer_with_weights-10`` before
``layer_with_weights-2``), HDF5 lists ungrouped links alphabetically (``dense_10`` before
``dense_2``), safetensors writers sort by name. Readers that know better leave a
:class:`Places` in ``tmap.extras[PLACES]``:

* TF2 object-based checkpoints: the object graph, numbered children taken numerically;
  TF1 Saver checkpoints: the variable order of their ``.meta`` graph (:mod:`.tf.layers`);
* Keras legacy ``.h5``: the ``layer_names`` / ``weight_names`` attributes;
* other HDF5 files (Keras 3 ``.weights.h5``): the order the datasets were written in,
  which their addresses in the file keep.

Places are keyed by tensor object, so they survive renames, ``select`` and the rule
engine's lazy transforms (a transposed tensor keeps its base's place).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..records import field, record

if TYPE_CHECKING:
    from ..tensor import Tensor
    from ..tensormap import TensorMap

#: ``TensorMap.extras`` key of the map's :class:`Places`.
PLACES = "ckconv.places"


@record(frozen=True)
class Place:
    """One weight's place: ``order`` sorts weights into model order."""

    order: tuple
    layer: str                   # top-level layer: its Keras name, or else its path
    layer_named: bool = True     # False when ``layer`` is only a path (name unknown)
    weight: Optional[str] = None  # the weight's Keras name (``gru/gru_cell/kernel``)


class Places:
    """Tensor object -> :class:`Place`, computed on first use (parsing a graph costs)."""

    def __init__(self, origin: str, compute: Callable[[], list[tuple["Tensor", Place]]]):
        self.origin = origin  # how the order is known, for messages
        self._compute: Optional[Callable[[], list[tuple[Any, Place]]]] = compute
        self._by_id: dict[int, tuple[Any, Place]] = {}

    def get(self, tensor: "Tensor") -> Optional[Place]:
        if self._compute is not None:
            compute, self._compute = self._compute, None
            # The tensors are held here too, so their ids stay theirs.
            self._by_id = {id(t): (t, p) for t, p in compute()}
        for base in _bases(tensor):
            hit = self._by_id.get(id(base))
            if hit is not None and hit[0] is base:
                return hit[1]
        return None


def _bases(tensor: Any, depth: int = 0) -> list[Any]:
    """The tensor and what it was derived from (transposes, casts, splits, merges)."""
    out = [tensor]
    if depth > 32:
        return out
    base = getattr(tensor, "base", None)
    if base is None:
        source = getattr(tensor, "source", None)
        base = getattr(source, "base", None)
    if base is None:
        parts = getattr(tensor, "parts", None)
        base = parts[0] if parts else None
    if base is not None:
        out += _bases(base, depth + 1)
    return out


# A component naming a part of a Keras layer rather than a layer: RNN cells, the two
# directions of Bidirectional, MultiHeadAttention's projections.
_SUBOBJECT = re.compile(r"^(?:\w*cell|forward_\w+|backward_\w+|forward_layer|backward_layer|"
                        r"query|key|value|attention_output|_?(?:query|key|value|output)_dense)$")


def layer_of_name(name: str) -> str:
    """The top-level Keras layer a weight name suggests (no other knowledge at hand).

    ``dense_1/kernel`` -> ``dense_1``; ``gru/gru_cell/kernel`` -> ``gru``;
    ``bidirectional/forward_lstm/lstm_cell/bias`` -> ``bidirectional``;
    ``multi_head_attention/query/kernel`` -> ``multi_head_attention``;
    ``encoder/fc1/kernel`` -> ``encoder/fc1`` (one module, one layer).
    """
    parts = name.split("/")[:-1]
    while len(parts) > 1 and _SUBOBJECT.match(parts[-1]):
        parts.pop()
    return "/".join(parts) or name


@record
class Order:
    """A map's names in model order, each with its top-level layer."""

    names: list[str]
    layers: dict[str, str]
    known: bool
    how: str                     # how the order was found, or why it is not known
    places: dict[str, Place] = field(default_factory=dict)

    def grouped(self) -> list[tuple[str, list[str]]]:
        """(layer, names) in model order; a layer met again later starts no new group."""
        groups: dict[str, list[str]] = {}
        for n in self.names:
            groups.setdefault(self.layers[n], []).append(n)
        return list(groups.items())


def model_order(tmap: "TensorMap") -> Order:
    """The names of ``tmap`` in model order, or its own order with ``known`` False."""
    names = list(tmap)
    places_obj = tmap.extras.get(PLACES)
    if isinstance(places_obj, Places):
        found = {n: places_obj.get(tmap[n]) for n in names}
        placed = {n: p for n, p in found.items() if p is not None}
        if placed:
            missing = [n for n in names if n not in placed]
            ordered = sorted(placed, key=lambda n: placed[n].order)
            layers = {n: placed[n].layer for n in placed}
            layers.update({n: layer_of_name(n) for n in missing})
            if missing:
                shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more"
                                                  if len(missing) > 3 else "")
                return Order(ordered + missing, layers, False,
                             f"{shown} have no place in {places_obj.origin}", placed)
            return Order(ordered, layers, True, places_obj.origin, placed)
    layers = {n: layer_of_name(n) for n in names}
    if tmap.format == "tf":
        return Order(names, layers, False, "a TF checkpoint keeps its tensors sorted by name "
                     "and this one has no object graph or .meta to tell the model's order")
    if tmap.format == "safetensors":
        return Order(names, layers, False, "a safetensors file keeps no model order")
    return Order(names, layers, True, "the order of the source file" if tmap.format
                 else "the order of the map")

