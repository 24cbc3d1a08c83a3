"""The escape rule between tensor names and HDF5 paths (generic layout).

A tensor named ``a/b/c`` is the dataset ``/a/b/c``: each ``/`` separates groups, so TF names
map onto HDF5 groups naturally. HDF5 cannot hold every name that way, so:

* inside a path component, ``%`` is written ``%25`` and a NUL character ``%00``;
* a ``/`` that cannot separate two components (leading, trailing or doubled, e.g. in
  ``/x``, ``x/`` or ``x//y``) is written ``%2F`` inside its component;
* a component that is exactly ``.`` or ``..`` has its dots written ``%2E``;
* a tensor whose name is also a group because longer names continue it (TF1 keeps
  ``dense/kernel`` beside its Adam slot ``dense/kernel/Adam``) is the dataset ``%self``
  inside that group: ``/dense/kernel/%self``. The empty name is ``/%self``.

Every real ``%`` is escaped, so ``%self`` cannot be confused with a name. The rule is only
undone for files ckconv wrote (root attribute ``ckconv_layout``); datasets in other files
are named by their path as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SELF = "%self"
_UNESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
# A slash separates groups only between two characters that are not slashes.
_SEPARATOR = re.compile(r"(?<=[^/])/(?=[^/])")


def _escape_text(text: str) -> str:
    return text.replace("%", "%25").replace("\x00", "%00")


def components(name: str) -> list[str]:
    """The escaped HDF5 path components of a tensor name (no ``%self`` handling)."""
    if name == "":
        return []
    out = []
    for piece in _SEPARATOR.split(name):
        text = _escape_text(piece).replace("/", "%2F")
        if text in (".", ".."):
            text = text.replace(".", "%2E")
        out.append(text)
    return out


def plan_paths(names: Iterable[str]) -> dict[str, str]:
    """HDF5 path (without the leading ``/``) of every tensor name, clashes resolved."""
    comps = {name: components(name) for name in names}
    groups = set()
    for parts in comps.values():
        for i in range(1, len(parts)):
            groups.add(tuple(parts[:i]))
    paths = {}
    for name, parts in comps.items():
        if not parts or tuple(parts) in groups:
            parts = parts + [SELF]
        paths[name] = "/".join(parts)
    return paths


def decode_path(path: str) -> str:
    """The tensor name stored at HDF5 ``path`` (inverse of :func:`plan_paths`)."""
    parts = path.strip("/").split("/")
    if parts and parts[-1] == SELF:
        parts = parts[:-1]
    return "/".join(_UNESCAPE.sub(lambda m: chr(int(m.group(1), 16)), p) for p in parts)
