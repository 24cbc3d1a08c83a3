"""transformers TF2 checkpoints (``tf_model.h5``) <-> the PyTorch layout of the same model.

transformers' TF classes name weights by Keras scopes (``tf_bert_model/bert/encoder/
layer_._0/attention/self/query/kernel:0``); their PyTorch twins by attributes
(``bert.encoder.layer.0.attention.self.query.weight``). The generic part of the mapping is
the ``hf-tf2`` preset. What depends on the model is decided here, from config.json:

- whether the checkpoint is a base model (``BertModel``: names without ``bert.``) or one
  with a head, from ``architectures`` and the model_type's ``base_model_prefix``;
- the model_type's extra rules (``tf2/<type>.toml``);
- going back, how the TF class spells lists (``layer_._0`` or ``layers.0``), which Keras
  layer (HDF5 group) holds each weight and the Keras name of the TF class.

A decision the config cannot settle is an error that says what is missing.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Optional

from ...errors import MappingError
from ..model import Rule, Rules, Stage

if TYPE_CHECKING:
    from ...tensormap import TensorMap

PRESET = "hf-tf2"
#: ckconv's Keras HDF5 reader/writer: tensor name -> (layer group, weight name in the file).
KERAS_H5_KEY = "keras_h5"
_SUFFIX = re.compile(r":\d+$")
#: Axes that turn a PyTorch tensor into the TF one (None: as it is).
Axes = Optional[tuple[int, ...]]
#: PyTorch buffers that no TF class has: never written to a tf_model.h5.
_PYTORCH_ONLY = re.compile(r"\.(num_batches_tracked|position_ids|token_type_ids)$")


@lru_cache(maxsize=1)
def table() -> dict[str, Any]:
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - Python 3.10 (tomli is a dependency there)
        import tomli as tomllib  # type: ignore[no-redef]

    text = (resources.files(__package__) / "tf2_models.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def model_facts(model_type: Optional[str]) -> dict[str, Any]:
    return dict(table()["model"].get(model_type or "", {}))


def _model_rules(model_type: Optional[str]) -> Optional[Rules]:
    from ..loader import parse

    name = model_facts(model_type).get("rules")
    if not name:
        return None
    text = (resources.files(__package__) / "tf2" / name).read_text(encoding="utf-8")
    return parse(text, f"hf/tf2/{name}")


def architecture(config: dict[str, Any], where: str) -> str:
    archs = config.get("architectures") or []
    if len(archs) != 1 or not isinstance(archs[0], str):
        raise MappingError(
            f"{where}: config.json names {len(archs)} architectures ({archs}); ckconv needs "
            "exactly one to decide whether the weights are a base model (BertModel: names "
            "without 'bert.') or one with a head; set \"architectures\" to the PyTorch class")
    return archs[0].removeprefix("TF")


def is_base_model(arch: str) -> bool:
    return re.fullmatch(table()["head_pattern"], arch) is None and arch.endswith("Model")


def without_shared_copies(tmap: "TensorMap") -> "TensorMap":
    """Leave out the copies Keras stores of a layer used by several layers (T5's shared
    embedding sits in the groups shared, encoder and decoder): ckconv's reader names a
    repeated weight ``<layer>/<name>``; the copy goes when ``<name>`` has the same shape."""
    origin = tmap.extras.get(KERAS_H5_KEY, {})
    copies = []
    for name, (layer, wname) in origin.items():
        plain = _SUFFIX.sub("", wname)
        if name != plain and name == f"{layer}/{plain}" and plain in tmap \
                and tmap[plain].shape == tmap[name].shape and tmap[plain].dtype == tmap[name].dtype:
            copies.append(name)
    if not copies:
        return tmap
    out = tmap.copy()
    for name in copies:
        del out[name]
    out.notes = [n for n in out.notes if "repeated in several layers" not in n]
    out.notes.append(f"left out {len(copies)} copies of weights that several Keras layers "
                     f"share (stored once): {', '.join(copies[:4])}")
    return out


def _stage(where: str, *rules: Rule, strict: bool = True) -> Rules:
    return Rules(stages=(Stage(tuple(rules), strict, where),), name=where)


def forward_rules(config: dict[str, Any], names: list[str], where: str) -> Rules:
    """The hf-tf2 rules for a checkpoint whose config.json is ``config``; ``names`` are
    its TF names (read from the file, ``:0`` removed)."""
    from ..catalog import preset_rules

    rules = preset_rules(PRESET)
    model_type = config.get("model_type")
    extra = _model_rules(model_type)
    if extra is not None:
        rules = rules + extra
    if config.get("tie_word_embeddings", True):
        rules = rules.with_flags("tie-word-embeddings")
    arch = architecture(config, where)
    if not is_base_model(arch):
        return rules
    prefix = _base_prefix(model_type, names, where, arch)
    if prefix is None:
        return rules
    return rules + _stage(f"{PRESET}: base model {arch}",
                          Rule(where=f"{PRESET}: {arch} has no '{prefix}.'",
                               strip_prefix=prefix + "."))


def _base_prefix(model_type: Optional[str], names: list[str], where: str,
                 arch: str) -> Optional[str]:
    """The main layer's name a base model's weights lose, or None if they share none."""
    firsts = {n.split("/")[1] if n.count("/") >= 1 else n for n in names}
    known = model_facts(model_type).get("base_model_prefix")
    if len(firsts) != 1:
        return None  # T5Model: shared, encoder, decoder sit at the top
    (first,) = firsts
    if known is not None and known != first:
        raise MappingError(
            f"{where}: {arch} is a base model whose weights should sit under the main layer "
            f"{known!r} (base_model_prefix of model_type {model_type!r}), but they sit under "
            f"{first!r}; cannot decide which names PyTorch's {arch} uses; check config.json")
    return first


# ---- PyTorch -> TF2 (--reverse) ------------------------------------------------------------

# Module names that transformers' TF classes build as Keras LayerNormalization/BatchNorm
# (gamma, beta) and Embedding (embeddings); exceptions are data (tf2_models.toml).
_NORM = re.compile(r"norm|^ln(_\w+)?$|_ln$", re.IGNORECASE)
_EMBED = re.compile(r"\w*(embeddings?|embed_\w+|embedding)$|^(wte|wpe|shared)$")


def keras_name(class_name: str) -> str:
    """The name Keras gives a layer of this class when none is given (TFBertModel ->
    tf_bert_model): the h5 weight names of a transformers TF model start with it."""
    words = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", words).lower()


def _leaf(module: str, leaf: str, rank: int, kind: Optional[str]) -> tuple[str, Axes]:
    """The TF leaf name and the axes that turn the PyTorch tensor into the TF one; ``kind``
    is what the table says the module is (weight: an add_weight, embedding, norm)."""
    keep_weight = kind == "weight"
    if kind == "embedding" and leaf == "weight":
        return "embeddings", None
    if kind == "norm" and leaf in ("weight", "bias"):
        return ("gamma" if leaf == "weight" else "beta"), None
    if leaf == "weight" and not keep_weight:
        if rank == 4:
            return "kernel", (2, 3, 1, 0)
        if rank == 3:
            return "kernel", (2, 1, 0)
        if rank == 2:
            return ("embeddings", None) if _EMBED.match(module) else ("kernel", (1, 0))
        if rank == 1 and _NORM.search(module):
            return "gamma", None
    if leaf == "bias" and rank == 1 and _NORM.search(module) and not keep_weight:
        return "beta", None
    return {"running_mean": "moving_mean", "running_var": "moving_variance"}.get(leaf, leaf), None


def tf2_names(names: list[tuple[str, int]], config: dict[str, Any], where: str
              ) -> dict[str, tuple[str, str, Axes]]:
    """PyTorch name -> (Keras layer group, TF weight name, axes) for a model's names."""
    facts = model_facts(config.get("model_type"))
    arch = architecture(config, where)
    level_zero = keras_name("TF" + arch)
    dot_lists = facts.get("list_style") == "dot"
    kinds = [(re.compile(p), kind) for key, kind in (("keep_weight", "weight"),
                                                      ("embeddings", "embedding"),
                                                      ("gamma_beta", "norm"))
             for p in facts.get(key, []) + table().get(key, [])]
    renames = [(re.compile(a), b) for a, b in facts.get("tf_renames", [])]
    prefix = facts.get("base_model_prefix")
    add_prefix = is_base_model(arch) and facts.get("main_layer", True)
    if add_prefix and prefix is None:
        raise MappingError(f"{where}: {arch} is a base model of model_type "
                           f"{config.get('model_type')!r}, whose TF main layer name ckconv does "
                           "not know (tf2_models.toml): cannot decide the TF names")
    out = {}
    for name, rank in names:
        if _PYTORCH_ONLY.search(name):
            continue
        pt = f"{prefix}.{name}" if add_prefix else name
        pt = re.sub(r"\.parametrizations\.weight\.original([01])$",
                    lambda m: ".weight_g" if m.group(1) == "0" else ".weight_v", pt)
        parts = pt.split(".")
        scopes: list[str] = []
        for p in parts[:-1]:
            if p.isdigit() and scopes:
                scopes[-1] += (".%s" if dot_lists else "_._%s") % p
            else:
                scopes.append(p)
        module = scopes[-1] if scopes else ""
        module = re.sub(r"(_\._|\.)\d+$", "", module)
        kind = next((k for regex, k in kinds if regex.search(pt)), None)
        leaf, axes = _leaf(module, parts[-1], rank, kind)
        tf_name = "/".join(scopes + [leaf])
        tf_name = f"{level_zero}/{tf_name}"
        for regex, repl in renames:
            tf_name = regex.sub(repl, tf_name)
        # The Keras layer (HDF5 group) is the first scope after level zero; BART's
        # model.shared sits in the layer "model".
        layer = re.split(r"[/.]", tf_name.partition("/")[2] or tf_name)[0]
        out[name] = (layer, tf_name + ":0", axes)
    return out


