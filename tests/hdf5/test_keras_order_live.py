"""Keras legacy ``.h5`` output loads BY POSITION into the real model (tf_keras and Keras 3).

Keras assigns a legacy file's i-th layer to the model's i-th layer with weights, without
looking at names. These models have twelve or more layers of one shape, so a file in sorted
name order (``dense_10`` before ``dense_2``) loads without any error and gives other
outputs: only the model's order passes. RNN models load by name too (groups ``gru``,
``bidirectional`` as tf_keras writes them).
"""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

import ckconv
from ckconv.formats.hdf5.keras import attr_list
from tests.helpers import live_module, live_tf

pytestmark = [pytest.mark.live,
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning")]

LAYERS = 13
X = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
SEQ = np.random.default_rng(1).normal(size=(2, 5, 3)).astype("float32")


def _tf_keras():
    live_tf()
    return live_module("tf_keras")


def _keras3():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    live_tf()
    return live_module("keras")


def _dense_stack(k, keras3: bool = False):
    """13 Dense layers of one shape named d0 ... d12 (sorted: d0, d1, d10, d11, d12, d2...)."""
    first = [k.Input((3,))] if keras3 else []
    layers = [k.layers.Dense(3, activation="tanh", name=f"d{i}",
                             **({} if keras3 or i else {"input_shape": (3,)}))
              for i in range(LAYERS)]
    return k.Sequential(first + layers)


def _randomize(model) -> None:
    rng = np.random.default_rng(7)
    for w in model.weights:
        value = rng.normal(size=tuple(w.shape)).astype("float32")
        if "variance" in w.name:
            value = np.abs(value) + 0.5  # a negative variance would make every output NaN
        w.assign(value)


def _predict(model, x) -> np.ndarray:
    out = np.asarray(model(x))
    assert np.isfinite(out).all()  # NaN == NaN for assert_allclose: that would prove nothing
    return out


def _layer_names(path) -> list[str]:
    with h5py.File(path, "r") as f:
        return attr_list(f, "layer_names")


def test_sorted_order_would_load_silently_wrong(tmp_path):
    """The hazard itself: a tf_keras file with its layers in sorted order loads without error."""
    k = _tf_keras()
    model = _dense_stack(k)
    _randomize(model)
    model.save_weights(str(tmp_path / "own.h5"))
    src = ckconv.load(tmp_path / "own.h5")
    sorted_map = ckconv.TensorMap({n: src[n] for n in sorted(src)})  # dense_10 before dense_2
    ckconv.save(sorted_map, tmp_path / "sorted.h5", h5_layout="keras")
    fresh = _dense_stack(k)
    fresh.load_weights(str(tmp_path / "sorted.h5"))  # no error...
    assert not np.allclose(_predict(fresh, X), _predict(model, X))  # ...and wrong outputs


def test_tf_keras_checkpoint_to_h5_loads_by_position_in_tf_keras_and_keras3(tmp_path):
    k = _tf_keras()
    model = _dense_stack(k)
    _randomize(model)
    want = _predict(model, X)
    model.save_weights(str(tmp_path / "w.ckpt"))  # TF format: keys sorted, layer_with_weights-N
    out = tmp_path / "w.h5"
    notes = ckconv.convert(tmp_path / "w.ckpt", out, preset="tf2", h5_layout="keras")
    assert any("TF2 object graph" in n for n in notes)
    assert _layer_names(out) == [f"d{i}" for i in range(LAYERS)]
    fresh = _dense_stack(k)
    fresh.load_weights(str(out))  # by position
    np.testing.assert_array_equal(_predict(fresh, X), want)
    keras = _keras3()
    k3 = _dense_stack(keras, keras3=True)
    k3.load_weights(str(out))  # Keras 3: legacy .h5 loads by position
    np.testing.assert_allclose(_predict(k3, X), want, rtol=1e-6, atol=1e-6)


def test_keras3_files_to_h5_load_by_position(tmp_path):
    """Keras 3 sources: .weights.h5 (groups listed alphabetically: d10 before d2) and a tf.train.Checkpoint
    (``model/_operations/10`` sorted before ``_operations/3``)."""
    keras = _keras3()
    tf = live_tf()
    model = _dense_stack(keras, keras3=True)
    _randomize(model)
    want = _predict(model, X)
    model.save_weights(str(tmp_path / "m.weights.h5"))
    prefix = tf.train.Checkpoint(model=model).save(str(tmp_path / "tf" / "ckpt"))
    for src, preset in ((tmp_path / "m.weights.h5", None), (prefix, "tf2")):
        out = tmp_path / f"from_{'ckpt' if preset else 'h5'}.h5"
        ckconv.convert(src, out, preset=preset, h5_layout="keras")
        fresh = _dense_stack(keras, keras3=True)
        fresh.load_weights(str(out))
        np.testing.assert_array_equal(_predict(fresh, X), want, err_msg=str(src))
        k = _tf_keras()
        tk = _dense_stack(k)
        tk.load_weights(str(out))
        np.testing.assert_allclose(_predict(tk, X), want, rtol=1e-6, atol=1e-6)


def _rnn_model(k, keras3: bool = False):
    inp = k.Input((5, 3))
    x = k.layers.GRU(4, return_sequences=True, name="gru")(inp)
    x = k.layers.Bidirectional(k.layers.LSTM(3, return_sequences=True), name="bidirectional")(x)
    x = k.layers.SimpleRNN(2, name="simple_rnn")(x)
    x = k.layers.BatchNormalization(name="batch_normalization")(x)
    x = k.layers.Dense(2, name="dense")(x)
    return k.Model(inp, x)


def test_rnn_bidirectional_checkpoint_to_h5_loads_by_name_and_position(tmp_path):
    k = _tf_keras()
    model = _rnn_model(k)
    _randomize(model)
    want = _predict(model, SEQ)
    model.save_weights(str(tmp_path / "rnn.ckpt"))
    out = tmp_path / "rnn.h5"
    ckconv.convert(tmp_path / "rnn.ckpt", out, preset="tf2", h5_layout="keras")
    own = tmp_path / "own.h5"
    model.save_weights(str(own))
    with h5py.File(out, "r") as f, h5py.File(own, "r") as g:
        for layer in ("gru", "bidirectional", "simple_rnn", "batch_normalization", "dense"):
            assert attr_list(f[layer], "weight_names") == attr_list(g[layer], "weight_names")
    for by_name in (True, False):
        fresh = _rnn_model(k)
        fresh.load_weights(str(out), by_name=by_name)
        np.testing.assert_array_equal(_predict(fresh, SEQ), want, err_msg=f"by_name={by_name}")
    keras = _keras3()
    for by_name in (True, False):
        k3 = _rnn_model(keras, keras3=True)
        k3.load_weights(str(out), **({"by_name": True} if by_name else {}))
        np.testing.assert_allclose(_predict(k3, SEQ), want, rtol=1e-5, atol=1e-5,
                                   err_msg=f"Keras 3, by_name={by_name}")


def test_unknown_order_is_said(tmp_path):
    """A TF checkpoint without object graph or .meta: sorted keys, and a note says so."""
    tmap = ckconv.TensorMap({f"dense_{i}/kernel": np.ones((2, 2), "float32") for i in (0, 1, 10, 2)})
    ckconv.save(tmap, tmp_path / "plain.ckpt")
    notes = ckconv.convert(tmp_path / "plain.ckpt", tmp_path / "plain.h5", h5_layout="keras")
    assert any("not the model's order" in n and "sorted by name" in n for n in notes)


def _attention_model(k):
    """Embedding, MultiHeadAttention and a Sequential nested in a Functional model."""
    ids = k.Input((6,), dtype="int32")
    x = k.layers.Embedding(20, 8, name="embedding")(ids)
    x = k.layers.MultiHeadAttention(2, 4, name="multi_head_attention")(x, x)
    inner = k.Sequential([k.layers.Dense(4, name="inner_dense"),
                          k.layers.BatchNormalization(name="inner_bn")], name="inner")
    x = inner(x)
    return k.Model(ids, k.layers.Dense(2, name="head")(x))


IDS = np.random.default_rng(2).integers(0, 20, size=(3, 6)).astype("int32")


def test_embedding_attention_nested_checkpoint_to_h5_loads_in_tf_keras_and_keras3(tmp_path):
    k = _tf_keras()
    model = _attention_model(k)
    _randomize(model)
    want = _predict(model, IDS)
    model.save_weights(str(tmp_path / "att.ckpt"))
    out = tmp_path / "att.h5"
    notes = ckconv.convert(tmp_path / "att.ckpt", out, preset="tf2", h5_layout="keras")
    assert any("nested models" in n for n in notes)  # tf_keras names inner weights inner_dense/...
    own = tmp_path / "own.h5"
    model.save_weights(str(own))
    with h5py.File(out, "r") as f, h5py.File(own, "r") as g:
        for layer in ("embedding", "multi_head_attention", "head"):
            assert attr_list(f[layer], "weight_names") == attr_list(g[layer], "weight_names")
    fresh = _attention_model(k)
    fresh.load_weights(str(out))
    np.testing.assert_array_equal(_predict(fresh, IDS), want)
    keras = _keras3()
    k3 = _attention_model(keras)
    k3.load_weights(str(out))
    np.testing.assert_allclose(_predict(k3, IDS), want, rtol=1e-5, atol=1e-5)


def test_round_trip_through_torch_keeps_the_order(tmp_path):
    """tf_keras .h5 -> .pt -> .h5: the PyTorch file keeps the model's order."""
    k = _tf_keras()
    model = _dense_stack(k)
    _randomize(model)
    model.save_weights(str(tmp_path / "own.h5"))
    ckconv.convert(tmp_path / "own.h5", tmp_path / "w.pt")
    ckconv.convert(tmp_path / "w.pt", tmp_path / "back.h5", h5_layout="keras")
    assert _layer_names(tmp_path / "back.h5") == [f"d{i}" for i in range(LAYERS)]
    fresh = _dense_stack(k)
    fresh.load_weights(str(tmp_path / "back.h5"))
    np.testing.assert_array_equal(_predict(fresh, X), _predict(model, X))
