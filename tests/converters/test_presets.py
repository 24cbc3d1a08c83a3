"""The shipped presets on TF-made fixtures: tf2, keras-to-torch / torch-to-keras, bert / hf-to-bert."""

from __future__ import annotations

import numpy as np
import pytest

import ckconv
import ckconv
from ckconv import MappingError
from ckconv.cli import main
from ckconv.tensormap import TensorMap
from tests.helpers import expected_array, fixture_prefix, manifest

#: BertForPreTraining().state_dict() keys of transformers 5 for 2 layers, without the two
#: tied decoder entries (checked against live transformers in test_presets_live.py).
HF_BERT_KEYS = [
    "bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight",
    "bert.embeddings.token_type_embeddings.weight", "bert.embeddings.LayerNorm.weight",
    "bert.embeddings.LayerNorm.bias",
] + [
    f"bert.encoder.layer.{i}.{suffix}" for i in range(2) for suffix in (
        "attention.self.query.weight", "attention.self.query.bias",
        "attention.self.key.weight", "attention.self.key.bias",
        "attention.self.value.weight", "attention.self.value.bias",
        "attention.output.dense.weight", "attention.output.dense.bias",
        "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
        "intermediate.dense.weight", "intermediate.dense.bias",
        "output.dense.weight", "output.dense.bias",
        "output.LayerNorm.weight", "output.LayerNorm.bias")
] + [
    "bert.pooler.dense.weight", "bert.pooler.dense.bias", "cls.predictions.bias",
    "cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
    "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias",
    "cls.seq_relationship.weight", "cls.seq_relationship.bias",
]

#: What Keras itself reports for the fixtures' weights (tf_keras: weight.name without
#: ":0"; Keras 3: variable.path), in model.weights order.
KERAS2_NAMES = ["dense/kernel", "dense/bias", "batch_normalization/gamma",
                "batch_normalization/beta", "batch_normalization/moving_mean",
                "batch_normalization/moving_variance", "dense_1/kernel", "dense_1/bias"]
KERAS3_NAMES = ["sequential/conv/kernel", "sequential/conv/bias", "sequential/head/kernel",
                "sequential/head/bias"]


def tf_value(fixture: str, name: str) -> np.ndarray:
    return expected_array(manifest(fixture)["tensors"][name])


def test_preset_list():
    assert set(ckconv.rules.presets()) >= {"tf2", "keras-to-torch", "torch-to-keras", "bert",
                                           "hf-to-bert"}
    with pytest.raises(ckconv.UsageError, match="unknown preset 'nope'.*bert"):
        ckconv.rules.preset("nope")
    with pytest.raises(ckconv.UsageError):
        ckconv.rules.preset("../bert")


# ---------------------------------------------------------------------------------------
# bert


@pytest.fixture(scope="module")
def bert_tf() -> TensorMap:
    return ckconv.load(fixture_prefix("bert_tiny"))


def test_bert_names_shapes_and_values(bert_tf):
    out = bert_tf.map(ckconv.rules.preset("bert"))
    assert sorted(out) == sorted(HF_BERT_KEYS)
    for rec in ckconv.rules.report(out):
        src = rec.sources[0]
        if rec.target is None:
            assert src == "global_step" or src.endswith(("/adam_m", "/adam_v"))
            continue
        expected = tf_value("bert_tiny", src)
        if src.endswith("/kernel"):
            expected = expected.T
            assert rec.steps == ("transpose",)
        else:
            assert rec.steps == ()
        got = out[rec.target].numpy()
        assert got.shape == expected.shape and got.tobytes() == np.ascontiguousarray(expected).tobytes()
    # [2, hidden] output_weights are already [out, in]
    assert out["cls.seq_relationship.weight"].shape == (2, 8)


