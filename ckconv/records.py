"""Small record classes for the modules every conversion imports, without dataclasses' cost.

``dataclasses`` writes each class's methods as source text and compiles it with ``exec``,
and imports ``inspect`` (with ``ast``, ``dis`` and ``tokenize``) to do so: ~7 ms to
import and ~0.5 ms per class on this project's VM, ~20 ms of every ``--preset``
conversion's start-up for the records on its path, a tenth of converting BERT-base
(docs/performance.md). :func:`record` gives the same behaviour for what ckconv uses —
fields from the class annotations, defaults, ``field(default_factory=..., init=False,
compare=False, repr=False)``, ``__post_init__``, ``frozen``, ``eq``, and :func:`replace`
and :func:`asdict` — with methods that are closures over the field list, made in a few
microseconds. Modules off the hot path keep using ``dataclasses``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional, TypeVar

T = TypeVar("T")

_MISSING: Any = object()
_FIELDS = "__record_fields__"


class FrozenInstanceError(AttributeError):
    """Assigning to a field of a frozen record."""


class Field:
    """A field's settings (see :func:`field`)."""

    __slots__ = ("name", "default", "default_factory", "init", "repr", "compare")

    def __init__(self, default: Any = _MISSING, default_factory: Any = _MISSING,
                 init: bool = True, repr: bool = True, compare: bool = True):
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.init = init
        self.repr = repr
        self.compare = compare

    def initial(self) -> Any:
        if self.default is not _MISSING:
            return self.default
        if self.default_factory is not _MISSING:
            return self.default_factory()
        return _MISSING


def field(*, default: Any = _MISSING, default_factory: Optional[Callable[[], Any]] = None,
          init: bool = True, repr: bool = True, compare: bool = True) -> Any:
    """A field with settings, as ``dataclasses.field``."""
    return Field(default, _MISSING if default_factory is None else default_factory, init, repr,
                 compare)


def record(cls: Optional[type] = None, *, frozen: bool = False, eq: bool = True) -> Any:
    """Make ``cls`` a record: ``@record`` or ``@record(frozen=True)``, as ``@dataclass``."""
    if cls is None:
        return lambda c: _make(c, frozen, eq)
    return _make(cls, frozen, eq)


def _make(cls: type, frozen: bool, eq: bool) -> type:
    fields: list[Field] = list(getattr(cls, _FIELDS, ()))  # a record's fields come first
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
            continue
        value = cls.__dict__.get(name, _MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name = name
        if isinstance(value, Field):  # the class attribute becomes the plain default
            if f.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
        fields = [g for g in fields if g.name != name] + [f]
    setattr(cls, _FIELDS, tuple(fields))
    init_fields = [f for f in fields if f.init]
    names = [f.name for f in init_fields]
    post_init = getattr(cls, "__post_init__", None)
    set_field = object.__setattr__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__}() takes {len(names)} positional arguments but "
                            f"{len(args)} were given")
        given = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in names or key in given:
                raise TypeError(f"{cls.__name__}() got an unexpected or repeated argument {key!r}")
            given[key] = value
        for f in fields:
            value = given[f.name] if f.name in given else f.initial()
            if value is _MISSING:
                if f.init:
                    raise TypeError(f"{cls.__name__}() missing required argument {f.name!r}")
                continue
            set_field(self, f.name, value)
        if post_init is not None:
            post_init(self)

    shown = [f.name for f in fields if f.repr]

    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{n}={getattr(self, n, '<unset>')!r}" for n in shown)
        return f"{cls.__qualname__}({inner})"

    cls.__init__ = __init__  # type: ignore[misc]
    cls.__repr__ = __repr__  # type: ignore[method-assign]
    if eq:
        compared = [f.name for f in fields if f.compare]

        def key(self: Any) -> tuple:
            return tuple(getattr(self, n) for n in compared)

        def __eq__(self: Any, other: Any) -> bool:
            if other.__class__ is not self.__class__:
                return NotImplemented
            return key(self) == key(other)

        cls.__eq__ = __eq__  # type: ignore[method-assign,assignment]
        # as dataclasses: hashable when frozen, unhashable when mutable and compared
        cls.__hash__ = (lambda self: hash(key(self))) if frozen else None  # type: ignore
    if frozen:
        def __setattr__(self: Any, name: str, value: Any) -> None:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")

        def __delattr__(self: Any, name: str) -> None:
            raise FrozenInstanceError(f"cannot delete field {name!r}")

        cls.__setattr__ = __setattr__  # type: ignore[method-assign,assignment]
        cls.__delattr__ = __delattr__  # type: ignore[method-assign,assignment]
    return cls


def replace(obj: T, **changes: Any) -> T:
    """A copy of the record ``obj`` with some fields changed, as ``dataclasses.replace``."""
    values = {}
    for f in getattr(obj, _FIELDS):
        if f.name in changes:
            if not f.init:
                raise ValueError(f"field {f.name!r} cannot be given to replace()")
            values[f.name] = changes.pop(f.name)
        elif f.init:
            values[f.name] = getattr(obj, f.name)
    if changes:
        raise TypeError(f"{type(obj).__name__} has no field {next(iter(changes))!r}")
    return type(obj)(**values)


def asdict(obj: Any) -> Any:
    """The record ``obj`` as a dict, records within it too, as ``dataclasses.asdict``."""
    if hasattr(type(obj), _FIELDS):
        return {f.name: asdict(getattr(obj, f.name)) for f in getattr(obj, _FIELDS)}
    if isinstance(obj, (list, tuple)):
        return type(obj)(asdict(v) for v in obj)
    if isinstance(obj, dict):
        return {asdict(k): asdict(v) for k, v in obj.items()}
    return obj
