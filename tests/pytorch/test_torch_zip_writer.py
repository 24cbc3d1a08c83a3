"""The torch zip writer: files that real torch loads bit-exact, written without torch.

Oracle tests load the output with ``torch.load(weights_only=True)``, with and without
``mmap=True``; structural tests read it with Python's ``zipfile`` and ``pickletools`` and need
no torch at all.
"""

from __future__ import annotations

import os
import pickle
import pickletools
import struct
import subprocess
import sys
import tempfile
import zipfile
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ckconv
from ckconv import dtypes
from ckconv.errors import CorruptCheckpointError
from ckconv.formats.pytorch import storage_types, torchzip_writer
from ckconv.formats.pytorch.torchzip_writer import write_state_dict
from ckconv.tensor import ArrayTensor, Tensor
from ckconv.tensormap import TensorMap
from tests.helpers import fixture_prefix
from tests.helpers import live_torch, reference_tensors

F32 = dtypes.BY_NAME["float32"]


def _map(arrays: dict[str, tuple[dtypes.DType, np.ndarray]]) -> TensorMap:
    return TensorMap({n: ArrayTensor(a, dt) for n, (dt, a) in arrays.items()})


def _odd_shapes() -> dict[str, tuple[dtypes.DType, np.ndarray]]:
    """Shapes whose sizes or strides need every integer opcode, and empty untyped storages."""
    by = dtypes.BY_NAME
    return {
        "odd/zero_middle": (F32, np.zeros((3, 0, 2), np.float32)),
        "odd/rank5": (F32, np.arange(2 * 3 * 1 * 2 * 2, dtype=np.float32).reshape(2, 3, 1, 2, 2)),
        "odd/wide": (by["uint8"], np.arange(70_000, dtype=np.uint64).astype(np.uint8)),
        "odd/huge_empty": (by["int64"], np.zeros((0, 2 ** 40), np.int64)),  # LONG1 sizes
        "odd/bool_scalar": (by["bool"], np.array(True)),
        "odd/bf16_scalar": (by["bfloat16"], np.array(1.5, dtype=by["bfloat16"].numpy)),
        "odd/u16_empty": (by["uint16"], np.zeros((0,), np.uint16)),
        "odd/f8_scalar": (by["float8_e5m2"], np.array(2.0, dtype=by["float8_e5m2"].numpy)),
        "odd/u64_max": (by["uint64"], np.array([2 ** 64 - 1, 0], np.uint64)),
    }


def _bytes_of(torch: Any, t: Any) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _check_loaded(torch: Any, obj: Any, want: dict[str, tuple[dtypes.DType, np.ndarray]]) -> None:
    assert type(obj) is dict and list(obj) == list(want)
    for name, (dt, arr) in want.items():
        t = obj[name]
        assert isinstance(t, torch.Tensor), name
        assert str(t.dtype) == f"torch.{dt.name}", name
        assert tuple(t.shape) == arr.shape, name
        assert t.stride() == torch.empty(arr.shape, dtype=t.dtype, device="meta").stride(), name
        if arr.size:
            assert _bytes_of(torch, t) == np.ascontiguousarray(arr).tobytes(), name


def _local_data_offset(raw: bytes, info: zipfile.ZipInfo) -> int:
    name_len, extra_len = struct.unpack_from("<2H", raw, info.header_offset + 26)
    return info.header_offset + 30 + name_len + extra_len


# --------------------------------------------------------------------------- real torch reads it


@pytest.mark.parametrize("mmap", [False, True])
def test_every_dtype_and_shape_loads_bit_exact(tmp_path, mmap):
    torch = live_torch()
    want = {**reference_tensors(("torch",)), **_odd_shapes()}
    out = tmp_path / "all.pt"
    ckconv.save(_map(want), out)
    _check_loaded(torch, torch.load(out, weights_only=True, mmap=mmap), want)


