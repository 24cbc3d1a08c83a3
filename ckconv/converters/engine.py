"""Running rules over a TensorMap: first match wins inside a stage, stages in order.

Only names, shapes and dtypes are looked at; tensors are wrapped lazily, so mapping costs
no I/O. Every problem found in a stage (unmatched names in strict mode, unused rules,
transforms that do not fit, two tensors with one name, incomplete merges) is collected and
raised as one MappingError naming the rules (file:line) and tensors.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Optional, Union

from .. import dtypes
from ..errors import MappingError, listing, plural
from ..records import field, record
from ..tensor import Tensor
from ..tensormap import TensorMap
from .ops import Cast, Joining, Merge, Misfit, NeedsParam, Op, Split, Sum, Unsum
from .shapes import NO_PARAMS, Params, bind
from .tensors import ZerosTensor

if TYPE_CHECKING:  # the model's Rules.apply calls this module: types only, no import cycle
    from .model import Rule, Rules, Stage

#: Key of TensorMap.extras holding the list of :class:`Record` for the last mapping.
REPORT_KEY = "ckconv.mapping"
#: Flag set when --include/--exclude selected part of the input: a strict rule set then
#: cannot expect every rule to find a tensor, only every tensor to find a rule.
FILTERED = "ckconv:filtered-input"


@record
class Item:
    name: str
    tensor: Tensor
    sources: tuple[str, ...]
    steps: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    created: bool = False


@record(frozen=True)
class Record:
    """What happened to source tensor(s): ``target`` None means dropped."""

    sources: tuple[str, ...]
    target: Optional[str]
    source_shapes: tuple[tuple[int, ...], ...]
    shape: tuple[int, ...]
    dtype: str
    steps: tuple[str, ...]
    rules: tuple[str, ...]
    #: For a dropped tensor: the flag that would have kept it (a rule's ``unless``).
    kept_by: Optional[str] = None
    #: a zero tensor a rule created (``sources`` is the tensor whose rule made it)
    created: bool = False


@record
class _MergeGroup:
    rule: Rule
    op: Joining
    target: str
    rest: tuple[Op, ...]
    params: Params
    parts: dict[str, Item] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)


class Context:
    """What rules may consult besides the tensor itself: the source map and the flags."""

    def __init__(self, source: TensorMap, flags: frozenset[str],
                 params: Params = NO_PARAMS, defaults: Params = NO_PARAMS):
        self.source = source
        self.flags = flags
        #: parameters set by the user: they take part in matching shapes
        self.params = dict(params)
        #: the same plus the rule files' defaults: only for sizes an op must be given
        self.solve = {**defaults, **params}
        #: names and shapes the running stage was given (for ``requires`` and Keras paths)
        self.current: dict[str, tuple[int, ...]] = {}
        self._graph_names: Optional[dict[str, str]] = None
        self._keras_names: Optional[dict[str, str]] = None

    def start_stage(self, items: list[Item]) -> None:
        self.current = {it.name: it.tensor.shape for it in items}
        self._keras_names = None

    def keras_name(self, name: str, direction: str) -> str:
        """Keras 3 ``layers/dense/vars/0`` <-> ``dense/kernel`` (see keras3.py)."""
        if self._keras_names is None:
            from .keras3 import variable_names, variable_paths

            build = variable_names if direction == "forward" else variable_paths
            self._keras_names = build(self.current)
        found = self._keras_names.get(name)
        if found is None:
            raise Misfit("not a Keras variable this stage could name")
        if found.startswith("!"):  # a layer whose class could not be decided
            raise Misfit(found[1:])
        return found

    def object_graph_name(self, key: str) -> str:
        if self._graph_names is None:
            from ..formats.tf.objectgraph import readable_names

            self._graph_names = readable_names(self.source)
        try:
            return self._graph_names[key]
        except KeyError:
            raise Misfit(f"{key!r} is not in the checkpoint's object graph") from None


def apply(tmap: TensorMap, rules: Rules) -> TensorMap:
    """A new TensorMap with ``rules`` applied; the report is in ``extras[REPORT_KEY]``."""
    ctx = Context(tmap, rules.flags, dict(rules.params), rules.all_defaults())
    items = [Item(name, t, (name,)) for name, t in tmap.items()]
    shapes = {name: t.shape for name, t in tmap.items()}
    dropped: list[Record] = []
    for stage in rules.stages_for_run():
        items = _run_stage(stage, items, ctx, dropped, shapes)
    out = TensorMap(metadata=tmap.metadata, source=tmap.source, format=tmap.format)
    out.notes = list(tmap.notes)
    out.source_files = list(tmap.source_files)
    out.extras = dict(tmap.extras)
    for it in items:
        out[it.name] = it.tensor
    records = [_record(it, shapes) for it in items] + dropped
    order = {name: i for i, name in enumerate(tmap)}
    records.sort(key=lambda r: (order.get(r.sources[0], len(order)) if r.sources else
                                len(order), r.created))
    out.extras[REPORT_KEY] = records
    return out


def report(tmap: TensorMap) -> list[Record]:
    """What the last mapping did to each source tensor (empty if ``tmap`` was not mapped)."""
    return list(tmap.extras.get(REPORT_KEY, []))


def _record(it: Item, shapes: dict[str, tuple[int, ...]],
            dropped_by: Optional[str] = None, kept_by: Optional[str] = None) -> Record:
    return Record(it.sources, None if dropped_by else it.name,
                  tuple(shapes.get(s, ()) for s in it.sources), it.tensor.shape,
                  str(it.tensor.dtype), tuple(it.steps),
                  tuple(it.rules) + ((dropped_by,) if dropped_by else ()), kept_by,
                  it.created)


def _run_stage(stage: Stage, items: list[Item], ctx: Context, dropped: list[Record],
               shapes: dict[str, tuple[int, ...]]) -> list[Item]:
    ctx.start_stage(items)
    rules = [r for r in stage.rules if r.active(ctx.flags)]
    filters = [r for r in rules if r.kind == "keep_only"]
    rules = [r for r in rules if r.kind != "keep_only"]
    used: set[int] = set()
    unmatched: list[str] = []
    problems: list[str] = []
    slots: list[Union[Item, _MergeGroup]] = []
    groups: dict[tuple[int, str], _MergeGroup] = {}
    for it in items:
        kept = False
        for f in filters:
            if f.matches_name(it.name) and f.matches_tensor(it.tensor.shape, it.tensor.dtype):
                used.add(id(f))
                kept = True
            else:
                dropped.append(_record(it, shapes, f.where))
                break
        else:
            rule = _first_match(rules, it, ctx)
            if rule is None:
                if stage.strict and not kept:
                    unmatched.append(it.name)
                slots.append(it)
                continue
            used.add(id(rule))
            if rule.kind == "drop":
                dropped.append(_record(it, shapes, rule.where, rule.unless))
                continue
            if rule.kind == "fail":
                problems.append(f"rule {rule.where}: {it.name!r}: {rule.message}")
                continue
            try:
                result = _apply_rule(rule, it, ctx)
            except Misfit as exc:
                problems.append(f"rule {rule.where} does not fit {it.name!r}: {exc}")
                continue
            if isinstance(result, tuple):
                target, part, item, op, rest = result
                key = (id(rule), target)
                group = groups.get(key)
                if group is None:
                    group = groups[key] = _MergeGroup(rule, op, target, rest, ctx.solve)
                    slots.append(group)
                if part in group.parts:
                    group.extra.append(it.name)
                else:
                    group.parts[part] = item
            else:
                slots.extend(result)
    out: list[Item] = []
    for slot in slots:
        if isinstance(slot, Item):
            out.append(slot)
            continue
        try:
            out.append(_finish_merge(slot))
        except Misfit as exc:
            problems.append(f"rule {slot.rule.where} cannot build {slot.target!r}: {exc}")
    if unmatched:
        problems.insert(0, f"{stage.where}: {plural(len(unmatched), 'tensor')} matched by no "
                           f"rule (strict mode): {listing(unmatched)}")
    # A strict stage expects each of its rules to find a tensor, unless tensors were
    # selected (--include) or dropped upstream by another file: then its strictness is
    # only that every tensor reaching it is matched.
    upstream = any(r.rules and _file_of(r.rules[-1]) != _file_of(stage.where) for r in dropped)
    if stage.strict and FILTERED not in ctx.flags and not upstream:
        unused = [f"{r.where} ({_label(r)})" for r in rules + filters
                  if id(r) not in used and not r.optional]
        if unused:
            problems.append(f"{plural(len(unused), 'rule')} matching no tensor (strict mode): "
                            f"{listing(unused)}")
    problems += _collisions(out)
    if problems:
        raise MappingError("; ".join(problems[:3]) + (
            f"; and {plural(len(problems) - 3, 'more problem')}" if len(problems) > 3 else ""))
    return out


def _file_of(where: str) -> str:
    """``keras-to-torch.toml:12`` -> ``keras-to-torch.toml`` (the file a rule is from)."""
    return re.sub(r"(:\d+)?( \(.*\))?$", "", where)


def _label(rule: Rule) -> str:
    """A short reminder of what a rule matches, for messages."""
    if rule.match is not None:
        return f"match {rule.match!r}"
    if rule.strip_prefix is not None:
        return f"strip_prefix {rule.strip_prefix!r}"
    return "matches every name"


def _first_match(rules: list[Rule], it: Item, ctx: Context) -> Optional[Rule]:
    for rule in rules:
        m = rule.matches_name(it.name)
        if not m:
            continue
        if rule.inverse_of is not None:
            if _reverses(rule, it, ctx) and _requirements_met(rule, m, it, ctx):
                return rule
        elif rule.matches_tensor(it.tensor.shape, it.tensor.dtype, ctx.params) \
                and _requirements_met(rule, m, it, ctx):
            return rule
    return None


def _requirements_met(rule: Rule, m: Any, it: Item, ctx: Context) -> bool:
    """Are the tensors ``requires`` names present (with their shapes)? Named sizes bound
    by the rule's own ``shape`` must agree with theirs."""
    if not rule.requires:
        return True
    known = rule.bindings(it.tensor.shape, it.tensor.dtype, ctx.params) or dict(ctx.params)
    for req in rule.requires:
        try:
            name = m.expand(req.name)
        except (IndexError, re.error):
            return False
        shape = ctx.current.get(name)
        if shape is None:
            return False
        if req.shape is not None:
            found = bind(req.shape, shape, known)
            if found is None:
                return False
            known = found
    return True


