"""``--like TEMPLATE``: the source's values under the names and structure of a template.

The template is a checkpoint the *target* model wrote (Keras 3 ``save_weights``, a
``tf.train.Checkpoint`` save, ``torch.save(model.state_dict())``, a ``.keras`` archive, a
TF1 Saver checkpoint with its ``.meta``). The result has exactly the template's names,
order, dtypes and shapes, every value taken from the source; the writer of the template's
format then reuses its structure (TF2 object graph, ``.meta``, HDF5 groups and attributes,
the ``.keras`` config). A template's own values are never written.

Pairing, in two steps:

1. by name: a source name (after presets and rules) equal to a template name, or to the
   Keras name a TF2 template's object graph gives (``dense/kernel``);
2. the rest in model order (:mod:`..formats.places`) when both sides' orders are known and
   the shapes agree one to one, position by position; where an order is unknown (a
   safetensors file, a TF1 checkpoint without ``.meta``), only if every remaining shape
   occurs once on each side.

Anything else is an error naming both sides. Counters the source cannot have
(``save_counter``, ``num_batches_tracked``, ``global_step``) are written as zeros, with a
note; the template's optimizer state must be matched or the template saved without it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ..errors import MappingError, UsageError
from ..tensor import Tensor
from ..tensormap import TensorMap

#: ``TensorMap.extras`` key of the :class:`Template` a map was shaped after.
LIKE_KEY = "ckconv.like"
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_COUNTER = re.compile(r"(^|[/.])(save_counter|num_batches_tracked|global_step)(/\.ATTRIBUTES/"
                      r"VARIABLE_VALUE)?$")
_OPTIMIZER = re.compile(r"^optimizer/|/\.OPTIMIZER_SLOT/")
_SHOWN = 4


@dataclass
class Template:
    """What a writer needs to reproduce the template's structure."""

    path: str
    format: str                  # registry name of the template's format
    tmap: TensorMap              # the template as read (names, order, dtypes, shapes)
    kind: str                    # "tf2", "tf1", "keras-h5", "keras3-h5", "keras", "torch"...


@dataclass
class Pair:
    source: Optional[str]        # None: a counter written as zeros
    target: str
    how: str                     # "name", "order", "shape", "zeros"
    shape: tuple[int, ...]
    cast: Optional[str] = None


@dataclass
class Pairing:
    pairs: list[Pair] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_template(template: Union[str, "os.PathLike[str]", TensorMap]) -> Template:
    from .. import formats

    if isinstance(template, TensorMap):
        path = template.source
        tmap = template
        fmt = tmap.format
    else:
        path = os.fspath(template)
        fmt = formats.sniff(path)
        tmap = formats.get(fmt).read(path)
    return Template(path, fmt, tmap, _kind(tmap, fmt))


def _kind(tmap: TensorMap, fmt: str) -> str:
    if fmt == "tf":
        return "tf2" if OBJECT_GRAPH_KEY in tmap else "tf1"
    if fmt == "hdf5":
        from ..formats.hdf5.keras import EXTRAS_KEY

        if EXTRAS_KEY in tmap.extras:
            return "keras-h5"
        return "keras3-h5" if any(n.startswith("layers/") for n in tmap) else "h5"
    return fmt


def _shown(names: list[str]) -> str:
    head = ", ".join(names[:_SHOWN])
    return head + (f" (and {len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")


def _describe(tmap: TensorMap, name: str) -> str:
    t = tmap[name]
    return f"{name} {list(t.shape)}"


