"""What an unpickled training checkpoint holds beyond plain containers of tensors.

Two things happen here, after unpickling and before the flattening rule:

- A pickled ``nn.Module`` (``torch.save(model)``, or ``{"model": model}``) is a placeholder
  whose state is the module's ``__dict__``. :func:`resolve_modules` replaces it with the
  dict ``model.state_dict()`` would return, derived the way ``Module.state_dict`` walks
  the tree: the module's ``_parameters`` (those not ``None``), then its ``_buffers`` (not
  ``None`` and not named in ``_non_persistent_buffers_set``), then each child of
  ``_modules`` in order, its names prefixed with ``<child>.``. A module whose class
  overrides ``_save_to_state_dict`` (quantized modules do) or adds ``_extra_state`` would
  give torch more: those are not reproduced.
- :func:`placeholder_report` lists the objects left as placeholders (never loaded, never
  run), by class, with where they were and how many tensors they held.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Optional

from .placeholders import Malformed, Placeholder

#: Why a module's tensors are not in its state dict: it pickles itself its own way (a
#: custom ``__getstate__``: quantized modules' packed weights), or they are plain
#: attributes (which torch's ``state_dict()`` leaves out as well).
PACKED, ATTRIBUTE = "packed", "attribute"
Elsewhere = tuple[str, str, int, str]  # (module path, class, tensors, PACKED / ATTRIBUTE)

#: Deeper module trees than this are not models (and may be cycles).
MAX_MODULE_DEPTH = 100
_MODULE_KEYS = ("_parameters", "_buffers", "_modules")


def module_attributes(obj: Any) -> Optional[Mapping]:
    """The attributes of a pickled ``nn.Module`` (any class), or None if ``obj`` is not one."""
    if not isinstance(obj, Placeholder):
        return None
    attrs = obj.attributes()
    if attrs is None or not all(isinstance(attrs.get(k), (Mapping, Placeholder)) for k in _MODULE_KEYS):
        return None
    return attrs


def _mapping(value: Any, what: str) -> list[tuple[Any, Any]]:
    """Items of a dict, or of an ``OrderedDict`` subclass left as a placeholder."""
    if isinstance(value, Mapping):
        return list(value.items())
    if isinstance(value, Placeholder):
        return list(value.entries)
    raise Malformed(f"module {what} is {type(value).__name__}")


def module_state_dict(module: Any, is_tensor: Callable[[Any], bool],
                      elsewhere: Optional[list[Elsewhere]] = None
                      ) -> "OrderedDict[str, Any]":
    """The state dict torch would give for a pickled module (see the module docstring).

    ``elsewhere`` gets an :data:`Elsewhere` record for each module holding tensors outside
    its parameters and buffers: plain tensor attributes (``ATTRIBUTE``), which torch's
    state_dict omits too, and modules pickled their own way (``PACKED``: quantized modules'
    packed weights), which torch's state_dict would unpack.
    """
    out: "OrderedDict[str, Any]" = OrderedDict()

    def walk(mod: Any, prefix: str, depth: int) -> None:
        if depth > MAX_MODULE_DEPTH:
            raise Malformed(f"module tree deeper than {MAX_MODULE_DEPTH}")
        attrs = module_attributes(mod)
        if attrs is None:  # a module with its own __getstate__ (quantized ones), or not one
            n = _count_tensors(mod, is_tensor, [100_000])
            if n and elsewhere is not None:
                cls = mod.class_name() if isinstance(mod, Placeholder) else type(mod).__name__
                elsewhere.append((prefix.rstrip(".") or "<top level>", cls, n, PACKED))
            return
        skip = attrs.get("_non_persistent_buffers_set")
        skip = set(skip) if isinstance(skip, (set, frozenset, list, tuple)) else set()
        for name, value in _mapping(attrs["_parameters"], "_parameters"):
            if value is not None:
                out[prefix + str(name)] = value
        for name, value in _mapping(attrs["_buffers"], "_buffers"):
            if value is not None and name not in skip:
                out[prefix + str(name)] = value
        for name, child in _mapping(attrs["_modules"], "_modules"):
            if child is not None:
                walk(child, f"{prefix}{name}.", depth + 1)
        if elsewhere is not None:
            rest = [v for k, v in attrs.items() if k not in _MODULE_KEYS]
            # Tensors inside an object of another class (torch's packed parameters) are
            # weights torch's state_dict() would unpack; tensors as such are attributes.
            inside = [v for v in rest if isinstance(v, Placeholder)]
            plain = [v for v in rest if not isinstance(v, Placeholder)]
            where = prefix.rstrip(".") or "<top level>"
            for values, kind in ((plain, ATTRIBUTE), (inside, PACKED)):
                n = _count_tensors(values, is_tensor, [100_000])
                if n:
                    elsewhere.append((where, mod.class_name(), n, kind))

    walk(module, "", 0)
    return out


def resolve_modules(obj: Any, is_tensor: Callable[[Any], bool],
                    found: list[tuple[str, str]], elsewhere: list[Elsewhere],
                    path: str = "", depth: int = 0) -> Any:
    """``obj`` with every pickled module replaced by its state dict; ``found`` gets
    ``(where, class)`` for each module replaced, ``elsewhere`` what
    :func:`module_state_dict` left out. Plain containers are rebuilt, other values returned
    as they are."""
    if depth > 200:
        raise Malformed("containers nested deeper than 200")
    if module_attributes(obj) is not None:
        found.append((path or "<top level>", obj.class_name()))
        start = len(elsewhere)
        state = module_state_dict(obj, is_tensor, elsewhere)
        if path:  # module paths in the note start where the module was found
            elsewhere[start:] = [(f"{path}.{w}" if w != "<top level>" else path, c, n, k)
                                 for w, c, n, k in elsewhere[start:]]
        return state
    if isinstance(obj, Mapping):
        out = OrderedDict() if isinstance(obj, OrderedDict) else {}
        for k, v in obj.items():
            out[k] = resolve_modules(v, is_tensor, found, elsewhere,
                                     f"{path}.{k}" if path else str(k), depth + 1)
        return out
    if isinstance(obj, (list, tuple)):
        items = [resolve_modules(v, is_tensor, found, elsewhere,
                                 f"{path}.{i}" if path else str(i), depth + 1)
                 for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    return obj


def _count_tensors(obj: Any, is_tensor: Callable[[Any], bool], budget: list[int]) -> int:
    stack, n = [obj], 0
    while stack and budget[0] > 0:
        value = stack.pop()
        budget[0] -= 1
        if is_tensor(value):
            n += 1
        elif isinstance(value, Mapping):
            stack.extend(v for kv in value.items() for v in kv)
        elif isinstance(value, (list, tuple, set, frozenset)):
            stack.extend(value)
        elif isinstance(value, Placeholder):
            stack.extend(value.children())
    return n


def find_placeholders(obj: Any, is_tensor: Callable[[Any], bool],
                      budget: int = 1_000_000) -> list[tuple[str, str, int]]:
    """``(where, class, tensors inside)`` for each placeholder reachable through plain
    containers (a placeholder's own contents are counted, not listed)."""
    out: list[tuple[str, str, int]] = []
    left = [budget]
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack and left[0] > 0:
        where, value = stack.pop()
        left[0] -= 1
        if isinstance(value, Placeholder):
            out.append((where or "<top level>", value.class_name(),
                        _count_tensors(value.children(), is_tensor, left)))
        elif isinstance(value, Mapping):
            stack.extend((f"{where}.{k}" if where else str(k), v)
                         for k, v in reversed(list(value.items())))
            # A class used as a dict key (Lightning 1.x callbacks) is a placeholder too.
            stack.extend((f"{where}.<key>" if where else "<key>", k)
                         for k in value if isinstance(k, type) and issubclass(k, Placeholder))
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{where}.{i}" if where else str(i), v)
                         for i, v in reversed(list(enumerate(value))))
        elif isinstance(value, type) and issubclass(value, Placeholder):
            out.append((where or "<top level>", value.class_name(), 0))
    return out


