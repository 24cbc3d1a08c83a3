"""Presets against the real frameworks: transformers' BertForPreTraining, TF1 BERT restore,
and the names Keras 2 / Keras 3 report for their weights.

Needs tensorflow, tf_keras, keras 3, torch and transformers (5.x). Locally a missing one
skips; in CI (CKCONV_REQUIRE_LIVE=1) a skip is a failure.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ckconv
import ckconv
from ckconv.cli import main
from tests.helpers import FIXTURES, REQUIRE_LIVE, fixture_prefix, live_tf

from tests.fixtures.make_bert_fixture import bert_variables

pytestmark = pytest.mark.live


def live(module: str) -> Any:
    if REQUIRE_LIVE:
        return importlib.import_module(module)
    return pytest.importorskip(module)


def keras3() -> Any:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    live_tf()
    return live("keras")


def bert_config(transformers: Any) -> Any:
    cfg = json.loads((FIXTURES / "bert_tiny" / "bert_config.json").read_text())
    return transformers.BertConfig(**cfg)


BERT_INPUT = {
    "input_ids": [[2, 5, 7, 3, 19, 1, 0, 0], [4, 4, 11, 12, 13, 14, 15, 16]],
    "token_type_ids": [[0, 0, 0, 1, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1]],
    "attention_mask": [[1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]],
}


def hand_copied_bert(tf: Any, torch: Any, transformers: Any) -> Any:
    """A BertForPreTraining whose weights are copied one by one from TF's own reader."""
    reader = tf.train.load_checkpoint(fixture_prefix("bert_tiny"))

    def t(name: str, transpose: bool = False) -> Any:
        value = torch.from_numpy(reader.get_tensor(name))
        return value.T if transpose else value

    model = transformers.BertForPreTraining(bert_config(transformers)).eval()
    with torch.no_grad():
        emb = model.bert.embeddings
        emb.word_embeddings.weight.copy_(t("bert/embeddings/word_embeddings"))
        emb.position_embeddings.weight.copy_(t("bert/embeddings/position_embeddings"))
        emb.token_type_embeddings.weight.copy_(t("bert/embeddings/token_type_embeddings"))
        emb.LayerNorm.weight.copy_(t("bert/embeddings/LayerNorm/gamma"))
        emb.LayerNorm.bias.copy_(t("bert/embeddings/LayerNorm/beta"))
        for i, layer in enumerate(model.bert.encoder.layer):
            p = f"bert/encoder/layer_{i}/"
            att = layer.attention
            for proj in ("query", "key", "value"):
                getattr(att.self, proj).weight.copy_(t(p + f"attention/self/{proj}/kernel", True))
                getattr(att.self, proj).bias.copy_(t(p + f"attention/self/{proj}/bias"))
            att.output.dense.weight.copy_(t(p + "attention/output/dense/kernel", True))
            att.output.dense.bias.copy_(t(p + "attention/output/dense/bias"))
            att.output.LayerNorm.weight.copy_(t(p + "attention/output/LayerNorm/gamma"))
            att.output.LayerNorm.bias.copy_(t(p + "attention/output/LayerNorm/beta"))
            layer.intermediate.dense.weight.copy_(t(p + "intermediate/dense/kernel", True))
            layer.intermediate.dense.bias.copy_(t(p + "intermediate/dense/bias"))
            layer.output.dense.weight.copy_(t(p + "output/dense/kernel", True))
            layer.output.dense.bias.copy_(t(p + "output/dense/bias"))
            layer.output.LayerNorm.weight.copy_(t(p + "output/LayerNorm/gamma"))
            layer.output.LayerNorm.bias.copy_(t(p + "output/LayerNorm/beta"))
        model.bert.pooler.dense.weight.copy_(t("bert/pooler/dense/kernel", True))
        model.bert.pooler.dense.bias.copy_(t("bert/pooler/dense/bias"))
        head = model.cls.predictions
        head.transform.dense.weight.copy_(t("cls/predictions/transform/dense/kernel", True))
        head.transform.dense.bias.copy_(t("cls/predictions/transform/dense/bias"))
        head.transform.LayerNorm.weight.copy_(t("cls/predictions/transform/LayerNorm/gamma"))
        head.transform.LayerNorm.bias.copy_(t("cls/predictions/transform/LayerNorm/beta"))
        head.bias.copy_(t("cls/predictions/output_bias"))
        model.cls.seq_relationship.weight.copy_(t("cls/seq_relationship/output_weights"))
        model.cls.seq_relationship.bias.copy_(t("cls/seq_relationship/output_bias"))
    # the decoder is tied to the embeddings, so it was filled in by the copies above
    assert head.decoder.weight.data_ptr() == emb.word_embeddings.weight.data_ptr()
    return model


