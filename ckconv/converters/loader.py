"""Reading rules files (TOML, or YAML when PyYAML is installed) into :class:`Rules`.

File layout::

    strict = true                 # optional: unmatched names / unused rules are errors

    [[rule]]                      # rules are tried in order; the first match wins
    match = '^bert/encoder/layer_(\\d+)/(query|key|value)/kernel$'
    rename = 'bert.encoder.layer.\\1.\\2.weight'
    transpose = true

or several stages, run one after the other (``[[stage]]`` then ``[[stage.rule]]``).
Every error names the file and line of the rule at fault.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any, Optional, Union

from .. import dtypes
from ..errors import MappingError, MissingDependencyError, UnsupportedError
from ..records import replace
from .model import Create, Requirement, Rule, Rules, Stage, check_rule
from .ops import (Merge, Op, Permute, Reshape, Split, Sum, Unsum, parse_cast, parse_permute,
                  parse_reorder)
from .shapes import parse_dim

_OP_KEYS = ("transpose", "permute", "reshape", "cast", "split", "merge", "reorder", "sum",
            "unsum")
_KIND_KEYS = ("drop", "keep", "keep_only")
_OTHER_KEYS = ("match", "rank", "shape", "dtype", "rename", "add_prefix", "strip_prefix",
               "object_graph", "keras_vars", "optional", "direction", "when", "unless",
               "requires", "reverse_requires", "create", "fail", "comment", "note")
KNOWN_KEYS = _OP_KEYS + _KIND_KEYS + _OTHER_KEYS
_TOP_KEYS = ("strict", "description", "rule", "stage", "reverse_of", "defaults")

_HEADER = re.compile(r"^\s*\[\[\s*(stage\s*\.\s*rule|rule|stage)\s*\]\]")


def parse(text: str, filename: str = "<rules>", *, default_strict: bool = False,
          resolve: Optional[Callable[[str], Rules]] = None) -> Rules:
    """Rules from the text of a rules file (``filename`` picks TOML or YAML and labels errors).

    ``resolve`` turns a preset name into Rules, for files saying ``reverse_of = "NAME"``.
    """
    label = os.path.basename(filename)
    if filename.lower().endswith((".yaml", ".yml")):
        data, lines = _load_yaml(text, label)
    else:
        data, lines = _load_toml(text, label)
    if isinstance(data, Mapping) and "reverse_of" in data:
        if set(data) - {"reverse_of", "description"} or resolve is None:
            raise MappingError(f"{label}: reverse_of stands alone and only works in presets")
        return replace(resolve(str(data["reverse_of"])).reversed(), name=label)
    return _build(data, lines, label, default_strict)


def load_file(path: str, *, default_strict: bool = False) -> Rules:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise MappingError(f"{path}: cannot read rules file: {exc.strerror or exc}") from None
    return parse(text, path, default_strict=default_strict)


def _load_toml(text: str, label: str) -> tuple[dict, dict[tuple[int, int], int]]:
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise MissingDependencyError("reading TOML rules on Python 3.10 needs tomli: "
                                         "pip install tomli") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{label}: not valid TOML: {exc}") from None
    # tomllib keeps no positions: find each [[rule]] header's line so errors can cite it.
    lines: dict[tuple[int, int], int] = {}
    stage = -1
    count: dict[int, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _HEADER.match(line)
        if not m:
            continue
        kind = re.sub(r"\s", "", m.group(1))
        if kind == "stage":
            stage += 1
            lines[(stage, -1)] = lineno
        else:
            s = -1 if kind == "rule" else stage
            k = count.get(s, 0)
            count[s] = k + 1
            lines[(s, k)] = lineno
    return data, lines


def _load_yaml(text: str, label: str) -> tuple[dict, dict[tuple[int, int], int]]:
    try:
        import yaml
    except ImportError:
        raise MissingDependencyError("YAML rules files need PyYAML: pip install pyyaml "
                                     "(or write the rules as TOML)") from None
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise MappingError(f"{label}: not valid YAML: {exc}") from None
    lines: dict[tuple[int, int], int] = {}

    def rule_lines(node: Any, stage: int) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == "rule" and isinstance(value, yaml.SequenceNode):
                    for k, item in enumerate(value.value):
                        lines[(stage, k)] = item.start_mark.line + 1
                elif key.value == "stage" and isinstance(value, yaml.SequenceNode):
                    for s, item in enumerate(value.value):
                        lines[(s, -1)] = item.start_mark.line + 1
                        rule_lines(item, s)

    rule_lines(root, -1)
    return data if data is not None else {}, lines


def _build(data: Any, lines: dict[tuple[int, int], int], label: str, default_strict: bool) -> Rules:
    if not isinstance(data, Mapping):
        raise MappingError(f"{label}: expected a table of settings and rules")
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise MappingError(f"{label}: unknown top-level key(s) {', '.join(map(repr, unknown))}; "
                           f"known: {', '.join(_TOP_KEYS)}")
    strict = data.get("strict", default_strict)
    if not isinstance(strict, bool):
        raise MappingError(f"{label}: strict must be true or false")
    if "rule" in data and "stage" in data:
        raise MappingError(f"{label}: use either [[rule]] or [[stage]] sections, not both")
    stages: list[Stage] = []
    if "stage" in data:
        for s, stage in enumerate(_list(data["stage"], f"{label}: stage")):
            where = f"{label}:{lines[(s, -1)]}" if (s, -1) in lines else f"{label} (stage {s + 1})"
            if not isinstance(stage, Mapping) or set(stage) - {"rule", "strict", "comment"}:
                raise MappingError(f"{where}: a stage holds `rule` entries and optionally `strict`")
            s_strict = stage.get("strict", strict)
            rules = [_rule(r, _where(label, lines, s, k))
                     for k, r in enumerate(_list(stage.get("rule", []), where))]
            stages.append(Stage(tuple(rules), bool(s_strict), where))
    else:
        rules = [_rule(r, _where(label, lines, -1, k))
                 for k, r in enumerate(_list(data.get("rule", []), label))]
        stages.append(Stage(tuple(rules), strict, label))
    defaults = data.get("defaults", {})
    if not isinstance(defaults, Mapping) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in defaults.values()):
        raise MappingError(f"{label}: defaults must be a table of positive integers, "
                           "e.g. [defaults] depth_multiplier = 1")
    return Rules(tuple(stages), name=label, defaults=tuple(defaults.items()))


def _where(label: str, lines: dict[tuple[int, int], int], stage: int, k: int) -> str:
    if (stage, k) in lines:
        return f"{label}:{lines[(stage, k)]}"
    return f"{label} (rule {k + 1})"


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise MappingError(f"{where}: expected a list of tables")
    return value


def _rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise MappingError(f"{where}: a rule must be a table of keys")
    unknown = [k for k in raw if k not in KNOWN_KEYS]
    if unknown:
        raise MappingError(f"rule {where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                           f"known: {', '.join(KNOWN_KEYS)}")
    try:
        return _rule_fields(raw, where)
    except (ValueError, TypeError, re.error, UnsupportedError) as exc:
        raise MappingError(f"rule {where}: {exc}") from None


def _rule_fields(raw: Mapping[str, Any], where: str) -> Rule:
    kinds = [k for k in _KIND_KEYS if raw.get(k) is not None]
    for k in kinds + ["transpose", "object_graph", "keras_vars", "optional"]:
        if k in raw and not isinstance(raw[k], bool):
            raise ValueError(f"{k} must be true or false")
    kinds = [k for k in kinds if raw[k]]
    if len(kinds) > 1:
        raise ValueError(f"{' and '.join(kinds)} exclude each other")
    match = _opt_str(raw, "match")
    if match is not None:
        re.compile(match)
    ops: list[Op] = []
    for key in raw:  # ops run in the order they are written
        if key == "transpose" and raw[key]:
            ops.append(Permute((1, 0), transpose=True))
        elif key == "permute":
            ops.append(parse_permute(raw[key]))
        elif key == "reshape":
            ops.append(_reshape(raw[key]))
        elif key == "cast":
            ops.append(parse_cast(str(raw[key])))
        elif key in ("split", "merge"):
            ops.append(_split_merge(key, raw[key]))
        elif key in ("sum", "unsum"):
            ops.append(_sum(key, raw[key]))
        elif key == "reorder":
            ops.append(parse_reorder(raw[key]))
    direction = raw.get("direction", "both")
    if direction not in ("both", "forward", "reverse"):
        raise ValueError("direction must be both, forward or reverse")
    fail = _opt_str(raw, "fail")
    if fail is not None:
        kinds = ["fail"]
    rule = Rule(
        where=where, kind=kinds[0] if kinds else "map", match=match,
        rank=_ints(raw.get("rank"), "rank"), shape=_shape(raw.get("shape")),
        dtype=_dtypes(raw.get("dtype")), rename=_opt_str(raw, "rename"),
        add_prefix=_opt_str(raw, "add_prefix"), strip_prefix=_opt_str(raw, "strip_prefix"),
        object_graph=bool(raw.get("object_graph", False)),
        keras_vars="forward" if raw.get("keras_vars") else None, ops=tuple(ops),
        requires=_requirements(raw.get("requires"), "requires"),
        reverse_requires=_requirements(raw.get("reverse_requires"), "reverse_requires"),
        create=_creates(raw.get("create")), message=fail,
        optional=bool(raw.get("optional", False)), direction=direction,
        when=_opt_str(raw, "when"), unless=_opt_str(raw, "unless"))
    check_rule(rule)
    return rule


def _opt_str(raw: Mapping[str, Any], key: str) -> Optional[str]:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def _ints(value: Any, key: str) -> Optional[frozenset[int]]:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in items):
        raise ValueError(f"{key} must be a non-negative integer or a list of them")
    return frozenset(items)


def _shape(value: Any) -> Optional[tuple[Optional[int], ...]]:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError("shape must be a list like [768, -1] (-1 or \"*\" is any size)")
    out: list[Union[None, int, str]] = []
    for d in value:
        if d in (-1, "*", "_") or d is None:
            out.append(None)
        elif isinstance(d, int) and not isinstance(d, bool) and d >= 0:
            out.append(d)
        elif isinstance(d, str):
            parse_dim(d)  # raises ValueError with the expected forms
            out.append(d)
        else:
            raise ValueError(f"shape entry {d!r} is not a size, -1, \"*\" or a name")
    return tuple(out)


def _requirements(value: Any, key: str) -> tuple[Requirement, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(Requirement(item))
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str) \
                and not set(item) - {"name", "shape"}:
            out.append(Requirement(item["name"], _shape(item.get("shape"))))
        else:
            raise ValueError(f"{key} takes name templates or tables like "
                             "{ name = '\\1/moving_mean', shape = [-1] }")
    return tuple(out)


def _creates(value: Any) -> tuple[Create, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str) \
                or set(item) - {"name", "shape", "dtype"}:
            raise ValueError("create takes tables like { name = '\\1/num_batches_tracked', "
                             "shape = [], dtype = \"int64\" }")
        shape = item.get("shape")
        if shape is not None and not (isinstance(shape, list) and all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise ValueError("create.shape must list sizes")
        dtype = item.get("dtype")
        if dtype is not None:
            dtype = dtypes.by_name(str(dtype)).name
        out.append(Create(item["name"], tuple(shape) if shape is not None else None, dtype))
    return tuple(out)


def _sum(key: str, value: Any) -> Op:
    parts = value.get("parts") if isinstance(value, Mapping) and not set(value) - {"parts"} \
        else None
    if not isinstance(parts, list) or len(parts) < 2 or len(set(parts)) != len(parts) \
            or not all(isinstance(p, str) for p in parts):
        raise ValueError(f"{key} must be a table like {key} = {{ parts = [\"ih\", \"hh\"] }} "
                         "with at least two distinct part names")
    return Sum(tuple(parts)) if key == "sum" else Unsum(tuple(parts))


def _dtypes(value: Any) -> Optional[frozenset[str]]:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    return frozenset(dtypes.by_name(str(v)).name for v in items)


def _reshape(value: Any) -> Reshape:
    if not isinstance(value, list) or not all(
            (isinstance(e, int) and not isinstance(e, bool) and e >= -1) or isinstance(e, str)
            for e in value):
        raise ValueError("reshape must be a list of sizes (one may be -1) or dim products "
                         "like \"d0*d1\"")
    if sum(1 for e in value if e == -1) > 1:
        raise ValueError("reshape may contain at most one -1")
    return Reshape(tuple(value))


def _split_merge(key: str, value: Any) -> Op:
    if not isinstance(value, Mapping) or set(value) - {"axis", "parts", "sizes"}:
        raise ValueError(f"{key} must be a table with axis, parts and optionally sizes, "
                         f"e.g. {key} = {{ axis = 0, parts = [\"query\", \"key\", \"value\"] }}")
    axis = value.get("axis", 0)
    parts: Any = value.get("parts")
    if isinstance(parts, int) and not isinstance(parts, bool) and parts > 0:
        parts = [str(i) for i in range(parts)]
    if not isinstance(parts, list) or not parts or not all(isinstance(p, str) for p in parts) \
            or len(set(parts)) != len(parts):
        raise ValueError(f"{key}.parts must be a list of distinct part names (or a count)")
    sizes = value.get("sizes")
    if sizes is not None:
        if not isinstance(sizes, list) or len(sizes) != len(parts) or not all(
                isinstance(n, int) and n >= 0 for n in sizes):
            raise ValueError(f"{key}.sizes must list one size per part")
        sizes = tuple(sizes)
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise ValueError(f"{key}.axis must be an integer")
    cls = Split if key == "split" else Merge
    return cls(axis, tuple(parts), sizes)
