"""keras-to-torch / torch-to-keras, layer by layer, proven by outputs of the real frameworks.

For each layer type: a small Keras 3 model (and a tf_keras one, for Keras 2 names) with
random weights is saved by Keras itself (Keras 3 also as a TF checkpoint, read through the
tf2 preset), converted by ckconv with presets only, loaded
into the equivalent torch.nn module with ``load_state_dict(strict=True)``, and both
frameworks run the same random input. The other way, a torch module with random weights
(non-zero ``bias_hh`` included) is converted to Keras names and loaded into the Keras
model, both with ``set_weights`` and as a Keras 3 ``.weights.h5`` ckconv writes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

from ckconv.cli import main
from tests.helpers import live_module, live_tf

pytestmark = pytest.mark.live

RTOL, ATOL = 1e-4, 1e-5


def frameworks(kind: str) -> tuple[Any, Any]:
    """(keras module, torch); kind "keras3" or "tf_keras"."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    live_tf()
    torch = live_module("torch")
    return live_module("keras" if kind == "keras3" else "tf_keras"), torch


@dataclass(frozen=True)
class Case:
    """One layer: the Keras layers (named as Keras names them), the torch modules under
    the same names, a Keras-layout input and how torch runs it."""

    keras_layers: Callable[[Any], list]
    torch_modules: Callable[[Any], dict]
    input_shape: tuple[int, ...]
    run_torch: Callable[[Any, Any, Any], Any]  # (torch, modules, x numpy) -> numpy
    int_input: int = 0  # > 0: integer ids below this
    params: tuple[str, ...] = ()  # --param for the reverse


def _seq(torch: Any, module: Any, x: Any) -> Any:
    """An RNN module's full output sequence (batch_first)."""
    return module(torch.from_numpy(x))[0]


def _channels_first(torch: Any, conv: Any, x: Any) -> Any:
    rank = x.ndim
    to_cf = (0, rank - 1) + tuple(range(1, rank - 1))
    to_cl = (0,) + tuple(range(2, rank)) + (1,)
    return conv(torch.from_numpy(x).permute(*to_cf)).permute(*to_cl)


def _mha(torch: Any, m: Any, x: Any) -> Any:
    t = torch.from_numpy(x)
    return m["multi_head_attention"](t, t, t, need_weights=False)[0]


