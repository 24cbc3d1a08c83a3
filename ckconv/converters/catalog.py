"""Finding rules: shipped presets, rules files, and the extra stages the CLI options add."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional, Union

from ..errors import MappingError, UsageError
from .engine import FILTERED
from .loader import load_file, parse
from .model import Rule, Rules, Stage, check_rule
from .ops import Cast, parse_cast
from .shipped import PRESET_SUFFIX, preset_names, preset_text

if TYPE_CHECKING:
    from ..tensormap import TensorMap

FLOAT_DTYPES = frozenset({"float16", "float32", "float64", "bfloat16"})

RulesLike = Union[Rules, str, "os.PathLike[str]"]


def preset_rules(name: str, config: Optional[Mapping[str, Any]] = None) -> Rules:
    """A shipped preset by name (``tf2``, ``keras-to-torch``, ``bert``...); strict by default.

    A preset that depends on the model (``${n_layer}`` placeholders) takes the values from
    ``config``, the model's ``config.json``; without it, the error names the keys it needs.
    """
    text = preset_text(name)
    if text is None:
        raise UsageError(f"unknown preset {name!r}; known presets: {', '.join(preset_names())}")
    from .hf.configured import fill

    text = fill(text, dict(config) if config is not None else None, name) if "${" in text \
        else text
    return parse(text, name + PRESET_SUFFIX, default_strict=True, resolve=preset_rules)


def load(source: Union[RulesLike, Sequence[RulesLike], None] = None, *,
         preset: Union[str, Sequence[str], None] = None, reverse: bool = False,
         flags: Iterable[str] = (), strict: Optional[bool] = None,
         params: Optional[Mapping[str, int]] = None) -> Rules:
    """Rules from presets and/or rules files, presets first, each in the order given.

    Args:
        source: a rules file (TOML, or YAML with PyYAML), a Rules object, or a list of them.
        preset: a preset name or a list of names.
        reverse: run the whole combination backwards.
        flags: switches rules test with ``when``/``unless`` (e.g. ``"keep-optimizer"``).
        strict: force strict mode on or off for every stage (default: as each file says).
        params: sizes rules refer to by name (``{"num_heads": 8}``), e.g. to undo a
            reshape that folded attention heads together.
    """
    parts: list[Rules] = []
    for name in [preset] if isinstance(preset, str) else list(preset or ()):
        parts.append(preset_rules(name))
    sources = [source] if isinstance(source, (str, os.PathLike, Rules)) else list(source or ())
    for src in sources:
        parts.append(src if isinstance(src, Rules) else load_file(os.fspath(src)))
    if not parts:
        raise UsageError("no rules given: pass a rules file or a preset name")
    rules = parts[0]
    for p in parts[1:]:
        rules = rules + p
    if strict is not None:
        rules = rules.with_strict(strict)
    if params:
        rules = rules.with_params(**params)
    if reverse:
        rules = rules.reversed()
    return rules.with_flags(*flags)


def filter_rules(include: Sequence[str] = (), exclude: Sequence[str] = ()) -> Optional[Rules]:
    """A stage keeping names that match an ``include`` regex and dropping ``exclude`` ones."""
    rules: list[Rule] = []
    try:
        if include:
            rules.append(Rule("--include", kind="keep_only", match=_any_of(include)))
        if exclude:
            rules.append(Rule("--exclude", kind="drop", match=_any_of(exclude)))
    except re.error as exc:
        raise UsageError(f"bad include/exclude regular expression: {exc}") from None
    return Rules((Stage(tuple(rules), False, "--include/--exclude"),), "filters") if rules else None


def _any_of(patterns: Sequence[str]) -> str:
    from ..surgery import tf_name_regex  # "w1:0" (TF tensor name) also selects "w1"

    return "|".join(f"(?:{tf_name_regex(p)})" for p in patterns)


def cast_rules(dtype: Optional[str]) -> Optional[Rules]:
    """A stage casting every floating-point tensor to ``dtype`` (``--dtype bf16``)."""
    if not dtype:
        return None
    try:
        op: Cast = parse_cast(dtype)
    except Exception as exc:
        raise UsageError(str(exc)) from None
    if op.dtype.name not in FLOAT_DTYPES:
        raise UsageError(f"the dtype to cast to must be floating-point (bf16, fp16, fp32, fp64), "
                         f"not {dtype!r}")
    rule = Rule("--dtype", dtype=FLOAT_DTYPES, ops=(op,))
    check_rule(rule)
    return Rules((Stage((rule,), False, "--dtype"),), "--dtype")


def build(rules: Union[RulesLike, Sequence[RulesLike], None] = None,
          preset: Union[str, Sequence[str], None] = None, *, reverse: bool = False,
          include: Sequence[str] = (), exclude: Sequence[str] = (),
          dtype: Optional[str] = None, flags: Iterable[str] = (),
          strict: Optional[bool] = None,
          params: Optional[Mapping[str, int]] = None) -> Optional[Rules]:
    """Everything a conversion asks for, in order: filters, rules (maybe reversed), cast.

    Filters see the source names; ``reverse`` applies to the rules only. None when
    nothing was asked for.
    """
    chain: list[Rules] = []
    f = filter_rules(include, exclude)
    if f is not None:
        chain.append(f)
    if rules is not None or preset is not None:
        chain.append(load(rules, preset=preset, reverse=reverse, strict=strict, params=params))
    elif reverse:
        raise UsageError("reversing needs rules or a preset", api_hint="pass rules= or preset=",
                         cli_hint="pass --rules or --preset")
    c = cast_rules(dtype)
    if c is not None:
        chain.append(c)
    if not chain:
        return None
    out = chain[0]
    for r in chain[1:]:
        out = out + r
    if f is not None:
        flags = [*flags, FILTERED]
    return out.with_flags(*flags)


def apply(tmap: Any, rules: Any) -> "TensorMap":
    """``tmap`` (a TensorMap or a dict of arrays) with ``rules`` applied (a Rules object, a
    rules file path or a list of them); lazy."""
    from ..tensormap import TensorMap

    return coerce(rules).apply(TensorMap.from_any(tmap))


def coerce(rules: Any) -> Rules:
    """Accept a Rules object, a rules file path, or a list of them (for ``TensorMap.map``)."""
    if isinstance(rules, Rules):
        return rules
    if isinstance(rules, (str, os.PathLike, list, tuple)):
        return load(rules)
    raise MappingError(f"expected rules (ckconv.rules.load(...)) or a rules file path, "
                       f"got {type(rules).__name__}")
