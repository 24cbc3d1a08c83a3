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


@lru_cache(maxsize=1)
def table() -> dict[str, Any]:
    import tomllib

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
