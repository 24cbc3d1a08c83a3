"""TF1 graph collections as the TensorMap's :class:`ckconv.surgery.Collections`.

The reader leaves a :class:`GraphCollections` in every TF map; the ``.meta`` graph is
parsed (protobuf imported) only when a collection is first asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...tensormap import TensorMap
    from .meta import MetaGraph


class GraphCollections:
    """The collections of the ``.meta`` graph beside a TF1 checkpoint."""

    def __init__(self) -> None:
        self._graph: "MetaGraph | None" = None

    def _require(self, tmap: "TensorMap", what: str) -> "MetaGraph":
        if self._graph is None:
            from .meta import require_meta

            self._graph = require_meta(tmap, what)
        return self._graph

    def keys_of(self, names: list[str], tmap: "TensorMap", what: str) -> list[str]:
        return self._require(tmap, what).keys_of(names, tmap)

    def size(self, name: str) -> int:
        return self._graph.collection(name).size if self._graph is not None else 0

    def groups(self, tmap: "TensorMap") -> dict[str, list[str]]:
        from .meta import meta_for

        graph = meta_for(tmap)
        if graph is None:
            return {}
        return {c.name: graph.keys_of([c.key], tmap) for c in graph.collections.values()}