def placeholder_notes(modules: list[tuple[str, str]], found: list[tuple[str, str, int]],
                      elsewhere: list[Elsewhere] = (),  # type: ignore[assignment]
                      shown: int = 6) -> list[str]:
    notes = []
    if modules:
        items = ", ".join(f"{w} ({c})" for w, c in modules[:shown])
        more = f" and {len(modules) - shown} more" if len(modules) > shown else ""
        notes.append(f"read {len(modules)} pickled module object(s) as their state_dict "
                     f"(parameters and persistent buffers): {items}{more}")
    for kind, why in ((ATTRIBUTE, "as plain attributes, which state_dict() leaves out too"),
                      (PACKED, "packed their own way (quantized modules' weights; save the "
                               "state_dict() to keep them)")):
        these = [e for e in elsewhere if e[3] == kind]
        if these:
            total = sum(e[2] for e in these)
            items = ", ".join(f"{w} ({c}: {n})" for w, c, n, _ in these[:shown])
            more = f" and {len(these) - shown} more" if len(these) > shown else ""
            notes.append(f"left out {total} tensor(s) that pickled modules hold {why}: "
                         f"{items}{more}")
    if found:
        by_class: dict[str, list[tuple[str, int]]] = {}
        for where, cls, n in found:
            by_class.setdefault(cls, []).append((where, n))
        parts = []
        for cls, places in by_class.items():
            tensors = sum(n for _, n in places)
            held = f", holding {tensors} tensor(s)" if tensors else ""
            wheres = ", ".join(w for w, _ in places[:3]) + (" ..." if len(places) > 3 else "")
            parts.append(f"{cls} x{len(places)} ({wheres}{held})")
        notes.append(f"not loaded (placeholders: their code never ran): {len(found)} object(s) "
                     f"of classes ckconv does not load: {'; '.join(parts[:shown])}"
                     + (f"; and {len(parts) - shown} more classes" if len(parts) > shown else ""))
    return notes
