"""Name-mapping rules, presets and diff: pure functions TensorMap -> TensorMap.

This package is also ``ckconv.rules``, the public API of the rule language::

    >>> import ckconv
    >>> rules = ckconv.rules.load(preset="bert")            # or load("my_rules.toml")
    >>> hf = ckconv.load("bert_model.ckpt").map(rules)      # lazy: transposes run on write
    >>> back = ckconv.rules.load(preset="bert", reverse=True)

Layout: ``loader`` reads rules files into the ``model`` (Rule, Stage, Rules; ``invert``
reverses renames, ``ops`` holds the tensor operations and ``tensors`` their lazy
wrappers, ``shapes`` the shape patterns with named sizes and the solver that undoes a
reshape); ``engine`` applies rules to a TensorMap (``keras3`` names Keras 3 variable
paths for it); ``catalog`` builds the chain a
conversion asks for; ``shipped`` lists the presets (``presets/*.toml``); ``diff``
compares checkpoints. Attributes are imported on first use, so that importing a
submodule (the CLI lists preset names for ``--help``) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["load", "preset", "presets", "parse", "build", "apply", "report",
           "Rules", "Rule", "Record"]

_LAZY = {
    "load": ("catalog", "load"),
    "build": ("catalog", "build"),
    "preset": ("catalog", "preset_rules"),
    "presets": ("shipped", "preset_names"),
    "parse": ("loader", "parse"),
    "Rules": ("model", "Rules"),
    "Rule": ("model", "Rule"),
    "Record": ("engine", "Record"),
    "apply": ("catalog", "apply"),
    "report": ("engine", "report"),
}

if TYPE_CHECKING:
    from .catalog import apply, build, load
    from .catalog import preset_rules as preset
    from .engine import Record, report
    from .loader import parse
    from .model import Rule, Rules
    from .shipped import preset_names as presets


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'ckconv.rules' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
