"""Rules, stages and rule sets: the parsed form of a rules file, and its inverse.

A :class:`Rules` object is a list of stages applied one after the other; inside a stage
each tensor is handled by the first rule that matches it (see ``engine.py``). Reversal
inverts every rule of every stage and runs the stages in the opposite order; an inverted
rule only matches a name when running the original rule on the reconstructed source
gives that name back, so a reversed rule set never guesses.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Optional

from ..dtypes import DType
from ..errors import MappingError
from ..records import field, record, replace
from .invert import NotInvertible, invert, parse_template
from .ops import Joining, Merge, Op, Permute, Reshape, Split, Splitting, Sum, Unsum
from .shapes import NO_PARAMS, Params, ShapePattern, bind

if TYPE_CHECKING:
    from ..tensormap import TensorMap

NAME_ACTIONS = ("rename", "add_prefix", "strip_prefix", "object_graph", "keras_vars")


@record(frozen=True)
class Requirement:
    """Another tensor that must be present for a rule to apply: a ``re.sub`` template
    filled from the rule's match (``\\1/moving_mean``), optionally with a shape pattern
    whose named sizes are shared with the rule's own ``shape``."""

    name: str
    shape: Optional[ShapePattern] = None


@record(frozen=True)
class Create:
    """A zero tensor a rule adds beside its result (torch's ``num_batches_tracked``): its
    name is a template filled from the match; shape and dtype default to the result's."""

    name: str
    shape: Optional[tuple[int, ...]] = None
    dtype: Optional[str] = None


@lru_cache(maxsize=1024)
def _pieces(template: str) -> tuple:
    # Match.expand re-parses its template on every call; renaming 100k names with the
    # same few templates is much faster with the parse done once.
    return tuple(parse_template(template))


def substitute(regex: re.Pattern, template: str, name: str) -> str:
    """``regex.sub(template, name)``, except that an empty match right after a match is
    skipped (as sed does): ``.*`` -> ``x`` renames ``abc`` to ``x``, not Python's ``xx``."""
    pieces = _pieces(template)
    out: list[str] = []
    pos = 0
    for m in regex.finditer(name):
        if m.start() == m.end() == pos and out:
            continue
        out.append(name[pos:m.start()])
        out.extend(p if isinstance(p, str) else (m.group(p[1]) or "") for p in pieces)
        pos = m.end()
    out.append(name[pos:])
    return "".join(out)