CASES: dict[str, Case] = {
    "Dense": Case(
        lambda L: [L.Dense(3, name="dense")],
        lambda nn: {"dense": nn.Linear(4, 3)}, (2, 4),
        lambda torch, m, x: m["dense"](torch.from_numpy(x))),
    "Conv1D": Case(
        lambda L: [L.Conv1D(3, 2, name="conv1d")],
        lambda nn: {"conv1d": nn.Conv1d(4, 3, 2)}, (2, 6, 4),
        lambda torch, m, x: _channels_first(torch, m["conv1d"], x)),
    "Conv2D": Case(
        lambda L: [L.Conv2D(3, (2, 3), name="conv2d")],
        lambda nn: {"conv2d": nn.Conv2d(4, 3, (2, 3))}, (2, 5, 6, 4),
        lambda torch, m, x: _channels_first(torch, m["conv2d"], x)),
    "Conv3D": Case(
        lambda L: [L.Conv3D(2, 2, name="conv3d")],
        lambda nn: {"conv3d": nn.Conv3d(3, 2, 2)}, (2, 4, 4, 4, 3),
        lambda torch, m, x: _channels_first(torch, m["conv3d"], x)),
    "Conv2DTranspose": Case(
        lambda L: [L.Conv2DTranspose(3, 2, strides=2, name="conv2d_transpose")],
        lambda nn: {"conv2d_transpose": nn.ConvTranspose2d(4, 3, 2, stride=2)}, (2, 3, 3, 4),
        lambda torch, m, x: _channels_first(torch, m["conv2d_transpose"], x)),
    "Conv1DTranspose": Case(
        lambda L: [L.Conv1DTranspose(3, 3, strides=2, name="conv1d_transpose")],
        lambda nn: {"conv1d_transpose": nn.ConvTranspose1d(4, 3, 3, stride=2)}, (2, 5, 4),
        lambda torch, m, x: _channels_first(torch, m["conv1d_transpose"], x)),
    "DepthwiseConv1D": Case(
        lambda L: [L.DepthwiseConv1D(3, name="depthwise_conv1d")],
        lambda nn: {"depthwise_conv1d": nn.Conv1d(4, 4, 3, groups=4)}, (2, 6, 4),
        lambda torch, m, x: _channels_first(torch, m["depthwise_conv1d"], x)),
    "SeparableConv1D": Case(
        lambda L: [L.SeparableConv1D(5, 2, depth_multiplier=2, name="separable_conv1d")],
        lambda nn: {"separable_conv1d": nn.ModuleDict({
            "depthwise": nn.Conv1d(3, 6, 2, groups=3, bias=False),
            "pointwise": nn.Conv1d(6, 5, 1)})}, (2, 6, 3),
        lambda torch, m, x: _channels_first(torch, torch.nn.Sequential(
            m["separable_conv1d"]["depthwise"], m["separable_conv1d"]["pointwise"]), x),
        params=("depth_multiplier=2",)),
    "DepthwiseConv2D": Case(
        lambda L: [L.DepthwiseConv2D(2, depth_multiplier=2, name="depthwise_conv2d")],
        lambda nn: {"depthwise_conv2d": nn.Conv2d(3, 6, 2, groups=3)}, (2, 5, 5, 3),
        lambda torch, m, x: _channels_first(torch, m["depthwise_conv2d"], x),
        params=("depth_multiplier=2",)),
    "SeparableConv2D": Case(
        lambda L: [L.SeparableConv2D(4, 2, name="separable_conv2d")],
        lambda nn: {"separable_conv2d": nn.ModuleDict({
            "depthwise": nn.Conv2d(3, 3, 2, groups=3, bias=False),
            "pointwise": nn.Conv2d(3, 4, 1)})}, (2, 5, 5, 3),
        lambda torch, m, x: _channels_first(torch, torch.nn.Sequential(
            m["separable_conv2d"]["depthwise"], m["separable_conv2d"]["pointwise"]), x)),
    "BatchNormalization": Case(
        lambda L: [L.BatchNormalization(epsilon=1e-3, name="batch_normalization")],
        lambda nn: {"batch_normalization": nn.BatchNorm1d(4, eps=1e-3)}, (3, 4),
        lambda torch, m, x: m["batch_normalization"](torch.from_numpy(x))),
    "LayerNormalization": Case(
        lambda L: [L.LayerNormalization(epsilon=1e-3, name="layer_normalization")],
        lambda nn: {"layer_normalization": nn.LayerNorm(4, eps=1e-3)}, (2, 3, 4),
        lambda torch, m, x: m["layer_normalization"](torch.from_numpy(x))),
    "Embedding": Case(
        lambda L: [L.Embedding(10, 4, name="embedding")],
        lambda nn: {"embedding": nn.Embedding(10, 4)}, (2, 5),
        lambda torch, m, x: m["embedding"](torch.from_numpy(x).long()), int_input=10),
    "SimpleRNN": Case(
        lambda L: [L.SimpleRNN(3, return_sequences=True, name="simple_rnn")],
        lambda nn: {"simple_rnn": nn.RNN(4, 3, batch_first=True)}, (2, 5, 4),
        lambda torch, m, x: _seq(torch, m["simple_rnn"], x)),
    "LSTM": Case(
        lambda L: [L.LSTM(3, return_sequences=True, name="lstm")],
        lambda nn: {"lstm": nn.LSTM(4, 3, batch_first=True)}, (2, 5, 4),
        lambda torch, m, x: _seq(torch, m["lstm"], x)),
    "GRU": Case(
        lambda L: [L.GRU(3, return_sequences=True, reset_after=True, name="gru")],
        lambda nn: {"gru": nn.GRU(4, 3, batch_first=True)}, (2, 5, 4),
        lambda torch, m, x: _seq(torch, m["gru"], x)),
    "Bidirectional": Case(
        lambda L: [L.Bidirectional(L.GRU(3, return_sequences=True, name="gru"),
                                   name="bidirectional")],
        lambda nn: {"bidirectional": nn.GRU(4, 3, batch_first=True, bidirectional=True)},
        (2, 5, 4), lambda torch, m, x: _seq(torch, m["bidirectional"], x)),
    "MultiHeadAttention": Case(
        None,  # type: ignore[arg-type]  (functional: self-attention needs two inputs)
        lambda nn: {"multi_head_attention": nn.MultiheadAttention(8, 2, batch_first=True)},
        (2, 5, 8), _mha, params=("num_heads=2",)),
}


