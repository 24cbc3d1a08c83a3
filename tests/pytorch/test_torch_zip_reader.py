"""ckconv's own reader of ``torch.save`` zip archives: no torch, tensors streamed from the file.

Files are made by real ``torch.save`` where torch is needed to make them; hostile and damaged
archives are built by hand (``_archive`` and ``_pickle`` below write the zip layout and the
pickle opcodes directly), so those tests need no torch.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import tracemalloc
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ckconv
from ckconv.errors import CkconvError, CorruptCheckpointError, UnsupportedError
from ckconv.formats.pytorch import zip_archive
from ckconv.torch_bridge import TORCH_NAMES
from ckconv.formats.pytorch.reader import TorchTensor
from ckconv.formats.pytorch.torchzip_reader import TorchZipTensor
from tests.helpers import reference_array

ROOT = Path(__file__).resolve().parents[2]


def _torch() -> Any:
    return pytest.importorskip("torch")


def _torch_bytes(t: Any) -> bytes:
    torch = _torch()
    # clone: a one-element view keeps its stride and torch will not view it as bytes
    flat = t.detach().reshape(-1).clone(memory_format=torch.contiguous_format)
    return flat.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def _region_bytes(t: Any) -> bytes:
    region = t.file_region()
    return os.pread(region.fd, region.size, region.offset)


def _streamed(t: Any, chunk: int = 7) -> bytes:
    return b"".join(bytes(c) for c in t.iter_bytes(chunk))


@pytest.fixture
def no_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import torch`` raises ImportError, as if torch were not installed."""
    monkeypatch.setitem(sys.modules, "torch", None)


# --------------------------------------------------------------------------- real torch.save files

def test_every_dtype_reads_bit_exact_without_torch(tmp_path: Path) -> None:
    torch = _torch()
    from ckconv import dtypes
    from ckconv.torch_bridge import to_torch

    state = {name: to_torch(reference_array(dtypes.BY_NAME[name]), dtypes.BY_NAME[name])
             for name in TORCH_NAMES}
    path = tmp_path / "dtypes.pt"
    torch.save(state, path)
    tmap = ckconv.load(path)
    assert list(tmap) == list(state)
    for name, t in state.items():
        got = tmap[name]
        assert isinstance(got, TorchZipTensor), name
        assert got.dtype.name == name and got.shape == tuple(t.shape), name
        want = _torch_bytes(t)
        assert got.numpy().tobytes() == want, name
        assert got.numpy().dtype == got.dtype.numpy, name
        assert _region_bytes(got) == want and _streamed(got) == want, name


def test_data_offsets_match_torchs_own_reader(tmp_path: Path) -> None:
    torch = _torch()
    path = tmp_path / "m.pt"
    torch.save({"a": torch.arange(10.0), "b": torch.ones(3, dtype=torch.uint16)}, path)
    reader = torch._C.PyTorchFileReader(str(path))
    fd = os.open(path, os.O_RDONLY)
    try:
        directory = zip_archive.read_directory(fd, str(path))
        members = zip_archive.locate(fd, directory, directory.order)
    finally:
        os.close(fd)
    for name, member in members.items():
        record = name.split("/", 1)[1]
        assert member.data_offset == reader.get_record_offset(record), name
        assert member.size == reader.get_record_size(record), name


def _views(torch: Any) -> dict[str, Any]:
    base = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5)
    return {
        "base": base,
        "transposed": base[0].t(),
        "permuted": base.permute(2, 0, 1),
        "offset_row": base[1],
        "offset_slice": base[2, 1:3],
        "stepped": base[:, ::2, 1::3],
        "column": base[:, :, 4],
        "expanded": torch.arange(3.0).expand(4, 3),
        "scalar": base[1, 2, 3],
        "one_with_stride": torch.arange(9.0)[::3][:1],
        "empty_strided": torch.as_strided(torch.zeros(9), (0,), (3,)),
        "empty_2d": torch.zeros(0, 3),
        "halves_tail": torch.arange(8, dtype=torch.float16)[5:],
    }


