"""Name-mapping rules: rename, drop and re-lay-out tensors declaratively.

>>> import ckconv, ckconv.rules
>>> rules = ckconv.rules.load(preset="bert")            # or load("my_rules.toml")
>>> hf = ckconv.load("bert_model.ckpt").map(rules)      # lazy: transposes run on write
>>> ckconv.save(hf, "model.safetensors")
>>> back = ckconv.rules.load(preset="bert", reverse=True)

The rules language, the presets and the engine live in :mod:`ckconv.converters`.
"""

from __future__ import annotations

from typing import Any

from .converters.catalog import build, load, presets
from .converters.catalog import preset_rules as preset
from .converters.engine import REPORT_KEY, Record
from .converters.loader import parse
from .converters.model import Rule, Rules
from .tensormap import TensorMap

__all__ = ["load", "preset", "presets", "parse", "build", "apply", "report",
           "Rules", "Rule", "Record"]


def apply(tmap: TensorMap, rules: Any) -> TensorMap:
    """``tmap`` with ``rules`` applied (a Rules object or a rules file path); lazy."""
    from .converters.catalog import coerce
    from .converters.engine import apply as run

    return run(TensorMap.from_any(tmap), coerce(rules))


def report(tmap: TensorMap) -> list[Record]:
    """What the last mapping did to each source tensor (empty if ``tmap`` was not mapped)."""
    return list(tmap.extras.get(REPORT_KEY, []))