def run_bert(torch: Any, model: Any) -> tuple[Any, Any]:
    with torch.no_grad():
        out = model(**{k: torch.tensor(v) for k, v in BERT_INPUT.items()})
    return out.prediction_logits, out.seq_relationship_logits


def test_bert_preset_output_loads_strictly_into_transformers(tmp_path):
    tf = live_tf()
    torch = live("torch")
    transformers = live("transformers")
    from safetensors.torch import load_file

    from tests.converters.test_presets import HF_BERT_KEYS

    dst = tmp_path / "model.safetensors"
    assert main([fixture_prefix("bert_tiny"), str(dst), "--preset", "bert", "-q"]) == 0

    model = transformers.BertForPreTraining(bert_config(transformers)).eval()
    expected_keys = [k for k in model.state_dict() if not k.startswith("cls.predictions.decoder.")]
    assert expected_keys == HF_BERT_KEYS  # the preset's target layout is transformers' own
    sd = load_file(str(dst))
    # The documented step: fill in the tied decoder weights, then load strictly.
    sd["cls.predictions.decoder.weight"] = sd["bert.embeddings.word_embeddings.weight"]
    sd["cls.predictions.decoder.bias"] = sd["cls.predictions.bias"]
    result = model.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys

    reference = hand_copied_bert(tf, torch, transformers)
    for name, p in reference.state_dict().items():
        assert torch.equal(p, model.state_dict()[name]), name
    logits, nsp = run_bert(torch, model)
    ref_logits, ref_nsp = run_bert(torch, reference)
    assert logits.shape == (2, 8, 20) and nsp.shape == (2, 2)
    assert torch.equal(logits, ref_logits) and torch.equal(nsp, ref_nsp)
    assert float(logits.abs().max()) > 0.1  # not a degenerate model

    # from_pretrained on a directory with config.json ties the decoder itself
    model.config.save_pretrained(tmp_path)
    loaded, info = transformers.BertForPreTraining.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert torch.equal(run_bert(torch, loaded.eval())[0], ref_logits)


def test_hf_bert_state_dict_restores_into_tf1_bert_graph(tmp_path):
    tf = live_tf()
    torch = live("torch")
    transformers = live("transformers")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = transformers.BertForPreTraining(bert_config(transformers))
    with torch.no_grad():  # HF zero-initialises biases: make every value tell
        for param in model.parameters():
            param.normal_()
    # A state_dict as Hugging Face tools save it, tied copies and all.
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    src = tmp_path / "pytorch.safetensors"
    save_file(sd, str(src))
    prefix = tmp_path / "tf" / "bert_model.ckpt"
    assert main([str(src), str(prefix), "--preset", "hf-to-bert", "-q"]) == 0

    # Restore the way google-research/bert does: init_from_checkpoint with an assignment
    # map from the graph's variables to the checkpoint's names.
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        variables = {name: v1.get_variable(name, shape=shape, dtype=tf.float32,
                                           initializer=v1.zeros_initializer())
                     for name, shape in bert_variables()}
        v1.train.init_from_checkpoint(str(prefix), {name: name for name in variables})
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            restored = sess.run(variables)
    hand = {  # the TF -> HF correspondence, written out by hand
        "bert/embeddings/word_embeddings": ("bert.embeddings.word_embeddings.weight", False),
        "bert/pooler/dense/kernel": ("bert.pooler.dense.weight", True),
        "bert/encoder/layer_1/attention/self/value/kernel":
            ("bert.encoder.layer.1.attention.self.value.weight", True),
        "bert/encoder/layer_0/output/LayerNorm/gamma":
            ("bert.encoder.layer.0.output.LayerNorm.weight", False),
        "cls/predictions/output_bias": ("cls.predictions.bias", False),
        "cls/seq_relationship/output_weights": ("cls.seq_relationship.weight", False),
        "cls/predictions/transform/dense/kernel": ("cls.predictions.transform.dense.weight", True),
    }
    for tf_name, (hf_name, transpose) in hand.items():
        expected = sd[hf_name].numpy()
        np.testing.assert_array_equal(restored[tf_name], expected.T if transpose else expected)
    # every variable restored, none left at its zero initializer
    for name, value in restored.items():
        assert np.all(value != 0), name
    back = ckconv.load(str(prefix))
    assert sorted(back) == sorted(name for name, _ in bert_variables())