def to_tf2(tmap: "TensorMap", config: dict[str, Any], where: str) -> "TensorMap":
    """A PyTorch state dict -> the tensors of a tf_model.h5 (Keras layers and names)."""
    from ...tensormap import TensorMap
    from ..ops import Permute

    extra = _model_rules(config.get("model_type"))
    if extra is not None:
        tmap = tmap.map(extra.reversed())
    tmap = _with_tied_copies(tmap, config)
    plan = tf2_names([(n, len(t.shape)) for n, t in tmap.items()], config, where)
    out = TensorMap(metadata={}, source=tmap.source, format=tmap.format)
    out.notes = list(tmap.notes)
    out.source_files = list(tmap.source_files)
    origin = {}
    skipped = [n for n in tmap if n not in plan]
    if skipped:
        out.notes.append(f"left out {len(skipped)} PyTorch-only buffer(s): {', '.join(skipped[:4])}")
    for name, t in tmap.items():
        if name not in plan:
            continue
        group, wname, axes = plan[name]
        key = _SUFFIX.sub("", wname)
        if key in out:
            raise MappingError(f"{where}: {name!r} and another tensor both become TF weight "
                               f"{wname!r}; check model_type in config.json")
        out[key] = Permute(axes).apply(t) if axes else t
        origin[key] = (group, wname)
    out.extras[KERAS_H5_KEY] = origin
    return out


def _with_tied_copies(tmap: "TensorMap", config: dict[str, Any]) -> "TensorMap":
    """Add the weights a TF class stores apart but PyTorch ties (and so may leave out)."""
    copies = model_facts(config.get("model_type")).get("tied_copies", [])
    if not copies or not config.get("tie_word_embeddings", True):
        return tmap
    out = tmap.copy()
    for target, source in copies:
        if target not in out and source in out:
            out[target] = out[source]
            out.notes.append(f"wrote {source} also as {target} (tied in PyTorch, a weight of "
                             "its own in the TF class)")
    return out
