"""Keras legacy HDF5 weight files, as written by tf.keras ``save_weights("w.h5")`` and by
``model.save("m.h5")`` (tf.keras or Keras 3), whose weights sit in a ``model_weights`` group.

Layout: the weights group's attribute ``layer_names`` lists the layers in model order; each
layer group's ``weight_names`` lists its weights in the order the layer creates them, and
each weight is the dataset ``<layer>/<weight name>``. Attributes too large for an HDF5
object header are split by Keras into ``layer_names0``, ``layer_names1``, ...

Reading follows those lists, so tensors come in Keras order, named by their weight names
without the ``:0`` suffix (``dense/kernel``). Writing produces the layout tf_keras writes,
which ``model.load_weights()`` of tf_keras and Keras 3 accept, by position or by name:
layers in the model's order and each weight in its top-level layer's group, both taken
from what the source records (:mod:`..places`: Keras files, TF2 object graphs, TF1
``.meta`` graphs, HDF5 write order) or else from the names (``gru/gru_cell/kernel`` is in
layer ``gru``).
"""

from __future__ import annotations

import re
from typing import Any, Optional

import numpy as np

from ...errors import CorruptCheckpointError, UnsupportedError
from ...tensormap import TensorMap
from ..places import PLACES, Place, Places, model_order
from .storage import H5File, H5Tensor, RawWrites, dtype_of, needs_attr, write_dataset

#: ``tmap.extras`` key: tensor name -> (layer name, weight name as stored in the file).
EXTRAS_KEY = "keras_h5"
#: ``tmap.extras`` key: every layer of ``layer_names``, those without weights included.
LAYERS_KEY = "keras_h5.layers"
# Keras splits attributes above this many bytes (HDF5's object header limit).
ATTR_LIMIT = 64512
_SUFFIX = re.compile(r":\d+$")
# Creation order of the weights of common Keras layers; a layer whose weight names are all
# listed here is written in this order, which is the order load_weights() assigns them in.
_CREATION_ORDER = ("kernel", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel",
                   "embeddings", "bias", "gamma", "beta", "moving_mean", "moving_variance")


