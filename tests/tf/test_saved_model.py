"""SavedModel directories: inspect, convert, and --preset tf2 names from saved_model.pb."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

import ckconv
from ckconv.cli.main import main
from tests.helpers import assert_bit_exact, expected_array, live_module, live_tf
from tests.tf.legacy_helpers import LEGACY, legacy_manifest

DIRS = {"saved_model_tf": "saved_model", "saved_model_keras3": "exported"}


def _dir(name: str) -> str:
    return str(LEGACY / name / DIRS[name])


@pytest.mark.parametrize("name", sorted(DIRS))
def test_inspect_a_saved_model_directory(name, capsys):
    assert main(["inspect", _dir(name), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {t["name"] for t in doc["tensors"]} == set(legacy_manifest(name)["tensors"])


@pytest.mark.parametrize("name", sorted(DIRS))
def test_preset_tf2_gives_unique_readable_names(name, tmp_path):
    dst = str(tmp_path / "out.safetensors")
    assert main([_dir(name), dst, "--preset", "tf2", "-q"]) == 0
    from safetensors.numpy import load_file

    got = load_file(dst)
    want = legacy_manifest(name)["expected_names"]
    assert sorted(got) == sorted(want)
    # each name holds the value TF read under the key the object graph gives it
    tensors = legacy_manifest(name)["tensors"]
    by_value = {expected_array(e).tobytes(): k for k, e in tensors.items()}
    for n, arr in got.items():
        assert arr.tobytes() in by_value, n


def test_keras3_export_copies_are_dropped_not_renamed():
    tmap = ckconv.load(_dir("saved_model_keras3"))
    assert len(tmap) == 17  # the object graph, and 8 weights saved twice
    mapped = tmap.map(ckconv.rules.load(preset="tf2"))
    assert len(mapped) == 8 and not any(n.startswith(".DUPLICATE") for n in mapped)


def test_shared_variable_is_named_by_its_owner():
    mapped = ckconv.load(_dir("saved_model_tf")).map(ckconv.rules.load(preset="tf2"))
    assert "encoder/kernel" in mapped and "shared" not in mapped


def test_variables_subdirectory_names_the_same(tmp_path):
    a = ckconv.load(_dir("saved_model_tf")).map(ckconv.rules.load(preset="tf2"))
    b = ckconv.load(os.path.join(_dir("saved_model_tf"), "variables")).map(
        ckconv.rules.load(preset="tf2"))
    assert list(a) == list(b)


def test_damaged_saved_model_pb_is_one_line(tmp_path):
    d = tmp_path / "sm"
    shutil.copytree(_dir("saved_model_tf"), d)
    (d / "saved_model.pb").write_bytes(b"\x12\x05\x3a\x03\x0a\x01")
    with pytest.raises(ckconv.CkconvError) as err:
        ckconv.load(str(d)).map(ckconv.rules.load(preset="tf2"))
    assert "saved_model.pb" in str(err.value) and "\n" not in str(err.value)


def test_copies_with_different_values_keep_their_paths(tmp_path):
    """Two variables sharing a name but not their bytes are both kept, named by path."""
    from ckconv.formats.tf.objectgraph import readable_names

    tmap = ckconv.load(_dir("saved_model_keras3"))
    bumped = tmap["_all_variables/3/.ATTRIBUTES/VARIABLE_VALUE"]
    bumped._crc ^= 1  # as if the second copy held other values
    names = readable_names(tmap)
    assert names["_all_variables/3/.ATTRIBUTES/VARIABLE_VALUE"] == "_all_variables/3"
    assert names["variables/0/.ATTRIBUTES/VARIABLE_VALUE"] == "variables/0"


@pytest.mark.live
def test_tf_module_values_match_tf_saved_model_load(tmp_path):
    tf = live_tf()
    loaded = tf.saved_model.load(_dir("saved_model_tf"))
    dst = str(tmp_path / "w.safetensors")
    assert main([_dir("saved_model_tf"), dst, "--preset", "tf2", "-q"]) == 0
    from safetensors.numpy import load_file

    got = load_file(dst)
    for name, var in [("encoder/kernel", loaded.encoder.kernel), ("encoder/bias", loaded.encoder.bias),
                      ("head/kernel", loaded.head.kernel), ("head/bias", loaded.head.bias),
                      ("step", loaded.step)]:
        assert_bit_exact(got[name], var.numpy(), name)
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    h = np.maximum(x @ got["encoder/kernel"] + got["encoder/bias"], 0)
    np.testing.assert_allclose(h @ got["head/kernel"] + got["head/bias"],
                               loaded(tf.constant(x)).numpy(), rtol=1e-6)


@pytest.mark.live
def test_keras3_model_outputs_from_converted_weights(tmp_path):
    live_tf()
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    keras = live_module("keras")
    dst = str(tmp_path / "w.safetensors")
    assert main([_dir("saved_model_keras3"), dst, "--preset", "tf2", "-q"]) == 0
    from safetensors.numpy import load_file

    got = load_file(dst)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="hidden"),
                              keras.layers.BatchNormalization(name="norm"),
                              keras.layers.Dense(2, name="out")], name="tiny")
    for w in model.weights:
        w.assign(got[w.path])
    x = np.load(LEGACY / "saved_model_keras3" / "input.npy")
    want = np.load(LEGACY / "saved_model_keras3" / "output.npy")
    np.testing.assert_array_equal(model.predict(x, verbose=0), want)


@pytest.mark.live
def test_alike_variables_are_never_merged(tmp_path):
    """Zero biases of one shape and name, public or private: all kept, named by path."""
    tf = live_tf()

    class Layer(tf.Module):
        def __init__(self):
            super().__init__()
            self.bias = tf.Variable(tf.zeros([4]), name="bias")

    class Net(tf.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = Layer(), Layer()
            self._spare = tf.Variable(tf.zeros([4]), name="bias")

    prefix = str(tmp_path / "ckpt")
    tf.train.Checkpoint(model=Net()).write(prefix)
    mapped = ckconv.load(prefix).map(ckconv.rules.load(preset="tf2"))
    assert sorted(mapped) == ["model/_spare", "model/a/bias", "model/b/bias"]