def _reverses(rule: Rule, it: Item, ctx: Context) -> bool:
    """Does running the original rule on what ``rule`` rebuilds give ``it`` back?"""
    fwd = rule.inverse_of
    assert fwd is not None
    params = ctx.solve
    if not rule.matches_tensor(it.tensor.shape, it.tensor.dtype, ctx.params):
        return False
    shape = it.tensor.shape
    try:
        for i, op in enumerate(rule.ops):
            if isinstance(op, (Split, Unsum)):
                for p in op.parts:
                    x = rule.new_name(it.name, part=p)
                    m = fwd.matches_name(x)
                    if not m or m.group("part") != p or fwd.new_name(x) != it.name:
                        return False
                shape = op.part_shapes(shape)[0]
                for later in rule.ops[i + 1:]:
                    shape = later.out_shape(shape, params)  # type: ignore[union-attr]
                return fwd.matches_tensor(shape, it.tensor.dtype, ctx.params)
            if isinstance(op, (Merge, Sum)):
                part = rule.matches_name(it.name).group("part")  # type: ignore[union-attr]
                x = rule.new_name(it.name)
                return bool(fwd.matches_name(x)) and fwd.new_name(x, part=part) == it.name
            shape = op.out_shape(shape, params)  # type: ignore[union-attr]
        x = rule.new_name(it.name)
    except NeedsParam:
        return True  # the names fit: applying the rule reports the missing parameter
    except (Misfit, MappingError, IndexError):
        return False
    return (bool(fwd.matches_name(x)) and fwd.matches_tensor(shape, it.tensor.dtype, ctx.params)
            and fwd.new_name(x) == it.name)


