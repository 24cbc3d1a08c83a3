"""Inert placeholders for objects of classes ckconv does not load, and what is refused outright.

A training checkpoint pickles more than tensors: ``argparse.Namespace`` hyper-parameters,
Lightning callbacks keyed by their class, loss modules, whole ``nn.Module`` objects
(``torch.save(model)``). Loading those with pickle would import the classes and run their
code. Here a global outside the allow-list is never imported: :func:`resolve` hands the
unpickler a fresh subclass of :class:`Placeholder` that only records what the pickle does
with it -- the arguments it is called with (``REDUCE``, ``NEWOBJ``, ``INST``/``OBJ``), the
state it is given (``BUILD``) and the items appended or set on it (list / dict subclasses).
A placeholder has no other behaviour: it cannot be called once made, has no attributes
beyond its records, and refuses to be pickled again.

Names that can only mean "run code" (``os.system``, ``builtins.eval``, ``subprocess``,
``importlib``...) are refused instead: no checkpoint needs them, and a clear refusal says
more than a placeholder would. This list is for the report only; safety does not rest on
it, since nothing a placeholder names is ever imported or called.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

#: Modules whose globals a checkpoint never legitimately holds: refused, never imported.
DANGEROUS_MODULES = frozenset([
    "builtins", "__builtin__", "os", "posix", "nt", "posixpath", "ntpath", "subprocess", "sys",
    "importlib", "runpy", "shutil", "socket", "pickle", "_pickle", "marshal", "types", "ctypes",
    "code", "codeop", "functools", "operator", "io", "_io", "pty", "webbrowser", "platform",
    "signal", "multiprocessing", "threading", "_thread", "asyncio", "tempfile", "pdb", "timeit",
    "trace", "cProfile", "profile", "inspect", "gc", "atexit", "copyreg", "copy_reg", "_codecs",
    "codecs", "zipimport", "pkgutil", "site", "sysconfig", "http", "urllib", "ftplib",
    "smtplib", "telnetlib", "requests", "dill", "cloudpickle", "joblib", "pydoc", "bdb",
    "shlex", "glob", "pathlib", "fileinput", "linecache", "ensurepip", "venv", "distutils",
    "setuptools", "pip", "xmlrpc", "logging", "configparser", "sqlite3", "dbm", "shelve",
    "_posixsubprocess", "_winapi", "msvcrt", "winreg", "resource", "fcntl", "mmap",
    "select", "selectors", "ssl", "email", "mailbox", "imaplib", "poplib", "nntplib",
])

#: torch modules whose globals rebuild tensors in ways only torch knows (sparse, nested,
#: subclassed, meta...): the caller hands the file to torch.load(weights_only=True).
TORCH_INTERNAL_MODULES = frozenset(["torch", "torch._utils", "torch._tensor", "torch.storage",
                                    "torch.serialization", "torch.nested", "torch._subclasses"])

#: A pickle naming more distinct classes than this is not a checkpoint (each costs a type).
MAX_CLASSES = 10_000


class Refused(Exception):
    """The pickle references a global that can only mean running code."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


class Malformed(Exception):
    """The pickle uses a placeholder in a way no pickler writes."""


def module_of(module: str) -> str:
    return module.split(".", 1)[0]


def is_dangerous(module: str, name: str) -> bool:
    return module_of(module) in DANGEROUS_MODULES


#: Classes in torch's own modules that hold no tensor-rebuilding logic: placeholders.
TORCH_PLAIN_CLASSES = frozenset([("torch", "ScriptObject")])  # quantized packed params


def needs_torch(module: str, name: str) -> bool:
    if (module, name) in TORCH_PLAIN_CLASSES:
        return False
    return module in TORCH_INTERNAL_MODULES or module.startswith("torch._C")


class Placeholder:
    """An object of a class that was not loaded: its records, and nothing else.

    ``origin`` is ``(module, name)`` as the pickle named the class; ``args`` / ``kwargs``
    are what the class was called with, ``state`` what ``BUILD`` gave it (``None`` if
    nothing), ``items`` / ``entries`` what was appended / set on it as a list / dict.
    """

    __slots__ = ("args", "kwargs", "state", "items", "entries", "_built")
    origin: tuple[str, str] = ("?", "?")

    def __new__(cls, *args: Any, **kwargs: Any) -> "Placeholder":
        if not (isinstance(cls, type) and issubclass(cls, Placeholder)) or cls is Placeholder:
            raise Malformed("a placeholder was made in a way no pickler writes")
        self = object.__new__(cls)
        self.args, self.kwargs = args, kwargs
        self.state, self.items, self.entries, self._built = None, [], [], False
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # __new__ recorded everything; the class named in the pickle never runs

    # What the unpickler does with an instance: BUILD, APPENDS, SETITEMS. Nothing else.
    def __setstate__(self, state: Any) -> None:
        if not isinstance(self, Placeholder) or self._built:
            raise Malformed("BUILD applied twice to one object")
        self.state, self._built = state, True

    def append(self, value: Any) -> None:
        self.items.append(value)

    def extend(self, values: Any) -> None:
        if not isinstance(values, list):
            raise Malformed("APPENDS with something that is not a list")
        self.items.extend(values)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.entries.append((key, value))

    def __reduce__(self) -> Any:
        raise TypeError("placeholders are not picklable")

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("placeholders are not picklable")

    @classmethod
    def class_name(cls) -> str:
        return ".".join(cls.origin)

    def attributes(self) -> Optional[Mapping]:
        """The state as an attribute dict (``__dict__`` or the first of ``(dict, slots)``)."""
        state = self.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], Mapping):
            state = state[0]
        return state if isinstance(state, Mapping) else None

    def children(self) -> list[Any]:
        """Everything the placeholder holds, for walks over the object graph."""
        out: list[Any] = list(self.args) + list(self.kwargs.values()) + self.items
        out += [v for kv in self.entries for v in kv]
        if self.state is not None:
            out.append(self.state)
        return out

    def __repr__(self) -> str:
        attrs = self.attributes()
        if attrs is not None and len(attrs) <= 6 and all(isinstance(k, str) for k in attrs):
            inner = ", ".join(f"{k}={_short(v)}" for k, v in attrs.items())
            return f"{self.class_name()}({inner})"
        return f"<{self.class_name()} (not loaded)>"


