"""Named groups of tensors that a format records beside them: TF1 graph collections.

The core knows groups only through this protocol; a reader that has them (the TF reader,
from a ``.meta`` graph) leaves an object of this shape in ``tmap.extras[COLLECTIONS]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .errors import UsageError

if TYPE_CHECKING:
    from .tensormap import TensorMap

#: ``TensorMap.extras`` key under which a reader leaves the map's :class:`Collections`.
COLLECTIONS = "collections"


class Collections(Protocol):
    """Named groups of tensors that a format records beside them (TF1 graph collections).

    A reader that knows such groups puts an object of this shape in
    ``tmap.extras[COLLECTIONS]``; selecting by collection then works on that map. Methods
    raise UsageError naming the file when the groups cannot be had (a missing ``.meta``).
    """

    def keys_of(self, names: list[str], tmap: "TensorMap", what: str) -> list[str]:
        """Names of ``tmap`` (in its order) held by any of the collections ``names``."""

    def size(self, name: str) -> int:
        """How many entries the collection holds (tensors or not), for messages."""

    def groups(self, tmap: "TensorMap") -> dict[str, list[str]]:
        """Every collection with the names of ``tmap`` it holds."""


def collections_of(tmap: "TensorMap", what: str) -> "Collections":
    """The map's collections, or a UsageError saying that its format has none."""
    source = tmap.extras.get(COLLECTIONS)
    if source is None:
        raise UsageError(f"{tmap.source or 'the input'}: {what} needs graph collections, "
                         f"which only TF1 checkpoints with a .meta graph have "
                         f"(this is {tmap.format or 'not one'})")
    return source