def _as_str(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def attr_list(group: Any, name: str) -> Optional[list[str]]:
    """A string-list attribute, joining Keras' ``name0``, ``name1``... chunks; None if absent."""
    attrs = group.attrs
    if name in attrs:
        return [_as_str(v) for v in np.asarray(attrs[name]).reshape(-1)]
    if f"{name}0" not in attrs:
        return None
    out: list[str] = []
    i = 0
    while f"{name}{i}" in attrs:
        out += [_as_str(v) for v in np.asarray(attrs[f"{name}{i}"]).reshape(-1)]
        i += 1
    return out


def weights_group(handle: Any) -> Optional[Any]:
    """The group holding ``layer_names`` (root, or ``model_weights`` of a full-model file)."""
    import h5py

    if attr_list(handle, "layer_names") is not None:
        return handle
    mw = handle.get("model_weights")
    if isinstance(mw, h5py.Group) and attr_list(mw, "layer_names") is not None:
        return mw
    return None


def read_keras(handle: Any, group: Any, path: str) -> TensorMap:
    import h5py

    tmap = TensorMap(source=path, format="hdf5")
    file = H5File(handle)
    origin: dict[str, tuple[str, str]] = {}
    renamed: list[str] = []
    layers = list(attr_list(group, "layer_names") or [])
    if "top_level_model_weights" in group and "top_level_model_weights" not in layers:
        layers.append("top_level_model_weights")  # variables owned by the model itself
    places: list[tuple[Any, Place]] = []
    for rank, layer in enumerate(layers):
        lg = group.get(layer)
        if not isinstance(lg, h5py.Group):
            raise CorruptCheckpointError(f"{path}: layer {layer!r} listed in layer_names has no group")
        for wname in attr_list(lg, "weight_names") or []:
            ds = lg.get(wname)
            if not isinstance(ds, h5py.Dataset):
                raise CorruptCheckpointError(f"{path}: weight {wname!r} of layer {layer!r} is missing")
            dt = dtype_of(ds)
            if dt is None:
                raise UnsupportedError(f"{path}: weight {wname!r} has HDF5 type {ds.dtype}, "
                                       "which ckconv cannot represent")
            name = _SUFFIX.sub("", wname)
            if name in tmap:  # two layers with the same weight names (nested models)
                name = f"{layer}/{name}"
                renamed.append(name)
            tmap[name] = H5Tensor(file, ds.name, dt, tuple(ds.shape), ds)
            origin[name] = (layer, wname)
            places.append((tmap[name], Place((rank, len(places)), layer, True,
                                             _SUFFIX.sub("", wname))))
    tmap.extras[EXTRAS_KEY] = origin
    tmap.extras[LAYERS_KEY] = [layer for layer in layers if layer != "top_level_model_weights"]
    tmap.extras[PLACES] = Places("the file's layer_names", lambda: places)
    for key in ("keras_version", "backend"):
        value = group.attrs.get(key, handle.attrs.get(key))
        if value is not None:
            tmap.metadata[key] = _as_str(value)
    if renamed:
        tmap.notes.append(f"{len(renamed)} weight name(s) repeated in several layers were "
                          f"prefixed with their layer: {', '.join(renamed[:5])}")
    if group is not handle:
        opt = handle.get("optimizer_weights")
        count = len(attr_list(opt, "weight_names") or []) if isinstance(opt, h5py.Group) else 0
        tmap.notes.append("Keras full-model file: read model_weights; the architecture "
                          "(model_config) is not converted" +
                          (f"; left out {count} optimizer weight(s)" if count else ""))
    tmap.source_files.append(path)
    return tmap


def _plan_layers(tmap: TensorMap) -> tuple[list[tuple[str, list[tuple[str, str]]]], list[str]]:
    """(layer, [(tensor name, weight name)]) in the model's order, and notes.

    Keras loads a legacy file by position: the i-th layer with weights in ``layer_names``
    goes to the model's i-th layer with weights, its weights in ``weight_names`` order. So
    the order is the model's (see :mod:`..places`), never the names' sorted order, and a
    layer is a top-level Keras layer: a GRU's weights ``gru/gru_cell/kernel`` belong to
    layer ``gru``, as tf_keras writes them.
    """
    order = model_order(tmap)
    known = tmap.extras.get(EXTRAS_KEY, {})
    layers: dict[str, list[tuple[str, str]]] = {}
    derived: set[str] = set()
    unnamed: set[str] = set()
    for name in order.names:
        place = order.places.get(name)
        if name in known:
            layer, wname = known[name]
        else:
            layer = order.layers[name]
            wname = name if _SUFFIX.search(name) else name + ":0"
            if place is None:
                derived.add(layer)
            elif not place.layer_named:
                unnamed.add(layer)
        layers.setdefault(layer, []).append((name, wname))
    for layer in derived:
        items = layers[layer]
        split = [_SUFFIX.sub("", w).rpartition("/") for _, w in items]
        if all(base in _CREATION_ORDER for _, _, base in split):
            first: dict[str, int] = {}
            for part, _, _ in split:
                first.setdefault(part, len(first))
            rank = {n: (_part_rank(part), first[part], _CREATION_ORDER.index(base))
                    for (n, _), (part, _, base) in zip(items, split)}
            items.sort(key=lambda item: rank[item[0]])
    notes = []
    if not order.known:
        notes.append(f"the layer order of this Keras file is not the model's order ({order.how}): "
                     "Keras loads .h5 weights by position, so load it with by_name=True, or "
                     "convert with --like a file the target model saved")
    if unnamed:
        notes.append(f"{len(unnamed)} layer(s) whose name the source does not record (nested "
                     f"models) are named by their object path ({', '.join(sorted(unnamed)[:3])}): "
                     "loading by position works, by_name=True skips them")
    return list(layers.items()), notes


# Parts of a layer in the order Keras creates their weights (the names' own order may be
# alphabetical: backward_lstm before forward_lstm, attention_output before query).
_PARTS = {"forward": 0, "backward": 1, "query": 0, "key": 1, "value": 2, "attention_output": 3}


def _part_rank(path: str) -> tuple[int, ...]:
    return tuple(_PARTS.get(c, _PARTS.get(c.split("_")[0], 0)) for c in path.split("/"))


def _check_path(text: str, what: str) -> None:
    parts = text.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UnsupportedError(f"{what} {text!r} cannot be a Keras HDF5 path (empty or dot "
                               "component)", api_hint="write h5_layout='generic' instead",
                               cli_hint="write --h5-layout generic instead")


def save_attr_list(group: Any, name: str, values: list[str]) -> None:
    """Store a string list attribute, split into ``name0``, ``name1``... like Keras when large."""
    data = np.array([v.encode("utf-8") for v in values]) if values else np.array([], dtype="S1")
    chunks = 1
    parts = [data]
    while any(p.nbytes > ATTR_LIMIT for p in parts):
        chunks += 1
        parts = np.array_split(data, chunks)
    if chunks == 1:
        group.attrs[name] = data
    else:
        for i, part in enumerate(parts):
            group.attrs[f"{name}{i}"] = part


def unsupported(tmap: TensorMap) -> list[str]:
    """Tensors a Keras file cannot hold: Keras loads plain numpy types only."""
    return [n for n, t in tmap.items() if t.dtype.is_variable_length or needs_attr(t.dtype)]


def write_keras(tmap: TensorMap, handle: Any, progress: Any = None,
                raw: Optional[RawWrites] = None) -> list[str]:
    plan, notes = _plan_layers(tmap)
    for layer, items in plan:
        _check_path(layer, "layer name")
        for _, wname in items:
            _check_path(wname, "weight name")
    # Layers without weights (InputLayer...) keep their place when the source listed them.
    top = "top_level_model_weights"  # the model's own variables: a group, not a layer
    planned = [layer for layer, _ in plan if layer != top]
    listed = tmap.extras.get(LAYERS_KEY) or []
    names = listed if listed and set(planned) <= set(listed) and \
        [x for x in listed if x in set(planned)] == planned else planned
    save_attr_list(handle, "layer_names", names)
    handle.attrs["backend"] = tmap.metadata.get("backend", "tensorflow")
    # tf_keras treats a file without keras_version as Keras 1 and converts its weights.
    handle.attrs["keras_version"] = tmap.metadata.get("keras_version", "2.21.0")
    written: dict[int, str] = {}
    items_of = dict(plan)
    for layer in names + [top]:
        items = items_of.get(layer, [])
        group = handle.require_group(layer)
        save_attr_list(group, "weight_names", [w for _, w in items])
        for name, wname in items:
            t = tmap[name]
            try:
                if id(t) in written:
                    group[wname] = handle[written[id(t)]]
                    continue
                parent, _, leaf = wname.rpartition("/")
                target = group.require_group(parent) if parent else group
                ds = write_dataset(target, leaf, t, progress, raw)
            except (ValueError, TypeError, KeyError) as exc:  # h5py: name already used
                raise UnsupportedError(f"tensor {name!r} does not fit the Keras layout "
                                       f"(layer {layer!r}, weight {wname!r}): {exc}") from None
            written[id(t)] = ds.name
    order = model_order(tmap)
    flat = [name for layer, items in plan for name, _ in items if "/" not in name]
    if flat and len(flat) == len(tmap):
        # PyTorch-style names (fc.weight): no layer/weight split, so each tensor is a layer.
        notes.append(f"no name has a layer/weight '/' (e.g. {flat[0]!r}): each of the "
                     f"{len(flat)} tensors became a layer of its own; Keras names come from "
                     "--preset torch-to-keras (API: preset='torch-to-keras') or --like a file "
                     "the target model saved")
    where = f"in the model's order ({order.how})" if order.known else "in source order"
    return notes + [f"wrote a Keras legacy HDF5 weights file: {len(plan)} layer(s) with "
                    f"weights, {where}"]
