"""Rules, stages and rule sets: the parsed form of a rules file, and its inverse.

A :class:`Rules` object is a list of stages applied one after the other; inside a stage
each tensor is handled by the first rule that matches it (see ``engine.py``). Reversal
inverts every rule of every stage and runs the stages in the opposite order; an inverted
rule only matches a name when running the original rule on the reconstructed source
gives that name back, so a reversed rule set never guesses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Optional

from ..dtypes import DType
from ..errors import MappingError
from .invert import NotInvertible, invert, parse_template
from .ops import Merge, Op, Permute, Reshape, ShapePattern, Split

if TYPE_CHECKING:
    from ..tensormap import TensorMap

NAME_ACTIONS = ("rename", "add_prefix", "strip_prefix", "object_graph")


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


@dataclass(frozen=True)
class Rule:
    where: str                                   # "file.toml:12", for messages
    kind: str = "map"                            # map | drop | keep | keep_only
    match: Optional[str] = None                  # regex searched in the name
    rank: Optional[frozenset[int]] = None
    shape: Optional[ShapePattern] = None
    dtype: Optional[frozenset[str]] = None
    rename: Optional[str] = None                 # re.sub template (with \g<part> for split)
    add_prefix: Optional[str] = None
    strip_prefix: Optional[str] = None
    object_graph: bool = False
    ops: tuple[Op, ...] = ()
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

    def matches_tensor(self, shape: tuple[int, ...], dtype: DType) -> bool:
        if self.rank is not None and len(shape) not in self.rank:
            return False
        if self.shape is not None and (len(shape) != len(self.shape) or any(
                p is not None and p != d for p, d in zip(self.shape, shape))):
            return False
        return self.dtype is None or dtype.name in self.dtype

    @property
    def split(self) -> Optional[Split]:
        return next((op for op in self.ops if isinstance(op, Split)), None)

    @property
    def merge(self) -> Optional[Merge]:
        return next((op for op in self.ops if isinstance(op, Merge)), None)

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
                       _regex=None)


@dataclass(frozen=True)
class Stage:
    rules: tuple[Rule, ...]
    strict: bool
    where: str


@dataclass(frozen=True)
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

    def __add__(self, other: "Rules") -> "Rules":
        if not isinstance(other, Rules):
            return NotImplemented
        mine = self.parts if self.parts and not self.reverse else (self,)
        theirs = other.parts if other.parts and not other.reverse else (other,)
        return Rules(name=f"{self.name} + {other.name}", flags=self.flags | other.flags,
                     parts=mine + theirs)

    def with_flags(self, *flags: str) -> "Rules":
        return replace(self, flags=self.flags | frozenset(flags))

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
    splits = [op for op in rule.ops if isinstance(op, (Split, Merge))]
    if len(splits) > 1:
        raise ValueError("one split or merge per rule")
    if splits and rule.rename is None:
        raise ValueError("split and merge need a rename that gives the new name(s)")
    if rule.split is not None and r"\g<part>" not in (rule.rename or ""):
        raise ValueError(r"a split's rename must use \g<part> so each part gets its own name")
    if rule.merge is not None:
        regex = re.compile(rule.match or "")
        if "part" not in regex.groupindex:
            raise ValueError("a merge's match needs a (?P<part>...) group naming the part")
        if r"\g<part>" in (rule.rename or ""):
            raise ValueError(r"a merge's rename must not use \g<part>: all parts share one name")
    for op in rule.ops:
        if isinstance(op, Permute) and rule.rank is not None and len(op.axes) not in rule.rank:
            raise ValueError(f"{op.describe()} cannot apply to rank {sorted(rule.rank)}")