def keras_model(keras: Any, case: Case) -> Any:
    L = keras.layers
    shape = case.input_shape[1:]
    inputs = keras.Input(shape=shape, dtype="int32" if case.int_input else "float32")
    if case.keras_layers is None:
        out = L.MultiHeadAttention(num_heads=2, key_dim=4, name="multi_head_attention")(
            inputs, inputs)
    else:
        out = inputs
        for layer in case.keras_layers(L):
            out = layer(out)
    return keras.Model(inputs, out)


def random_input(case: Case, rng: np.random.Generator) -> np.ndarray:
    if case.int_input:
        return rng.integers(0, case.int_input, size=case.input_shape).astype(np.int32)
    return rng.normal(size=case.input_shape).astype(np.float32)


def randomize_keras(model: Any, rng: np.random.Generator) -> None:
    for w in model.weights:  # every value tells; variances stay positive
        value = rng.normal(size=tuple(w.shape)).astype(np.float32)
        w.assign(np.abs(value) + 0.5 if "variance" in _weight_path(w) else value)


def _weight_path(w: Any) -> str:
    """The name Keras reports, without the model's own name: dense/kernel."""
    path = getattr(w, "path", None) or w.name.removesuffix(":0")
    return path


def keras_names(model: Any) -> list[str]:
    """Weight names as ckconv's Keras side spells them, in model.weights order."""
    if hasattr(model.weights[0], "path"):  # Keras 3: "dense/kernel" (maybe "functional/...")
        # The presets' Keras side spells weights as Keras 2 does; Keras 3 alone calls a
        # DepthwiseConv's kernel "kernel" (its paths are read either way).
        return [re.sub(r"^(.*depthwise_conv\dd(?:_\d+)?)/kernel$", r"\1/depthwise_kernel",
                       w.path.removeprefix(model.name + "/")) for w in model.weights]
    return [w.name.removesuffix(":0") for w in model.weights]  # tf_keras: "dense/kernel:0"


def torch_module(torch: Any, case: Case, rng: np.random.Generator | None = None) -> Any:
    modules = torch.nn.ModuleDict(case.torch_modules(torch.nn)).eval()
    if rng is not None:
        with torch.no_grad():
            for name, p in modules.named_parameters():
                p.copy_(torch.from_numpy(rng.normal(size=tuple(p.shape)).astype(np.float32)))
            for name, b in modules.named_buffers():
                if name.endswith("running_var"):
                    b.copy_(torch.from_numpy(np.abs(rng.normal(size=tuple(b.shape))).astype(np.float32) + 0.5))
                elif name.endswith("running_mean"):
                    b.copy_(torch.from_numpy(rng.normal(size=tuple(b.shape)).astype(np.float32)))
    return modules


