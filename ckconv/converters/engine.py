"""Running rules over a TensorMap: first match wins inside a stage, stages in order.

Only names, shapes and dtypes are looked at; tensors are wrapped lazily, so mapping costs
no I/O. Every problem found in a stage (unmatched names in strict mode, unused rules,
transforms that do not fit, two tensors with one name, incomplete merges) is collected and
raised as one MappingError naming the rules (file:line) and tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Union

from ..errors import MappingError, listing, plural
from ..tensor import Tensor
from ..tensormap import TensorMap
from .ops import Cast, Merge, Misfit, Op, Split
from .tensors import ConcatTensor, split as split_tensor

if TYPE_CHECKING:  # the model's Rules.apply calls this module: types only, no import cycle
    from .model import Rule, Rules, Stage

#: Key of TensorMap.extras holding the list of :class:`Record` for the last mapping.
REPORT_KEY = "ckconv.mapping"
#: Flag set when --include/--exclude selected part of the input: a strict rule set then
#: cannot expect every rule to find a tensor, only every tensor to find a rule.
FILTERED = "ckconv:filtered-input"


@dataclass
class Item:
    name: str
    tensor: Tensor
    sources: tuple[str, ...]
    steps: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)


@dataclass(frozen=True)
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


@dataclass
class _MergeGroup:
    rule: Rule
    op: Merge
    target: str
    rest: tuple[Op, ...]
    parts: dict[str, Item] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)


class Context:
    """What rules may consult besides the tensor itself: the source map and the flags."""

    def __init__(self, source: TensorMap, flags: frozenset[str]):
        self.source = source
        self.flags = flags
        self._graph_names: Optional[dict[str, str]] = None

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
    ctx = Context(tmap, rules.flags)
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
    records.sort(key=lambda r: order.get(r.sources[0], len(order)))
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
                  tuple(it.rules) + ((dropped_by,) if dropped_by else ()), kept_by)


def _run_stage(stage: Stage, items: list[Item], ctx: Context, dropped: list[Record],
               shapes: dict[str, tuple[int, ...]]) -> list[Item]:
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
                    group = groups[key] = _MergeGroup(rule, op, target, rest)
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
    if stage.strict and FILTERED not in ctx.flags:
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


def _label(rule: Rule) -> str:
    """A short reminder of what a rule matches, for messages."""
    if rule.match is not None:
        return f"match {rule.match!r}"
    if rule.strip_prefix is not None:
        return f"strip_prefix {rule.strip_prefix!r}"
    return "matches every name"


def _first_match(rules: list[Rule], it: Item, ctx: Context) -> Optional[Rule]:
    for rule in rules:
        if not rule.matches_name(it.name):
            continue
        if rule.inverse_of is not None:
            if _reverses(rule, it):
                return rule
        elif rule.matches_tensor(it.tensor.shape, it.tensor.dtype):
            return rule
    return None


def _reverses(rule: Rule, it: Item) -> bool:
    """Does running the original rule on what ``rule`` rebuilds give ``it`` back?"""
    fwd = rule.inverse_of
    assert fwd is not None
    if not rule.matches_tensor(it.tensor.shape, it.tensor.dtype):
        return False
    shape = it.tensor.shape
    try:
        for i, op in enumerate(rule.ops):
            if isinstance(op, Split):
                sizes = op.part_sizes(shape)
                for p in op.parts:
                    x = rule.new_name(it.name, part=p)
                    m = fwd.matches_name(x)
                    if not m or m.group("part") != p or fwd.new_name(x) != it.name:
                        return False
                part = list(shape)
                part[op.axis % len(shape)] = sizes[0]
                shape = tuple(part)
                for later in rule.ops[i + 1:]:
                    shape = later.out_shape(shape)  # type: ignore[union-attr]
                return fwd.matches_tensor(shape, it.tensor.dtype)
            if isinstance(op, Merge):
                part = rule.matches_name(it.name).group("part")  # type: ignore[union-attr]
                x = rule.new_name(it.name)
                return bool(fwd.matches_name(x)) and fwd.new_name(x, part=part) == it.name
            shape = op.out_shape(shape)  # type: ignore[union-attr]
        x = rule.new_name(it.name)
    except (Misfit, MappingError, IndexError):
        return False
    return (bool(fwd.matches_name(x)) and fwd.matches_tensor(shape, it.tensor.dtype)
            and fwd.new_name(x) == it.name)


def _apply_op(op: Op, t: Tensor) -> Tensor:
    if isinstance(op, Cast):
        op.check_dtype(t.dtype)
    else:
        op.out_shape(t.shape)  # type: ignore[union-attr]
    return op.apply(t)  # type: ignore[union-attr]


def _apply_rule(rule: Rule, it: Item, ctx: Context) -> Any:
    t = it.tensor
    steps = list(it.steps)
    wheres = it.rules + [rule.where]
    for i, op in enumerate(rule.ops):
        if isinstance(op, Split):
            out = []
            axis = op.axis % max(len(t.shape), 1)
            pieces = split_tensor(t, axis, op.part_sizes(t.shape))
            for part, piece in zip(op.parts, pieces):
                part_steps = steps + [f"{op.describe()} -> {part}"]
                for later in rule.ops[i + 1:]:
                    piece = _apply_op(later, piece)
                    part_steps.append(later.describe())
                out.append(Item(rule.new_name(it.name, part=part), piece, it.sources,
                                part_steps, wheres))
            return out
        if isinstance(op, Merge):
            m = rule.matches_name(it.name)
            assert m is not None
            item = Item(it.name, t, it.sources, steps, wheres)
            return rule.new_name(it.name), m.group("part"), item, op, rule.ops[i + 1:]
        t = _apply_op(op, t)
        steps.append(op.describe())
    if rule.object_graph:
        name = ctx.object_graph_name(it.sources[0])
        steps.insert(len(it.steps), "object-graph name")
    else:
        try:
            name = rule.new_name(it.name)
        except MappingError as exc:
            raise Misfit(str(exc)) from None
    return [Item(name, t, it.sources, steps, wheres)]


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
    t: Tensor = ConcatTensor([i.tensor for i in items], op.axis % len(items[0].tensor.shape))
    steps = list(items[0].steps) + [op.describe()]
    for later in group.rest:
        t = _apply_op(later, t)
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