def test_storage_classes_are_the_ones_torch_save_picks(tmp_path):
    """Our dtype table against real torch.save output: same rebuild function and storage."""
    torch = live_torch()
    from ckconv.torch_bridge import TORCH_NAMES

    assert set(storage_types.TYPED_STORAGES) | set(storage_types.UNTYPED_DTYPES) == \
        set(TORCH_NAMES)
    for name in TORCH_NAMES:
        dt = dtypes.BY_NAME[name]
        ours = tmp_path / f"ours_{name}.pt"
        theirs = tmp_path / f"theirs_{name}.pt"
        ckconv.save({"x": ArrayTensor(np.zeros(3, dt.numpy), dt)}, ours)
        with open(theirs, "wb") as f:
            torch.save({"x": torch.zeros(3, dtype=getattr(torch, name))}, f)
        assert _globals(ours) == _globals(theirs), name


def _globals(path: Any) -> list[str]:
    with zipfile.ZipFile(path) as z:
        data = z.read("archive/data.pkl")
    return [arg for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"]


@pytest.mark.parametrize("mmap", [False, True])
def test_tied_names_share_one_storage(tmp_path, mmap):
    torch = live_torch()
    emb = ArrayTensor(np.arange(12, dtype=np.float32).reshape(3, 4))
    tmap = TensorMap({"embed.weight": emb, "other": np.arange(12, dtype=np.float32).reshape(3, 4),
                      "lm_head.weight": emb})
    out = tmp_path / "tied.pt"
    notes = ckconv.save(tmap, out)
    assert any("1 tied name" in n for n in notes)
    with zipfile.ZipFile(out) as z:
        assert sorted(n for n in z.namelist() if "/data/" in n) == ["archive/data/0",
                                                                   "archive/data/1"]
    obj = torch.load(out, weights_only=True, mmap=mmap)
    assert obj["embed.weight"].untyped_storage().data_ptr() == \
        obj["lm_head.weight"].untyped_storage().data_ptr()
    assert obj["other"].untyped_storage().data_ptr() != \
        obj["embed.weight"].untyped_storage().data_ptr()
    assert torch.equal(obj["lm_head.weight"], obj["other"])


def test_thousands_of_tensors_and_late_ties(tmp_path):
    """More than 256 memo entries (long memo opcodes) and 1000 items (several SETITEMS)."""
    torch = live_torch()
    tmap = TensorMap({f"layer.{i}.w": np.full(2, i, np.int32) for i in range(1500)})
    tmap["late_tie"] = tmap["layer.1400.w"]
    tmap["ünïcode.日本"] = np.ones(1, np.float16)
    out = tmp_path / "many.pt"
    ckconv.save(tmap, out)
    obj = torch.load(out, weights_only=True)
    assert list(obj) == list(tmap)
    assert obj["layer.1499.w"].tolist() == [1499, 1499]
    assert obj["late_tie"] is obj["layer.1400.w"]


def test_streams_file_regions_through_the_kernel(tmp_path):
    """A safetensors source: large tensors go file to file; headers after them land right."""
    torch = live_torch()
    rng = np.random.default_rng(0)
    want = {
        "a.small": (F32, np.arange(5, dtype=np.float32)),
        "b.big": (F32, rng.standard_normal((700, 1000)).astype(np.float32)),  # > 1 MiB
        "c.small": (dtypes.BY_NAME["int8"], np.arange(-3, 4, dtype=np.int8)),
        "d.big": (dtypes.BY_NAME["bfloat16"], rng.standard_normal((3, 500_000)).astype(
            dtypes.BY_NAME["bfloat16"].numpy)),
    }
    src = tmp_path / "in.safetensors"
    ckconv.save(_map(want), src)
    source = ckconv.load(src)
    assert source["b.big"].file_region() is not None
    out = tmp_path / "out.pt"
    seen: list[int] = []
    ckconv.save(source, out, progress=seen.append)
    assert sum(seen) == sum(a.nbytes for _, a in want.values())
    with zipfile.ZipFile(out) as z:
        assert z.testzip() is None  # every member's CRC-32, computed beside the kernel copy
    for mmap in (False, True):
        _check_loaded(torch, torch.load(out, weights_only=True, mmap=mmap), want)


def test_zip64_records_when_sizes_and_offsets_overflow(tmp_path, monkeypatch):
    """An artificial 4 GiB limit of 100 bytes: every big member and the directory go ZIP64."""
    torch = live_torch()
    monkeypatch.setattr(torchzip_writer, "ZIP64_LIMIT", 100)
    want = {"w": (F32, np.arange(1000, dtype=np.float32)),
            "b": (F32, np.arange(3, dtype=np.float32)),
            "s": (F32, np.array(7.0, np.float32)), "e": (F32, np.zeros((0, 4), np.float32))}
    out = tmp_path / "z64.pt"
    ckconv.save(_map(want), out)
    raw = out.read_bytes()
    assert raw[-22 - 20:-22].startswith(b"PK\x06\x07")  # ZIP64 end locator before the end
    end64 = struct.unpack_from("<Q", raw, len(raw) - 22 - 20 + 8)[0]
    assert raw[end64:end64 + 4] == b"PK\x06\x06"
    with zipfile.ZipFile(out) as z:
        assert z.testzip() is None
        big = z.getinfo("archive/data/0")
        assert big.file_size == 4000 and big.header_offset > 100
        local = raw[big.header_offset:big.header_offset + 30]
        assert struct.unpack_from("<2I", local, 18) == (0xFFFFFFFF, 0xFFFFFFFF)
        assert raw[big.header_offset + 30 + len(big.filename):][:4] == struct.pack("<2H", 1, 16)
        for info in z.infolist():
            assert _local_data_offset(raw, info) % 64 == 0, info.filename
    for mmap in (False, True):
        _check_loaded(torch, torch.load(out, weights_only=True, mmap=mmap), want)


def test_zip64_offsets_only(tmp_path):
    """Small members far into the file: only the offsets need ZIP64 fields."""
    torch = live_torch()
    want = {f"t{i}": (F32, np.full(4, i, np.float32)) for i in range(5)}
    out = tmp_path / "far.pt"
    items = [(n, ArrayTensor(a, dt)) for n, (dt, a) in want.items()]
    with open(out, "wb") as f:
        write_state_dict(f, items, display=str(out), zip64_limit=600)
    with zipfile.ZipFile(out) as z:
        assert z.testzip() is None
        assert z.getinfo("archive/data/4").header_offset >= 600
    _check_loaded(torch, torch.load(out, weights_only=True, mmap=True), want)


@settings(max_examples=30, deadline=None)
@given(names=st.lists(st.sampled_from(sorted(storage_types.TYPED_STORAGES)
                                      + list(storage_types.UNTYPED_DTYPES)),
                      min_size=1, max_size=4),
       shapes=st.lists(st.lists(st.integers(0, 5), max_size=4), min_size=4, max_size=4),
       tie=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_random_maps_load_bit_exact(names, shapes, tie, seed):
    torch = live_torch()
    rng = np.random.default_rng(seed)
    want = {}
    for i, name in enumerate(names):
        dt = dtypes.BY_NAME[name]
        shape = tuple(shapes[i])
        raw = rng.integers(0, 256, size=int(np.prod(shape)) * dt.itemsize, dtype=np.uint8)
        if name == "bool":
            raw &= 1  # a bool byte other than 0 or 1 is no valid bool in torch or numpy
        want[f"t{i}.{name}"] = (dt, raw.view(dt.numpy).reshape(shape))
    tmap = _map(want)
    if tie:
        tmap["tied"] = tmap[next(iter(want))]
        want["tied"] = next(iter(want.values()))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.pt")
        ckconv.save(tmap, out)
        for mmap in (False, True):
            _check_loaded(torch, torch.load(out, weights_only=True, mmap=mmap), want)


# --------------------------------------------------------------------------- without torch


def test_writing_never_imports_torch(tmp_path):
    out = tmp_path / "from_tf.pt"
    code = ("import sys, ckconv; "
            "ckconv.convert(sys.argv[1], sys.argv[2], skip_unsupported=True); "
            "sys.exit(3 if 'torch' in sys.modules else 0)")
    res = subprocess.run([sys.executable, "-c", code, fixture_prefix("dtypes"), str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr or "torch was imported"
    torch = live_torch()
    source = ckconv.load(fixture_prefix("dtypes"))
    obj = torch.load(out, weights_only=True, mmap=True)
    kept = [n for n, t in source.items() if torchzip_writer.can_hold(t.dtype)]
    assert kept and list(obj) == kept
    for name in kept:
        t = source[name]
        assert str(obj[name].dtype) == f"torch.{t.dtype.name}", name
        assert tuple(obj[name].shape) == t.shape, name
        assert _bytes_of(torch, obj[name]) == b"".join(bytes(c) for c in t.iter_bytes()), name


def test_archive_layout(tmp_path):
    out = tmp_path / "layout.pt"
    ckconv.save(_map({"w": (F32, np.ones((2, 3), np.float32)),
                      "s": (F32, np.array(1.0, np.float32))}), out)
    raw = out.read_bytes()
    with zipfile.ZipFile(out) as z:
        assert z.namelist() == ["archive/data.pkl", "archive/byteorder",
                                "archive/.storage_alignment", "archive/data/0",
                                "archive/data/1", "archive/version",
                                "archive/.data/serialization_id"]
        assert z.testzip() is None
        assert z.read("archive/byteorder") == b"little"
        assert z.read("archive/version") == b"3\n"
        assert z.read("archive/.storage_alignment") == b"64"
        assert z.read("archive/.data/serialization_id").isdigit()
        for info in z.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            assert _local_data_offset(raw, info) % 64 == 0, info.filename
            # the local header's CRC was patched in after the data
            assert struct.unpack_from("<I", raw, info.header_offset + 14)[0] == info.CRC
        ops = list(pickletools.genops(z.read("archive/data.pkl")))
    assert ops[0][0].name == "PROTO" and ops[0][1] == 2
    assert max(op.proto for op, _, _ in ops) <= 2


class _Stub:
    def __init__(self, *args: Any) -> None:
        self.args = args


def test_pickle_rebuild_arguments_without_torch(tmp_path):
    """Unpickled with stand-ins for torch's globals: the arguments torch would receive."""
    by = dtypes.BY_NAME
    emb = ArrayTensor(np.zeros((2, 3), np.float32))
    tmap = TensorMap({"emb": emb, "u16": ArrayTensor(np.zeros(5, np.uint16), by["uint16"]),
                      "huge": np.zeros((0, 2 ** 40), np.int64), "scalar": np.float64(1.0),
                      "head": emb})
    out = tmp_path / "stub.pt"
    ckconv.save(tmap, out)
    with zipfile.ZipFile(out) as z:
        data = z.read("archive/data.pkl")

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) == ("collections", "OrderedDict"):
                return dict
            if module == "torch._utils":
                return lambda *args: (name, args)
            return f"{module}.{name}"

        def persistent_load(self, pid: Any) -> Any:
            return pid

    obj = Unpickler(__import__("io").BytesIO(data)).load()
    assert list(obj) == ["emb", "u16", "huge", "scalar", "head"]
    assert obj["emb"] == ("_rebuild_tensor_v2", (("storage", "torch.FloatStorage", "0", "cpu", 6),
                                                  0, (2, 3), (3, 1), False, {}))
    assert obj["head"] is obj["emb"]
    assert obj["u16"] == ("_rebuild_tensor_v3", (("storage", "torch.storage.UntypedStorage", "1",
                                                   "cpu", 10), 0, (5,), (1,), False, {},
                                                  "torch.uint16"))
    assert obj["huge"][1][0][4] == 0 and obj["huge"][1][2:4] == ((0, 2 ** 40), (2 ** 40, 1))
    assert obj["scalar"][1][0][1:] == ("torch.DoubleStorage", "3", "cpu", 1)
    assert obj["scalar"][1][2:4] == ((), ())


def test_short_source_is_reported_and_nothing_is_left(tmp_path):
    class Short(Tensor):
        def __init__(self) -> None:
            super().__init__(F32, (10,))

        def iter_bytes(self, chunk: int = 0) -> Any:
            yield memoryview(b"\0" * 12)

        def describe(self) -> str:
            return "short source"

    tmap = TensorMap({"ok": np.ones(3, np.float32)})
    tmap["broken.weight"] = Short()
    with pytest.raises(CorruptCheckpointError, match=r"x\.pt: tensor broken\.weight \(short "
                                                     r"source\) yielded 12 bytes.* holds 40"):
        ckconv.save(tmap, tmp_path / "x.pt")
    assert os.listdir(tmp_path) == []
