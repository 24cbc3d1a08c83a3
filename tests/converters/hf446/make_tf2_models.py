"""Run with transformers 4.46 + TensorFlow (TF_USE_LEGACY_KERAS=1): for each architecture,
a random tiny TF model saved with ``save_pretrained`` and the oracle, the state dict that
``<PyTorch class>.from_pretrained(folder, from_tf=True)`` gives.

    python -m tests.converters.hf446.make_tf2_models OUT_DIR [NAME ...]

Writes OUT_DIR/<name>/tf/ (the TF folder), OUT_DIR/<name>/oracle.safetensors (the PyTorch
parameters, tied ones included) and OUT_DIR/<name>/oracle.json (PyTorch class, missing keys).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
            vocab_size=99, max_position_embeddings=64)
SEQ2SEQ = dict(vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=2,
               encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=37,
               decoder_ffn_dim=37, max_position_embeddings=64)
VISION = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
              image_size=32, patch_size=8, num_channels=3)

#: name -> (config class, config kwargs, TF class)
MODELS = {
    "bert": ("BertConfig", TINY, "TFBertForPreTraining"),
    "roberta": ("RobertaConfig", TINY, "TFRobertaForMaskedLM"),
    "xlm-roberta": ("XLMRobertaConfig", TINY, "TFXLMRobertaModel"),
    "distilbert": ("DistilBertConfig", dict(dim=32, n_layers=2, n_heads=2, hidden_dim=37,
                                            vocab_size=99, max_position_embeddings=64),
                   "TFDistilBertForSequenceClassification"),
    "albert": ("AlbertConfig", dict(TINY, embedding_size=16), "TFAlbertForPreTraining"),
    "electra": ("ElectraConfig", dict(TINY, embedding_size=16), "TFElectraForPreTraining"),
    "mobilebert": ("MobileBertConfig", dict(TINY, embedding_size=16, intra_bottleneck_size=16,
                                            num_feedforward_networks=2, true_hidden_size=16),
                   "TFMobileBertForPreTraining"),
    "deberta-v2": ("DebertaV2Config", dict(TINY, relative_attention=True, pos_att_type=["p2c", "c2p"],
                                           position_buckets=8, max_relative_positions=16,
                                           norm_rel_ebd="layer_norm", conv_kernel_size=3),
                   "TFDebertaV2ForMaskedLM"),
    "gpt2": ("GPT2Config", dict(n_embd=32, n_layer=2, n_head=2, vocab_size=99, n_positions=64),
             "TFGPT2LMHeadModel"),
    "t5": ("T5Config", dict(vocab_size=99, d_model=32, d_kv=8, d_ff=37, num_layers=2,
                            num_heads=4, relative_attention_num_buckets=8),
           "TFT5ForConditionalGeneration"),
    "mt5": ("MT5Config", dict(vocab_size=99, d_model=32, d_kv=8, d_ff=37, num_layers=2,
                              num_heads=4, relative_attention_num_buckets=8,
                              feed_forward_proj="gated-gelu", tie_word_embeddings=False),
            "TFMT5ForConditionalGeneration"),
    "bart": ("BartConfig", SEQ2SEQ, "TFBartForConditionalGeneration"),
    "vit": ("ViTConfig", VISION, "TFViTModel"),
    "convnext": ("ConvNextConfig", dict(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2,
                                        image_size=32, num_labels=3),
                 "TFConvNextForImageClassification"),
    "wav2vec2": ("Wav2Vec2Config", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                        intermediate_size=37, conv_dim=(8, 8), conv_stride=(4, 2),
                                        conv_kernel=(8, 3), num_conv_pos_embeddings=16,
                                        num_conv_pos_embedding_groups=2, vocab_size=12),
                 "TFWav2Vec2ForCTC"),
    "whisper": ("WhisperConfig", dict(vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=2,
                                      encoder_attention_heads=2, decoder_attention_heads=2,
                                      encoder_ffn_dim=37, decoder_ffn_dim=37, num_mel_bins=8,
                                      max_source_positions=16, max_target_positions=32,
                                      pad_token_id=1, bos_token_id=1, eos_token_id=2,
                                      decoder_start_token_id=1, begin_suppress_tokens=None,
                                      suppress_tokens=None),
                "TFWhisperForConditionalGeneration"),
    "clip": ("CLIPConfig", dict(text_config=dict(hidden_size=32, num_hidden_layers=2,
                                                 num_attention_heads=2, intermediate_size=37,
                                                 vocab_size=99, max_position_embeddings=32),
                                vision_config=dict(VISION), projection_dim=16),
             "TFCLIPModel"),
}


def example_inputs(name: str, config) -> dict:
    """A fixed input per architecture (the same arrays feed TF here and PyTorch in the test)."""
    import numpy as np

    rng = np.random.default_rng(7)
    ids = rng.integers(3, 90, size=(2, 9)).astype("int32")
    if name in ("vit", "convnext"):
        return {"pixel_values": rng.standard_normal((2, 3, 32, 32)).astype("float32")}
    if name == "wav2vec2":
        return {"input_values": rng.standard_normal((2, 400)).astype("float32")}
    if name == "whisper":
        return {"input_features": rng.standard_normal((2, 8, 32)).astype("float32"),
                "decoder_input_ids": ids[:, :5]}
    if name == "clip":
        return {"input_ids": ids, "pixel_values": rng.standard_normal((2, 3, 32, 32)).astype("float32")}
    if name in ("t5", "mt5", "bart"):
        return {"input_ids": ids, "decoder_input_ids": ids[:, :5]}
    return {"input_ids": ids}


#: Which output to compare: MobileBERT's TF class has an output embedding of its own that
#: PyTorch ties to the word embeddings (random apart here), so its next-sentence logits.
OUTPUT_INDEX = {"mobilebert": 1}


def make(name: str, out: Path) -> None:
    import numpy as np
    import tensorflow as tf
    import torch
    import transformers
    from safetensors.torch import save_file

    config_cls, kwargs, tf_cls = MODELS[name]
    tf.keras.utils.set_random_seed(sum(map(ord, name)))
    config = getattr(transformers, config_cls)(**kwargs)
    model = getattr(transformers, tf_cls)(config)
    model.build_in_name_scope()
    folder = out / name / "tf"
    model.save_pretrained(folder)
    pt_cls = getattr(transformers, tf_cls[2:])
    pt, info = pt_cls.from_pretrained(folder, from_tf=True, output_loading_info=True)
    state = {k: v.detach().clone().contiguous() for k, v in pt.named_parameters(remove_duplicate=False)}
    save_file(state, str(out / name / "oracle.safetensors"))
    inputs = example_inputs(name, config)
    tf_out = model({k: tf.constant(v) for k, v in inputs.items()}, training=False)
    np.savez(out / name / "io.npz", output=tf_out[OUTPUT_INDEX.get(name, 0)].numpy(), **inputs)
    tf_weights = {w.name: w.numpy() for w in model.weights}
    np.savez(out / name / "tf_weights.npz", **{f"w{i}": v for i, v in enumerate(tf_weights.values())})
    (out / name / "oracle.json").write_text(json.dumps({
        "pt_class": pt_cls.__name__, "tf_class": tf_cls,
        "missing_keys": sorted(info["missing_keys"]),
        "unexpected_keys": sorted(info["unexpected_keys"]),
        "tf_weight_names": list(tf_weights),
    }, indent=1))
    del torch


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    names = argv[1:] or list(MODELS)
    import transformers

    transformers.logging.set_verbosity_error()
    for name in names:
        make(name, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