def run_torch(torch: Any, case: Case, modules: Any, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return case.run_torch(torch, modules, x).numpy()


def save_keras_weights(model: Any, kind: str, tmp_path: Any) -> str:
    """Keras 3 .weights.h5, tf_keras .h5 or (keras3_tf) a TF checkpoint of the model."""
    if kind == "keras3_tf":
        import tensorflow as tf

        return tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    path = str(tmp_path / ("model.weights.h5" if kind == "keras3" else "model.h5"))
    model.save_weights(path)
    return path


# ---------------------------------------------------------------------------------------
# Keras -> torch


@pytest.mark.parametrize("kind", ["keras3", "tf_keras", "keras3_tf"])
@pytest.mark.parametrize("layer", list(CASES))
def test_keras_to_torch_outputs_match(layer: str, kind: str, tmp_path):
    keras, torch = frameworks("tf_keras" if kind == "tf_keras" else "keras3")
    from safetensors.torch import load_file

    case = CASES[layer]
    rng = np.random.default_rng(sorted(CASES).index(layer))
    model = keras_model(keras, case)
    randomize_keras(model, rng)
    x = random_input(case, rng)
    expected = np.asarray(model(x, training=False))
    src = save_keras_weights(model, kind, tmp_path)
    dst = tmp_path / "torch.safetensors"
    tf2 = ["--preset", "tf2"] if kind == "keras3_tf" else []  # object graph -> Keras names
    assert main([src, str(dst), *tf2, "--preset", "keras-to-torch", "-q"]) == 0
    # ckconv diff maps A with the same presets: nothing differs
    assert main(["diff", src, str(dst), *tf2, "--preset", "keras-to-torch", "--summary",
                 "-q"]) == 0
    modules = torch_module(torch, case)
    modules.load_state_dict(load_file(str(dst)), strict=True)
    np.testing.assert_allclose(run_torch(torch, case, modules, x), expected, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------------------------
# torch -> Keras


def torch_checkpoint(torch: Any, case: Case, rng: np.random.Generator, path: Any) -> Any:
    from safetensors.torch import save_file

    modules = torch_module(torch, case, rng)
    save_file({k: v.contiguous() for k, v in modules.state_dict().items()}, str(path))
    return modules


@pytest.mark.parametrize("kind", ["keras3", "tf_keras"])
@pytest.mark.parametrize("layer", list(CASES))
def test_torch_to_keras_outputs_match(layer: str, kind: str, tmp_path):
    keras, torch = frameworks(kind)
    import ckconv

    case = CASES[layer]
    rng = np.random.default_rng(100 + sorted(CASES).index(layer))
    src = tmp_path / "torch.safetensors"
    modules = torch_checkpoint(torch, case, rng, src)
    x = random_input(case, rng)
    expected = run_torch(torch, case, modules, x)

    dst = tmp_path / "keras.safetensors"
    params = [a for p in case.params for a in ("--param", p)]
    assert main([str(src), str(dst), "--preset", "torch-to-keras", "-q", *params]) == 0
    converted = ckconv.load(str(dst))
    model = keras_model(keras, case)
    names = keras_names(model)
    assert sorted(converted) == sorted(names)
    model.set_weights([converted[n].numpy() for n in names])
    np.testing.assert_allclose(np.asarray(model(x, training=False)), expected,
                               rtol=RTOL, atol=ATOL)

    if kind == "keras3":  # and as a .weights.h5 file Keras 3 loads by itself
        h5 = tmp_path / "model.weights.h5"
        assert main([str(src), str(h5), "--preset", "torch-to-keras",
                     "--preset", "keras-to-keras3", "-q", *params]) == 0
        fresh = keras_model(keras, case)
        fresh.load_weights(str(h5))
        np.testing.assert_allclose(np.asarray(fresh(x, training=False)), expected,
                                   rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------------------------
# there and back: bit-exact


@pytest.mark.parametrize("kind", ["keras3", "tf_keras"])
@pytest.mark.parametrize("layer", list(CASES))
def test_keras_torch_keras_round_trip_is_bit_exact(layer: str, kind: str, tmp_path):
    keras, _ = frameworks(kind)
    case = CASES[layer]
    model = keras_model(keras, case)
    randomize_keras(model, np.random.default_rng(7))
    src = save_keras_weights(model, kind, tmp_path)
    mid = tmp_path / "torch.safetensors"
    assert main([src, str(mid), "--preset", "keras-to-torch", "-q"]) == 0
    back = tmp_path / ("back.weights.h5" if kind == "keras3" else "back.h5")
    presets = ["--preset", "torch-to-keras"] + (
        ["--preset", "keras-to-keras3"] if kind == "keras3" else [])
    params = [a for p in case.params for a in ("--param", p)]
    assert main([str(mid), str(back), *presets, *params, "-q"]) == 0
    # `ckconv diff` exits 0 only for the same names, dtypes, shapes and exact values
    assert main(["diff", str(back), src, "--summary"]) == 0


@pytest.mark.parametrize("kind", ["keras3", "tf_keras"])
def test_gru_without_reset_after_is_refused_with_the_reason(kind: str, tmp_path, capsys):
    keras, _ = frameworks(kind)
    model = keras.Sequential([keras.Input((5, 4)),
                              keras.layers.GRU(3, reset_after=False, name="gru")])
    path = save_keras_weights(model, kind, tmp_path)
    assert main([str(path), str(tmp_path / "out.pt"), "--preset", "keras-to-torch"]) == 1
    err = capsys.readouterr().err
    assert "reset_after=False" in err and "torch.nn.GRU" in err and "gru/gru_cell/bias" in err
    assert not (tmp_path / "out.pt").exists()


def test_attention_reversed_without_num_heads_says_which_param(tmp_path, capsys):
    _, torch = frameworks("keras3")
    src = tmp_path / "mha.safetensors"
    torch_checkpoint(torch, CASES["MultiHeadAttention"], np.random.default_rng(0), src)
    assert main([str(src), str(tmp_path / "k.safetensors"), "--preset", "torch-to-keras"]) == 1
    err = capsys.readouterr().err
    assert "--param num_heads=N" in err and "in_proj_weight" in err


def test_subclassed_keras3_model_layers_known_by_attribute_name(tmp_path):
    """A subclassed model's .weights.h5 names some layers after the attribute holding them
    (encoder/vars/0), not their class: the class comes from the variables' shapes."""
    keras, torch = frameworks("keras3")
    from safetensors.torch import load_file

    class Net(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = keras.layers.Dense(6)
            self.rnn = keras.layers.GRU(3, return_sequences=True)
            self.norm = keras.layers.LayerNormalization(epsilon=1e-3)
            self.conv = keras.layers.Conv1D(2, 2)

        def call(self, x: Any) -> Any:
            return self.conv(self.norm(self.rnn(self.encoder(x))))

    rng = np.random.default_rng(11)
    model = Net()
    x = rng.normal(size=(2, 5, 4)).astype(np.float32)
    model(x)
    randomize_keras(model, rng)
    expected = np.asarray(model(x))
    src = tmp_path / "net.weights.h5"
    model.save_weights(str(src))
    dst = tmp_path / "net.safetensors"
    assert main([str(src), str(dst), "--preset", "keras-to-torch", "-q"]) == 0
    sd = load_file(str(dst))
    nn = torch.nn
    net = nn.ModuleDict({"encoder": nn.Linear(4, 6), "gru": nn.GRU(6, 3, batch_first=True),
                         "layer_normalization": nn.LayerNorm(3, eps=1e-3),
                         "conv": nn.Conv1d(3, 2, 2)}).eval()
    assert any(k.startswith("encoder.") for k in sd)  # the attribute-named layers are there
    net.load_state_dict(sd, strict=True)
    with torch.no_grad():
        h = net["layer_normalization"](net["gru"](net["encoder"](torch.from_numpy(x)))[0])
        got = net["conv"](h.permute(0, 2, 1)).permute(0, 2, 1).numpy()
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