def test_views_strided_and_offset_read_like_torch(tmp_path: Path) -> None:
    torch = _torch()
    views = _views(torch)
    path = tmp_path / "views.pt"
    torch.save(views, path)
    tmap = ckconv.load(path)
    for name, t in views.items():
        got = tmap[name]
        assert got.shape == tuple(t.shape), name
        want = _torch_bytes(t)
        assert got.numpy().tobytes() == want, name
        assert _streamed(got) == want, name
        if t.is_contiguous() and t.numel():
            assert _region_bytes(got) == want, name
    for name in ("transposed", "permuted", "stepped", "column", "expanded"):
        assert tmap[name].file_region() is None, name
    assert tmap["offset_row"].file_region() is not None


def test_tied_tensors_are_one_object(tmp_path: Path) -> None:
    torch = _torch()
    emb = torch.nn.Parameter(torch.randn(5, 3))
    w = torch.randn(4, 4)
    torch.save({"embed.weight": emb, "lm_head.weight": emb, "w": w, "w_again": w,
                "w_t": w.t(), "w_row": w[1], "w_row_again": w[1], "empty": torch.zeros(0),
                "empty2": torch.zeros(0)}, tmp_path / "tied.pt")
    tmap = ckconv.load(tmp_path / "tied.pt")
    assert tmap["embed.weight"] is tmap["lm_head.weight"]
    assert tmap["w"] is tmap["w_again"] and tmap["w_row"] is tmap["w_row_again"]
    assert tmap["w_t"] is not tmap["w"] and tmap["w_row"] is not tmap["w"]
    assert tmap["empty"] is not tmap["empty2"]


def test_nested_dicts_parameters_and_unwrapping(tmp_path: Path) -> None:
    torch = _torch()
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    p = torch.nn.Parameter(torch.ones(2))
    p.note = "a Python attribute"  # pickled with _rebuild_parameter_with_state
    state = {"epoch": 4, "model_state_dict": {"net": model.state_dict(), "extra": [p]},
             "optimizer_state_dict": {"lr": 0.1}, "shape": torch.Size([2, 3]), "blob": b"\xff"}
    torch.save(state, tmp_path / "ckpt.pt")
    tmap = ckconv.load(tmp_path / "ckpt.pt")
    want = {f"net.{k}": v for k, v in model.state_dict().items()}
    want["extra.0"] = p
    assert list(tmap) == list(want)
    for name, t in want.items():
        assert tmap[name].numpy().tobytes() == _torch_bytes(t), name
    note = " ".join(tmap.notes)
    assert "'model_state_dict' only" in note and "epoch=4" in note and "shape=(2, 3)" in note
    assert tmap.extras["torch_non_tensors"]["blob"] == b"\xff"


def test_reading_and_converting_never_imports_torch(tmp_path: Path) -> None:
    torch = _torch()
    src = tmp_path / "m.pt"
    torch.save({"w": torch.randn(300, 300), "t": torch.randn(300, 300).t(),
                "h": torch.ones(3, dtype=torch.bfloat16)}, src)
    code = ("import sys, ckconv; assert 'torch' not in sys.modules; "
            "m = ckconv.load(sys.argv[1]); m.to_numpy(); "
            "ckconv.convert(sys.argv[1], sys.argv[2]); ckconv.convert(sys.argv[1], sys.argv[3]); "
            "sys.exit('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code, str(src), str(tmp_path / "o.safetensors"),
                          str(tmp_path / "o.ckpt")], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert res.returncode == 0, res.stderr
    back = ckconv.load(tmp_path / "o.safetensors")
    assert back["t"].numpy().tobytes() == _torch_bytes(torch.load(src)["t"])


def test_a_directory_only_zipfile_accepts_is_still_sniffed_as_torch(tmp_path: Path) -> None:
    """ckconv's own directory parser lists the members when sniffing; where it refuses the
    directory (here: a member said to be on another disk), zipfile lists them, and the reader,
    not the "unknown format" message, names the damage."""
    path = tmp_path / "m.pt"
    ckconv.save({"w": np.arange(3, dtype=np.float32)}, path)
    raw = bytearray(path.read_bytes())
    at = raw.rfind(zip_archive.CENTRAL_SIG, 0, raw.rfind(zip_archive.EOCD_SIG))
    struct.pack_into("<H", raw, at + 34, 1)  # "disk number start" of the last entry
    path.write_bytes(bytes(raw))
    with zipfile.ZipFile(path) as z:
        assert any(n.endswith("data.pkl") for n in z.namelist())
    with pytest.raises(CorruptCheckpointError, match=r"m\.pt: damaged zip archive .*on another disk"):
        ckconv.load(path)