def test_bert_round_trip_is_identical(bert_tf):
    hf = bert_tf.map(ckconv.rules.preset("bert"))
    for back in (hf.map(ckconv.rules.preset("hf-to-bert")),
                 hf.map(ckconv.rules.load(preset="bert", reverse=True))):
        expected = [k for k in bert_tf if not k.endswith(("adam_m", "adam_v")) and k != "global_step"]
        assert sorted(back) == sorted(expected)
        for k in expected:
            assert back[k].numpy().tobytes() == bert_tf[k].numpy().tobytes(), k
            assert back[k].shape == bert_tf[k].shape


def test_bert_reverse_drops_tied_copies_and_buffers(bert_tf):
    hf = bert_tf.map(ckconv.rules.preset("bert"))
    full = hf.copy()
    full["cls.predictions.decoder.weight"] = hf["bert.embeddings.word_embeddings.weight"]
    full["cls.predictions.decoder.bias"] = hf["cls.predictions.bias"]
    full["bert.embeddings.position_ids"] = np.arange(16, dtype=np.int64)[None]
    back = full.map(ckconv.rules.preset("hf-to-bert"))
    assert "cls/predictions/output_bias" in back and len(back) == len(HF_BERT_KEYS)


def test_bert_released_checkpoint_without_optimizer_state(bert_tf):
    plain = TensorMap({k: t for k, t in bert_tf.items()
                       if "adam" not in k and k != "global_step"})
    assert sorted(plain.map(ckconv.rules.preset("bert"))) == sorted(HF_BERT_KEYS)


def test_bert_strict_errors(bert_tf):
    extra = bert_tf.copy()
    extra["output_weights"] = np.zeros((3, 8), np.float32)  # a classifier head
    with pytest.raises(MappingError, match=r"1 tensor matched by no rule.*output_weights"):
        extra.map(ckconv.rules.preset("bert"))
    no_heads = TensorMap({k: t for k, t in bert_tf.items() if not k.startswith("cls/")})
    with pytest.raises(MappingError, match=r"matching no tensor.*bert\.toml:\d+ \(match '\^cls/"):
        no_heads.map(ckconv.rules.preset("bert"))
    assert len(no_heads.map(ckconv.rules.load(preset="bert", strict=False))) == len(HF_BERT_KEYS) - 7


