"""An original (google-research/bert, TF1) BERT checkpoint -> a Hugging Face model folder.

A BERT release directory holds ``bert_model.ckpt.{index,data-*,meta}``, ``bert_config.json``
and ``vocab.txt``. This writes, without TensorFlow or transformers::

    OUT_DIR/model.safetensors   weights renamed to BertForPreTraining's state_dict names,
                                dense kernels transposed, Adam slots and global_step dropped
    OUT_DIR/config.json         bert_config.json plus what transformers' BertConfig expects
    OUT_DIR/vocab.txt           copied, when the release has one

Run from the repository root (defaults: the tiny BERT test fixture, a temporary folder)::

    python examples/bert_to_hf.py [BERT_DIR_OR_PREFIX [OUT_DIR]]

``BertForPreTraining.from_pretrained(OUT_DIR)`` then loads it; the decoder weight and bias
that Hugging Face ties to the word embeddings and ``cls.predictions.bias`` are not stored
(TF BERT has no variables for them), transformers ties them on load.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

import ckconv
import ckconv

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT / "tests" / "fixtures" / "tf" / "bert_tiny"

#: BertConfig fields the original bert_config.json leaves to defaults.
HF_DEFAULTS = {"layer_norm_eps": 1e-12, "pad_token_id": 0,
               "position_embedding_type": "absolute", "use_cache": True,
               "classifier_dropout": None}


def _release_dir(source: Path) -> Path:
    return source if source.is_dir() else source.parent


def hf_config(bert_config: dict, weights: ckconv.TensorMap) -> dict:
    """config.json: the original hyper-parameters, the model class, the weights' dtype."""
    config = {"architectures": ["BertForPreTraining"], "model_type": "bert"}
    config.update(bert_config)
    for key, value in HF_DEFAULTS.items():
        config.setdefault(key, value)
    dtypes = {t.dtype.name for t in weights.values()}
    config["torch_dtype"] = dtypes.pop() if len(dtypes) == 1 else "float32"
    return config


def check(hf: ckconv.TensorMap, tf_weights: ckconv.TensorMap, config: dict) -> None:
    """Shapes follow the config, values follow the TF tensors (kernels transposed)."""
    h, inter = config["hidden_size"], config["intermediate_size"]
    expect = {
        "bert.embeddings.word_embeddings.weight": (config["vocab_size"], h),
        "bert.embeddings.position_embeddings.weight": (config["max_position_embeddings"], h),
        "bert.embeddings.token_type_embeddings.weight": (config["type_vocab_size"], h),
        "bert.pooler.dense.weight": (h, h),
        "cls.seq_relationship.weight": (2, h),
    }
    for i in range(config["num_hidden_layers"]):
        layer = f"bert.encoder.layer.{i}."
        for part in ("query", "key", "value"):
            expect[f"{layer}attention.self.{part}.weight"] = (h, h)
        expect[f"{layer}attention.output.dense.weight"] = (h, h)
        expect[f"{layer}intermediate.dense.weight"] = (inter, h)
        expect[f"{layer}output.dense.weight"] = (h, inter)
    for name, shape in expect.items():
        assert tuple(hf[name].shape) == shape, (name, hf[name].shape, shape)
    assert not [n for n in hf if "adam" in n.lower() or n == "global_step"]
    q = "bert/encoder/layer_0/attention/self/query/kernel"
    np.testing.assert_array_equal(hf["bert.encoder.layer.0.attention.self.query.weight"].numpy(),
                                  tf_weights[q].numpy().T)


def convert(source: Path, out_dir: Path) -> dict:
    release = _release_dir(source)
    bert_config = json.loads((release / "bert_config.json").read_text())
    tf_weights = ckconv.load(source)  # a directory, or the bert_model.ckpt prefix
    hf = tf_weights.map(ckconv.rules.load(preset="bert"))  # lazy: transposes run on write
    config = hf_config(bert_config, hf)
    check(hf, tf_weights, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    for note in ckconv.save(hf, out_dir / "model.safetensors"):
        print(f"note: {note}")
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if (release / "vocab.txt").is_file():
        shutil.copyfile(release / "vocab.txt", out_dir / "vocab.txt")
    left_out = len(tf_weights) - len(hf)
    print(f"{tf_weights.source}: {len(tf_weights)} TF tensors -> {len(hf)} Hugging Face "
          f"tensors ({left_out} optimizer/bookkeeping tensors left out) in {out_dir}")
    return config


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else DEFAULT_SOURCE
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(argv[1]) if len(argv) > 1 else Path(tmp) / "bert-hf"
        convert(source, out_dir)
        back = ckconv.load(out_dir / "model.safetensors")
        print(f"model.safetensors: {len(back)} tensors, {back.nbytes:,} bytes; "
              f"files: {', '.join(sorted(os.listdir(out_dir)))}")
        load_with_transformers(out_dir)
    return 0


def load_with_transformers(out_dir: Path) -> None:
    """If transformers is installed, prove the folder loads with nothing missing."""
    try:
        from transformers import BertForPreTraining
    except ImportError:
        print("transformers is not installed: skipped BertForPreTraining.from_pretrained")
        return
    model, info = BertForPreTraining.from_pretrained(str(out_dir), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    print(f"transformers loaded {type(model).__name__} with no missing or unexpected weights")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
