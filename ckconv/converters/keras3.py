"""Keras 3 ``.weights.h5`` variable paths <-> the weight names Keras reports.

Keras 3 stores a layer's variables by position (``layers/dense/vars/0``), naming each
layer in a model's layer list after its class in snake case (``dense``, ``dense_1``,
``conv2d_transpose``) and sub-layers after the attribute holding them (``cell``,
``forward_layer``, ``query_dense``). The weight names the presets work with
(``dense/kernel``, ``lstm/lstm_cell/recurrent_kernel``, Keras 2's and ``variable.path``'s
spelling) need the layer class: it is read from the path when the path names a known
class, else inferred from the number and shapes of the layer's variables; when neither
decides, the tensors are reported with what could not be decided.

The reverse gives each layer's weights their position from one canonical order that
agrees with every built-in layer (kernel before recurrent_kernel before bias, gamma,
beta, moving_mean, moving_variance).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Optional

Shapes = Mapping[str, tuple[int, ...]]

#: Variable order of Keras' built-in layers, by the snake-case class name in the path.
CLASS_WEIGHTS: dict[str, tuple[str, ...]] = {
    "dense": ("kernel", "bias"),
    "einsum_dense": ("kernel", "bias"),
    "embedding": ("embeddings",),
    "layer_normalization": ("gamma", "beta"),
    "batch_normalization": ("gamma", "beta", "moving_mean", "moving_variance"),
    "depthwise_conv1d": ("depthwise_kernel", "bias"),
    "depthwise_conv2d": ("depthwise_kernel", "bias"),
    "separable_conv1d": ("depthwise_kernel", "pointwise_kernel", "bias"),
    "separable_conv2d": ("depthwise_kernel", "pointwise_kernel", "bias"),
    **{f"conv{n}d{t}": ("kernel", "bias") for n in (1, 2, 3) for t in ("", "_transpose")},
}
RNN_CLASSES = {4: "lstm", 3: "gru", 1: "simple_rnn"}  # gate blocks -> class
RNN_WEIGHTS = ("kernel", "recurrent_kernel", "bias")
#: MultiHeadAttention's sub-layer attributes and the names Keras reports for them.
ATTENTION_PARTS = {"query_dense": "query", "key_dense": "key", "value_dense": "value",
                   "output_dense": "attention_output"}

CANONICAL_ORDER = ("embeddings", "depthwise_kernel", "pointwise_kernel", "kernel",
                   "recurrent_kernel", "bias", "gamma", "beta", "moving_mean",
                   "moving_variance")
#: What the reversed rule matches: names ending in a weight name Keras layers use.
REVERSE_MATCH = r"^(.+/)?(" + "|".join(CANONICAL_ORDER) + r")$"

_VAR = re.compile(r"^(?:(?P<owner>.*)/)?vars/(?P<index>\d+)$")


def _class_of(component: str) -> str:
    """``dense_3`` -> ``dense`` (Keras numbers repeated classes in one list)."""
    return re.sub(r"_\d+$", "", component)


class Undecided(Exception):
    """A layer whose class neither its path nor its variables' shapes tell."""