def test_bert_cli_to_safetensors_and_dry_run(tmp_path, capsys):
    from safetensors.numpy import load_file

    dst = tmp_path / "bert.safetensors"
    assert main([fixture_prefix("bert_tiny"), str(dst), "--preset", "bert", "-q"]) == 0
    assert sorted(load_file(str(dst))) == sorted(HF_BERT_KEYS)
    capsys.readouterr()
    assert main([fixture_prefix("bert_tiny"), "--preset", "bert", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert ("bert/encoder/layer_1/attention/self/key/kernel -> "
            "bert.encoder.layer.1.attention.self.key.weight  float32 [8, 8]  transpose  "
            "(bert.toml:") in out
    assert "global_step -> (dropped)  int64 []  (bert.toml:" in out
    assert out.strip().endswith("46 tensors would be written, 93 dropped")
    # reverse: safetensors -> TF1 names, written as a TF checkpoint
    back = tmp_path / "back" / "bert_model.ckpt"
    assert main([str(dst), str(back), "--preset", "bert", "--reverse", "-q"]) == 0
    restored = ckconv.load(str(back))
    assert "bert/pooler/dense/kernel" in restored
    np.testing.assert_array_equal(restored["bert/pooler/dense/kernel"].numpy(),
                                  tf_value("bert_tiny", "bert/pooler/dense/kernel"))


def test_api_convert_with_preset_and_dtype(tmp_path):
    from safetensors.numpy import load_file

    dst = tmp_path / "bert16.safetensors"
    ckconv.convert(fixture_prefix("bert_tiny"), dst, preset="bert", dtype="bf16")
    got = load_file(str(dst))
    assert sorted(got) == sorted(HF_BERT_KEYS)
    import ml_dtypes

    assert got["cls.predictions.bias"].dtype == ml_dtypes.bfloat16


# ---------------------------------------------------------------------------------------
# tf2


@pytest.mark.parametrize("fixture,expected", [("keras2_ckpt", KERAS2_NAMES),
                                              ("keras3_ckpt", KERAS3_NAMES)])
def test_tf2_gives_the_names_keras_reports(fixture, expected):
    src = ckconv.load(fixture_prefix(fixture))
    out = src.map(ckconv.rules.preset("tf2"))
    assert sorted(out) == sorted(expected)
    for rec in ckconv.rules.report(out):
        if rec.target is not None:
            got = out[rec.target].numpy()
            assert got.tobytes() == tf_value(fixture, rec.sources[0]).tobytes()


def test_tf2_keras3_weights_come_from_optimizer_keys():
    out = ckconv.load(fixture_prefix("keras3_ckpt")).map(ckconv.rules.preset("tf2"))
    sources = {r.target: r.sources[0] for r in ckconv.rules.report(out) if r.target}
    assert sources["sequential/conv/kernel"] == \
        "optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE"


def test_tf2_keep_optimizer_names_slots_after_their_variable(capsys):
    k2 = ckconv.load(fixture_prefix("keras2_ckpt")).map(
        ckconv.rules.load(preset="tf2", flags=["keep-optimizer"]))
    assert {"dense/kernel/m", "dense/kernel/v", "batch_normalization/gamma/m",
            "optimizer/iter", "optimizer/learning_rate"} <= set(k2)
    assert "save_counter" not in k2 and "_CHECKPOINTABLE_OBJECT_GRAPH" not in k2
    np.testing.assert_array_equal(
        k2["dense_1/kernel/v"].numpy(),
        tf_value("keras2_ckpt", "model/layer_with_weights-2/kernel/.OPTIMIZER_SLOT/optimizer/v/"
                                ".ATTRIBUTES/VARIABLE_VALUE"))
    k3 = ckconv.load(fixture_prefix("keras3_ckpt")).map(
        ckconv.rules.load(preset="tf2", flags=["keep-optimizer"]))
    assert sorted(k3) == sorted(KERAS3_NAMES + [f"{n}/{s}" for n in KERAS3_NAMES
                                                for s in ("momentum", "velocity")]
                                + ["optimizer/_iterations", "optimizer/_learning_rate"])
    assert main([fixture_prefix("keras3_ckpt"), "--preset", "tf2", "--keep-optimizer",
                 "--dry-run"]) == 0
    assert ("optimizer/_variables/2/.ATTRIBUTES/VARIABLE_VALUE -> sequential/conv/kernel/momentum"
            in capsys.readouterr().out)


def test_tf2_needs_an_object_graph_and_cannot_reverse():
    with pytest.raises(MappingError, match="matched by no rule"):
        ckconv.load(fixture_prefix("tf1_saver")).map(ckconv.rules.preset("tf2"))
    with pytest.raises(MappingError, match=r"cannot be reversed: tf2\.toml:\d+ \(names from the object graph"):
        ckconv.rules.load(preset="tf2", reverse=True)
    fake = TensorMap({"a/.ATTRIBUTES/VARIABLE_VALUE": np.zeros(2, np.float32)})
    with pytest.raises(MappingError, match="no _CHECKPOINTABLE_OBJECT_GRAPH"):
        fake.map(ckconv.rules.preset("tf2"))


# ---------------------------------------------------------------------------------------
# keras-to-torch / torch-to-keras


def test_tf2_then_keras_to_torch_on_keras3():
    out = ckconv.load(fixture_prefix("keras3_ckpt")).map(
        ckconv.rules.load(preset=["tf2", "keras-to-torch"]))
    assert sorted(out) == sorted(["sequential.conv.weight", "sequential.conv.bias",
                                  "sequential.head.weight", "sequential.head.bias"])
    conv = tf_value("keras3_ckpt", "optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE")
    np.testing.assert_array_equal(out["sequential.conv.weight"].numpy(), conv.transpose(3, 2, 0, 1))
    head = tf_value("keras3_ckpt", "optimizer/_trainable_variables/2/.ATTRIBUTES/VARIABLE_VALUE")
    np.testing.assert_array_equal(out["sequential.head.weight"].numpy(), head.T)


def keras_like_map() -> TensorMap:
    rng = np.random.default_rng(3)

    def r(*shape):
        return rng.normal(size=shape).astype(np.float32)

    return TensorMap({
        "dense/kernel": r(3, 4), "dense/bias": r(4),
        "conv1d/kernel": r(5, 3, 4), "conv2d/kernel": r(3, 3, 2, 4), "conv2d/bias": r(4),
        "conv3d/kernel": r(2, 3, 3, 2, 4),
        "depthwise_conv2d/depthwise_kernel": r(3, 3, 4, 1),
        "batch_normalization/gamma": r(4), "batch_normalization/beta": r(4),
        "batch_normalization/moving_mean": r(4), "batch_normalization/moving_variance": r(4),
        "layer_normalization/gamma": r(4), "layer_normalization/beta": r(4),
        "embedding/embeddings": r(10, 4),
    })


def test_keras_to_torch_layouts_and_reverse_round_trip():
    src = keras_like_map()
    out = src.map(ckconv.rules.preset("keras-to-torch"))
    assert out["dense.weight"].shape == (4, 3)
    np.testing.assert_array_equal(out["conv1d.weight"].numpy(), src["conv1d/kernel"].numpy().transpose(2, 1, 0))
    np.testing.assert_array_equal(out["conv2d.weight"].numpy(),
                                  src["conv2d/kernel"].numpy().transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(out["conv3d.weight"].numpy(),
                                  src["conv3d/kernel"].numpy().transpose(4, 3, 0, 1, 2))
    assert out["depthwise_conv2d.weight"].shape == (4, 1, 3, 3)
    assert {"batch_normalization.weight", "batch_normalization.bias",
            "batch_normalization.running_mean", "batch_normalization.running_var",
            "layer_normalization.weight", "embedding.weight"} <= set(out)
    np.testing.assert_array_equal(out["embedding.weight"].numpy(), src["embedding/embeddings"].numpy())
    torch_like = out.copy()
    torch_like["batch_normalization.num_batches_tracked"] = np.int64(7)
    back = torch_like.map(ckconv.rules.preset("torch-to-keras"))
    assert sorted(back) == sorted(src)
    for k in src:
        assert back[k].numpy().tobytes() == src[k].numpy().tobytes(), k


def test_depthwise_multiplier_layout_matches_grouped_conv():
    k = np.random.default_rng(0).normal(size=(3, 3, 2, 3)).astype(np.float32)  # C=2, M=3
    out = TensorMap({"dw/depthwise_kernel": k}).map(ckconv.rules.preset("keras-to-torch"))
    w = out["dw.weight"].numpy()
    assert w.shape == (6, 1, 3, 3)
    for c in range(2):
        for m in range(3):  # PyTorch groups: output channel c*M + m reads input channel c
            np.testing.assert_array_equal(w[c * 3 + m, 0], k[:, :, c, m])


def test_keras_to_torch_is_strict_about_unknown_weights():
    m = TensorMap({"lstm/recurrent_kernel": np.zeros((2, 8), np.float32)})
    with pytest.raises(MappingError, match="lstm/recurrent_kernel"):
        m.map(ckconv.rules.preset("keras-to-torch"))
    assert list(m.map(ckconv.rules.load(preset="keras-to-torch", strict=False))) == [
        "lstm.recurrent_kernel"]


# ---------------------------------------------------------------------------------------
# command-line details


def test_cli_usage_errors_and_option_order(tmp_path, capsys):
    src = fixture_prefix("bert_tiny")
    assert main([src]) == 2
    assert "dst" in capsys.readouterr().err
    assert main([src, str(tmp_path / "x.safetensors"), "--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert main([src, str(tmp_path / "x.safetensors"), "--reverse"]) == 2
    assert main([src, "--dry-run", "--dtype", "int8"]) == 2
    assert not list(tmp_path.iterdir())
    # --preset then --rules: the rules file sees the preset's output names
    extra = tmp_path / "extra.toml"
    extra.write_text("[[rule]]\nadd_prefix = 'model.'\n")
    capsys.readouterr()
    assert main([src, "--preset", "bert", "--rules", str(extra), "--dry-run",
                 "--include", "^bert/pooler/", "--exclude", "bias"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "1 tensor would be written, 138 dropped"
    assert "bert/pooler/dense/kernel -> model.bert.pooler.dense.weight  float32 [8, 8]  transpose  " \
           "(bert.toml:" in "\n".join(out)
    assert any(line.startswith("global_step -> (dropped)") and "(--include)" in line for line in out)
    # the other order: the preset no longer sees TF names and strict mode says so
    assert main([src, "--rules", str(extra), "--preset", "bert", "--dry-run"]) == 1
    assert "matched by no rule" in capsys.readouterr().err


def test_help_lists_every_preset(capsys):
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split()).replace("- ", "-")
    for name in ckconv.rules.presets():
        assert name in text


def test_tf2_object_graph_fallbacks():
    """tf.Module-style graphs: default/duplicate full names fall back to object paths;
    lookup tables (one attribute saved as -keys/-values tensors) keep their attribute."""
    from ckconv.formats.tf.protos import TrackableObjectGraph

    g = TrackableObjectGraph()
    root, net, w, v, table, counter, u = (g.nodes.add() for _ in range(7))
    root.children.add(node_id=1, local_name="net")
    root.children.add(node_id=5, local_name="save_counter")
    for name, node_id in (("w", 2), ("v", 3), ("table", 4), ("u", 6)):
        net.children.add(node_id=node_id, local_name=name)

    def attr(node, name, full, key):
        node.attributes.add(name=name, full_name=full, checkpoint_key=key)

    attr(w, "VARIABLE_VALUE", "Variable", "net/w/.ATTRIBUTES/VARIABLE_VALUE")
    attr(v, "VARIABLE_VALUE", "dup", "net/v/.ATTRIBUTES/VARIABLE_VALUE")
    attr(u, "VARIABLE_VALUE", "dup", "net/u/.ATTRIBUTES/VARIABLE_VALUE")
    attr(table, "table", "", "net/table/.ATTRIBUTES/table")
    attr(counter, "VARIABLE_VALUE", "save_counter", "save_counter/.ATTRIBUTES/VARIABLE_VALUE")
    tensors = {key: np.zeros(2, np.float32) for key in (
        "net/w/.ATTRIBUTES/VARIABLE_VALUE", "net/v/.ATTRIBUTES/VARIABLE_VALUE",
        "net/u/.ATTRIBUTES/VARIABLE_VALUE", "net/table/.ATTRIBUTES/table-keys",
        "net/table/.ATTRIBUTES/table-values")}
    tensors["save_counter/.ATTRIBUTES/VARIABLE_VALUE"] = np.int64(1)
    tensors["_CHECKPOINTABLE_OBJECT_GRAPH"] = np.array(g.SerializeToString(), object)
    out = TensorMap(tensors).map(ckconv.rules.preset("tf2"))
    assert sorted(out) == ["net/table/table-keys", "net/table/table-values", "net/u", "net/v",
                           "net/w"]
    bad = TensorMap({"_CHECKPOINTABLE_OBJECT_GRAPH": np.array(b"\xff\xff", object),
                     "a/.ATTRIBUTES/VARIABLE_VALUE": np.zeros(1, np.float32)})
    with pytest.raises(MappingError, match="not hold a valid object graph"):
        bad.map(ckconv.rules.preset("tf2"))