@record(frozen=True)
class Rule:
    where: str                                   # "file.toml:12", for messages
    kind: str = "map"                            # map | drop | keep | keep_only | fail
    match: Optional[str] = None                  # regex searched in the name
    rank: Optional[frozenset[int]] = None
    shape: Optional[ShapePattern] = None
    dtype: Optional[frozenset[str]] = None
    rename: Optional[str] = None                 # re.sub template (with \g<part> for split)
    add_prefix: Optional[str] = None
    strip_prefix: Optional[str] = None
    object_graph: bool = False
    keras_vars: Optional[str] = None             # forward | reverse: Keras 3 variable paths
    ops: tuple[Op, ...] = ()
    requires: tuple[Requirement, ...] = ()       # other tensors that must be present
    reverse_requires: tuple[Requirement, ...] = ()  # the same, for the reversed rule
    create: tuple[Create, ...] = ()              # zero tensors added beside the result
    message: Optional[str] = None                # for kind "fail": why the tensor cannot map
    optional: bool = False                       # exempt from "matches nothing" in strict mode
    direction: str = "both"                      # both | forward | reverse
    when: Optional[str] = None                   # active only with this flag
    unless: Optional[str] = None                 # active only without this flag
    #: for an inverted rule: the rule it undoes (used to verify each match)
    inverse_of: Optional["Rule"] = None
    _regex: Optional[re.Pattern] = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        pattern = self.match
        if pattern is None and self.strip_prefix is not None:
            pattern = "^" + re.escape(self.strip_prefix)
        if pattern is not None:
            object.__setattr__(self, "_regex", re.compile(pattern))

    # ---- matching -------------------------------------------------------------------

    def active(self, flags: frozenset[str]) -> bool:
        return ((self.when is None or self.when in flags)
                and (self.unless is None or self.unless not in flags))

    def matches_name(self, name: str) -> Optional[re.Match]:
        """The regex match (a match of "" when the rule has no pattern), or None."""
        if self._regex is None:
            return re.match("", name)
        return self._regex.search(name)

    def bindings(self, shape: tuple[int, ...], dtype: DType,
                 params: Params = NO_PARAMS) -> Optional[dict[str, int]]:
        """The named sizes of ``shape`` if the tensor fits rank, shape and dtype, else None."""
        if self.rank is not None and len(shape) not in self.rank:
            return None
        if self.dtype is not None and dtype.name not in self.dtype:
            return None
        if self.shape is None:
            return dict(params)
        return bind(self.shape, shape, params)

    def matches_tensor(self, shape: tuple[int, ...], dtype: DType,
                       params: Params = NO_PARAMS) -> bool:
        return self.bindings(shape, dtype, params) is not None

    @property
    def split(self) -> Optional[Splitting]:
        """The op that turns the tensor into named parts (split or unsum), if any."""
        return next((op for op in self.ops if isinstance(op, (Split, Unsum))), None)

    @property
    def merge(self) -> Optional[Joining]:
        """The op that joins named parts into one tensor (merge or sum), if any."""
        return next((op for op in self.ops if isinstance(op, (Merge, Sum))), None)

    # ---- names ----------------------------------------------------------------------

    def new_name(self, name: str, part: Optional[str] = None) -> str:
        """The name after this rule (``part`` fills ``\\g<part>`` for a split)."""
        if self.rename is not None:
            template = self.rename
            if part is not None:
                template = template.replace(r"\g<part>", part.replace("\\", "\\\\"))
            assert self._regex is not None
            return substitute(self._regex, template, name)
        if self.add_prefix is not None:
            return self.add_prefix + name
        if self.strip_prefix is not None:
            if not name.startswith(self.strip_prefix):
                raise MappingError(f"rule {self.where}: {name!r} does not start with "
                                   f"{self.strip_prefix!r}, which strip_prefix removes")
            return name[len(self.strip_prefix):]
        return name

    def describe(self) -> str:
        bits = [op.describe() for op in self.ops]
        if self.kind != "map":
            bits.insert(0, self.kind.replace("_", "-"))
        if self.object_graph:
            bits.insert(0, "object-graph name")
        if self.keras_vars:
            bits.insert(0, "keras variable name")
        return ", ".join(bits) or "rename"

    # ---- reversal -------------------------------------------------------------------

    def in_direction(self, reverse: bool) -> bool:
        if self.direction == "forward":
            return not reverse
        if self.direction == "reverse":
            return reverse
        return not reverse or self.kind in ("map", "keep")

    def inverted(self) -> "Rule":
        """The rule that undoes this one; raises NotInvertible with the reason."""
        if self.object_graph:
            raise NotInvertible("names from the object graph cannot be turned back into keys")
        if self.keras_vars:
            from .keras3 import REVERSE_MATCH

            flip = "reverse" if self.keras_vars == "forward" else "forward"
            return replace(self, keras_vars=flip, match=REVERSE_MATCH if flip == "reverse"
                           else self.match, requires=(), reverse_requires=(), _regex=None)
        pattern: Optional[str] = self.match
        rename = add = strip = None
        if self.rename is not None:
            assert self.match is not None
            merge = self.merge
            split = self.split
            parts = list((split or merge).parts) if (split or merge) else None
            pattern, rename = invert(self.match, self.rename, part=parts,
                                     part_in_pattern=merge is not None)
        elif self.add_prefix is not None:
            pattern, strip = None, self.add_prefix
        elif self.strip_prefix is not None:
            pattern, add = None, self.strip_prefix
        # Follow the shape pattern forwards: each op's inverse needs the shape it was given
        # (a reshape can only be undone back to a known shape).
        before: list[Optional[ShapePattern]] = []
        shape = self.shape
        for op in self.ops:
            before.append(shape)
            shape = op.out_pattern(shape) if shape is not None else None
        rank = self.rank
        if any(isinstance(op, Reshape) for op in self.ops):
            rank = frozenset([len(shape)]) if shape is not None else None
        ops = [op.inverse(src) for op, src in zip(reversed(self.ops), reversed(before))]
        return replace(self, match=pattern, rename=rename, add_prefix=add, strip_prefix=strip,
                       ops=tuple(ops), rank=rank, shape=shape, inverse_of=self,
                       requires=tuple(self._reverse_requirement(r) for r in self.reverse_requires),
                       reverse_requires=(), create=(), _regex=None)

    def _reverse_requirement(self, req: Requirement) -> Requirement:
        """``reverse_requires`` refers to the forward match's groups (``\\1``); the inverted
        pattern names them ``_g1`` (or keeps their names)."""
        names = {v: k for k, v in re.compile(self.match or "").groupindex.items()}
        out = ""
        for piece in parse_template(req.name):
            if isinstance(piece, str):
                out += piece.replace("\\", "\\\\")
            else:
                key = piece[1]
                ref = key if isinstance(key, str) else names.get(key, f"_g{key}")
                out += rf"\g<{ref}>"
        return Requirement(out, req.shape)

    def created_drops(self) -> list["Rule"]:
        """Drop rules for the reversed direction: the tensors ``create`` added."""
        out = []
        for c in self.create:
            if self.match is None:
                raise NotInvertible("create needs a match pattern to be reversed")
            pattern, _ = invert(self.match, c.name, part=list(self.split.parts)
                                if self.split else None)
            out.append(Rule(f"{self.where} (created {c.name})", kind="drop", match=pattern,
                            optional=True, direction="reverse"))
        return out


