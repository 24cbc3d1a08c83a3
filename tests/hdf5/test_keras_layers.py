"""Which Keras layer a weight belongs to, from names alone (no Keras file, graph or .meta)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import ckconv
from ckconv.formats.hdf5.keras import attr_list
from ckconv.formats.places import layer_of_name


@pytest.mark.parametrize("name,layer", [
    ("dense_1/kernel", "dense_1"),
    ("gru/gru_cell/kernel", "gru"),
    ("lstm/lstm_cell/recurrent_kernel", "lstm"),
    ("simple_rnn/simple_rnn_cell/bias", "simple_rnn"),
    ("bidirectional/forward_lstm/lstm_cell/bias", "bidirectional"),
    ("bidirectional/backward_gru/gru_cell/kernel", "bidirectional"),
    ("multi_head_attention/query/kernel", "multi_head_attention"),
    ("multi_head_attention/attention_output/bias", "multi_head_attention"),
    ("encoder/fc1/kernel", "encoder/fc1"),
    ("w", "w"),
])
def test_layer_of_name(name, layer):
    assert layer_of_name(name) == layer


def test_rnn_names_group_under_their_layer(tmp_path):
    names = ["gru/gru_cell/kernel", "gru/gru_cell/recurrent_kernel", "gru/gru_cell/bias"]
    tmap = ckconv.TensorMap({n: np.zeros((2, 2), "float32") for n in names})
    ckconv.save(tmap, tmp_path / "g.h5", h5_layout="keras")
    with h5py.File(tmp_path / "g.h5", "r") as f:
        assert attr_list(f, "layer_names") == ["gru"]
        assert attr_list(f["gru"], "weight_names") == [n + ":0" for n in names]
        assert "gru/gru/gru_cell/kernel:0" in f


def test_weights_of_a_layer_in_keras_creation_order_when_only_names_are_known(tmp_path):
    """Sorted names (a TF1-style checkpoint): Keras' order is restored inside each layer."""
    names = sorted(
        [f"bidirectional/{d}_lstm/lstm_cell/{w}" for d in ("forward", "backward")
         for w in ("kernel", "recurrent_kernel", "bias")]
        + [f"multi_head_attention/{p}/{w}" for p in ("query", "key", "value", "attention_output")
           for w in ("kernel", "bias")])
    tmap = ckconv.TensorMap({n: np.zeros(2, "float32") for n in names})
    ckconv.save(tmap, tmp_path / "s.h5", h5_layout="keras")
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert attr_list(f["bidirectional"], "weight_names") == [
            f"bidirectional/{d}_lstm/lstm_cell/{w}:0" for d in ("forward", "backward")
            for w in ("kernel", "recurrent_kernel", "bias")]
        assert attr_list(f["multi_head_attention"], "weight_names") == [
            f"multi_head_attention/{p}/{w}:0" for p in ("query", "key", "value", "attention_output")
            for w in ("kernel", "bias")]