def _apply_op(op: Op, t: Tensor, params: Params) -> Tensor:
    if isinstance(op, Cast):
        op.check_dtype(t.dtype)
    else:
        op.out_shape(t.shape, params)  # type: ignore[union-attr]
    return op.apply(t, params)  # type: ignore[union-attr]


def _apply_rule(rule: Rule, it: Item, ctx: Context) -> Any:
    t = it.tensor
    steps = list(it.steps)
    wheres = it.rules + [rule.where]
    for i, op in enumerate(rule.ops):
        if isinstance(op, (Split, Unsum)):
            out = []
            for part, piece in zip(op.parts, op.pieces(t)):
                part_steps = steps + [f"{op.describe()} -> {part}"]
                for later in rule.ops[i + 1:]:
                    piece = _apply_op(later, piece, ctx.solve)
                    part_steps.append(later.describe())
                out.append(Item(rule.new_name(it.name, part=part), piece, it.sources,
                                part_steps, wheres, it.created))
            return out + _created(rule, it, out[0].tensor, wheres)
        if isinstance(op, (Merge, Sum)):
            m = rule.matches_name(it.name)
            assert m is not None
            item = Item(it.name, t, it.sources, steps, wheres)
            return rule.new_name(it.name), m.group("part"), item, op, rule.ops[i + 1:]
        t = _apply_op(op, t, ctx.solve)
        steps.append(op.describe())
    if rule.object_graph:
        name = ctx.object_graph_name(it.sources[0])
        steps.insert(len(it.steps), "object-graph name")
    elif rule.keras_vars:
        name = ctx.keras_name(it.name, rule.keras_vars)
        steps.insert(len(it.steps), "keras variable name")
    else:
        try:
            name = rule.new_name(it.name)
        except MappingError as exc:
            raise Misfit(str(exc)) from None
    return [Item(name, t, it.sources, steps, wheres, it.created)] + _created(rule, it, t, wheres)


