"""A BERT-base pre-training checkpoint as google-research/bert's TF1 code saves it, with real
TensorFlow: its variable names and shapes (12 layers, hidden 768, intermediate 3072,
vocabulary 30522, 512 positions), each with its ``adam_m``/``adam_v`` slots, and
``global_step``. Values are random: the benchmark measures bytes, not a trained model.

    python bench/make_bert.py DIR [--scale N]    # DIR/bert/bert_model.ckpt (~1.3 GB)

``--scale N`` repeats the encoder layers N times (12*N layers): the memory-flatness check.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HIDDEN, INTERMEDIATE, VOCAB, POSITIONS, LAYERS = 768, 3072, 30522, 512, 12


def variables(layers: int) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every trainable variable of BertForPreTraining's TF1 graph."""
    h, i = HIDDEN, INTERMEDIATE
    out = [("bert/embeddings/word_embeddings", (VOCAB, h)),
           ("bert/embeddings/position_embeddings", (POSITIONS, h)),
           ("bert/embeddings/token_type_embeddings", (2, h)),
           ("bert/embeddings/LayerNorm/gamma", (h,)), ("bert/embeddings/LayerNorm/beta", (h,))]
    for n in range(layers):
        p = f"bert/encoder/layer_{n}"
        for part in ("query", "key", "value"):
            out += [(f"{p}/attention/self/{part}/kernel", (h, h)),
                    (f"{p}/attention/self/{part}/bias", (h,))]
        out += [(f"{p}/attention/output/dense/kernel", (h, h)),
                (f"{p}/attention/output/dense/bias", (h,)),
                (f"{p}/attention/output/LayerNorm/gamma", (h,)),
                (f"{p}/attention/output/LayerNorm/beta", (h,)),
                (f"{p}/intermediate/dense/kernel", (h, i)), (f"{p}/intermediate/dense/bias", (i,)),
                (f"{p}/output/dense/kernel", (i, h)), (f"{p}/output/dense/bias", (h,)),
                (f"{p}/output/LayerNorm/gamma", (h,)), (f"{p}/output/LayerNorm/beta", (h,))]
    out += [("bert/pooler/dense/kernel", (h, h)), ("bert/pooler/dense/bias", (h,)),
            ("cls/predictions/transform/dense/kernel", (h, h)),
            ("cls/predictions/transform/dense/bias", (h,)),
            ("cls/predictions/transform/LayerNorm/gamma", (h,)),
            ("cls/predictions/transform/LayerNorm/beta", (h,)),
            ("cls/predictions/output_bias", (VOCAB,)),
            ("cls/seq_relationship/output_weights", (2, h)),
            ("cls/seq_relationship/output_bias", (2,))]
    return out


def make(prefix: str, layers: int) -> None:
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    names, tensors = [], []
    for name, shape in variables(layers):
        value = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)
        # Adam's slots: the first moment near the gradients' scale, the second positive.
        for suffix, arr in (("", value), ("/adam_m", value * 0.1), ("/adam_v", value * value)):
            names.append(name + suffix)
            tensors.append(tf.constant(arr))
    names.append("global_step")
    tensors.append(tf.constant(100000, tf.int64))
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    # SaveV2 is the op tf.compat.v1.train.Saver runs; the names are what BERT's run_pretraining
    # saves (google-research/bert, AdamWeightDecayOptimizer's slots).
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=tensors)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--scale", type=int, default=1)
    args = p.parse_args()
    name = "bert" if args.scale == 1 else f"bert{args.scale}x"
    prefix = os.path.join(args.dir, name, "bert_model.ckpt")
    if not os.path.exists(prefix + ".index"):
        make(prefix, LAYERS * args.scale)
    print(prefix)


if __name__ == "__main__":
    main()
