"""Pickles that try to run code through the placeholder unpickler. Every test proves that
nothing ran (a canary file is never created, a booby-trapped module is never imported) and
that the file is refused with one clean line or read with the object left as a placeholder.

The booby trap: ``evilmod.py`` on ``sys.path`` creates the canary when imported, and its
class ``Boom`` creates it when constructed, given state, reduced or called. Pickles naming
``evilmod.Boom`` are made by the real pickler (protocols 0-5) or opcode by opcode.
"""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path
from typing import Any, Iterator

import pytest

import ckconv
from ckconv.errors import CkconvError, CorruptCheckpointError, UnsupportedError
from ckconv.formats.pytorch.placeholders import Placeholder
from tests.pytorch.test_torch_zip_reader import (_archive, _Call, _Global, _op, _PersId, _pickle,
                                                 _Raw, _tensor_op)

TRAP = '''
import pathlib
CANARY = pathlib.Path({canary!r})
CANARY.write_text("imported")
class Boom:
    def __init__(self, *a, **k): CANARY.write_text("constructed")
    def __setstate__(self, s): CANARY.write_text("setstate")
    def __reduce__(self): CANARY.write_text("reduce"); return (Boom, ())
    def __call__(self, *a): CANARY.write_text("called")
    def __getattr__(self, n): CANARY.write_text("getattr " + n); raise AttributeError(n)
'''