def _created(rule: Rule, it: Item, result: Tensor, wheres: list[str]) -> list[Item]:
    """The zero tensors ``create`` adds beside the rule's result."""
    out = []
    m = rule.matches_name(it.name)
    for c in rule.create:
        assert m is not None
        dt = dtypes.by_name(c.dtype) if c.dtype else result.dtype
        shape = c.shape if c.shape is not None else result.shape
        out.append(Item(m.expand(c.name), ZerosTensor(dt, shape), it.sources,
                        [f"create zeros[{dt}]{list(shape)}"], wheres, created=True))
    return out


def _finish_merge(group: _MergeGroup) -> Item:
    op = group.op
    missing = [p for p in op.parts if p not in group.parts]
    if missing:
        have = ", ".join(f"{p}={group.parts[p].name!r}" for p in op.parts if p in group.parts)
        raise Misfit(f"part(s) {', '.join(missing)} missing (have {have})")
    if group.extra:
        raise Misfit(f"more than one tensor for the same part: {', '.join(group.extra)}")
    items = [group.parts[p] for p in op.parts]
    dts = {str(i.tensor.dtype) for i in items}
    if len(dts) > 1:
        raise Misfit(f"parts have different dtypes {sorted(dts)}")
    op.check_parts([i.tensor.shape for i in items])
    t: Tensor = op.combine([i.tensor for i in items])
    steps = list(items[0].steps) + [op.describe()]
    for later in group.rest:
        t = _apply_op(later, t, group.params)
        steps.append(later.describe())
    sources = tuple(s for i in items for s in i.sources)
    return Item(group.target, t, sources, steps, items[0].rules)


def _collisions(items: list[Item]) -> list[str]:
    seen: dict[str, Item] = {}
    problems = []
    for it in items:
        if it.name in seen:
            first = seen[it.name]
            problems.append(
                f"two tensors map to {it.name!r}: {', '.join(first.sources)} "
                f"({', '.join(first.rules) or 'no rule'}) and {', '.join(it.sources)} "
                f"({', '.join(it.rules) or 'no rule'})")
        else:
            seen[it.name] = it
    return problems