def test_reads_when_torch_is_not_installed(tmp_path: Path, no_torch: None) -> None:
    path = tmp_path / "m.pt"
    _archive(path, _pickle({"w": _tensor_op("FloatStorage", "0", 3, 0, (3,), (1,))}),
             {"0": np.arange(3, dtype=np.float32).tobytes()})
    assert ckconv.load(path)["w"].numpy().tolist() == [0.0, 1.0, 2.0]


def test_sharded_bin_index_reads_without_torch(tmp_path: Path) -> None:
    torch = _torch()
    a, b = torch.randn(4), torch.randn(2, 2)
    torch.save({"a": a}, tmp_path / "pytorch_model-00001-of-00002.bin")
    torch.save({"b": b, "stray": torch.zeros(1)}, tmp_path / "pytorch_model-00002-of-00002.bin")
    (tmp_path / "pytorch_model.bin.index.json").write_text(
        '{"metadata": {"total_size": 32}, "weight_map": {"a": "pytorch_model-00001-of-00002.bin",'
        ' "b": "pytorch_model-00002-of-00002.bin"}}')
    tmap = ckconv.load(tmp_path)
    assert list(tmap) == ["a", "b"] and isinstance(tmap["b"], TorchZipTensor)
    assert tmap["b"].numpy().tobytes() == _torch_bytes(b)
    assert any("stray" in n for n in tmap.notes)


# --------------------------------------------------------------------------- fallback to torch

def test_outside_the_allow_list_falls_back_to_torch(tmp_path: Path) -> None:
    torch = _torch()
    t = torch.ones(2)
    t.tag = "python attribute"  # pickled through torch._tensor._rebuild_from_type_v2
    torch.save({"t": t, "c": torch.tensor([1 + 2j], dtype=torch.complex64).conj()},
               tmp_path / "f.pt")
    tmap = ckconv.load(tmp_path / "f.pt")
    assert isinstance(tmap["t"], TorchTensor) and tmap["t"].numpy().tolist() == [1.0, 1.0]


def test_outside_the_allow_list_without_torch_is_refused(tmp_path: Path, no_torch: None) -> None:
    # torch's own tensor-rebuilding internals (sparse, nested, subclasses) need torch;
    # other classes become placeholders (tests/pytorch/test_malicious_pickles.py).
    path = tmp_path / "f.pt"
    _archive(path, _pickle({"w": _tensor_op("FloatStorage", "0", 1, 0, (1,), (1,)),
                            "d": _Global("torch._utils", "_rebuild_sparse_tensor")}),
             {"0": b"\0" * 4})
    with pytest.raises(UnsupportedError, match=r"f\.pt: holds the global torch\._utils\."
                                               r"_rebuild_sparse_tensor.*"
                                               r"nothing was executed.*not installed"):
        ckconv.load(path)


def test_unknown_tensor_arguments_need_torch(tmp_path: Path, no_torch: None) -> None:
    cases = {"conj": ({"conj": True},), "future": (None, "an argument a later torch adds")}
    for name, extra in cases.items():
        path = tmp_path / f"{name}.pt"
        _archive(path, _pickle({"w": _tensor_op("FloatStorage", "0", 1, 0, (1,), (1,), *extra)}),
                 {"0": b"\0" * 4})
        with pytest.raises(UnsupportedError, match="metadata|more argument"):
            ckconv.load(path)


def test_file_shrinking_after_load_names_file_and_tensor(tmp_path: Path) -> None:
    path = tmp_path / "s.pt"
    _archive(path, _pickle({"w": _tensor_op("FloatStorage", "0", 4, 0, (2, 2), (2, 1)),
                            "t": _tensor_op("FloatStorage", "0", 4, 0, (2, 2), (1, 2))}),
             {"0": np.arange(4, dtype=np.float32).tobytes()})
    tmap = ckconv.load(path)
    start = tmap["w"].file_region().offset
    with open(path, "r+b") as f:
        f.truncate(start + 2)
    for name in ("w", "t"):
        with pytest.raises(CorruptCheckpointError, match=f"s\\.pt: tensor '{name}': file ended"):
            tmap[name].numpy()
    with pytest.raises(CorruptCheckpointError, match="tensor 'w'"):
        _streamed(tmap["w"])


