"""Inverting a rename: regular expression + replacement template -> the opposite pair.

A rename ``s/P/T/`` can be run backwards when ``P`` is a concatenation of literal text and
capturing groups (optionally anchored, optionally with leading inline flags such as
``(?i)``) and ``T`` uses every group exactly once. The inverse pattern is ``T`` with each
group reference replaced by the group's own sub-pattern, and the inverse template is ``P``'s
literal text with references to those groups::

    ^bert/encoder/layer_(\\d+)/(query|key)/kernel$  ->  bert.encoder.layer.\\1.\\2.weight
    ^bert\\.encoder\\.layer\\.(?P<_g1>\\d+)\\.(?P<_g2>query|key)\\.weight$  ->  bert/encoder/layer_\\g<_g1>/\\g<_g2>/kernel

Anything else (alternation at the top level, quantifiers, character classes outside groups,
a group used twice or never) is reported as not invertible; the engine also checks each
reversed name by running the forward rename on it.
"""

from __future__ import annotations

import re
from typing import Optional, Union

from ..records import record

#: Escapes in a pattern that stand for one literal character.
_LITERAL_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v"}


class NotInvertible(Exception):
    """Internal signal: the reason a rename cannot be run backwards."""


@record(frozen=True)
class Group:
    name: str          # the name the inverse pattern gives it
    key: Union[int, str]  # how the template refers to it (number, or name if named)
    number: int
    pattern: str       # the sub-pattern, verbatim
    optional: bool     # followed by ``?``


Piece = Union[str, Group]


@record(frozen=True)
class ParsedPattern:
    flags: str
    anchored_start: bool
    anchored_end: bool
    pieces: list[Piece]


