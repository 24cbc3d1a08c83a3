"""The meeting point of every format: an ordered, lazy mapping name -> tensor.

Readers fill a :class:`TensorMap` with :class:`Tensor` objects that know their dtype,
shape and size from the file's index alone; bytes are read (and checksums verified) only
when a writer or the user asks for them. Writers consume the map one tensor at a time, so
a checkpoint larger than memory streams through.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Optional

from .errors import UnsupportedError
from .groups import COLLECTIONS
from .tensor import Tensor, as_tensor

if TYPE_CHECKING:  # numpy is imported where values are touched, keeping start-up light
    import numpy as np

class TensorMap(MutableMapping[str, Tensor]):
    """Ordered name -> :class:`Tensor` mapping plus a small str -> str metadata dict.

    ``source`` names the file the map was read from (for messages); ``notes`` collects
    human-readable remarks produced while reading (the CLI shows them, the library never
    prints).
    """

    def __init__(self, tensors: Optional[Mapping[str, Any]] = None,
                 metadata: Optional[Mapping[str, str]] = None,
                 source: str = "", format: str = ""):
        self._tensors: dict[str, Tensor] = {}
        self.metadata: dict[str, str] = dict(metadata or {})
        self.source = source
        self.format = format
        self.notes: list[str] = []
        #: Files the map reads from (a writer must never overwrite them).
        self.source_files: list[str] = []
        #: Extra structured data a reader wants to pass along (e.g. the TF object graph).
        self.extras: dict[str, Any] = {}
        if tensors:
            for name, value in tensors.items():
                self[name] = value

    @classmethod
    def from_any(cls, tensors: Any) -> "TensorMap":
        if isinstance(tensors, TensorMap):
            return tensors
        if isinstance(tensors, Mapping):
            return cls(tensors)
        raise UnsupportedError(f"expected a TensorMap or a dict of arrays, got {type(tensors).__name__}")

    def resolve(self, name: str) -> Optional[str]:
        """The stored name ``name`` designates, or None.

        An exact match wins; otherwise a TF tensor name with output index 0 (``w1:0``, as in
        ``get_tensor_by_name``) designates the variable's checkpoint name ``w1``.
        """
        if name in self._tensors:
            return name
        if isinstance(name, str) and name.endswith(":0") and name[:-2] in self._tensors:
            return name[:-2]
        return None

    def __getitem__(self, name: str) -> Tensor:
        key = self.resolve(name)
        if key is None:
            raise KeyError(name)
        return self._tensors[key]

    def __setitem__(self, name: str, value: Any) -> None:
        if not isinstance(name, str):
            raise UnsupportedError(f"tensor names must be str, got {type(name).__name__}: {name!r}")
        self._tensors[self.resolve(name) or name] = as_tensor(value)

    def __delitem__(self, name: str) -> None:
        key = self.resolve(name)
        if key is None:
            raise KeyError(name)
        del self._tensors[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    # The dict's own views: Mapping's generic ones go through __getitem__ (and name
    # resolution) once per tensor, which shows with 20,000 tensors.
    def items(self):  # type: ignore[override]
        return self._tensors.items()

    def values(self):  # type: ignore[override]
        return self._tensors.values()

    def __len__(self) -> int:
        return len(self._tensors)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self._tensors.values())

    def copy(self) -> "TensorMap":
        new = TensorMap(metadata=self.metadata, source=self.source, format=self.format)
        new._tensors = dict(self._tensors)
        new.notes = list(self.notes)
        new.source_files = list(self.source_files)
        new.extras = dict(self.extras)
        return new

    def subset(self, names: "Iterable[str]") -> "TensorMap":
        """A new map of just ``names`` (in the order given), sharing the lazy tensors."""
        new = self.copy()
        new._tensors = {n: self._tensors[n] for n in names}
        return new

    def torch(self, *, skip_unsupported: bool = False) -> "dict[str, Any]":
        """Every tensor as a ``torch.Tensor``: a state dict for ``load_state_dict``.

        Memory-mapped without a copy where the file's layout allows (see
        :meth:`ckconv.tensor.Tensor.torch`); names sharing one tensor share one torch tensor.
        A tensor torch cannot hold (strings, such as TF2's object graph) is an error, or
        with ``skip_unsupported`` left out with a note in :attr:`notes`.
        """
        from .torch_bridge import map_to_torch

        return map_to_torch(self, skip_unsupported=skip_unsupported)

    def to_numpy(self) -> "dict[str, np.ndarray]":
        """Materialise every tensor (reads everything into memory)."""
        return {name: t.numpy() for name, t in self._tensors.items()}

    def map(self, rules: Any) -> "TensorMap":
        """New map with name-mapping rules applied (``ckconv.rules.load(...)``); lazy.

        ``rules`` is anything with an ``apply(tmap)`` method; a rules file is loaded with
        ``ckconv.rules.load(path)`` (or applied at once by ``ckconv.rules.apply``).
        """
        apply = getattr(rules, "apply", None)
        if apply is None:
            raise UnsupportedError(f"map() takes rules (ckconv.rules.load(...)), not "
                                   f"{type(rules).__name__}; for a rules file use "
                                   "ckconv.rules.load(path)")
        return apply(self)

    def like(self, template: Any) -> "TensorMap":
        """This map's values under the names, order, dtypes, shapes and format structure
        of ``template`` (a path, or a map read from a checkpoint the target model saved).

        Names pair first, the rest in model order when shapes agree one to one; anything
        else is a MappingError naming both sides (see :mod:`ckconv.converters.like`).
        """
        from .converters.like import like

        return like(self, template)

    # Surgery for migration scripts (ckconv/surgery.py). rename/select/drop return a new
    # map sharing the lazy tensors; assign* change this map in place, like TF variables.
    def rename(self, pattern: Any, repl: Any = None, *, count: int = 0,
               strict: bool = True) -> "TensorMap":
        """New map with names rewritten by ``re.sub(pattern, repl, name)`` or a {old: new} dict."""
        from .surgery import rename

        return rename(self, pattern, repl, count=count, strict=strict)

    def select(self, *patterns: Any, collection: Any = None, strict: bool = True) -> "TensorMap":
        """New map with the tensors whose whole name matches a pattern, or in a TF1 collection."""
        from .surgery import select

        return select(self, *patterns, collection=collection, strict=strict)

    def drop(self, *patterns: Any, collection: Any = None, strict: bool = True) -> "TensorMap":
        """New map without the tensors whose whole name matches a pattern or collection."""
        from .surgery import drop

        return drop(self, *patterns, collection=collection, strict=strict)

    def assign(self, name: str, value: Any) -> "TensorMap":
        """Set a tensor's values (same shape; array, Tensor or function of the old values)."""
        from .surgery import assign

        return assign(self, name, value)

    def assign_add(self, name: str, delta: Any) -> "TensorMap":
        """Add ``delta`` to a tensor, lazily (TF's ``Variable.assign_add``)."""
        from .surgery import assign_add

        return assign_add(self, name, delta)

    def assign_sub(self, name: str, delta: Any) -> "TensorMap":
        """Subtract ``delta`` from a tensor, lazily (TF's ``Variable.assign_sub``)."""
        from .surgery import assign_sub

        return assign_sub(self, name, delta)

    @property
    def collections(self) -> dict[str, list[str]]:
        """Collection name -> the tensors of this map it holds ({} if the format has none).

        Collections are named groups a format records beside the tensors: TF1 graph
        collections from a ``.meta`` file (see :class:`ckconv.groups.Collections`).
        """
        source = self.extras.get(COLLECTIONS)
        return {} if source is None else source.groups(self)

    def __repr__(self) -> str:
        src = f" from {self.source}" if self.source else ""
        return f"<TensorMap{src}: {len(self)} tensors, {self.nbytes} bytes>"