@record(frozen=True)
class Stage:
    rules: tuple[Rule, ...]
    strict: bool
    where: str


@record(frozen=True)
class Rules:
    """An ordered list of stages plus the flags (``keep-optimizer``...) they are run with.

    Rule sets combine with ``+`` (run one after the other); ``reversed()`` runs a set
    backwards. A combination keeps its parts so that reversing it reverses each part and
    their order.
    """

    stages: tuple[Stage, ...] = ()
    name: str = ""
    flags: frozenset[str] = frozenset()
    reverse: bool = False
    parts: tuple["Rules", ...] = ()
    #: rule parameters (``--param num_heads=8``): named sizes in shapes and reshapes
    params: tuple[tuple[str, int], ...] = ()
    #: values a file gives for parameters that are not set (used only to undo reshapes)
    defaults: tuple[tuple[str, int], ...] = ()

    def __add__(self, other: "Rules") -> "Rules":
        if not isinstance(other, Rules):
            return NotImplemented
        mine = self.parts if self.parts and not self.reverse else (self,)
        theirs = other.parts if other.parts and not other.reverse else (other,)
        return Rules(name=f"{self.name} + {other.name}", flags=self.flags | other.flags,
                     parts=mine + theirs, params=tuple(dict(self.params + other.params).items()))

    def with_flags(self, *flags: str) -> "Rules":
        return replace(self, flags=self.flags | frozenset(flags))

    def with_params(self, **params: int) -> "Rules":
        return replace(self, params=tuple({**dict(self.params), **params}.items()))

    def all_defaults(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.parts:
            out.update(p.all_defaults())
        out.update(self.defaults)
        return out

    def with_strict(self, strict: bool) -> "Rules":
        if self.parts:
            return replace(self, parts=tuple(p.with_strict(strict) for p in self.parts))
        return replace(self, stages=tuple(replace(s, strict=strict) for s in self.stages))

    def apply(self, tmap: "TensorMap") -> "TensorMap":
        """A new map with these rules applied (lazy: transforms run when written)."""
        from .engine import apply

        return apply(tmap, self)

    def reversed(self) -> "Rules":
        """The same rules run backwards (checked now: non-invertible rules are an error)."""
        new = replace(self, reverse=not self.reverse)
        new.stages_for_run()
        return new

    def stages_for_run(self) -> tuple[Stage, ...]:
        """The stages as the engine runs them, inverted when ``reverse`` is set."""
        if self.parts:
            order = reversed(self.parts) if self.reverse else self.parts
            out: tuple[Stage, ...] = ()
            for p in order:
                out += (p.reversed() if self.reverse else p).stages_for_run()
            return out
        if not self.reverse:
            return tuple(Stage(tuple(r for r in s.rules if r.in_direction(False)), s.strict,
                               s.where) for s in self.stages)
        problems: list[str] = []
        stages: list[Stage] = []
        for s in reversed(self.stages):
            rules: list[Rule] = []
            for r in s.rules:
                if not r.in_direction(True):
                    continue
                if r.direction == "reverse":
                    rules.append(r)
                    continue
                try:
                    rules[:0] = r.created_drops()
                    rules.append(r.inverted())
                except NotInvertible as exc:
                    problems.append(f"{r.where} ({exc})")
            stages.append(Stage(tuple(rules), s.strict, s.where))
        if problems:
            raise MappingError(f"{self.name or 'rules'} cannot be reversed: " + "; ".join(problems))
        return tuple(stages)

    def __repr__(self) -> str:
        n = sum(len(s.rules) for s in self.stages_for_run())
        rev = ", reversed" if self.reverse else ""
        return f"<Rules {self.name or '?'}: {n} rule(s){rev}>"


def check_rule(rule: Rule) -> None:
    """Load-time consistency checks; raises ValueError with the problem."""
    names = [a for a in NAME_ACTIONS if getattr(rule, a) not in (None, False)]
    if len(names) > 1:
        raise ValueError(f"use one of {', '.join(names)} per rule")
    if rule.kind != "map" and (names or rule.ops):
        raise ValueError(f"{rule.kind} cannot be combined with other actions")
    if rule.rename is not None and rule.match is None:
        raise ValueError("rename needs a match pattern")
    if rule.rename is not None:
        # Python's own parser finds bad escapes and references to groups that do not exist.
        probe = rule.rename.replace(r"\g<part>", "p") if rule.split is not None else rule.rename
        re.compile(rule.match or "").sub(probe, "")
    splits = [op for op in rule.ops if isinstance(op, (Split, Merge, Unsum, Sum))]
    if len(splits) > 1:
        raise ValueError("one split, merge, sum or unsum per rule")
    if splits and rule.rename is None:
        raise ValueError("split, merge, sum and unsum need a rename that gives the new name(s)")
    if rule.split is not None and r"\g<part>" not in (rule.rename or ""):
        raise ValueError(r"a split's (unsum's) rename must use \g<part> so each part gets "
                         "its own name")
    if rule.merge is not None:
        regex = re.compile(rule.match or "")
        if "part" not in regex.groupindex:
            raise ValueError("a merge's (sum's) match needs a (?P<part>...) group naming the part")
        if r"\g<part>" in (rule.rename or ""):
            raise ValueError(r"a merge's (sum's) rename must not use \g<part>: all parts "
                             "share one name")
    if rule.kind == "fail" and not rule.message:
        raise ValueError("fail needs a message saying why the tensor cannot be converted")
    if rule.create and rule.match is None:
        raise ValueError("create needs a match pattern (its names are templates)")
    for op in rule.ops:
        if isinstance(op, Permute) and rule.rank is not None and len(op.axes) not in rule.rank:
            raise ValueError(f"{op.describe()} cannot apply to rank {sorted(rule.rank)}")
