"""HDF5 raw fast paths: datasets read and written as plain file bytes, beside libhdf5.

Reading: a dataset stored contiguous, unfiltered, little-endian, as ckconv's own bytes has a
:meth:`~ckconv.tensormap.Tensor.file_region`; every other dataset is read by libhdf5 as
before, bit-exact. Writing: libhdf5 lays out the file, ckconv copies the bytes in after
libhdf5 closed it; h5py and tf_keras must read the result exactly.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

import ckconv
from ckconv import dtypes
from ckconv.io import streaming
from ckconv.cli import main
from ckconv.errors import CkconvError, CorruptCheckpointError, UnsupportedError
from ckconv.formats.hdf5 import safety
from ckconv.formats.hdf5.storage import H5File, H5Tensor
from ckconv.tensor import ArrayTensor, Tensor
from ckconv.tensormap import TensorMap
from tests.helpers import assert_bit_exact
from tests.helpers import ckconv_map, live_module, raw, read_hdf5, reference_tensors

BIG = (768, 1024)  # 3 MiB of float32: above streaming.SMALL, so mapped and kernel-copied


def _values(shape: tuple[int, ...] = (64, 64), dtype: str = "float32") -> np.ndarray:
    return (np.arange(int(np.prod(shape))) * 7 % 1001).astype(dtype).reshape(shape)


def _joined(t: Tensor, chunk: int) -> bytes:
    parts = [bytes(c) for c in t.iter_bytes(chunk=chunk)]
    assert max(map(len, parts)) <= chunk
    return b"".join(parts)


# --------------------------------------------------------------------------- reading

def test_contiguous_datasets_are_read_as_file_regions(tmp_path):
    arrays = {"big": _values(BIG), "small": _values((3, 5), "int64"),
              "scalar": np.array(2.5, np.float64), "flags": np.array([True, False, True]),
              "cplx": (_values((4, 4)) + 1j).astype(np.complex64)}
    tmap = TensorMap(arrays)
    tmap["bf16"] = ArrayTensor(_values((8, 8), "uint16").view(dtypes.BY_NAME["bfloat16"].numpy))
    path = str(tmp_path / "c.h5")
    ckconv.save(tmap, path)
    back = ckconv.load(path)
    with h5py.File(path) as f:
        for name, t in tmap.items():
            region = back[name].file_region()
            assert region is not None, name
            assert (region.offset, region.size) == (f[name].id.get_offset(), t.nbytes), name
            assert os.pread(region.fd, region.size, region.offset) == raw(t.numpy()), name
            assert_bit_exact(back[name].numpy(), t.numpy(), name)
    for chunk in (1000, 65536 + 5, 1 << 20):  # windows smaller than a page, odd, and large
        assert _joined(back["big"], chunk) == arrays["big"].tobytes()


def _make(f: h5py.File, kind: str, data: np.ndarray) -> None:
    if kind == "contiguous":
        f.create_dataset("x", data=data)
    elif kind == "chunked":
        f.create_dataset("x", data=data, chunks=(16, 16))
    elif kind == "gzip":
        f.create_dataset("x", data=data, compression="gzip", shuffle=True)
    elif kind == "fletcher32":
        f.create_dataset("x", data=data, fletcher32=True)
    elif kind in ("big-endian", "big-endian-bfloat16"):
        f.create_dataset("x", data=data.astype(data.dtype.newbyteorder(">")))
        if kind == "big-endian-bfloat16":
            f["x"].attrs["ckconv_dtype"] = "bfloat16"
    elif kind == "compact":
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        f.create_dataset("x", data=data, dcpl=dcpl)
    elif kind == "never-written":
        f.create_dataset("x", shape=data.shape, dtype=data.dtype, fillvalue=data.flat[0])
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["contiguous", "chunked", "gzip", "fletcher32", "big-endian",
                                  "big-endian-bfloat16", "compact", "never-written"])
def test_only_raw_layouts_take_the_fast_path_and_all_read_bit_exact(tmp_path, kind):
    data = _values((32, 32), "uint16" if "bfloat16" in kind else "float32")
    if kind == "never-written":
        data = np.full(data.shape, 3.0, np.float32)  # the fill value, stored nowhere
    path = str(tmp_path / f"{kind}.h5")
    with h5py.File(path, "w") as f:
        _make(f, kind, data)
    t = ckconv.load(path)["x"]
    assert (t.file_region() is not None) == (kind == "contiguous")
    want = data.view(dtypes.BY_NAME["bfloat16"].numpy) if "bfloat16" in kind else data
    assert_bit_exact(t.numpy(), want, kind)
    assert _joined(t, 1000) == want.tobytes()


def test_external_storage_has_no_region_and_is_still_refused(tmp_path):
    data = _values((16, 16))
    path = str(tmp_path / "ext.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=data, external=[(str(tmp_path / "raw.bin"), 0, data.nbytes)])
    with pytest.raises(UnsupportedError, match="external file"):
        ckconv.load(path)
    # Past the reader's refusal, the tensor itself would not take the raw path either.
    t = H5Tensor(H5File(h5py.File(path, "r")), "x", dtypes.BY_NAME["float32"], data.shape)
    assert t.file_region() is None
    assert_bit_exact(t.numpy(), data)


def test_offsets_count_the_user_block(tmp_path):
    path = str(tmp_path / "ub.h5")
    data = _values(BIG)
    with h5py.File(path, "w", userblock_size=4096) as f:
        f["w"] = data
    t = ckconv.load(path)["w"]
    region = t.file_region()
    assert region is not None and region.offset >= 4096
    assert_bit_exact(t.numpy(), data)
    assert _joined(t, 1 << 20) == data.tobytes()


def _offset_past_end(tmp_path: Path) -> str:
    """A file whose dataset ``a`` says its bytes start past the end of the file."""
    path = tmp_path / "in" / "bad.h5"
    path.parent.mkdir()
    ckconv.save({"a": _values((10, 100)), "b": np.arange(6)}, path)
    with h5py.File(path) as f:
        offset = f["a"].id.get_offset()
    data = bytearray(path.read_bytes())
    layout = struct.pack("<QQ", offset, 4000)  # contiguous layout message: address, size
    assert data.count(layout) == 1
    at = data.index(layout)
    data[at:at + 8] = struct.pack("<Q", len(data) + 4096)
    path.write_bytes(data)
    return str(path)


def test_dataset_offset_past_the_end_is_a_clear_error(tmp_path, capsys):
    src = _offset_past_end(tmp_path)
    with pytest.raises(CorruptCheckpointError, match=r"bad\.h5.*\ba\b"):
        ckconv.load(src)
    out = tmp_path / "out"
    out.mkdir()
    assert main([src, str(out / "x.safetensors")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "bad.h5" in err[0] and "/a " in err[0]
    assert list(out.iterdir()) == []


def test_file_truncated_after_opening_is_a_clear_error(tmp_path):
    path = str(tmp_path / "t.h5")
    ckconv.save({"w": _values(BIG)}, path)
    tmap = ckconv.load(path)
    with h5py.File(path) as f:
        offset = f["w"].id.get_offset()
    os.truncate(path, offset + 100)  # the tensor's bytes now run past the end
    with pytest.raises(CorruptCheckpointError, match=r"t\.h5: dataset w: .*past the end"):
        tmap["w"].numpy()


# --------------------------------------------------------------------------- writing

def _assert_raw_layout(path: str) -> int:
    """Every non-empty fixed-size dataset is contiguous, allocated, never filled.

    Scalars are the exception: h5py ignores creation properties for them.
    """
    count = 0

    def visit(name: str, obj: object) -> None:
        nonlocal count
        if not isinstance(obj, h5py.Dataset) or obj.dtype.kind == "O" or obj.size == 0 \
                or obj.shape == ():
            return
        plist = obj.id.get_create_plist()
        assert plist.get_layout() == h5py.h5d.CONTIGUOUS, name
        assert plist.get_fill_time() == h5py.h5d.FILL_TIME_NEVER, name
        assert obj.id.get_offset() is not None, name
        count += 1

    with h5py.File(path) as f:
        f.visititems(visit)
    return count


def test_written_files_read_bit_exact_in_h5py(tmp_path):
    ref = reference_tensors(("hdf5",))  # every dtype, strings, scalar, empty
    ref["big"] = (dtypes.BY_NAME["float32"], _values(BIG))
    path = str(tmp_path / "w.h5")
    ckconv.save(ckconv_map(ref), path)
    assert _assert_raw_layout(path) > 10
    seen = read_hdf5(path)
    for name, (dt, arr) in ref.items():
        got_dtype, got_shape, got = seen[name]
        assert (got_dtype, tuple(got_shape), got) == (dt.name, arr.shape, raw(arr)), name
    back = ckconv.load(path)
    for name, (dt, arr) in ref.items():  # every fixed-size tensor reads back raw
        raw_expected = not dt.is_variable_length and arr.size > 0
        assert (back[name].file_region() is not None) == raw_expected, name
    for name, (dt, arr) in ref.items():
        assert_bit_exact(back[name].numpy(), arr, name)


def test_hdf5_to_hdf5_is_a_kernel_copy(tmp_path, monkeypatch):
    src = str(tmp_path / "src.h5")
    data = _values(BIG)
    ckconv.save({"a/w": data, "b": np.arange(5)}, src)
    regions = []
    kernel_copy = streaming._kernel_copy

    def spy(region, dst, progress):
        regions.append(region)
        return kernel_copy(region, dst, progress)

    monkeypatch.setattr(streaming, "_kernel_copy", spy)
    done = []
    ckconv.convert(src, tmp_path / "dst.h5", progress=done.append)
    assert [r.size for r in regions] == [data.nbytes]
    assert sum(done) == data.nbytes + 5 * 8
    with h5py.File(tmp_path / "dst.h5") as f:
        assert_bit_exact(f["a/w"][()], data)
        assert f["b"][()].tolist() == list(range(5))


def test_tied_tensors_are_written_once(tmp_path):
    t = ArrayTensor(_values(BIG))
    path = str(tmp_path / "tied.h5")
    ckconv.save(TensorMap({"x": t, "y": t}), path)
    with h5py.File(path) as f:
        assert f["x"].id.get_offset() == f["y"].id.get_offset()
        assert_bit_exact(f["y"][()], t.numpy())


class _WrongSize(Tensor):
    """A tensor whose byte stream does not match its shape."""

    def __init__(self, produce: int):
        super().__init__(dtypes.BY_NAME["float32"], (256,))
        self.produce = produce

    def iter_bytes(self, chunk: int = 1 << 20) -> Iterator[memoryview]:
        yield memoryview(bytes(self.produce))

    def describe(self) -> str:
        return "odd source"


@pytest.mark.parametrize("produce", [1000, 1028])
def test_wrong_byte_count_fails_and_writes_nothing(tmp_path, produce):
    out = tmp_path / "out"
    with pytest.raises(CkconvError, match=r"dataset /w.*produced"):
        ckconv.save(TensorMap({"w": _WrongSize(produce), "z": np.ones(3)}), out / "x.h5")
    assert not out.exists()  # the directory the write created is removed with it


@pytest.mark.live
def test_keras_layout_written_raw_loads_in_tf_keras(tmp_path):
    k = live_module("tf_keras")
    model = k.Sequential([k.layers.Dense(1024, input_shape=(768,), name="dense"),
                          k.layers.Dense(3, name="dense_1")])
    rng = np.random.default_rng(0)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in model.weights])
    want = [w.numpy().tobytes() for w in model.weights]
    model.save_weights(str(tmp_path / "src.h5"))
    ckconv.convert(tmp_path / "src.h5", tmp_path / "copy.h5")  # Keras source: Keras layout
    named = TensorMap({n: np.frombuffer(b, np.float32).reshape(w.shape) for n, b, w in zip(
        ("dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"), want, model.weights)})
    ckconv.save(named, tmp_path / "named.h5", h5_layout="keras")
    for out in ("copy.h5", "named.h5"):
        assert _assert_raw_layout(str(tmp_path / out)) == 4
        fresh = k.Sequential([k.layers.Dense(1024, input_shape=(768,), name="dense"),
                              k.layers.Dense(3, name="dense_1")])
        fresh.load_weights(str(tmp_path / out))
        assert [w.numpy().tobytes() for w in fresh.weights] == want, out


# --------------------------------------------------------------------------- safety scan

def test_heap_signatures_are_found_across_windows_and_outside_raw_data(tmp_path, monkeypatch):
    monkeypatch.setattr(safety, "_SCAN_WINDOW", 8)
    blob = bytearray(b"." * 64)
    for at in (0, 6, 14, 26, 30, 45, 60):  # 26 runs into a skipped range: still a match
        blob[at:at + 4] = b"GCOL"
    path = tmp_path / "blob"
    path.write_bytes(blob)
    fd = os.open(path, os.O_RDONLY)
    try:
        data = safety._FileBytes(fd)
        skip = safety._merged([(28, 40), (44, 46), (29, 31)], data.size)
        assert skip == [(28, 40), (44, 46)]
        assert list(safety._signatures(data, b"GCOL", skip)) == [0, 6, 14, 26, 60]
        assert data.get(62, 10) == b"OL" and data.get(3, 4) == b"L..G"
    finally:
        os.close(fd)


def test_small_scan_windows_still_find_damaged_heaps(monkeypatch):
    monkeypatch.setattr(safety, "_SCAN_WINDOW", 5)
    src = Path(__file__).resolve().parents[1] / "fixtures" / "fuzz" / "any_file-hdf5-global-heap-loop"
    with pytest.raises(CorruptCheckpointError, match="global heap"):
        ckconv.load(src, format="hdf5")
