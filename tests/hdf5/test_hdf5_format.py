"""HDF5, generic layout: storage of every dtype, the escape rule, foreign files, streaming."""

from __future__ import annotations

import itertools
import os

import h5py
import numpy as np
import pytest

import ckconv
from ckconv.errors import UnsupportedError
from ckconv.formats.hdf5 import names as h5names
from ckconv.formats.hdf5 import storage
from ckconv.tensor import ArrayTensor
from ckconv.tensormap import TensorMap
from tests.helpers import assert_bit_exact
from tests.helpers import ckconv_map, raw, reference_tensors


def test_dtypes_without_hdf5_type_keep_their_bits_with_an_attribute(tmp_path):
    ref = reference_tensors(("hdf5",))
    path = str(tmp_path / "x.h5")
    ckconv.save(ckconv_map(ref), path)
    with h5py.File(path) as f:
        bf = f["dtype/bfloat16"]
        assert bf.dtype == np.uint16 and bf.attrs["ckconv_dtype"] == "bfloat16"
        assert bf[()].tobytes() == raw(ref["dtype/bfloat16"][1])
        assert f["dtype/qint8"].dtype == np.int8 and f["dtype/qint8"].attrs["ckconv_dtype"] == "qint8"
        assert "ckconv_dtype" not in f["dtype/float32"].attrs
        assert f["dtype/bool"].dtype == np.bool_
        strings = f["dtype/string"]  # has NUL bytes: stored as uint8 sequences
        assert strings.attrs["ckconv_dtype"] == "string"
        assert h5py.check_vlen_dtype(strings.dtype) == np.uint8
    tmap = ckconv.load(path)
    assert list(tmap) == list(ref)  # creation order kept
    for name, (dt, arr) in ref.items():
        assert tmap[name].dtype == dt and raw(tmap[name].numpy()) == raw(arr), name


def test_strings_without_nul_are_plain_hdf5_strings(tmp_path):
    arr = np.array([["ü日本".encode(), b""], [b"abc", b"\xff\xfe"]], dtype=object)
    ckconv.save({"utf8": arr[0], "raw": arr[1], "scalar": np.array(b"x", dtype=object)},
                tmp_path / "s.h5")
    with h5py.File(tmp_path / "s.h5") as f:
        assert f["utf8"].asstr()[()].tolist() == ["ü日本", ""]
        assert h5py.check_string_dtype(f["raw"].dtype).encoding == "ascii"
        assert f["scalar"][()] == b"x"
    tmap = ckconv.load(tmp_path / "s.h5")
    assert tmap["raw"].numpy().tolist() == [b"abc", b"\xff\xfe"]
    assert tmap["scalar"].shape == () and tmap["scalar"].numpy()[()] == b"x"


# --------------------------------------------------------------------------- escape rule

ESCAPED = {
    "dense/kernel": "dense/kernel/%self",
    "dense/kernel/Adam": "dense/kernel/Adam",
    "/lead": "%2Flead",
    "trail/": "trail%2F",
    "a//b": "a%2F%2Fb",
    "x/./y": "x/%2E/y",
    "..": "%2E%2E",
    "50%/w": "50%25/w",
    "": "%self",
    "%self": "%25self",
    "ü/名前": "ü/名前",
}


def test_escape_rule_paths_as_documented(tmp_path):
    assert h5names.plan_paths(ESCAPED) == ESCAPED
    path = tmp_path / "e.h5"
    arrays = {n: np.array([i], np.int32) for i, n in enumerate(ESCAPED)}
    notes = ckconv.save(arrays, path)
    assert any("escape rule" in n for n in notes)
    with h5py.File(path) as f:
        for name, h5path in ESCAPED.items():
            assert f[h5path][()].tolist() == arrays[name].tolist(), h5path
    back = ckconv.load(path)
    assert list(back) == list(arrays)
    for name, arr in arrays.items():
        assert_bit_exact(back[name].numpy(), arr, name)


def test_escape_rule_is_reversible_for_awkward_names():
    alphabet = ["a", "/", ".", "%", "\x00", "%2F"]
    names = {"".join(p) for n in range(1, 5) for p in itertools.product(alphabet, repeat=n)}
    paths = h5names.plan_paths(names)
    assert len(set(paths.values())) == len(names)
    for name, path in paths.items():
        assert h5names.decode_path(path) == name
        parts = path.split("/")
        assert all(p and p not in (".", "..") and "\x00" not in p for p in parts), path