def pair(source: TensorMap, tpl: Template) -> Pairing:
    """Pair every template tensor with a source tensor (see the module docstring)."""
    template = tpl.tmap
    result = Pairing()
    targets = [n for n in template if n != OBJECT_GRAPH_KEY]
    readable = _readable(tpl)
    by_alias: dict[str, str] = {}
    for n in targets:
        for alias in (n, readable.get(n)):
            if alias and alias not in by_alias:
                by_alias[alias] = n
    sources = [n for n in source if n != OBJECT_GRAPH_KEY]
    matched: dict[str, str] = {}  # target -> source
    for s in sources:
        t = by_alias.get(s)
        if t is None or t in matched:
            continue
        if source[s].shape != template[t].shape:
            raise MappingError(f"{s} {list(source[s].shape)} (source) has the name of {t} "
                               f"{list(template[t].shape)} (template {tpl.path}) but not its "
                               "shape: check the presets/rules (transposes) or rename it")
        matched[t] = s
        result.pairs.append(Pair(s, t, "name", template[t].shape))
    used = set(matched.values())
    rest_src = [s for s in sources if s not in used]
    rest_tpl = [t for t in targets if t not in matched]
    # Bookkeeping counters pair with nothing: zeros in the template, left out of the source.
    counters_tpl = [t for t in rest_tpl if _COUNTER.search(t) or _COUNTER.search(readable.get(t, ""))]
    counters_src = [s for s in rest_src if _COUNTER.search(s)]
    rest_tpl = [t for t in rest_tpl if t not in counters_tpl]
    rest_src = [s for s in rest_src if s not in counters_src]
    optimizer = [t for t in rest_tpl if _OPTIMIZER.search(readable.get(t, ""))]
    if optimizer:
        raise MappingError(f"{tpl.path}: the template holds optimizer state the source does not "
                           f"match ({_shown(optimizer)}): save the template from a model "
                           "without a compiled optimizer, or pass --keep-optimizer with a "
                           "source that has one")
    result.pairs += _pair_in_order(source, rest_src, tpl, rest_tpl)
    for t in counters_tpl:
        result.pairs.append(Pair(None, t, "zeros", template[t].shape))
    if counters_tpl:
        result.notes.append(f"wrote zeros for {len(counters_tpl)} counter(s) of the template that "
                            f"the source has no value for: {_shown(counters_tpl)}")
    if counters_src:
        result.notes.append(f"left out {len(counters_src)} counter(s) of the source that the "
                            f"template has no place for: {_shown(counters_src)}")
    for p in result.pairs:
        if p.source is not None and source[p.source].dtype != template[p.target].dtype:
            p.cast = str(template[p.target].dtype)
    order = {t: i for i, t in enumerate(template)}
    result.pairs.sort(key=lambda p: order[p.target])
    return result


def _readable(tpl: Template) -> dict[str, str]:
    """TF2 template key -> the name Keras reports (what the tf2 preset renames it to)."""
    if tpl.kind != "tf2":
        return {}
    from ..formats.tf.objectgraph import readable_names

    try:
        return readable_names(tpl.tmap)
    except MappingError:  # an object graph ckconv cannot name: keys still match by name
        return {}


def _pair_in_order(source: TensorMap, rest_src: list[str], tpl: Template,
                   rest_tpl: list[str]) -> list[Pair]:
    if not rest_src and not rest_tpl:
        return []
    from ..formats.places import model_order

    template = tpl.tmap
    if not rest_src or not rest_tpl:
        side, names, tmap = (("template", rest_tpl, template) if rest_tpl
                             else ("source", rest_src, source))
        raise MappingError(f"{len(names)} {side} tensor(s) match nothing on the other side: "
                           f"{_shown([_describe(tmap, n) for n in names])}; add rules (--rules) "
                           "that name them like the template")
    src_order = model_order(_sub(source, rest_src))
    tpl_order = model_order(_sub(template, rest_tpl))
    for side, order in (("source", src_order), ("template", tpl_order)):
        if not order.known:
            by_shape = _pair_by_unique_shape(source, rest_src, template, rest_tpl)
            if by_shape is not None:
                return by_shape
            raise MappingError(f"{len(rest_src)} source and {len(rest_tpl)} template tensor(s) "
                               f"are left after matching names (e.g. {rest_src[0]} and "
                               f"{rest_tpl[0]}), and the {side}'s model order is unknown "
                               f"({order.how}): rename them with --rules to match by name")
    a, b = src_order.names, tpl_order.names
    for i, (s, t) in enumerate(zip(a, b)):
        if source[s].shape != template[t].shape:
            raise MappingError(
                f"in model order, weight {i} of the {len(a)} left after matching names differs: "
                f"source {s} {list(source[s].shape)} (layer {src_order.layers[s]}) vs template "
                f"{t} {list(template[t].shape)} (layer {tpl_order.layers[t]}); check the "
                "presets' transposes, or name it with --rules")
    if len(a) != len(b):
        longer, tmap, side = (a, source, "source") if len(a) > len(b) else (b, template, "template")
        extra = longer[min(len(a), len(b)):]
        raise MappingError(f"{len(a)} source vs {len(b)} template tensor(s) left after matching "
                           f"names; the {side} has more: {_shown([_describe(tmap, n) for n in extra])}")
    return [Pair(s, t, "order", template[t].shape) for s, t in zip(a, b)]


