"""Run with transformers 4.46 + TensorFlow: original-layout TF1 research checkpoints with
random values, and the oracle: the state dict transformers 4.46's ``load_tf_weights_in_*``
makes of them.

    python -m tests.converters.hf446.make_tf1_checkpoints OUT_DIR [NAME ...]

Writes OUT_DIR/<name>/clean/model.ckpt (model variables only: what the 4.46 loader reads),
OUT_DIR/<name>/slots/model.ckpt (the same plus Adam slots and global_step, as a training run
leaves it), OUT_DIR/<name>/config.json and OUT_DIR/<name>/oracle.safetensors.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def gpt2_variables(cfg: dict, rng) -> dict:
    e, v, p = cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"]
    out = {"model/wte": (v, e), "model/wpe": (p, e), "model/ln_f/g": (e,), "model/ln_f/b": (e,)}
    for i in range(cfg["n_layer"]):
        h = f"model/h{i}"
        out.update({f"{h}/ln_1/g": (e,), f"{h}/ln_1/b": (e,), f"{h}/ln_2/g": (e,),
                    f"{h}/ln_2/b": (e,), f"{h}/attn/c_attn/w": (1, e, 3 * e),
                    f"{h}/attn/c_attn/b": (3 * e,), f"{h}/attn/c_proj/w": (1, e, e),
                    f"{h}/attn/c_proj/b": (e,), f"{h}/mlp/c_fc/w": (1, e, 4 * e),
                    f"{h}/mlp/c_fc/b": (4 * e,), f"{h}/mlp/c_proj/w": (1, 4 * e, e),
                    f"{h}/mlp/c_proj/b": (e,)})
    return {k: rng.standard_normal(s).astype("float32") for k, s in out.items()}


def gpt2_oracle(cfg: dict, prefix: str):
    import transformers

    model = transformers.GPT2Model(transformers.GPT2Config(**cfg))
    return transformers.models.gpt2.modeling_gpt2.load_tf_weights_in_gpt2(model, model.config, prefix)


#: name -> (config, variables(config, rng), oracle(config, clean prefix) -> torch module)
MODELS = {
    "gpt2": (dict(n_embd=8, n_layer=2, n_head=2, vocab_size=11, n_positions=16),
             gpt2_variables, gpt2_oracle),
}


def save(prefix: Path, tensors: dict) -> None:
    import tensorflow as tf

    prefix.parent.mkdir(parents=True, exist_ok=True)
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[n]) for n in names])


def make(name: str, out: Path) -> None:
    import numpy as np
    from safetensors.torch import save_file

    cfg, variables, oracle = MODELS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    tensors = variables(cfg, rng)
    save(out / name / "clean" / "model.ckpt", tensors)
    slots = dict(tensors, global_step=np.array(1000, dtype=np.int64))
    for k, v in tensors.items():
        slots[f"{k}/adam_m"] = rng.standard_normal(v.shape).astype("float32")
        slots[f"{k}/adam_v"] = rng.standard_normal(v.shape).astype("float32")
    save(out / name / "slots" / "model.ckpt", slots)
    (out / name / "config.json").write_text(json.dumps(cfg))
    model = oracle(cfg, str(out / name / "clean" / "model.ckpt"))
    state = {k: v.detach().clone().contiguous() for k, v in model.named_parameters()}
    save_file(state, str(out / name / "oracle.safetensors"))


def main(argv: list[str]) -> int:
    import transformers

    transformers.logging.set_verbosity_error()
    out = Path(argv[0])
    for name in argv[1:] or list(MODELS):
        make(name, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