def _group_end(p: str, i: int) -> int:
    """Index just past the ``)`` closing the group opened at ``p[i]``."""
    depth = 0
    in_class = False
    while i < len(p):
        c = p[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
        elif c == "[":
            in_class = True
            if p[i + 1: i + 2] == "]" or p[i + 1: i + 3] == "^]":
                i += 2 if p[i + 1] == "]" else 3
                continue
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise NotInvertible("unbalanced parentheses")


def _capturing_opens(sub: str) -> int:
    """How many capturing groups open inside ``sub`` (they take group numbers too)."""
    n = 0
    i = 0
    in_class = False
    while i < len(sub):
        c = sub[i]
        if c == "\\":
            if i + 1 < len(sub) and sub[i + 1].isdigit() and not in_class:
                raise NotInvertible("a back-reference inside a group")
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(" and (not sub.startswith("(?", i) or sub.startswith("(?P<", i)):
            n += 1
        i += 1
    return n


def parse_pattern(p: str) -> ParsedPattern:
    flags = ""
    m = re.match(r"\(\?[aiLmsux]+\)", p)
    if m:
        flags, p = m.group(0), p[m.end():]
    start = p.startswith("^") or p.startswith(r"\A")
    if start:
        p = p[1:] if p.startswith("^") else p[2:]
    end = (p.endswith("$") or p.endswith(r"\Z")) and not p.endswith(r"\$")
    if end:
        p = p[:-1] if p.endswith("$") else p[:-2]
    pieces: list[Piece] = []
    text = ""
    number = 0
    i = 0
    while i < len(p):
        c = p[i]
        if c == "\\":
            nxt = p[i + 1: i + 2]
            if not nxt or nxt.isalnum() and nxt not in _LITERAL_ESCAPES:
                raise NotInvertible(f"escape \\{nxt} outside a group")
            text += _LITERAL_ESCAPES.get(nxt, nxt)
            i += 2
        elif c == "(":
            close = _group_end(p, i)
            body = p[i + 1: close - 1]
            if body.startswith("?P<"):
                gname, _, body = body[3:].partition(">")
                key: Union[int, str] = gname
            elif body.startswith("?"):
                raise NotInvertible("a non-capturing group or look-around outside a group")
            else:
                gname, key = "", 0
            number += 1
            key = key or number
            optional = p[close: close + 1] == "?"
            if p[close: close + 1] in ("*", "+", "{") or p[close + 1: close + 2] in ("?", "+"):
                raise NotInvertible("a repeated group")
            if text:
                pieces.append(text)
                text = ""
            pieces.append(Group(gname or f"_g{number}", key, number, body, optional))
            number += _capturing_opens(body)
            i = close + (1 if optional else 0)
        elif c in ".^$*+?{}[]|)":
            raise NotInvertible(f"{c!r} outside a group")
        else:
            text += c
            i += 1
    if text:
        pieces.append(text)
    return ParsedPattern(flags, start, end, pieces)


def parse_template(t: str) -> list[Union[str, tuple[str, Union[int, str]]]]:
    """Split a replacement template into literal text and group references, as ``re`` does.

    References come back as ``("ref", key)`` tuples; literal text as str (escapes such as
    ``\\n`` and octal ``\\012`` decoded). Templates are checked by ``re`` at load time.
    """
    out: list = []
    text = ""
    i = 0
    while i < len(t):
        c = t[i]
        if c != "\\":
            text += c
            i += 1
            continue
        nxt = t[i + 1: i + 2]
        if nxt == "g":
            m = re.match(r"\\g<([^>]+)>", t[i:])
            if not m:
                raise NotInvertible("malformed \\g<...> reference")
            ref = m.group(1)
            key: Union[int, str] = int(ref) if ref.isdigit() else ref
            i += m.end()
        elif nxt.isdigit():
            octal = re.match(r"\\(0[0-7]{0,2}|[0-7]{3})", t[i:])
            if octal:  # \0, \012, \101: a character, not a group
                text += chr(int(octal.group(1), 8))
                i += octal.end()
                continue
            m = re.match(r"\\(\d\d?)", t[i:])
            assert m is not None
            key = int(m.group(1))
            i += m.end()
        elif nxt == "\\":
            text += "\\"
            i += 2
            continue
        elif nxt in _LITERAL_ESCAPES:
            text += _LITERAL_ESCAPES[nxt]
            i += 2
            continue
        else:
            text += c  # Python keeps an unknown non-letter escape as written
            i += 1
            continue
        if text:
            out.append(text)
            text = ""
        out.append(("ref", key))
    if text:
        out.append(text)
    return out


def _template_escape(s: str) -> str:
    return s.replace("\\", "\\\\")


def invert(pattern: str, template: str, *, part: Optional[list[str]] = None,
           part_in_pattern: bool = False) -> tuple[str, str]:
    """The (pattern, template) that undoes ``re.sub(pattern, template, name)``.

    ``part`` handles split/merge: for a split the template holds ``\\g<part>`` (filled in
    with each part's name), which becomes a ``(?P<part>a|b|c)`` group of the inverse
    pattern; for a merge (``part_in_pattern``) the pattern's ``part`` group is not used
    by the template and becomes ``\\g<part>`` of the inverse template.
    Raises NotInvertible with the reason.
    """
    parsed = parse_pattern(pattern)
    groups = {}
    for piece in parsed.pieces:
        if isinstance(piece, Group):
            groups[piece.key] = piece
            groups[piece.number] = piece
    used: dict[int, int] = {}
    inv_pattern = parsed.flags + ("^" if parsed.anchored_start else "")
    for item in parse_template(template):
        if isinstance(item, str):
            inv_pattern += re.escape(item)
            continue
        key = item[1]
        if part is not None and key == "part" and not part_in_pattern:
            inv_pattern += "(?P<part>" + "|".join(re.escape(p) for p in part) + ")"
            used[-1] = used.get(-1, 0) + 1
            continue
        if key not in groups:
            raise NotInvertible(f"the template refers to \\g<{key}>, which is not a top-level group")
        g = groups[key]
        used[g.number] = used.get(g.number, 0) + 1
        body = f"(?:{g.pattern})?" if g.optional else g.pattern
        inv_pattern += f"(?P<{g.name}>{body})"
    inv_pattern += "$" if parsed.anchored_end else ""
    inv_template = ""
    for piece in parsed.pieces:
        if isinstance(piece, str):
            inv_template += _template_escape(piece)
            continue
        if part_in_pattern and piece.name == "part":
            inv_template += r"\g<part>"
            continue
        count = used.get(piece.number, 0)
        if count != 1:
            raise NotInvertible(f"group {piece.key} is used {count} times in the template "
                                "(exactly once is needed)")
        inv_template += rf"\g<{piece.name}>"
    if any(n > 1 for n in used.values()):
        raise NotInvertible("a group is used more than once in the template")
    return inv_pattern, inv_template
