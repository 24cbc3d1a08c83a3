"""Keras weight files: tf_keras / Keras 3 legacy ``.h5``, Keras 3 ``.weights.h5``."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

import ckconv
from ckconv.errors import UnsupportedError
from ckconv.formats.hdf5.keras import attr_list, save_attr_list
from ckconv.tensormap import TensorMap
from tests.helpers import expected_entries, live_module, other, other_manifest, seen_by_ckconv


@pytest.mark.parametrize("name", ["keras2_weights.h5", "keras2_full.h5", "keras3_full.h5"])
def test_legacy_file_reads_in_keras_order_with_keras_names(name):
    want = expected_entries(other_manifest(name)["tensors"])
    got = seen_by_ckconv(other(name))
    assert list(got) == list(want)  # Keras' own weight order, names without ":0"
    for k in want:
        assert got[k] == want[k], k


def test_full_model_file_notes_optimizer_and_architecture():
    tmap = ckconv.load(other("keras2_full.h5"))
    count = other_manifest("keras2_full.h5")["optimizer_weights"]
    assert any(f"left out {count} optimizer weight(s)" in n and "model_config" in n
               for n in tmap.notes)
    assert tmap.metadata == {"keras_version": "2.21.0", "backend": "tensorflow"}


def test_keras3_weights_file_names_are_its_paths():
    variables = other_manifest("keras3.weights.h5")["variables"]
    tmap = ckconv.load(other("keras3.weights.h5"))
    assert len(tmap) == len(variables)
    layer_dirs = {}
    for name, t in tmap.items():
        prefix, _, index = name.rpartition("/vars/")
        assert prefix.startswith("layers/") and index.isdigit(), name
        data = t.numpy().tobytes().hex()
        match = [v for v in variables if v["data"] == data and v["shape"] == list(t.shape)]
        assert len(match) == 1, name  # every value is distinct in the fixture
        assert match[0]["index"] == int(index)
        layer_dirs.setdefault(prefix, set()).add(match[0]["layer"])
    assert all(len(layers) == 1 for layers in layer_dirs.values())
    assert any("Keras 3 weights file" in n for n in tmap.notes)


def test_split_attributes_are_joined(tmp_path):
    path = tmp_path / "split.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names0"] = np.array([b"l1"])
        f.attrs["layer_names1"] = np.array([b"l2"])
        f.attrs["keras_version"] = b"2.3.0"
        for layer in ("l1", "l2"):
            g = f.create_group(layer)
            g.attrs["weight_names0"] = np.array([f"{layer}/b:0".encode()])
            g.attrs["weight_names1"] = np.array([f"{layer}/a:0".encode()])
            g[f"{layer}/b:0"] = np.ones(2, np.float32)
            g[f"{layer}/a:0"] = np.zeros(3, np.float32)
    assert list(ckconv.load(path)) == ["l1/b", "l1/a", "l2/b", "l2/a"]


def test_long_attribute_lists_are_split_like_keras(tmp_path):
    names = [f"layer_with_a_long_name_{i:05d}" for i in range(3000)]
    with h5py.File(tmp_path / "a.h5", "w") as f:
        save_attr_list(f, "layer_names", names)
        assert "layer_names" not in f.attrs and "layer_names1" in f.attrs
        assert attr_list(f, "layer_names") == names


# --------------------------------------------------------------------------- writing

def _tf_keras_model(k):
    return k.Sequential([k.layers.Dense(4, input_shape=(3,), name="dense"),
                         k.layers.BatchNormalization(name="batch_normalization"),
                         k.layers.Dense(2, name="dense_1")])


def _assert_weights(model, want: dict):
    for w in model.weights:
        key = w.name.rsplit(":", 1)[0]
        assert w.numpy().tobytes().hex() == want[key]["data"], key


@pytest.mark.live
def test_keras_file_written_back_loads_in_tf_keras(tmp_path):
    k = live_module("tf_keras")
    out = tmp_path / "back.h5"
    notes = ckconv.convert(other("keras2_full.h5"), out)  # Keras source: Keras layout kept
    assert any("Keras legacy" in n for n in notes)
    model = _tf_keras_model(k)
    model.load_weights(str(out))
    _assert_weights(model, other_manifest("keras2_full.h5")["tensors"])


@pytest.mark.live
def test_tf1_style_names_in_any_order_load_by_name_in_tf_keras(tmp_path):
    """Names say the layer; weights are put in Keras' creation order (gamma before beta)."""
    k = live_module("tf_keras")
    want = other_manifest("keras2_weights.h5")["tensors"]
    src = ckconv.load(other("keras2_weights.h5"))
    shuffled = TensorMap({n: src[n] for n in sorted(src)})  # alphabetical, like a TF checkpoint
    out = tmp_path / "tf1.h5"
    ckconv.save(shuffled, out, h5_layout="keras")
    model = _tf_keras_model(k)
    model.load_weights(str(out), by_name=True)
    _assert_weights(model, want)