def _pair_by_unique_shape(source: TensorMap, rest_src: list[str], template: TensorMap,
                          rest_tpl: list[str]) -> Optional[list[Pair]]:
    """Without an order, pairs are still certain when every shape occurs once on each side."""
    src_shapes = {source[s].shape: s for s in rest_src}
    tpl_shapes = {template[t].shape: t for t in rest_tpl}
    if len(src_shapes) != len(rest_src) or len(tpl_shapes) != len(rest_tpl) or \
            set(src_shapes) != set(tpl_shapes):
        return None
    return [Pair(src_shapes[template[t].shape], t, "shape", template[t].shape) for t in rest_tpl]


def _sub(tmap: TensorMap, names: list[str]) -> TensorMap:
    out = tmap.copy()
    keep = set(names)
    for n in list(out):
        if n not in keep:
            del out[n]
    return out


def like(source: TensorMap, template: Union[str, "os.PathLike[str]", TensorMap, Template]) -> TensorMap:
    """``source``'s values under the template's names, order, dtypes and shapes.

    The result's ``extras[LIKE_KEY]`` tells the template's format writer to reuse its
    structure; ``extras[REPORT_KEY]`` of the converters lists the pairing for --dry-run.
    """
    tpl = template if isinstance(template, Template) else load_template(template)
    pairing = pair(source, tpl)
    out = TensorMap(metadata=tpl.tmap.metadata, source=source.source, format=tpl.format)
    out.notes = list(source.notes) + pairing.notes
    out.source_files = list(source.source_files) + list(tpl.tmap.source_files)
    for name in tpl.tmap:
        if name == OBJECT_GRAPH_KEY:
            out[name] = tpl.tmap[name]  # the object graph: structure, not a value
    by_target = {p.target: p for p in pairing.pairs}
    for name in tpl.tmap:
        if name == OBJECT_GRAPH_KEY:
            continue
        p = by_target[name]
        want = tpl.tmap[name]
        out[name] = _value(source, p, want)
    _carry_structure(out, tpl)
    out.extras[LIKE_KEY] = tpl
    out.extras[PAIRING_KEY] = pairing
    return out


#: ``TensorMap.extras`` key of the :class:`Pairing` (for --dry-run).
PAIRING_KEY = "ckconv.like.pairing"


def _value(source: TensorMap, p: Pair, want: Tensor) -> Tensor:
    from ..tensor import ArrayTensor

    if p.source is None:
        import numpy as np

        return ArrayTensor(np.zeros(want.shape, dtype=want.dtype.numpy), want.dtype)
    t = source[p.source]
    if t.dtype == want.dtype:
        return t
    if _family(t.dtype) != _family(want.dtype):
        raise MappingError(f"{p.source} ({t.dtype}) cannot become {p.target} ({want.dtype}): "
                           "not the same kind of number")
    from .tensors import CastTensor

    return CastTensor(t, want.dtype)


def _family(dt: Any) -> str:
    kind = dt.numpy.kind if dt.itemsize else "O"
    return {"f": "float", "V": "float", "i": "int", "u": "int", "b": "bool"}.get(kind, kind)


def _carry_structure(out: TensorMap, tpl: Template) -> None:
    """What the template's writer needs beside the tensors."""
    extras = tpl.tmap.extras
    if tpl.kind == "tf1":
        from ..formats.tf.paths import META_PATH_KEY

        if extras.get(META_PATH_KEY):
            out.extras[META_PATH_KEY] = extras[META_PATH_KEY]
    for key in ("keras_h5", "keras_h5.layers", "keras.archive"):
        if key in extras:
            out.extras[key] = extras[key]


def render_pairing(tmap: TensorMap) -> str:
    """One line per template tensor: source -> template name, shape, how paired."""
    pairing: Optional[Pairing] = tmap.extras.get(PAIRING_KEY)
    tpl: Optional[Template] = tmap.extras.get(LIKE_KEY)
    if pairing is None or tpl is None:
        raise UsageError("not a map made by like()")
    lines = []
    for p in pairing.pairs:
        src = p.source if p.source is not None else "(zeros)"
        cast = f"  cast to {p.cast}" if p.cast else ""
        lines.append(f"{src} -> {p.target}  {list(p.shape)}  by {p.how}{cast}")
    counts = {h: sum(1 for p in pairing.pairs if p.how == h)
              for h in ("name", "order", "shape", "zeros")}
    lines.append(f"{len(pairing.pairs)} tensor(s) like {tpl.path} ({tpl.kind}): "
                 f"{counts['name']} by name, {counts['order']} by model order, "
                 f"{counts['shape']} by unique shape, {counts['zeros']} zero counter(s)")
    return "\n".join(lines)