def _rnn_class(shapes: list[tuple[int, ...]]) -> Optional[str]:
    if len(shapes) in (2, 3) and len(shapes[0]) == 2 and len(shapes[1]) == 2:
        (_, out), (units, out2) = shapes[0], shapes[1]
        if out == out2 and units and out % units == 0:
            return RNN_CLASSES.get(out // units)
    return None


def _guess(shapes: list[tuple[int, ...]]) -> tuple[str, ...]:
    """Weight names for a layer of unknown class, from its variables' shapes."""
    ranks = [len(s) for s in shapes]
    n = len(shapes)
    if n == 4 and ranks == [1] * 4 and len(set(shapes)) == 1:
        return CLASS_WEIGHTS["batch_normalization"]
    if n == 2 and ranks == [1, 1] and shapes[0] == shapes[1]:
        return CLASS_WEIGHTS["layer_normalization"]
    if n == 3 and ranks[2] == 1 and ranks[0] == ranks[1] >= 3 \
            and all(d == 1 for d in shapes[1][:-2]):
        return CLASS_WEIGHTS["separable_conv2d"]
    if n == 2 and ranks[1] == 1 and ranks[0] >= 2:
        k, (b,) = shapes[0], shapes[1]
        if ranks[0] == 2:
            return ("kernel", "bias")
        as_conv = b in (k[-1], k[-2])  # Conv (bias = out = k[-1]) or ConvTranspose (k[-2])
        as_depthwise = b == k[-2] * k[-1]
        if as_conv and not as_depthwise:
            return ("kernel", "bias")
        if as_depthwise and not as_conv:
            return ("depthwise_kernel", "bias")
        raise Undecided(f"a convolution or a depthwise convolution (kernel {list(k)}, "
                        f"bias {[b]})")
    if n == 1 and ranks[0] == 2:
        raise Undecided("a Dense without bias or an Embedding")
    raise Undecided("no built-in layer has variables of these shapes")


def _names_for(owner: list[str], shapes: list[tuple[int, ...]]) -> tuple[str, list[str]]:
    """(the layer's name prefix, its weight names in variable order)."""
    parts = [c for c in owner if c != "layers"]  # container lists, not layers
    if parts and parts[-1] == "cell":
        cls = None
        if len(parts) >= 2 and _class_of(parts[-2]) in RNN_CLASSES.values():
            cls = _class_of(parts[-2])
        cls = cls or _rnn_class(shapes)
        if cls is None:
            raise Undecided("a recurrent cell whose kernels are not LSTM, GRU or SimpleRNN "
                            "shaped")
        layer = parts[:-1]
        if layer and layer[-1] in ("forward_layer", "backward_layer"):
            layer[-1] = f"{layer[-1][:-len('_layer')]}_{cls}"
        return "/".join(layer + [f"{cls}_cell"]), list(RNN_WEIGHTS[:len(shapes)])
    if parts and parts[-1] in ATTENTION_PARTS:
        return "/".join(parts[:-1] + [ATTENTION_PARTS[parts[-1]]]), ["kernel", "bias"][:len(shapes)]
    cls = _class_of(parts[-1]) if parts else ""
    known = CLASS_WEIGHTS.get(cls)
    if known is None:
        weights = list(_guess(shapes))
    elif len(shapes) == len(known):
        weights = list(known)
    elif cls == "batch_normalization" and len(shapes) == 2:
        weights = ["moving_mean", "moving_variance"]  # center=False, scale=False
    elif len(shapes) < len(known) and known[-1] == "bias" and cls != "batch_normalization":
        weights = list(known[:len(shapes)])  # use_bias=False
    else:
        raise Undecided(f"a {cls} with {len(shapes)} variables (its optional ones cannot "
                        "be told apart)")
    return "/".join(parts), weights


def variable_names(current: Shapes) -> dict[str, str]:
    """Keras 3 variable paths in ``current`` -> weight names; undecided layers map to an
    ``Undecided`` message (prefixed ``!``) that the engine reports for each tensor."""
    groups: dict[str, dict[int, str]] = {}
    for name in current:
        m = _VAR.match(name)
        if m:
            groups.setdefault(m.group("owner") or "", {})[int(m.group("index"))] = name
    out: dict[str, str] = {}
    for owner, members in groups.items():
        order = [members[i] for i in sorted(members)]
        shapes = [tuple(current[n]) for n in order]
        try:
            if sorted(members) != list(range(len(members))):
                raise Undecided(f"variables {sorted(members)} are not numbered 0..{len(members) - 1}")
            prefix, weights = _names_for(owner.split("/") if owner else [], shapes)
        except Undecided as exc:
            listing = ", ".join(str(list(s)) for s in shapes)
            message = (f"!cannot tell which Keras layer holds {owner}/vars/0..{len(order) - 1} "
                       f"(shapes {listing}): {exc}; convert the model's .keras file instead "
                       f"(its config names every layer) or rename the layer's path to its "
                       f"class name first (a rules file before the preset: match = "
                       f"'^{owner}/', rename = '<parent>/dense/')")
            out.update({n: message for n in order})
            continue
        for n, w in zip(order, weights):
            out[n] = f"{prefix}/{w}" if prefix else w
    return out


def variable_paths(current: Shapes) -> dict[str, str]:
    """Weight names -> Keras 3 ``.weights.h5`` paths (``layers/<layer>/vars/<i>``)."""
    owners: dict[str, list[tuple[int, str]]] = {}
    for name in current:
        m = re.match(REVERSE_MATCH, name)
        if not m:
            continue
        owner = (m.group(1) or "").rstrip("/")
        owners.setdefault(owner, []).append((CANONICAL_ORDER.index(m.group(2)), name))
    names_present = set(current)
    out: dict[str, str] = {}
    for owner, members in owners.items():
        parts = owner.split("/") if owner else []
        if parts and re.fullmatch(r"(lstm|gru|simple_rnn)_cell", parts[-1]):
            layer = parts[:-1]
            if layer and re.match(r"(forward|backward)_", layer[-1]):
                layer[-1] = layer[-1].split("_", 1)[0] + "_layer"
            parts = layer + ["cell"]
        elif len(parts) >= 2 and parts[-1] in ATTENTION_PARTS.values() and \
                "/".join(parts[:-1] + ["query", "kernel"]) in names_present:
            inverse = {v: k for k, v in ATTENTION_PARTS.items()}
            parts = parts[:-1] + [inverse[parts[-1]]]
        path = "/".join(["layers"] + parts)
        for i, (_, name) in enumerate(sorted(members)):
            out[name] = f"{path}/vars/{i}"
    return out
