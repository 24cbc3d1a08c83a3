"""``--like TEMPLATE`` against the real frameworks: each output restores into the target
model, which then computes what the source model computes.

Journeys: torch -> TF2 checkpoint (``assert_consumed``), torch -> TF1 Saver checkpoint
(``import_meta_graph`` + ``restore``), tf_keras TF-format checkpoint -> Keras 3
``.weights.h5``, tf_keras -> Keras 3 ``.keras`` archive (``load_model``), tf_keras ``.h5``
-> ``torch.save`` state dict (``load_state_dict(strict=True)``).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import ckconv
from ckconv.cli import main
from ckconv.errors import MappingError
from tests.helpers import live_module, live_tf

pytestmark = [pytest.mark.live,
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning")]

X = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
SEQ = np.random.default_rng(1).normal(size=(2, 6, 3)).astype("float32")


def _keras3():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    live_tf()
    return live_module("keras")


def _randomize(model, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = rng.normal(size=tuple(w.shape)).astype("float32")
        if "variance" in w.name:
            value = np.abs(value) + 0.5
        w.assign(value)


# ----------------------------------------------------------------- torch <-> TF

def _torch_mlp(torch):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(3, 8)
            self.bn = torch.nn.BatchNorm1d(8)
            self.fc2 = torch.nn.Linear(8, 8)
            self.fc3 = torch.nn.Linear(8, 2)

        def forward(self, x):
            x = torch.relu(self.bn(self.fc1(x)))
            return self.fc3(torch.relu(self.fc2(x)))

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
        net.bn.weight.uniform_(0.5, 2)
        net.bn.bias.uniform_(-1, 1)
    return net.eval()


def _finite(out) -> np.ndarray:
    out = np.asarray(out)
    assert np.isfinite(out).all()  # NaN == NaN for assert_allclose: that would prove nothing
    return out


def _torch_out(torch, net) -> np.ndarray:
    with torch.no_grad():
        return _finite(net(torch.from_numpy(X)).numpy())


def _keras_mlp(keras):
    return keras.Sequential([
        keras.Input((3,)), keras.layers.Dense(8),
        keras.layers.BatchNormalization(epsilon=1e-5), keras.layers.ReLU(),
        keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])


def test_torch_to_tf2_checkpoint_like_a_tf_save_restores_with_assert_consumed(tmp_path):
    torch = live_module("torch")
    tf = live_tf()
    keras = _keras3()
    net = _torch_mlp(torch)
    torch.save(net.state_dict(), tmp_path / "net.pt")
    template = tf.train.Checkpoint(model=_keras_mlp(keras)).save(str(tmp_path / "tpl" / "ckpt"))
    out = tmp_path / "out" / "ckpt-1"
    notes = ckconv.convert(tmp_path / "net.pt", out, preset="torch-to-keras", like=template)
    assert any("zeros" in n and "save_counter" in n for n in notes)
    model = _keras_mlp(keras)
    tf.train.Checkpoint(model=model).restore(str(out)).assert_consumed()
    np.testing.assert_allclose(np.asarray(model(X)), _torch_out(torch, net), rtol=1e-5, atol=1e-5)


def test_torch_to_tf1_saver_checkpoint_like_a_saver_save(tmp_path):
    torch = live_module("torch")
    tf = live_tf()
    v1 = tf.compat.v1
    net = _torch_mlp(torch)
    torch.save(net.state_dict(), tmp_path / "net.pt")
    # A TF1 graph of the same model, its variables named unlike the torch modules.
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 3], name="x")
        h = x
        for i, (n_in, n_out) in enumerate([(3, 8), (8, 8), (8, 2)]):
            w = v1.get_variable(f"layer_{i}/w", [n_in, n_out])
            b = v1.get_variable(f"layer_{i}/b", [n_out])
            h = tf.matmul(h, w) + b
            if i == 0:
                g = v1.get_variable("norm/scale", [8])
                be = v1.get_variable("norm/offset", [8])
                mean = v1.get_variable("norm/mean", [8], trainable=False)
                var = v1.get_variable("norm/var", [8], trainable=False)
                h = (h - mean) * tf.math.rsqrt(var + 1e-5) * g + be
            if i < 2:
                h = tf.nn.relu(h)
        tf.identity(h, name="y")
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            template = v1.train.Saver().save(sess, str(tmp_path / "tpl" / "model.ckpt"))
    out = tmp_path / "out" / "model.ckpt"
    notes = ckconv.convert(tmp_path / "net.pt", out, preset="torch-to-keras", like=template)
    assert any("copied the graph" in n for n in notes)
    with tf.Graph().as_default(), v1.Session() as sess:
        saver = v1.train.import_meta_graph(str(out) + ".meta")
        saver.restore(sess, str(out))
        got = sess.run("y:0", {"x:0": X})
    np.testing.assert_allclose(got, _torch_out(torch, net), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------- tf_keras -> Keras 3

def _rnn_model(k):
    inp = k.Input((6, 3))
    x = k.layers.GRU(4, return_sequences=True)(inp)
    x = k.layers.Bidirectional(k.layers.LSTM(3, return_sequences=True))(x)
    x = k.layers.SimpleRNN(5)(x)
    x = k.layers.BatchNormalization()(x)
    x = k.layers.Embedding(10, 2)(k.layers.Lambda(lambda t: t)(x)) if False else x
    return k.Model(inp, k.layers.Dense(2)(k.layers.Dense(4, activation="tanh")(x)))


def _dense_stack(k, keras3: bool):
    first = [k.Input((3,))] if keras3 else []
    return k.Sequential(first + [k.layers.Dense(3, activation="tanh",
                                                **({} if keras3 or i else {"input_shape": (3,)}))
                                 for i in range(12)])


@pytest.mark.parametrize("arch,data", [("rnn", SEQ), ("stack", X)])
def test_tf_keras_ckpt_like_keras3_weights_h5_loads_in_keras3(tmp_path, arch, data):
    tf = live_tf()
    tk = live_module("tf_keras")
    keras = _keras3()
    make = (lambda k, k3: _rnn_model(k)) if arch == "rnn" else _dense_stack
    src = make(tk, False)
    _randomize(src)
    want = _finite(src(data))
    src.save_weights(str(tmp_path / "x.ckpt"))  # TF format: Keras 3 refuses to load it
    template = tmp_path / "tpl.weights.h5"
    make(keras, True).save_weights(str(template))
    out = tmp_path / "out.weights.h5"
    assert main(["--dry-run", str(tmp_path / "x.ckpt"), str(out), "--preset", "tf2",
                 "--like", str(template), "-q"]) == 0
    ckconv.convert(tmp_path / "x.ckpt", out, preset="tf2", like=template)
    model = make(keras, True)
    model.load_weights(str(out))
    np.testing.assert_allclose(np.asarray(model(data)), want, rtol=1e-5, atol=1e-5)
    del tf


def test_keras_archive_reads_keras_own_weights_and_writes_like_a_template(tmp_path):
    tk = live_module("tf_keras")
    keras = _keras3()
    model = _rnn_model(keras)
    _randomize(model, seed=3)
    model.save(str(tmp_path / "m.keras"))
    tmap = ckconv.load(tmp_path / "m.keras")
    assert tmap.format == "keras" and tmap.extras["keras.layers"]
    # Every weight of the model is one tensor of the map (values are random, so distinct).
    found = set()
    for w in model.weights:
        hits = [n for n, t in tmap.items() if t.shape == tuple(w.shape)
                and np.array_equal(t.numpy(), np.asarray(w))]
        assert len(hits) == 1, w.path
        found.add(hits[0])
    assert len(found) == len(tmap) == len(model.weights)
    # tf_keras checkpoint -> .keras like the archive: load_model gives the source's outputs.
    src = _rnn_model(tk)
    _randomize(src, seed=11)
    want = _finite(src(SEQ))
    src.save_weights(str(tmp_path / "src.ckpt"))
    out = tmp_path / "out.keras"
    ckconv.convert(tmp_path / "src.ckpt", out, preset="tf2", like=tmp_path / "m.keras")
    loaded = keras.models.load_model(str(out))
    np.testing.assert_allclose(np.asarray(loaded(SEQ)), want, rtol=1e-5, atol=1e-5)
    import zipfile

    with zipfile.ZipFile(out) as a, zipfile.ZipFile(tmp_path / "m.keras") as b:
        assert a.namelist() == b.namelist()
        assert a.read("config.json") == b.read("config.json")
    assert not ckconv.diff(ckconv.load(out), ckconv.load(tmp_path / "m.keras")).equal


def test_keras_h5_to_torch_state_dict_like_torch_save(tmp_path):
    torch = live_module("torch")
    tk = live_module("tf_keras")
    src = tk.Sequential([tk.layers.Dense(8, input_shape=(3,)),
                         tk.layers.BatchNormalization(epsilon=1e-5),
                         tk.layers.ReLU(), tk.layers.Dense(8, activation="relu"),
                         tk.layers.Dense(2)])
    _randomize(src, seed=5)
    want = _finite(src(X))
    src.save_weights(str(tmp_path / "k.h5"))
    net = _torch_mlp(torch)
    torch.save(net.state_dict(), tmp_path / "tpl.pt")
    out = tmp_path / "out.pt"
    notes = ckconv.convert(tmp_path / "k.h5", out, preset="keras-to-torch", like=tmp_path / "tpl.pt")
    assert any("num_batches_tracked" in n for n in notes)
    fresh = _torch_mlp(torch)
    fresh.load_state_dict(torch.load(out, weights_only=True), strict=True)
    np.testing.assert_allclose(_torch_out(torch, fresh), want, rtol=1e-5, atol=1e-5)


def test_mismatch_names_both_sides(tmp_path):
    torch = live_module("torch")
    net = _torch_mlp(torch)
    torch.save(net.state_dict(), tmp_path / "net.pt")
    wrong = {"a.weight": torch.zeros(8, 3), "a.bias": torch.zeros(8), "b.weight": torch.zeros(9, 8)}
    torch.save(wrong, tmp_path / "tpl.pt")
    with pytest.raises(MappingError, match=r"source .* vs template .*b\.weight \[9, 8\]"):
        ckconv.load(tmp_path / "net.pt").like(tmp_path / "tpl.pt")


def test_torch_to_tf_keras_h5_like_its_own_save_weights(tmp_path):
    """A legacy .h5 template: its groups and attributes are copied, tf_keras loads by position."""
    torch = live_module("torch")
    tk = live_module("tf_keras")
    import h5py

    def make():
        return tk.Sequential([tk.layers.Dense(8, input_shape=(3,)),
                              tk.layers.BatchNormalization(epsilon=1e-5),
                              tk.layers.ReLU(), tk.layers.Dense(8, activation="relu"),
                              tk.layers.Dense(2)])

    net = _torch_mlp(torch)
    torch.save(net.state_dict(), tmp_path / "net.pt")
    template = tmp_path / "tpl.h5"
    make().save_weights(str(template))
    out = tmp_path / "out.h5"
    ckconv.convert(tmp_path / "net.pt", out, preset="torch-to-keras", like=template)
    with h5py.File(out, "r") as f, h5py.File(template, "r") as g:
        assert dict(f.attrs).keys() == dict(g.attrs).keys()
        assert list(f.attrs["layer_names"]) == list(g.attrs["layer_names"])
    model = make()
    model.load_weights(str(out))
    np.testing.assert_allclose(np.asarray(model(X)), _torch_out(torch, net), rtol=1e-5, atol=1e-5)


def test_torch_to_tf_keras_tf_format_checkpoint_like_its_save_weights(tmp_path):
    """tf_keras' own TF-format checkpoint as the template: load_weights + assert_consumed."""
    torch = live_module("torch")
    tk = live_module("tf_keras")

    def make():
        return tk.Sequential([tk.layers.Dense(8, input_shape=(3,)),
                              tk.layers.BatchNormalization(epsilon=1e-5),
                              tk.layers.ReLU(), tk.layers.Dense(8, activation="relu"),
                              tk.layers.Dense(2)])

    net = _torch_mlp(torch)
    torch.save(net.state_dict(), tmp_path / "net.pt")
    make().save_weights(str(tmp_path / "tpl" / "w.ckpt"))
    out = tmp_path / "out" / "w.ckpt"
    ckconv.convert(tmp_path / "net.pt", out, preset="torch-to-keras", like=tmp_path / "tpl" / "w.ckpt")
    model = make()
    model.load_weights(str(out)).assert_consumed()
    np.testing.assert_allclose(np.asarray(model(X)), _torch_out(torch, net), rtol=1e-5, atol=1e-5)
