"""What ckconv writes as TF, read back and restored by real TensorFlow."""

from __future__ import annotations

import os

import numpy as np
import pytest

import ckconv
from ckconv.cli import main
from tests.helpers import expected_array, fixture_names, fixture_prefix, live_tf, manifest

pytestmark = pytest.mark.live


@pytest.mark.parametrize("name", fixture_names())
def test_every_fixture_rewritten_by_ckconv_reads_bit_exact_in_tf(tmp_path, name):
    tf = live_tf()
    out = str(tmp_path / "out" / "model.ckpt")
    ckconv.convert(fixture_prefix(name), out)
    reader = tf.train.load_checkpoint(out)
    shapes = reader.get_variable_to_shape_map()
    types = reader.get_variable_to_dtype_map()
    man = manifest(name)["tensors"]
    assert sorted(shapes) == sorted(man)
    for key, entry in man.items():
        assert types[key].name == entry["dtype"], key
        assert list(shapes[key]) == entry["shape"], key
        want = expected_array(entry)
        got = reader.get_tensor(key)
        if entry["dtype"] == "string":
            got = np.asarray(got, dtype=object).reshape(want.shape)
            assert got.reshape(-1).tolist() == want.reshape(-1).tolist(), key
        else:
            assert np.ascontiguousarray(got).tobytes() == want.tobytes(), key
    assert tf.train.latest_checkpoint(str(tmp_path / "out")) == out


def _tf_keras_model(tf_keras, seed):
    tf_keras.utils.set_random_seed(seed)
    inputs = tf_keras.Input((3,))
    x = tf_keras.layers.Dense(4, activation="relu")(inputs)
    x = tf_keras.layers.BatchNormalization()(x)
    outputs = tf_keras.layers.Dense(2)(x)
    model = tf_keras.Model(inputs, outputs)
    opt = tf_keras.optimizers.legacy.Adam(0.01)
    model.compile(optimizer=opt, loss="mse")
    return model, opt


def test_tf2_keras_checkpoint_rewritten_restores_object_based(tmp_path):
    tf = live_tf()
    tf_keras = pytest.importorskip("tf_keras")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 3)).astype("f4"), rng.normal(size=(16, 2)).astype("f4")
    model, opt = _tf_keras_model(tf_keras, 1)
    model.fit(x, y, epochs=2, verbose=0)
    saved = tf.train.Checkpoint(model=model, optimizer=opt).save(str(tmp_path / "orig" / "ckpt"))
    want = model.predict(x, verbose=0)

    out = str(tmp_path / "conv" / "ckpt-1")
    assert main([saved, out, "-q", "--to", "tf"]) == 0
    fresh, fresh_opt = _tf_keras_model(tf_keras, 2)
    fresh.fit(x[:2], y[:2], epochs=1, verbose=0)  # build the optimizer slots to restore into
    assert not np.allclose(fresh.predict(x, verbose=0), want)
    status = tf.train.Checkpoint(model=fresh, optimizer=fresh_opt).restore(
        tf.train.latest_checkpoint(str(tmp_path / "conv")))
    status.assert_existing_objects_matched()
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), want)


@pytest.mark.parametrize("dst,extra", [("m.ckpt", []), ("m.index", []), ("weights", ["--to", "tf"]),
                                       ("w.anything", ["--to", "tf"])])
def test_cli_output_names(tmp_path, dst, extra):
    tf = live_tf()
    assert main([fixture_prefix("tf1_saver"), str(tmp_path / dst), "-q", *extra]) == 0
    prefix = str(tmp_path / (dst[: -len(".index")] if dst.endswith(".index") else dst))
    assert os.path.isfile(prefix + ".index")
    assert tf.train.load_checkpoint(prefix).get_tensor("global_step") == 3


def test_cli_max_shard_size(tmp_path):
    tf = live_tf()
    out = str(tmp_path / "m.ckpt")
    assert main([fixture_prefix("dtypes"), out, "--max-shard-size", "200B", "-q"]) == 0
    shards = sorted(f for f in os.listdir(tmp_path) if ".data-" in f)
    assert len(shards) > 3 and all(f.endswith(f"-of-{len(shards):05d}") for f in shards)
    reader = tf.train.load_checkpoint(out)
    man = manifest("dtypes")["tensors"]
    got = reader.get_tensor("float64")
    assert got.tobytes() == expected_array(man["float64"]).tobytes()