# ---------------------------------------------------------------------------------------
# tf2: the names Keras itself reports


def _fit_once(model: Any, x: np.ndarray, y: np.ndarray) -> None:
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)


def test_tf2_preset_on_a_live_keras3_checkpoint(tmp_path):
    keras = keras3()
    tf = live_tf()
    keras.utils.set_random_seed(1)
    inputs = keras.Input(shape=(5, 5, 2))
    h = keras.layers.Conv2D(3, 3, name="conv")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Dense(2, name="head")(h)
    model = keras.Model(inputs, out, name="net")
    opt = keras.optimizers.Adam(0.01)
    model.compile(optimizer=opt, loss="mse", jit_compile=False)
    rng = np.random.default_rng(0)
    _fit_once(model, rng.normal(size=(4, 5, 5, 2)).astype(np.float32),
              rng.normal(size=(4, 2)).astype(np.float32))
    for kwargs, name in (({"model": model, "optimizer": opt}, "with_opt"), ({"model": model}, "model_only")):
        prefix = tf.train.Checkpoint(**kwargs).save(str(tmp_path / name / "ckpt"))
        got = ckconv.load(prefix).map(ckconv.rules.preset("tf2"))
        assert sorted(got) == sorted(w.path for w in model.weights)
        for w in model.weights:
            np.testing.assert_array_equal(got[w.path].numpy(), w.numpy())
    kept = ckconv.load(prefix.replace("model_only", "with_opt")).map(
        ckconv.rules.load(preset="tf2", flags=["keep-optimizer"]))
    for w in model.trainable_weights:
        assert {f"{w.path}/momentum", f"{w.path}/velocity"} <= set(kept)
        assert kept[f"{w.path}/momentum"].shape == tuple(w.shape)
    assert "optimizer/_iterations" in kept


def test_tf2_preset_on_live_tf_keras_checkpoints(tmp_path):
    live_tf()
    tf_keras = live("tf_keras")
    import tensorflow as tf

    tf_keras.utils.set_random_seed(2)
    model = tf_keras.Sequential([
        tf_keras.Input(shape=(4,)),
        tf_keras.layers.Dense(3, name="hidden"),
        tf_keras.layers.LayerNormalization(),
        tf_keras.layers.Dense(2),
    ])
    opt = tf_keras.optimizers.Adam(0.01)  # the new (non-legacy) optimizer: slot lists
    model.compile(optimizer=opt, loss="mse")
    rng = np.random.default_rng(1)
    _fit_once(model, rng.normal(size=(4, 4)).astype(np.float32),
              rng.normal(size=(4, 2)).astype(np.float32))
    reported = {w.name[:-2]: w.numpy() for w in model.weights}  # "hidden/kernel:0"
    prefix = tf.train.Checkpoint(model=model, optimizer=opt).save(str(tmp_path / "ckpt"))
    got = ckconv.load(prefix).map(ckconv.rules.preset("tf2"))
    assert sorted(got) == sorted(reported)
    for name, value in reported.items():
        np.testing.assert_array_equal(got[name].numpy(), value)
    kept = ckconv.load(prefix).map(ckconv.rules.load(preset="tf2", flags=["keep-optimizer"]))
    slots = {v.name[:-2]: v.numpy() for v in opt.variables if "/m/" in v.name or "/v/" in v.name}
    assert slots
    for name, value in slots.items():  # "Adam/m/hidden/kernel" -> "hidden/kernel/m"
        _, slot, var = name.split("/", 2)
        np.testing.assert_array_equal(kept[f"{var}/{slot}"].numpy(), value)
    # Keras 2 save_weights in TF format: the model is the root, keys lack "model/"
    model.save_weights(str(tmp_path / "w" / "weights.ckpt"))
    got = ckconv.load(str(tmp_path / "w" / "weights.ckpt")).map(ckconv.rules.preset("tf2"))
    assert sorted(got) == sorted(reported)