@pytest.mark.live
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras' own np.array(dataset) call
def test_keras3_weights_round_trip_through_torch_loads_in_keras3(tmp_path):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    keras = live_module("keras")
    live_module("torch")
    ckconv.convert(other("keras3.weights.h5"), tmp_path / "k.pt")
    ckconv.convert(tmp_path / "k.pt", tmp_path / "back.weights.h5")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="d1"),
                              keras.layers.BatchNormalization(name="bn"),
                              keras.layers.Dense(2, name="d2")], name="seq")
    model.load_weights(str(tmp_path / "back.weights.h5"))
    by_layer = {(v["layer"], v["index"]): v["data"]
                for v in other_manifest("keras3.weights.h5")["variables"]}
    for layer in model.layers:
        for i, v in enumerate(layer.weights):
            got = keras.ops.convert_to_numpy(v).tobytes().hex()
            assert got == by_layer[(layer.name, i)], (layer.name, i)


def test_layout_choice(tmp_path):
    ckconv.convert(other("keras2_weights.h5"), tmp_path / "k.h5")
    with h5py.File(tmp_path / "k.h5") as f:
        assert attr_list(f, "layer_names") == ["dense", "batch_normalization", "dense_1"]
        assert f["dense"].attrs["weight_names"].tolist() == [b"dense/kernel:0", b"dense/bias:0"]
    ckconv.convert(other("keras2_weights.h5"), tmp_path / "g.h5", h5_layout="generic")
    with h5py.File(tmp_path / "g.h5") as f:
        assert f.attrs["ckconv_layout"] == "generic" and "dense/kernel" in f
    assert list(ckconv.load(tmp_path / "k.h5")) == list(ckconv.load(tmp_path / "g.h5"))


def test_keras_layout_refuses_types_keras_cannot_load(tmp_path):
    from ckconv import dtypes
    from ckconv.tensor import ArrayTensor

    bf16 = ArrayTensor(np.zeros(2, np.uint16).view(dtypes.BY_NAME["bfloat16"].numpy))
    tmap = TensorMap({"dense/kernel": np.ones((2, 2), np.float32), "dense/bias": bf16})
    with pytest.raises(UnsupportedError, match="bfloat16"):
        ckconv.save(tmap, tmp_path / "k.h5", h5_layout="keras")
    notes = ckconv.save(tmap, tmp_path / "k.h5", h5_layout="keras", skip_unsupported=True)
    assert any("left out 1" in n for n in notes)
    with pytest.raises(UnsupportedError, match="generic"):
        ckconv.save({"/odd": np.ones(1, np.float32)}, tmp_path / "o.h5", h5_layout="keras")


def test_cli_h5_layout_option(tmp_path):
    from ckconv.cli import main

    assert main([other("keras2_weights.h5"), str(tmp_path / "g.h5"), "--h5-layout", "generic",
                 "-q"]) == 0
    with h5py.File(tmp_path / "g.h5") as f:
        assert f.attrs["ckconv_layout"] == "generic"