def test_legacy_format_reads_without_torch_and_falls_back_for_the_rest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = _torch()
    torch.save({"w": torch.arange(3.0)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    tmap = ckconv.load(tmp_path / "old.pt")
    assert isinstance(tmap["w"], TorchZipTensor) and tmap["w"].numpy().tolist() == [0.0, 1.0, 2.0]
    assert _region_bytes(tmap["w"]) == _torch_bytes(torch.arange(3.0))
    t = torch.ones(2)
    t.tag = "python attribute"  # torch._tensor._rebuild_from_type_v2: torch's own business
    torch.save({"t": t}, tmp_path / "sub.pt", _use_new_zipfile_serialization=False)
    assert isinstance(ckconv.load(tmp_path / "sub.pt")["t"], TorchTensor)
    monkeypatch.setitem(sys.modules, "torch", None)
    assert ckconv.load(tmp_path / "old.pt")["w"].numpy().tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(UnsupportedError, match=r"sub\.pt: holds .*_rebuild_from_type_v2"):
        ckconv.load(tmp_path / "sub.pt")


def test_big_endian_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.pt"
    _archive(path, _pickle({"w": _tensor_op("FloatStorage", "0", 2, 0, (2,), (1,))}),
             {"0": np.array([1.5, -2.0], dtype=">f4").tobytes()}, byteorder=b"big")
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        assert ckconv.load(path)["w"].numpy().tolist() == [1.5, -2.0]  # torch byte-swaps
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(UnsupportedError, match="big-endian"):
        ckconv.load(path)


# --------------------------------------------------------------------------- hand-made archives

class _Global:
    def __init__(self, module: str, name: str):
        self.module, self.name = module, name


class _Call:
    def __init__(self, func: Any, *args: Any):
        self.func, self.args = func, args


class _PersId:
    def __init__(self, value: Any):
        self.value = value


class _Raw:
    """Opcodes written as they are."""

    def __init__(self, data: bytes):
        self.data = data


def _op(v: Any) -> bytes:
    """Protocol-2 opcodes for a value: just enough to write what torch.save writes."""
    if v is None:
        return b"N"
    if v is True or v is False:
        return b"\x88" if v else b"\x89"
    if isinstance(v, int):
        if -(1 << 31) <= v < (1 << 31):
            return b"J" + struct.pack("<i", v)
        raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
        return b"\x8a" + bytes([len(raw)]) + raw
    if isinstance(v, float):
        return b"G" + struct.pack(">d", v)
    if isinstance(v, str):
        raw = v.encode()
        return b"X" + struct.pack("<I", len(raw)) + raw
    if isinstance(v, tuple):
        return b"(" + b"".join(_op(x) for x in v) + b"t"
    if isinstance(v, list):
        return b"](" + b"".join(_op(x) for x in v) + b"e"
    if isinstance(v, dict):
        return b"}(" + b"".join(_op(k) + _op(x) for k, x in v.items()) + b"u"
    if isinstance(v, _Global):
        return b"c" + f"{v.module}\n{v.name}\n".encode()
    if isinstance(v, _Call):
        return _op(v.func) + _op(v.args) + b"R"
    if isinstance(v, _PersId):
        return _op(v.value) + b"Q"
    if isinstance(v, _Raw):
        return v.data
    raise TypeError(v)


def _pickle(obj: Any) -> bytes:
    return b"\x80\x02" + _op(obj) + b"."


def _tensor_op(storage_cls: str, key: str, numel: int, offset: int, size: tuple, stride: tuple,
               *extra: Any, module: str = "torch") -> _Call:
    pid = _PersId(("storage", _Global(module, storage_cls), key, "cpu", numel))
    hooks = _Call(_Global("collections", "OrderedDict"))
    func = "_rebuild_tensor_v3" if storage_cls == "UntypedStorage" else "_rebuild_tensor_v2"
    return _Call(_Global("torch._utils", func), pid, offset, size, stride, False, hooks, *extra)


def _archive(path: Path, pkl: bytes, records: dict[str, bytes], byteorder: bytes = b"little",
             compress: int = zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl, compress_type=compress)
        z.writestr("archive/byteorder", byteorder)
        for key, data in records.items():
            z.writestr(f"archive/data/{key}", data)
        z.writestr("archive/version", b"3\n")


def _small(tmp_path: Path, name: str = "s.pt", **kw: Any) -> Path:
    path = tmp_path / name
    _archive(path, _pickle({"w": _tensor_op("FloatStorage", "0", 4, 0, (2, 2), (2, 1))}),
             {"0": np.arange(4, dtype=np.float32).tobytes()}, **kw)
    return path


def test_hand_made_archive_reads(tmp_path: Path) -> None:
    tmap = ckconv.load(_small(tmp_path))
    assert tmap["w"].numpy().tolist() == [[0.0, 1.0], [2.0, 3.0]]


def test_untyped_storage_with_dtype(tmp_path: Path) -> None:
    path = tmp_path / "u.pt"
    t = _tensor_op("UntypedStorage", "0", 6, 1, (2,), (1,), _Global("torch", "uint16"),
                   module="torch.storage")
    odd = _tensor_op("UntypedStorage", "1", 4, 0, (2,), (1,), _Global("torch", "complex32"),
                     module="torch.storage")
    _archive(path, _pickle({"t": t, "odd": odd}),
             {"0": np.array([7, 8, 9], "<u2").tobytes(), "1": b"\0" * 8})
    tmap = ckconv.load(path)
    assert tmap["t"].dtype.name == "uint16" and tmap["t"].numpy().tolist() == [8, 9]
    assert list(tmap) == ["t"] and "odd (torch.complex32" in tmap.notes[-1]


def test_hostile_global_is_refused_and_never_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    for func in (_Global("os", "system"), _Global("posix", "system"), _Global("builtins", "eval")):
        payload = f"open({str(marker)!r}, 'w')" if func.name == "eval" else f"touch {marker}"
        _archive(path, _pickle({"w": _Call(func, payload)}), {})
        monkeypatch.chdir(tmp_path)
        with pytest.raises(UnsupportedError, match="nothing was executed") as info:
            ckconv.load(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
        assert not marker.exists()
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "torch", None)
        with pytest.raises(UnsupportedError, match=r"builtins\.eval"):
            ckconv.load(path)
    assert not marker.exists()


def _corrupt(path: Path, match: str = "") -> None:
    # Read as torch explicitly: sniffing already calls a damaged directory "not a checkpoint".
    with pytest.raises(CorruptCheckpointError, match=match or None) as info:
        ckconv.load(path, "torch").to_numpy()
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_compressed_member_is_refused(tmp_path: Path) -> None:
    # Not damage, but unreadable in place (and torch.load(mmap=True) maps such bytes as is).
    with pytest.raises(UnsupportedError, match=r"s\.pt: member 'archive/data.pkl' is compressed"):
        ckconv.load(_small(tmp_path, compress=zipfile.ZIP_DEFLATED))
    src = _small(tmp_path, "stored.pt")
    method = _entry(src.read_bytes(), b"PK\x01\x02", b"archive/data/0") + 10
    with pytest.raises(UnsupportedError, match="'archive/data/0' is compressed"):
        ckconv.load(_patch(src, tmp_path / "m.pt", "<H", method, 8))


def test_truncated_archives(tmp_path: Path) -> None:
    data = _small(tmp_path).read_bytes()
    for cut in (10, 40, len(data) // 2, len(data) - 30, len(data) - 1):
        bad = tmp_path / f"cut{cut}.pt"
        bad.write_bytes(data[:cut])
        _corrupt(bad)


def _patch(path: Path, out: Path, fmt: str, where: int, value: int) -> Path:
    raw = bytearray(path.read_bytes())
    struct.pack_into(fmt, raw, where, value)
    out.write_bytes(raw)
    return out


def _entry(raw: bytes, signature: bytes, name: bytes) -> int:
    """Offset of the central (``PK\\1\\2``) or local (``PK\\3\\4``) header of a member."""
    skip = 46 if signature == b"PK\x01\x02" else 30
    pos = raw.find(signature)
    while pos >= 0:
        if raw[pos + skip:pos + skip + len(name)] == name:
            return pos
        pos = raw.find(signature, pos + 1)
    raise AssertionError(name)


def test_bad_offsets_and_sizes(tmp_path: Path) -> None:
    src = _small(tmp_path)
    raw = src.read_bytes()
    eocd = raw.rindex(b"PK\x05\x06")
    pkl_cd = _entry(raw, b"PK\x01\x02", b"archive/data.pkl")
    data_cd = _entry(raw, b"PK\x01\x02", b"archive/data/0")
    data_local = _entry(raw, b"PK\x03\x04", b"archive/data/0")
    cases = {
        "cd_offset": ("<I", eocd + 16, len(raw) + 100, "central directory"),
        "cd_size": ("<I", eocd + 12, 1 << 31, "central directory"),
        "count": ("<H", eocd + 10, 999, "members cannot fit"),
        "header_offset": ("<I", pkl_cd + 42, len(raw) - 10, "past the end|local header"),
        "member_size": ("<I", data_cd + 24, 1 << 30, "two different sizes"),
        "both_sizes": ("<Q", data_cd + 20, (1 << 30) | (1 << 62), "past"),
        "local_extra": ("<H", data_local + 28, 60000, "past"),
        "local_name": ("<H", data_local + 26, 3, "another member"),
        "pkl_crc": ("<I", pkl_cd + 16, 12345, "CRC"),
        "version": ("<H", data_cd + 6, 128, "version"),
    }
    for name, (fmt, where, value, match) in cases.items():
        _corrupt(_patch(src, tmp_path / f"{name}.pt", fmt, where, value), match)


def test_overlapping_members_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.pt"
    two = {"a": _tensor_op("FloatStorage", "0", 4, 0, (4,), (1,)),
           "b": _tensor_op("FloatStorage", "1", 4, 0, (4,), (1,))}
    _archive(path, _pickle(two), {"0": b"\1" * 16, "1": b"\2" * 16})
    raw = bytearray(path.read_bytes())
    entries = [i for i in range(len(raw)) if raw[i:i + 4] == b"PK\x01\x02"]
    first = next(e for e in entries if raw[e + 46:e + 60] == b"archive/data/0")
    second = next(e for e in entries if raw[e + 46:e + 60] == b"archive/data/1")
    raw[second + 42:second + 46] = raw[first + 42:first + 46]  # both point at one local header
    path.write_bytes(raw)
    _corrupt(path, "overlap|another member")


def test_views_outside_their_storage(tmp_path: Path) -> None:
    cases = {
        "past_end": _tensor_op("FloatStorage", "0", 4, 2, (3,), (1,)),
        "stride_past_end": _tensor_op("FloatStorage", "0", 4, 0, (2, 2), (3, 1)),
        "numel_beyond_record": _tensor_op("FloatStorage", "0", 400, 0, (4,), (1,)),
        "negative_stride": _tensor_op("FloatStorage", "0", 4, 3, (2,), (-1,)),
        "negative_offset": _tensor_op("FloatStorage", "0", 4, -1, (2,), (1,)),
        "expanded_to_a_petabyte": _tensor_op("FloatStorage", "0", 4, 0, (1 << 48,), (0,)),
        "too_many_dims": _tensor_op("FloatStorage", "0", 4, 0, (1,) * 70, (1,) * 70),
        "size_stride_mismatch": _tensor_op("FloatStorage", "0", 4, 0, (2, 2), (1,)),
        "size_not_ints": _tensor_op("FloatStorage", "0", 4, 0, ("2",), (1,)),
        "huge_numel": _tensor_op("FloatStorage", "0", 1 << 70, 0, (4,), (1,)),
    }
    for name, tensor in cases.items():
        path = tmp_path / f"{name}.pt"
        _archive(path, _pickle({"w": tensor}), {"0": b"\0" * 16})
        _corrupt(path)


def test_missing_record_and_bad_pickles(tmp_path: Path) -> None:
    ok = _tensor_op("FloatStorage", "0", 4, 0, (4,), (1,))
    cases = {
        "missing_record": _pickle({"w": _tensor_op("FloatStorage", "9", 4, 0, (4,), (1,))}),
        "truncated_pickle": _pickle({"w": ok})[:-20],
        "bad_pid": _pickle({"w": _PersId(("storage", 1, 2))}),
        "pid_not_storage_type": _pickle({"w": _PersId(
            ("storage", _Global("collections", "OrderedDict"), "0", "cpu", 4))}),
        "v2_untyped": _pickle({"w": _Call(
            _Global("torch._utils", "_rebuild_tensor_v2"),
            _PersId(("storage", _Global("torch.storage", "UntypedStorage"), "0", "cpu", 16)),
            0, (4,), (1,), False, _Call(_Global("collections", "OrderedDict")))}),
        "storage_called": _pickle({"w": _Call(_Global("torch", "FloatStorage"), 10)}),
        "twice_differently": _pickle({"a": ok, "b": _tensor_op("FloatStorage", "0", 2, 0, (2,),
                                                               (1,))}),
        "build_on_stand_in": b"\x80\x02}(X\x01\x00\x00\x00w" + _op(ok) +
                             _op({"shape": (1 << 40,)}) + b"bu.",
        "bytearray_size": _pickle({"b": _Call(_Global("__builtin__", "bytearray"), 1 << 40)}),
        "not_a_pickle": b"garbage that is not a pickle at all",
    }
    for name, pkl in cases.items():
        path = tmp_path / f"{name}.pt"
        _archive(path, pkl, {"0": b"\0" * 16})
        _corrupt(path)


def test_pickle_length_and_memo_claims_cost_no_memory(tmp_path: Path) -> None:
    claims = {
        "binbytes": b"\x80\x03B" + struct.pack("<I", 0xFFFFFFF0) + b"abc.",
        "binbytes8": b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"abc.",
        "memo": b"\x80\x02}r" + struct.pack("<I", 0x7FFFFFFF) + b".",
        "frame": b"\x80\x04\x95" + struct.pack("<Q", 1 << 40) + b"}.",
    }
    tracemalloc.start()
    try:
        for name, pkl in claims.items():
            path = tmp_path / f"{name}.pt"
            _archive(path, pkl, {})
            _corrupt(path)
        assert tracemalloc.get_traced_memory()[1] < 64 << 20
    finally:
        tracemalloc.stop()


def test_exploding_object_graphs_are_refused(tmp_path: Path) -> None:
    # Each list holds the previous one twice: 60 levels are 2**60 leaves once flattened.
    shared = b"\x80\x02](e" + b"".join(b"p%d\n0](g%d\ng%d\ne" % (i, i, i) for i in range(60))
    deep = b"\x80\x02" + b"](" * 5000 + b"e" * 5000
    for name, pkl in {"shared": shared + b".", "deep": deep + b"."}.items():
        path = tmp_path / f"{name}.pt"
        _archive(path, pkl, {})
        _corrupt(path, "implausibly")


def test_torchscript_archive_is_refused_without_torch(tmp_path: Path, no_torch: None) -> None:
    path = tmp_path / "ts.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("ts/data.pkl", _pickle({}))
        z.writestr("ts/constants.pkl", _pickle(()))
    with pytest.raises(UnsupportedError, match="TorchScript"):
        ckconv.load(path)


# --------------------------------------------------------------------------- ZIP64

def _zip64(src: Path, dst: Path) -> None:
    """Rewrite an archive with every size and offset in ZIP64 fields, as a >4 GiB file has."""
    with zipfile.ZipFile(src) as z:
        members = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    out = io.BytesIO()
    central = []
    big = 0xFFFFFFFF
    for name, data in members:
        offset = out.tell()
        crc = zlib.crc32(data)
        extra = struct.pack("<2H2Q", 1, 16, len(data), len(data))
        pad = (-(offset + 30 + len(name) + len(extra) + 4)) % 64  # keep data 64-aligned
        extra += struct.pack("<2H", 0x4246, pad) + b"Z" * pad
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 45, 0, 0, 0, 0, crc, big, big,
                              len(name), len(extra)) + name.encode() + extra + data)
        cextra = struct.pack("<2H3Q", 1, 24, len(data), len(data), offset)
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 45, 45, 0, 0, 0, 0, crc, big,
                                   big, len(name), len(cextra), 0, 0, 0, 0, big)
                       + name.encode() + cextra)
    cd_offset = out.tell()
    out.write(b"".join(central))
    cd_size = out.tell() - cd_offset
    z64 = out.tell()
    n = len(central)
    out.write(struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, cd_size, cd_offset))
    out.write(struct.pack("<4sLQL", b"PK\x06\x07", 0, z64, 1))
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, big, big, 0))
    dst.write_bytes(out.getvalue())