@pytest.fixture
def trap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A canary path and an importable ``evilmod`` that writes it on any use."""
    canary = tmp_path / "CANARY"
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "evilmod.py").write_text(TRAP.format(canary=str(canary)))
    monkeypatch.syspath_prepend(str(lib))
    monkeypatch.delitem(sys.modules, "evilmod", raising=False)
    monkeypatch.chdir(tmp_path)
    yield canary
    assert not canary.exists(), canary.read_text()
    assert "evilmod" not in sys.modules


W = _tensor_op("FloatStorage", "0", 2, 0, (2,), (1,))
DATA = {"0": b"\0" * 8}


def _file(tmp_path: Path, pkl: bytes, name: str = "m.pt") -> Path:
    path = tmp_path / name
    _archive(path, pkl, DATA)
    return path


def _refused(path: Path, what: str) -> None:
    with pytest.raises(UnsupportedError) as info:
        ckconv.load(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg and "nothing was executed" in msg, msg
    assert what in msg, msg


def _damaged(path: Path) -> None:
    with pytest.raises(CorruptCheckpointError) as info:
        ckconv.load(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


DANGEROUS = [("builtins", "eval"), ("builtins", "exec"), ("builtins", "getattr"),
             ("builtins", "__import__"), ("__builtin__", "open"), ("os", "system"),
             ("posix", "system"), ("nt", "system"), ("subprocess", "Popen"),
             ("subprocess", "check_output"), ("importlib", "import_module"),
             ("importlib.util", "spec_from_file_location"), ("runpy", "run_path"),
             ("io", "open"), ("shutil", "rmtree"), ("pickle", "loads"), ("marshal", "loads"),
             ("types", "FunctionType"), ("functools", "partial"), ("operator", "attrgetter"),
             ("sys", "modules"), ("ctypes", "CDLL"), ("code", "InteractiveInterpreter"),
             ("copyreg", "add_extension"), ("_codecs", "decode"), ("webbrowser", "open")]


@pytest.mark.parametrize("module,name", DANGEROUS)
def test_code_running_globals_are_refused(tmp_path: Path, trap: Path, module: str,
                                          name: str) -> None:
    payload = f"open({str(trap)!r}, 'w')" if name in ("eval", "exec") else f"touch {trap}"
    _refused(_file(tmp_path, _pickle({"w": W, "x": _Call(_Global(module, name), payload)})),
             f"{module}.{name}")


@pytest.mark.parametrize("no_torch", [False, True])
def test_refused_with_or_without_torch(tmp_path: Path, trap: Path, no_torch: bool,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if no_torch:
        monkeypatch.setitem(sys.modules, "torch", None)
    _refused(_file(tmp_path, _pickle({"x": _Call(_Global("os", "system"), f"touch {trap}")})),
             "os.system")


class _Evil:
    """Pickled as os.system("touch CANARY") by the real pickler."""

    def __init__(self, canary: Path):
        self.canary = canary

    def __reduce__(self) -> Any:
        import os

        return (os.system, (f"touch {self.canary}",))


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_real_pickler_payload_every_protocol(tmp_path: Path, trap: Path, protocol: int) -> None:
    pkl = pickle.dumps({"x": _Evil(trap)}, protocol=protocol)
    _refused(_file(tmp_path, pkl), "system")


def _boom_pickle(protocol: int, obj_kind: str) -> bytes:
    """A real pickle of ``evilmod.Boom`` objects, made with a stand-in module that exists
    only while pickling (the trap module on sys.path is what loading would import)."""
    fake = types.ModuleType("evilmod")

    class Boom:  # plain class: pickled by NEWOBJ (2+) or copyreg._reconstructor (0, 1)
        pass

    class BoomList(list):
        pass

    class BoomDict(dict):
        pass

    for cls in (Boom, BoomList, BoomDict):
        cls.__module__ = "evilmod"
        setattr(fake, cls.__name__, cls)
        cls.__qualname__ = cls.__name__
    saved = sys.modules.get("evilmod")
    sys.modules["evilmod"] = fake
    try:
        b = Boom()
        b.lr, b.nested = 0.5, Boom()
        objs = {"boom": b, "list": BoomList([1, 2]), "dict": BoomDict(a=1)}
        return pickle.dumps({"w": 1.0, "obj": objs[obj_kind], "cls": Boom}, protocol=protocol)
    finally:
        if saved is None:
            del sys.modules["evilmod"]
        else:
            sys.modules["evilmod"] = saved


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("kind", ["boom", "list", "dict"])
def test_unknown_classes_become_placeholders_every_protocol(tmp_path: Path, trap: Path,
                                                            protocol: int, kind: str) -> None:
    path = _file(tmp_path, _boom_pickle(protocol, kind))
    tmap = ckconv.load(path)
    assert len(tmap) == 0
    obj = tmap.extras["torch_non_tensors"]["obj"]
    assert isinstance(obj, Placeholder) and obj.class_name().startswith("evilmod.Boom")
    if kind == "boom":
        assert obj.attributes()["lr"] == 0.5
        assert isinstance(obj.attributes()["nested"], Placeholder)
    elif kind == "list":
        assert obj.items == [1, 2]
    else:
        assert obj.entries == [("a", 1)]
    assert any("evilmod.Boom" in n and "never ran" in n for n in tmap.notes)
    _poke(obj)


def _poke(obj: Placeholder) -> None:
    """Everything a user might do to a placeholder runs no code of the pickle's class."""
    with pytest.raises(TypeError):
        obj()  # type: ignore[operator]
    with pytest.raises(AttributeError):
        obj.system  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(TypeError):
        pickle.dumps(obj)
    with pytest.raises(TypeError):
        obj.__reduce_ex__(2)
    repr(obj), str(obj)
    assert type(obj).__module__ == "ckconv.formats.pytorch.placeholders"


def test_inst_and_obj_opcodes(tmp_path: Path, trap: Path) -> None:
    inst_boom = b"(I1\nievilmod\nBoom\n"  # INST: class from the next two lines, MARKed args
    ok = b"\x80\x02}(X\x01\x00\x00\x00o" + inst_boom + b"u."
    tmap = ckconv.load(_file(tmp_path, ok, "inst.pt"))
    assert tmap.extras["torch_non_tensors"]["o"].args == (1,)
    obj_boom = b"\x80\x02}(X\x01\x00\x00\x00o(cevilmod\nBoom\nK\x02ou."  # OBJ: class on stack
    assert ckconv.load(_file(tmp_path, obj_boom, "obj.pt")).extras[
        "torch_non_tensors"]["o"].args == (2,)
    _refused(_file(tmp_path, b"(S'touch x'\nios\nsystem\n.", "inst_os.pt"), "os.system")
    _refused(_file(tmp_path, b"(cos\nsystem\nS'touch x'\no.", "obj_os.pt"), "os.system")