def test_foreign_files_are_named_verbatim(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f["grp/50%25"] = np.arange(3, dtype=">f4")  # big-endian, and a %25 that is literal
        f.create_dataset("gz", data=np.arange(100, dtype=np.int16).reshape(10, 10),
                         chunks=(5, 5), compression="gzip")
        f["fixed"] = np.array([b"ab", b"c"], dtype="S2")
        f["pair"] = np.zeros(2, dtype=[("x", "i4"), ("y", "f4")])
        f.attrs["author"] = "someone"
        f.attrs["count"] = 3
    tmap = ckconv.load(path)
    assert sorted(tmap) == ["fixed", "grp/50%25", "gz"]
    assert tmap["grp/50%25"].numpy().dtype == np.dtype("<f4")
    assert tmap["grp/50%25"].numpy().tolist() == [0, 1, 2]
    assert tmap["gz"].numpy().tolist() == np.arange(100).reshape(10, 10).tolist()
    assert tmap["fixed"].numpy().tolist() == [b"ab", b"c"]
    assert tmap.metadata == {"author": "someone"}
    text = " ".join(tmap.notes)
    assert "pair" in text  # (an external link is an error: tests/test_damaged.py)


def test_metadata_round_trips_as_root_attributes(tmp_path):
    tmap = TensorMap({"w": np.ones(2, np.float32)}, metadata={"step": "10", "license": "mit"})
    ckconv.save(tmap, tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5") as f:
        assert f.attrs["license"] == "mit" and f.attrs["ckconv_layout"] == "generic"
    assert ckconv.load(tmp_path / "m.h5").metadata == {"step": "10", "license": "mit"}


def test_same_tensor_under_two_names_is_one_dataset(tmp_path):
    t = ArrayTensor(np.arange(4, dtype=np.float32))
    tmap = TensorMap()
    tmap["embed"] = t
    tmap["head/w"] = t
    ckconv.save(tmap, tmp_path / "t.h5")
    with h5py.File(tmp_path / "t.h5") as f:
        assert f["embed"].id == f["head/w"].id
    back = ckconv.load(tmp_path / "t.h5")
    assert back["embed"] is back["head/w"]


def test_variant_is_unsupported(tmp_path):
    from ckconv import dtypes

    tmap = TensorMap({"v": ArrayTensor(np.array([b"x"], dtype=object), dtypes.BY_NAME["variant"])})
    with pytest.raises(UnsupportedError, match="variant"):
        ckconv.save(tmap, tmp_path / "v.h5")
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- streaming

@pytest.mark.parametrize("shape", [(3, 5, 7), (1, 1000), (1000,), (2, 1, 3, 1, 5), ()])
def test_slabs_cover_c_order_exactly(shape):
    for chunk in (8, 40, 64, 10_000):
        seen = np.zeros(shape, dtype=np.int64)
        order = []
        idx = np.arange(int(np.prod(shape))).reshape(shape)
        for sel in storage.slabs(shape, 8, chunk):
            seen[sel] += 1
            order.extend(np.asarray(idx[sel]).reshape(-1).tolist())
        assert (seen == 1).all() and order == list(range(idx.size))


def test_large_tensors_stream_by_slab_both_ways(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "CHUNK", 96)
    arrays = {"a": np.arange(3 * 5 * 7, dtype=np.float64).reshape(3, 5, 7),
              "b": np.arange(1000, dtype=np.int16).reshape(1, 1000),
              "bf": np.arange(300, dtype=np.uint16).view(
                  ckconv.dtypes.BY_NAME["bfloat16"].numpy).reshape(10, 30)}
    ckconv.save(arrays, tmp_path / "s.h5")
    tmap = ckconv.load(tmp_path / "s.h5")
    for k, v in arrays.items():
        chunks = [bytes(c) for c in tmap[k].iter_bytes(chunk=96)]
        assert max(map(len, chunks)) <= 96 and b"".join(chunks) == v.tobytes(), k
        assert_bit_exact(tmap[k].numpy(), v, k)


def test_user_block_files_are_sniffed(tmp_path):
    path = tmp_path / "ub.bin"  # an extension that says torch: content wins
    with h5py.File(path, "w", userblock_size=512) as f:
        f["w"] = np.ones(2, np.float32)
    tmap = ckconv.load(path)
    assert tmap.format == "hdf5" and list(tmap) == ["w"]


def test_variable_length_claims_are_refused_without_touching_process_limits(tmp_path: Path) -> None:
    """A fuzzed file whose string claims 1.8 GB: refused as damaged, the reading process stays
    small, and its own address-space limit is never changed (the probe runs in a child)."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    code = ("import resource, sys, ckconv\n"
            "before = resource.getrlimit(resource.RLIMIT_AS)\n"
            "try:\n"
            "    m = ckconv.load(sys.argv[1]); [t.numpy() for t in m.values()]\n"
            "    print('read')\n"
            "except ckconv.CorruptCheckpointError as exc:\n"
            "    print('refused', exc)\n"
            "assert resource.getrlimit(resource.RLIMIT_AS) == before\n"
            # VmHWM, not ru_maxrss: the latter carries the forking pytest's peak across exec
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
            "print('rss', int(hwm.split()[1]) // 1024)\n")
    src = ROOT / "tests" / "fixtures" / "fuzz" / "hdf5-vlen-length-claims-1.8GB"
    res = subprocess.run([sys.executable, "-c", code, str(src)], capture_output=True, text=True,
                         cwd=ROOT)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("refused") and "damaged HDF5 file" in lines[0], lines
    assert int(lines[1].split()[1]) < 300, lines  # MiB: the 1.8 GB claim was never allocated


def test_variable_length_strings_and_metadata_still_read(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f.attrs["note"] = "variable-length attribute"
        f.create_dataset("s", data=np.array([b"abc", b"", b"x" * 5000], dtype=object),
                         dtype=h5py.string_dtype("ascii"))
    tmap = ckconv.load(path)
    assert tmap.metadata["note"] == "variable-length attribute"
    assert tmap["s"].numpy().tolist() == [b"abc", b"", b"x" * 5000]