# ---------------------------------------------------------------------------------------
# keras-to-torch: the converted weights drive equivalent PyTorch modules


def test_keras_to_torch_weights_reproduce_keras_outputs(tmp_path):
    keras = keras3()
    tf = live_tf()
    torch = live("torch")
    nn = torch.nn
    keras.utils.set_random_seed(3)
    image = keras.Sequential([
        keras.Input(shape=(7, 7, 2)),
        keras.layers.Conv2D(4, 3, name="conv"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="depthwise"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, name="head"),
    ], name="image")
    text = keras.Sequential([
        keras.Input(shape=(6,), dtype="int32"),
        keras.layers.Embedding(11, 4, name="embedding"),
        keras.layers.Conv1D(5, 2, name="conv1d"),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(2, name="out"),
    ], name="text")
    rng = np.random.default_rng(4)
    for w in image.weights + text.weights:  # random values, variances positive
        w.assign(np.abs(rng.normal(size=w.shape)) + 0.5 if "variance" in w.path
                 else rng.normal(size=w.shape))
    prefix = tf.train.Checkpoint(image=image, text=text).save(str(tmp_path / "ckpt"))
    dst = tmp_path / "torch.safetensors"
    assert main([prefix, str(dst), "--preset", "tf2", "--preset", "keras-to-torch", "-q"]) == 0
    from safetensors.torch import load_file

    sd = load_file(str(dst))
    net = nn.Module()
    net.image = nn.ModuleDict({"conv": nn.Conv2d(2, 4, 3), "bn": nn.BatchNorm2d(4, eps=1e-3),
                               "depthwise": nn.Conv2d(4, 8, 3, groups=4), "head": nn.Linear(8, 3)})
    net.text = nn.ModuleDict({"embedding": nn.Embedding(11, 4), "conv1d": nn.Conv1d(4, 5, 2),
                              "out": nn.Linear(5, 2)})
    result = net.load_state_dict(sd, strict=False)
    assert not result.unexpected_keys
    # torch fills in BatchNorm's step counter itself; nothing else may be missing
    assert set(result.missing_keys) <= {"image.bn.num_batches_tracked"}
    net.eval()
    x = rng.normal(size=(2, 7, 7, 2)).astype(np.float32)
    ids = rng.integers(0, 11, size=(2, 6)).astype(np.int32)
    with torch.no_grad():
        m = net.image
        h = m["depthwise"](m["bn"](m["conv"](torch.from_numpy(x).permute(0, 3, 1, 2))))
        torch_image = m["head"](h.mean(dim=(2, 3))).numpy()
        t = net.text
        e = t["conv1d"](t["embedding"](torch.from_numpy(ids).long()).permute(0, 2, 1))
        torch_text = t["out"](e.mean(dim=2)).numpy()
    np.testing.assert_allclose(torch_image, np.asarray(image(x, training=False)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(torch_text, np.asarray(text(ids, training=False)), rtol=1e-4, atol=1e-5)
    # and back: torch-to-keras restores the Keras layouts exactly (depthwise multiplier 2
    # has no reverse rule, so that one tensor is left out of the comparison)
    back = ckconv.load(str(dst)).map(ckconv.rules.load(preset="torch-to-keras", strict=False))
    for w in text.weights:
        np.testing.assert_array_equal(back[w.path].numpy(), w.numpy())
