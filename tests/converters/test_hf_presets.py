"""hf-tf2 decisions and config-dependent presets, without the frameworks: what ckconv
decides from config.json, and the errors when it cannot decide."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import ckconv
import ckconv.hub
from ckconv.cli import main
from ckconv.converters.hf import configured, tf2
from ckconv.errors import MappingError, UsageError


def test_keras_default_layer_names_of_tf_classes() -> None:
    # as Keras names a TF model built without a name (seen in transformers' tf_model.h5 files)
    assert tf2.keras_name("TFBertForPreTraining") == "tf_bert_for_pre_training"
    assert tf2.keras_name("TFGPT2LMHeadModel") == "tfgpt2lm_head_model"
    assert tf2.keras_name("TFViTModel") == "tf_vi_t_model"
    assert tf2.keras_name("TFWav2Vec2ForCTC") == "tf_wav2_vec2_for_ctc"
    assert tf2.keras_name("TFT5ForConditionalGeneration") == "tft5_for_conditional_generation"


@pytest.mark.parametrize("arch, base", [("BertModel", True), ("CLIPModel", True), ("T5Model", True),
                                        ("BertForPreTraining", False), ("GPT2LMHeadModel", False),
                                        ("GPT2DoubleHeadsModel", False), ("XLMWithLMHeadModel", False),
                                        ("Wav2Vec2ForCTC", False)])
def test_base_model_or_head_from_the_architecture(arch: str, base: bool) -> None:
    assert tf2.is_base_model(arch) is base


def _h5_folder(tmp_path: Path, config: dict, names: dict[str, tuple]) -> Path:
    """A tf_model.h5 in the Keras layout ckconv writes (the live tests use real ones)."""
    folder = tmp_path / "tf"
    folder.mkdir()
    tensors = {n: np.arange(int(np.prod(s)), dtype=np.float32).reshape(s) for n, s in names.items()}
    tmap = ckconv.TensorMap.from_any(tensors)
    tmap.extras["keras_h5"] = {n: (n.split("/")[1], n + ":0") for n in names}
    ckconv.save(tmap, folder / "tf_model.h5", "hdf5", h5_layout="keras")
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "vocab.txt").write_text("[PAD]\n")
    return folder


BERT_NAMES = {"tf_bert_model/bert/embeddings/word_embeddings/weight": (5, 4),
              "tf_bert_model/bert/encoder/layer_._0/attention/self/query/kernel": (4, 6),
              "tf_bert_model/bert/encoder/layer_._0/attention/output/LayerNorm/gamma": (4,)}


def test_base_model_folder_loses_the_main_layer_name(tmp_path: Path) -> None:
    src = _h5_folder(tmp_path, {"model_type": "bert", "architectures": ["TFBertModel"]}, BERT_NAMES)
    assert main([str(src), str(tmp_path / "pt"), "--preset", "hf-tf2", "-q"]) == 0
    out = ckconv.load(tmp_path / "pt" / "model.safetensors")
    assert sorted(out) == ["embeddings.word_embeddings.weight",
                           "encoder.layer.0.attention.output.LayerNorm.weight",
                           "encoder.layer.0.attention.self.query.weight"]
    q = out["encoder.layer.0.attention.self.query.weight"].numpy()
    assert q.shape == (6, 4) and q.tobytes() == np.arange(24, dtype=np.float32).reshape(4, 6).T.tobytes()
    assert (tmp_path / "pt" / "vocab.txt").read_text() == "[PAD]\n"
    # and back: the same TF names (level zero from the architecture), the same bytes
    assert main([str(tmp_path / "pt"), str(tmp_path / "back"), "--preset", "hf-tf2", "--reverse", "-q"]) == 0
    back = ckconv.load(tmp_path / "back" / "tf_model.h5")
    assert sorted(back) == sorted(BERT_NAMES)
    assert back.extras["keras_h5"]["tf_bert_model/bert/embeddings/word_embeddings/weight"][0] == "bert"


def test_head_model_keeps_names_and_undecidable_configs_fail(tmp_path: Path) -> None:
    src = _h5_folder(tmp_path, {"model_type": "bert"}, BERT_NAMES)
    with pytest.raises(MappingError, match="architectures"):
        ckconv.hub.convert_folder(str(src), str(tmp_path / "x"))
    (src / "config.json").write_text(json.dumps({"model_type": "bert",
                                                 "architectures": ["BertForMaskedLM"]}))
    ckconv.hub.convert_folder(str(src), str(tmp_path / "pt"))
    assert "bert.encoder.layer.0.attention.self.query.weight" in ckconv.load(tmp_path / "pt")
    (src / "config.json").write_text(json.dumps({"model_type": "roberta",
                                                 "architectures": ["RobertaModel"]}))
    with pytest.raises(MappingError, match="'roberta'.*'bert'"):
        ckconv.hub.convert_folder(str(src), str(tmp_path / "y"))
    (src / "config.json").unlink()
    with pytest.raises(UsageError, match="--config"):
        ckconv.hub.convert_folder(str(src / "tf_model.h5"), str(tmp_path / "z.safetensors"))


def test_folder_preset_stands_alone(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(tmp_path), str(tmp_path / "o"), "--preset", "hf-tf2", "--preset", "bert"]) == 2
    assert "combines with no other" in capsys.readouterr().err


def test_config_placeholders() -> None:
    text = "parts = ${range(n_layer)}\nheads = ${num_attention_heads}\n"
    assert configured.fill(text, {"n_layer": 3, "num_attention_heads": 2}, "p") == \
        'parts = ["0", "1", "2"]\nheads = 2\n'
    with pytest.raises(UsageError, match="xlnet needs n_layer.*config=") as info:
        ckconv.rules.load(preset="xlnet")
    assert "--config" in info.value.cli_message
    with pytest.raises(UsageError, match="n_layer"):
        configured.fill(text, {"num_attention_heads": 2}, "p")
    rules = ckconv.rules.preset("xlnet", {"n_layer": 2})
    tmap = ckconv.TensorMap.from_any({"model/transformer/r_w_bias": np.zeros((2, 3, 4), np.float32)})
    out = tmap.map(rules.with_strict(False))
    assert sorted(out) == ["transformer.layer.0.rel_attn.r_w_bias", "transformer.layer.1.rel_attn.r_w_bias"]


def test_tf1_presets_drop_optimizer_state_by_name() -> None:
    tmap = ckconv.TensorMap.from_any({
        "encoder/rms_norm/scale": np.ones(4, np.float32),
        "encoder/rms_norm/scale_slot_v": np.ones(4, np.float32),
        "shared/embedding": np.ones((3, 4), np.float32),
        "shared/embedding_slot_vr": np.ones(3, np.float32),
        "shared/embedding_slot_vc": np.ones(4, np.float32),
        "decoder/rms_norm/scale": np.ones(4, np.float32),
        "global_step": np.array(7)})
    out = tmap.map(ckconv.rules.load(preset="t5").with_strict(False))
    assert sorted(out) == ["decoder.final_layer_norm.weight", "encoder.final_layer_norm.weight",
                           "shared.weight"]
