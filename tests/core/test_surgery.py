"""TensorMap surgery: rename, select, drop, assign / assign_add / assign_sub, write-back to TF."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

import ckconv
from ckconv import dtypes
from ckconv.errors import MappingError, UsageError
from ckconv.tensor import Tensor
from ckconv.tensormap import TensorMap
from tests.helpers import SEED, assert_bit_exact, fixture_prefix


class Counting(Tensor):
    """A lazy tensor that counts how often its values are read."""

    def __init__(self, array):
        arr = np.asarray(array)
        super().__init__(dtypes.from_numpy(arr.dtype), arr.shape)
        self._arr = arr
        self.reads = 0

    def _load(self):
        self.reads += 1
        return self._arr


def _map() -> TensorMap:
    return TensorMap({
        "encoder/layer_0/kernel": np.arange(6, dtype=np.float32).reshape(2, 3),
        "encoder/layer_0/bias": np.zeros(3, np.float32),
        "head/kernel": np.ones((3, 2), np.float32),
        "global_step": np.int64(1000),
    }, source="mem")


# ------------------------------------------------------------------------------ names

def test_select_drop_rename_return_new_maps():
    m = _map()
    enc = m.select("encoder/.*")
    assert list(enc) == ["encoder/layer_0/kernel", "encoder/layer_0/bias"]
    assert len(m) == 4  # untouched
    assert enc["encoder/layer_0/bias"] is m["encoder/layer_0/bias"]  # shared, nothing read
    assert list(m.drop("global_step", "head/.*")) == list(enc)
    renamed = enc.rename(r"^encoder/", "student/encoder/")
    assert list(renamed) == ["student/encoder/layer_0/kernel", "student/encoder/layer_0/bias"]
    assert list(enc)[0] == "encoder/layer_0/kernel"


def test_patterns_match_whole_names_and_tf_names():
    m = _map()
    assert list(m.select("head/kernel:0")) == ["head/kernel"]
    assert list(m.select("kernel", strict=False)) == []  # fullmatch, not search
    assert list(m.select(".*kernel")) == ["encoder/layer_0/kernel", "head/kernel"]
    assert list(m.select(re.compile(r".*/bias"))) == ["encoder/layer_0/bias"]
    with pytest.raises(MappingError, match="matches nothing"):
        m.select("encodr/.*")
    with pytest.raises(MappingError, match="did you mean 'global_step'"):
        m.drop("global_stp")
    with pytest.raises(MappingError, match="bad pattern"):
        m.select("(")
    with pytest.raises(UsageError):
        m.select()


def test_rename_dict_groups_and_errors():
    m = _map()
    assert list(m.rename({"global_step:0": "step"}))[-1] == "step"
    swapped = m.rename(r"^(\w+)/layer_(\d+)/(\w+)$", r"\1.\2.\3")
    assert list(swapped)[:2] == ["encoder.0.kernel", "encoder.0.bias"]
    with pytest.raises(MappingError, match="would both be named"):
        m.rename(r"/(kernel|bias)$", "/w")
    with pytest.raises(MappingError, match="matches no tensor"):
        m.rename("^decoder/", "x/")
    assert list(m.rename("^decoder/", "x/", strict=False)) == list(m)
    with pytest.raises(MappingError, match="no tensor named"):
        m.rename({"nope": "x"})
    with pytest.raises(MappingError, match="invalid name"):
        m.rename("^global_step$", "")


def test_select_by_collection_keeps_order_and_extras():
    full = ckconv.load(SEED / "my_second_model")
    trainable = full.select(collection="trainable_variables")
    assert list(trainable) == ["bias"]
    assert list(full.drop(collection="global_step")) == ["bias"]
    assert list(full.select("global_step", collection="trainable_variables")) == [
        "bias", "global_step"]
    assert trainable.collections["trainable_variables"] == ["bias"]
    with pytest.raises(UsageError, match=".meta"):
        _map().select(collection="trainable_variables")


# ------------------------------------------------------------------------- assignment

def test_assign_like_tf():
    m = _map()
    assert m.assign("global_step", 0) is m  # in place, chainable
    assert m["global_step"].numpy() == 0 and m["global_step"].dtype.name == "int64"
    m.assign("head/kernel:0", np.full((3, 2), 7))  # int -> float32: fine
    assert m["head/kernel"].numpy().dtype == np.float32
    with pytest.raises(MappingError, match="shape"):
        m.assign("head/kernel", 0.0)  # TF's validate_shape: no broadcasting
    with pytest.raises(MappingError, match="without losing information"):
        m.assign("global_step", 1.5)
    with pytest.raises(MappingError, match="out of the range"):
        TensorMap({"b": np.uint8(1)}).assign("b", 300)
    with pytest.raises(MappingError, match="no tensor named"):
        m.assign("missing", 1)
    s = TensorMap({"s": np.array([b"a", b"b"], dtype=object)})
    s.assign("s", ["x", "yz"])
    assert s["s"].numpy().tolist() == [b"x", b"yz"]


def test_assign_is_lazy_until_written(tmp_path):
    base = Counting(np.array([1.0, 2.0, 3.0], np.float32))
    step = Counting(np.array(1000, np.int64))
    m = TensorMap({"w": base, "global_step": step})
    m.assign("w", lambda x: x * 0.5).assign_add("w", np.ones(3)).assign_sub("global_step", 999)
    assert base.reads == 0 and step.reads == 0
    ckconv.save(m, tmp_path / "out.safetensors")
    assert base.reads == 1 and step.reads == 1
    back = ckconv.load(tmp_path / "out.safetensors")
    np.testing.assert_array_equal(back["w"].numpy(), np.array([1.5, 2.0, 2.5], np.float32))
    assert back["global_step"].numpy() == 1


def test_assign_from_lazy_tensor_and_dtype_checks():
    src = Counting(np.array([4, 5], np.int32))
    m = TensorMap({"x": np.zeros(2, np.float32)})
    m.assign("x", src)
    assert src.reads == 0 and m["x"].dtype.name == "float32"
    np.testing.assert_array_equal(m["x"].numpy(), [4.0, 5.0])
    m.assign("x", lambda v: v.astype(np.int64))  # shape kept, dtype converted back
    assert m["x"].numpy().dtype == np.float32
    m.assign("x", lambda v: v[:1])
    with pytest.raises(MappingError, match="produced shape"):
        m["x"].numpy()
    with pytest.raises(MappingError, match="shape"):
        TensorMap({"x": np.zeros(3)}).assign("x", src)


def test_assign_add_wraps_like_tf_and_refuses_strings():
    m = TensorMap({"i": np.array([127, -128], np.int8), "b": np.array(True),
                   "h": np.array([1.0], dtypes.by_name("bfloat16").numpy)})
    m.assign_add("i", [1, 0]).assign_sub("i", [0, 1])
    np.testing.assert_array_equal(m["i"].numpy(), np.array([-128, 127], np.int8))
    with pytest.raises(MappingError, match="no arithmetic"):
        m.assign_add("b", True)
    m.assign_add("h", [0.5])
    assert m["h"].dtype.name == "bfloat16" and float(m["h"].numpy()[0]) == 1.5


# -------------------------------------------------------------------- write back to TF

def _data(prefix) -> bytes:
    return Path(f"{prefix}.data-00000-of-00001").read_bytes()


def test_unmodified_write_back_is_byte_identical(tmp_path):
    for src in (SEED / "my_second_model" / "test_save-1000", Path(fixture_prefix("tf1_saver"))):
        out = tmp_path / src.parent.name / "copy.ckpt"
        ckconv.save(ckconv.load(src), out)
        for suffix in (".index", ".data-00000-of-00001", ".meta"):
            assert Path(f"{out}{suffix}").read_bytes() == Path(f"{src}{suffix}").read_bytes()


def test_modified_write_back_keeps_everything_else(tmp_path):
    src = SEED / "my_model" / "test_save-1000"
    original = ckconv.load(src)
    m = ckconv.load(src)
    m.assign("w1", lambda v: v * 2)
    out = tmp_path / "test_save-0"
    notes = ckconv.save(m, out, format="tf")
    back = ckconv.load(out)
    assert_bit_exact(back["w2"].numpy(), original["w2"].numpy())
    np.testing.assert_array_equal(back["w1"].numpy(), original["w1"].numpy() * 2)
    # w2's bytes sit at the same offset in both data files; only w1's 8 bytes changed.
    old, new = _data(src), _data(out)
    assert len(old) == len(new) == 28 and old[8:] == new[8:] and old[:8] != new[:8]
    assert Path(f"{out}.meta").read_bytes() == Path(f"{src}.meta").read_bytes()
    assert any("copied the graph" in n for n in notes)


def test_meta_not_copied_when_tensors_change(tmp_path):
    m = ckconv.load(SEED / "my_second_model").rename("^bias$", "b")
    notes = ckconv.save(m, tmp_path / "x.ckpt")
    assert not (tmp_path / "x.ckpt.meta").exists()
    assert any("did not copy" in n and "b, bias" in n for n in notes)
    m = ckconv.load(SEED / "my_second_model", collections="trainable_variables")
    notes = ckconv.save(m, tmp_path / "y.ckpt")
    assert not (tmp_path / "y.ckpt.meta").exists() and any("global_step" in n for n in notes)
    ckconv.save(ckconv.load(SEED / "my_second_model"), tmp_path / "z.safetensors")
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["checkpoint", "x.ckpt.index", "x.ckpt.data-00000-of-00001", "y.ckpt.index",
         "y.ckpt.data-00000-of-00001", "z.safetensors"])