def test_zip64_archive_reads(tmp_path: Path) -> None:
    src = tmp_path / "src.pt"
    _archive(src, _pickle({"w": _tensor_op("FloatStorage", "0", 3, 1, (2,), (1,))}),
             {"0": np.array([1, 2, 3], np.float32).tobytes()})
    dst = tmp_path / "z64.pt"
    _zip64(src, dst)
    with zipfile.ZipFile(dst) as z:  # Python's zipfile agrees the archive is valid
        assert z.testzip() is None
    tmap = ckconv.load(dst)
    assert tmap["w"].numpy().tolist() == [2.0, 3.0]
    assert tmap["w"].file_region().offset % 4 == 0
    raw = bytearray(dst.read_bytes())
    z64 = raw.rindex(b"PK\x06\x06")
    struct.pack_into("<Q", raw, z64 + 48, 1 << 40)  # ZIP64 directory offset out of range
    (tmp_path / "bad64.pt").write_bytes(raw)
    _corrupt(tmp_path / "bad64.pt", "central directory")


def test_zip64_from_real_torch_file(tmp_path: Path) -> None:
    torch = _torch()
    src = tmp_path / "src.pt"
    w = torch.randn(5, 7)
    torch.save({"w": w, "v": w[2:, 1:]}, src)
    _zip64(src, tmp_path / "z64.pt")
    tmap = ckconv.load(tmp_path / "z64.pt")
    assert tmap["w"].numpy().tobytes() == _torch_bytes(w)
    assert tmap["v"].numpy().tobytes() == _torch_bytes(w[2:, 1:])