def _short(v: Any) -> str:
    text = repr(v) if isinstance(v, (str, int, float, bool, type(None))) else type(v).__name__
    if isinstance(v, Placeholder):
        text = f"<{v.class_name()}>"
    return text if len(text) <= 30 else text[:27] + "..."


class ClassTable:
    """One placeholder class per global the pickle names (NEWOBJ needs a real type)."""

    def __init__(self) -> None:
        self._classes: dict[tuple[str, str], type] = {}

    def get(self, module: str, name: str) -> type:
        key = (module, name)
        cls = self._classes.get(key)
        if cls is None:
            if len(self._classes) >= MAX_CLASSES:
                raise Malformed(f"more than {MAX_CLASSES} distinct classes")
            # The class is named "Placeholder" whatever the pickle says (its name may be
            # any string); the pickle's name lives in ``origin`` only.
            cls = type("Placeholder", (Placeholder,), {"__slots__": (), "origin": key,
                                                       "__module__": __name__})
            self._classes[key] = cls
        return cls


class BaseRef:
    """``builtins.object`` / ``dict`` / ``list``: only ever the ``base`` of a reconstructor."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"builtins.{self.name}"

    def __reduce__(self) -> Any:
        raise TypeError("stand-ins are not picklable")


_BASES = frozenset(["object", "dict", "list", "tuple", "int", "float", "str", "set"])


def _placeholder_type(cls: Any, what: str) -> type:
    if not (isinstance(cls, type) and issubclass(cls, Placeholder) and cls is not Placeholder):
        raise Refused(f"{what} of {_kind(cls)}")
    return cls


def _kind(v: Any) -> str:
    if isinstance(v, type) and issubclass(v, Placeholder):
        return v.class_name()
    return type(v).__name__


def reconstructor(cls: Any, base: Any, state: Any = None) -> Placeholder:
    """``copyreg._reconstructor`` (protocols 0 and 1): an empty object of ``cls``."""
    made = _placeholder_type(cls, "copyreg._reconstructor")
    if not isinstance(base, BaseRef):
        raise Refused(f"copyreg._reconstructor with base {_kind(base)}")
    if state is None:
        return made()
    obj = made()
    # A list / dict subclass passes its contents as the state (base.__init__(obj, state)).
    if base.name == "list" and isinstance(state, list):
        obj.items.extend(state)
    elif base.name == "dict" and isinstance(state, dict):
        obj.entries.extend(state.items())
    else:
        obj.args = (state,)
    return obj


def newobj(cls: Any, *args: Any) -> Placeholder:
    """``copyreg.__newobj__`` written as a call (protocols 0 and 1)."""
    return _placeholder_type(cls, "copyreg.__newobj__")(*args)


def newobj_ex(cls: Any, args: Any = (), kwargs: Any = None) -> Placeholder:
    if not isinstance(args, tuple) or not (kwargs is None or isinstance(kwargs, dict)):
        raise Malformed("copyreg.__newobj_ex__ with bad arguments")
    return _placeholder_type(cls, "copyreg.__newobj_ex__")(*args, **(kwargs or {}))


#: Globals of otherwise dangerous modules that pickles of plain objects use: stand-ins that
#: make placeholders and nothing else.
SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("copyreg", "_reconstructor"): reconstructor,
    ("copy_reg", "_reconstructor"): reconstructor,
    ("copyreg", "__newobj__"): newobj,
    ("copyreg", "__newobj_ex__"): newobj_ex,
}
for _module in ("builtins", "__builtin__"):
    SAFE_GLOBALS.update({(_module, b): BaseRef(b) for b in _BASES})


def resolve(module: str, name: str, classes: ClassTable) -> Any:
    """What the unpickler gets for a global outside the tensor allow-list.

    Raises :class:`Refused` for names that can only mean running code; the caller raises
    its NeedsTorch for torch's own tensor-rebuilding internals; anything else becomes a
    placeholder class.
    """
    safe = SAFE_GLOBALS.get((module, name))
    if safe is not None:
        return safe
    if is_dangerous(module, name):
        raise Refused(f"{module}.{name}")
    return classes.get(module, name)