def test_calling_a_placeholder_instance_is_refused(tmp_path: Path, trap: Path) -> None:
    made = _Call(_Global("evilmod", "Boom"))
    _damaged(_file(tmp_path, _pickle({"x": _Call(made, f"touch {trap}")}), "call.pt"))
    nested = _Call(_Call(made, "a"), "b")  # REDUCE on the result of REDUCE on a placeholder
    _damaged(_file(tmp_path, _pickle({"x": nested}), "nested.pt"))


def test_placeholder_class_called_with_placeholders_records_them(tmp_path: Path,
                                                                 trap: Path) -> None:
    inner = _Call(_Global("evilmod", "Boom"), _Global("evilmod", "Boom"))
    tmap = ckconv.load(_file(tmp_path, _pickle({"x": _Call(_Global("evilmod", "Boom"), inner)})))
    outer = tmap.extras["torch_non_tensors"]["x"]
    assert isinstance(outer.args[0], Placeholder) and isinstance(outer.args[0].args[0], type)


def test_build_cannot_swap_the_class_or_run_setstate(tmp_path: Path, trap: Path) -> None:
    boom = _op(_Call(_Global("evilmod", "Boom")))
    swap = _op({"__class__": _Global("evilmod", "Boom"), "__setstate__": _Global("os", "getcwd"),
                "__reduce__": 1})
    # the os.getcwd above is refused first: keep a swap without dangerous names too
    safe_swap = _op({"__class__": _Global("evilmod", "Boom"), "__dict__": {"a": 1}})
    pkl = b"\x80\x02}(X\x01\x00\x00\x00x" + boom + safe_swap + b"bu."
    obj = ckconv.load(_file(tmp_path, pkl, "swap.pt")).extras["torch_non_tensors"]["x"]
    assert type(obj).__mro__[1] is Placeholder and obj.state["__class__"].origin == (
        "evilmod", "Boom")
    _refused(_file(tmp_path, b"\x80\x02}(X\x01\x00\x00\x00x" + boom + swap + b"bu.", "sw2.pt"),
             "os.getcwd")
    slots = _op(({"a": 1}, {"__class__": _Global("evilmod", "Boom")}))
    obj = ckconv.load(_file(tmp_path, b"\x80\x02}(X\x01\x00\x00\x00x" + boom + slots + b"bu.",
                            "slots.pt")).extras["torch_non_tensors"]["x"]
    assert obj.attributes() == {"a": 1} and type(obj).__mro__[1] is Placeholder
    _damaged(_file(tmp_path, b"\x80\x02" + boom + b"}b}b.", "twice.pt"))  # BUILD twice
    _damaged(_file(tmp_path, b"\x80\x02cevilmod\nBoom\n}b.", "on_class.pt"))  # BUILD on a class


def test_memo_abuse(tmp_path: Path, trap: Path) -> None:
    # A placeholder memoised, fetched back and used as a callable or persistent id.
    put_get = b"\x80\x02cevilmod\nBoom\n)Rq\x00h\x00X\x01\x00\x00\x00a\x85R."
    _damaged(_file(tmp_path, put_get, "call_memo.pt"))
    _damaged(_file(tmp_path, b"\x80\x02h\x07.", "get_unset.pt"))  # BINGET of nothing put
    # the class fetched twice more and passed to itself: a placeholder recording two classes
    got = ckconv.load(_file(tmp_path, b"\x80\x02}(X\x01\x00\x00\x00xcevilmod\nBoom\nq\x00h\x00h"
                            b"\x00\x86Ru.", "cls_args.pt")).extras["torch_non_tensors"]["x"]
    assert all(isinstance(a, type) and issubclass(a, Placeholder) for a in got.args)
    # the same placeholder reached twice through the memo is one object, listed once per place
    shared = b"\x80\x02}(X\x01\x00\x00\x00acevilmod\nBoom\n)Rq\x01X\x01\x00\x00\x00bh\x01u."
    tmap = ckconv.load(_file(tmp_path, shared, "shared.pt"))
    extras = tmap.extras["torch_non_tensors"]
    assert extras["a"] is extras["b"]