# --------------------------------------------------------------------------- fuzzing

_FUZZ_SOURCE: list[bytes] = []


def _fuzz_source(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    if _FUZZ_SOURCE:
        return _FUZZ_SOURCE[0]
    path = tmp_path_factory.mktemp("fuzz") / "src.pt"
    state = {"w": _tensor_op("FloatStorage", "0", 12, 0, (3, 4), (4, 1)),
             "t": _tensor_op("FloatStorage", "0", 12, 1, (3, 3), (1, 4)),
             "nested": {"h": _tensor_op("HalfStorage", "1", 4, 0, (4,), (1,)), "step": 3},
             "u": _tensor_op("UntypedStorage", "2", 8, 0, (4,), (1,), _Global("torch", "uint16"),
                             module="torch.storage")}
    _archive(path, _pickle(state), {"0": np.arange(12, dtype=np.float32).tobytes(),
                                    "1": np.ones(4, np.float16).tobytes(), "2": b"\1" * 8})
    _FUZZ_SOURCE.append(path.read_bytes())
    return _FUZZ_SOURCE[0]


def _read_everything(path: Path) -> None:
    tmap = ckconv.load(path, "torch")
    for t in tmap.values():
        t.numpy()
        for _ in t.iter_bytes():
            pass


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_archives_read_or_raise_ckconv_errors(tmp_path_factory: pytest.TempPathFactory,
                                                      data: st.DataObject) -> None:
    source = _fuzz_source(tmp_path_factory)
    raw = bytearray(source)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["byte", "int", "truncate"]))
        pos = data.draw(st.integers(0, len(raw) - 1))
        if kind == "byte":
            raw[pos] = data.draw(st.integers(0, 255))
        elif kind == "int":
            value = data.draw(st.sampled_from([0, 1, 0xFF, 0xFFFF, 0xFFFFFFFF, len(raw),
                                               1 << 31, 0x7FFFFFFF]))
            raw[pos:pos + 4] = (value & 0xFFFFFFFF).to_bytes(4, "little")
        else:
            del raw[pos:]
            if not raw:
                raw = bytearray(b"PK\x03\x04")
    path = tmp_path_factory.mktemp("m") / "m.pt"
    path.write_bytes(bytes(raw))
    saved = sys.modules.get("torch", "absent")
    sys.modules["torch"] = None  # type: ignore[assignment]  # fuzz our reader, not torch's
    try:
        _read_everything(path)
    except CkconvError as exc:
        assert "\n" not in str(exc)
    finally:
        if saved == "absent":
            del sys.modules["torch"]
        else:
            sys.modules["torch"] = saved  # type: ignore[assignment]


def test_mutated_real_torch_file(tmp_path: Path) -> None:
    """A real torch.save file with single bytes changed throughout: read or CkconvError."""
    torch = _torch()
    src = tmp_path / "src.pt"
    torch.save({"w": torch.randn(3, 4), "b": torch.ones(2, dtype=torch.bfloat16)}, src)
    source = src.read_bytes()
    rng = np.random.default_rng(0)
    for i, pos in enumerate(rng.integers(0, len(source), 150)):
        raw = bytearray(source)
        raw[pos] ^= 1 << int(rng.integers(0, 8))
        path = tmp_path / f"m{i}.pt"
        path.write_bytes(raw)
        try:
            _read_everything(path)
        except CkconvError as exc:
            assert "\n" not in str(exc)
        path.unlink()