def test_persistent_id_games(tmp_path: Path, trap: Path) -> None:
    cases = {
        "placeholder_type": _PersId(("storage", _Global("evilmod", "Boom"), "0", "cpu", 2)),
        "placeholder_obj": _PersId(_Call(_Global("evilmod", "Boom"))),
        "text_pid": _Raw(b"Pstorage\n"),
        "nested": _PersId(("storage", _Global("torch", "FloatStorage"),
                           _Call(_Global("evilmod", "Boom")), "cpu", 2)),
    }
    for name, pid in cases.items():
        _damaged(_file(tmp_path, _pickle({"w": pid}), f"{name}.pt"))
    dangerous = _PersId(("storage", _Global("os", "system"), "0", "cpu", 2))
    _refused(_file(tmp_path, _pickle({"w": dangerous}), "os_pid.pt"), "os.system")


def test_reconstructor_and_newobj_tricks(tmp_path: Path, trap: Path) -> None:
    recon = _Global("copyreg", "_reconstructor")
    _refused(_file(tmp_path, _pickle({"x": _Call(recon, _Global("evilmod", "Boom"),
                                                 _Global("os", "system"), None)}), "r1.pt"),
             "os.system")
    # a reconstructor asked to make a non-placeholder (a tensor-rebuilding function)
    _refused(_file(tmp_path, _pickle({"x": _Call(recon, _Global("collections", "OrderedDict"),
                                                 _Global("builtins", "object"), None)}), "r2.pt"),
             "_reconstructor")
    newobj = _Global("copyreg", "__newobj__")
    _refused(_file(tmp_path, _pickle({"x": _Call(newobj, _Global("builtins", "object"))}),
                   "n1.pt"), "__newobj__")
    # NEWOBJ opcode on a stand-in that is not a type
    _damaged(_file(tmp_path, b"\x80\x02ctorch\ndevice\n)\x81.", "newobj.pt"))


def test_numpy_stand_ins_reject_tricks(tmp_path: Path, trap: Path) -> None:
    rec = _Global("numpy.core.multiarray", "_reconstruct")
    dtype = _Call(_Global("numpy", "dtype"), "f4", False, True)
    cases = {
        "recon_placeholder": _Call(rec, _Global("evilmod", "Boom"), (0,), "b"),
        "dtype_code": _Call(_Global("numpy", "dtype"), ("f4" * 100), False, True),
        "scalar_bytes": _Call(_Global("numpy.core.multiarray", "scalar"), dtype, 5),
    }
    for name, value in cases.items():
        path = _file(tmp_path, _pickle({"x": value}), f"{name}.pt")
        try:
            tmap = ckconv.load(path)
        except CkconvError as exc:
            assert "\n" not in str(exc)
        else:
            assert len(tmap) == 0
    big = _op(_Call(rec, _Global("numpy", "ndarray"), (0,), "b")) + _op(
        (1, (1 << 40,), dtype, False, "abcd")) + b"b"
    tmap = ckconv.load(_file(tmp_path, b"\x80\x02}(X\x01\x00\x00\x00a" + big + b"u.", "big.pt"))
    assert len(tmap) == 0  # 4 bytes cannot be 2**40 floats: not data, nothing allocated


def test_pickled_module_cycles_and_depth(tmp_path: Path, trap: Path) -> None:
    """A module whose child is itself (memo cycle) is refused, not walked forever."""
    mod = (b"\x80\x02cevilmod\nNet\n)\x81q\x00}(X\x0b\x00\x00\x00_parametersq\x01}"
           b"X\x08\x00\x00\x00_buffers}X\x08\x00\x00\x00_modules}X\x04\x00\x00\x00selfh\x00su"
           b"bh\x00.")
    _damaged(_file(tmp_path, mod, "cycle.pt"))
