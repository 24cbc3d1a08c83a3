"""Run with transformers 4.46 + TensorFlow: original-layout TF1 research checkpoints with
random values, and the oracle: the state dict transformers 4.46's ``load_tf_weights_in_*``
makes of them.

    python -m tests.converters.hf446.make_tf1_checkpoints OUT_DIR [NAME ...]

Writes, per preset NAME: OUT_DIR/NAME/clean/model.ckpt (model variables only: what the 4.46
loader reads), OUT_DIR/NAME/slots/model.ckpt (the same plus the optimizer slots and
global_step a training run leaves, named as the original code names them),
OUT_DIR/NAME/config.json (the transformers config) and OUT_DIR/NAME/oracle.safetensors.

The original variable names are written out here by hand, per model, from the papers' code
(google-research/bert, albert, electra, bigbird, tapas, mobilebert; t5/mesh; zihangdai/
xlnet; openai/gpt-2; tensorflow/models slim): the name of each PyTorch parameter of a tiny
transformers model -> the TF1 variable it comes from, with the TF shape. The 4.46 loader then
decides what each becomes; a wrong name here shows up as a parameter it leaves random.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

Naming = Callable[[str, tuple], Optional[tuple[str, tuple]]]
BERT_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                 vocab_size=99, max_position_embeddings=64)


def _t(shape: tuple) -> tuple:
    return tuple(reversed(shape))


def bert_like(pt: str, shape: tuple, top: str, tf_top: str = "bert") -> Optional[tuple[str, tuple]]:
    """BERT's TF1 names: scopes with '/', layer_N, kernel [in, out], LayerNorm gamma/beta."""
    if not pt.startswith(top + "."):
        return None
    path = tf_top + "/" + pt[len(top) + 1:].replace(".", "/")
    path = re.sub(r"/layer/(\d+)/", r"/layer_\1/", path)
    if re.search(r"_embeddings(_\d)?/weight$", path):
        return path[: -len("/weight")], shape
    if "/LayerNorm/" in path:
        return path.replace("/weight", "/gamma").replace("/bias", "/beta"), shape
    if path.endswith("/weight") and len(shape) == 2:
        return path[: -len("weight")] + "kernel", _t(shape)
    return path, shape


def gpt2_name(pt: str, shape: tuple):
    m = re.fullmatch(r"h\.(\d+)\.(.+)\.(weight|bias)", pt)
    if pt in ("wte.weight", "wpe.weight"):
        return "model/" + pt[:3], shape
    if pt.startswith("ln_f."):
        return "model/ln_f/" + ("g" if pt.endswith("weight") else "b"), shape
    scope, leaf = m.group(2).replace(".", "/"), m.group(3)
    if scope.startswith("ln_"):
        return f"model/h{m.group(1)}/{scope}/{'g' if leaf == 'weight' else 'b'}", shape
    return f"model/h{m.group(1)}/{scope}/{'w' if leaf == 'weight' else 'b'}", \
        ((1,) + shape if leaf == "weight" else shape)


def t5_name(pt: str, shape: tuple):
    if pt == "shared.weight":
        return "shared/embedding", shape
    if pt == "lm_head.weight":
        return "decoder/logits/kernel", _t(shape)
    m = re.fullmatch(r"(encoder|decoder)\.final_layer_norm\.weight", pt)
    if m:
        return f"{m.group(1)}/rms_norm/scale", shape
    m = re.fullmatch(r"(encoder|decoder)\.block\.(\d+)\.layer\.(\d+)\.(.+)", pt)
    if not m:
        return None  # embed_tokens: tied
    base = f"{m.group(1)}/block_{int(m.group(2)):03d}/layer_{int(m.group(3)):03d}"
    rest = m.group(4)
    if rest == "layer_norm.weight":
        return f"{base}/rms_norm/scale", shape
    rest = rest.replace(".weight", "")
    if rest.startswith("DenseReluDense"):
        return f"{base}/{rest.replace('.', '/')}/kernel", _t(shape)
    return f"{base}/{rest.replace('.', '/')}", _t(shape)


def albert_name(pt: str, shape: tuple):
    m = re.fullmatch(r"albert\.encoder\.albert_layer_groups\.(\d+)\.albert_layers\.(\d+)\.(.+)", pt)
    if m:
        scope = f"bert/encoder/transformer/group_{m.group(1)}/inner_group_{m.group(2)}/"
        part, leaf = m.group(3).rsplit(".", 1)
        tf_part = {"attention.query": "attention_1/self/query", "attention.key": "attention_1/self/key",
                   "attention.value": "attention_1/self/value", "attention.dense": "attention_1/output/dense",
                   "attention.LayerNorm": "LayerNorm", "ffn": "ffn_1/intermediate/dense",
                   "ffn_output": "ffn_1/intermediate/output/dense",
                   "full_layer_layer_norm": "LayerNorm_1"}[part]
        return _leaf(scope + tf_part, leaf, shape, "LayerNorm" in tf_part)
    fixed = {"albert.pooler": "bert/pooler/dense", "predictions.dense": "cls/predictions/transform/dense",
             "predictions.LayerNorm": "cls/predictions/transform/LayerNorm",
             "albert.encoder.embedding_hidden_mapping_in": "bert/encoder/embedding_hidden_mapping_in",
             "albert.embeddings.LayerNorm": "bert/embeddings/LayerNorm"}
    part, leaf = pt.rsplit(".", 1)
    if part in fixed:
        return _leaf(fixed[part], leaf, shape, "LayerNorm" in part)
    if pt == "predictions.bias":
        return "cls/predictions/output_bias", shape
    if pt.startswith("sop_classifier.classifier."):
        return "cls/seq_relationship/output_" + ("weights" if leaf == "weight" else "bias"), shape
    if pt.startswith("albert.embeddings."):
        return "bert/embeddings/" + part.rsplit(".", 1)[1], shape
    return None  # predictions.decoder: tied


def _leaf(scope: str, leaf: str, shape: tuple, norm: bool):
    if norm:
        return f"{scope}/{'gamma' if leaf == 'weight' else 'beta'}", shape
    return (f"{scope}/kernel", _t(shape)) if leaf == "weight" else (f"{scope}/bias", shape)


def electra_disc_name(pt: str, shape: tuple):
    if pt.startswith("discriminator_predictions."):
        part, leaf = pt.rsplit(".", 1)
        tf = "discriminator_predictions/" + ("dense_1" if "dense_prediction" in part else "dense")
        return _leaf(tf, leaf, shape, False)
    return bert_like(pt, shape, "electra", "electra")


def electra_gen_name(pt: str, shape: tuple):
    if pt.startswith("generator_predictions."):
        part, leaf = pt.rsplit(".", 1)
        return _leaf(part.replace(".", "/"), leaf, shape, "LayerNorm" in part)
    if pt == "generator_lm_head.bias":
        return "generator_predictions/output_bias", shape
    if pt.startswith("electra.embeddings."):
        return bert_like(pt, shape, "electra", "electra")
    return bert_like(pt, shape, "electra", "generator")


def mobilebert_name(pt: str, shape: tuple):
    fixed = {"cls.predictions.bias": ("cls/predictions/output_bias", shape),
             "cls.predictions.dense.weight": ("cls/predictions/extra_output_weights", _t(shape)),
             "cls.seq_relationship.weight": ("cls/seq_relationship/output_weights", shape),
             "cls.seq_relationship.bias": ("cls/seq_relationship/output_bias", shape)}
    if pt in fixed:
        return fixed[pt]
    if pt.startswith("cls.predictions.transform."):
        return bert_like(pt, shape, "cls", "cls")
    got = bert_like(pt, shape, "mobilebert")
    if got is None:
        return None
    name = re.sub(r"/ffn/(\d+)/", r"/ffn_layer_\1/", got[0]).replace("/LayerNorm/", "/FakeLayerNorm/")
    return name, got[1]


def bigbird_name(pt: str, shape: tuple, heads: int = 2):
    if pt == "bert.embeddings.LayerNorm.weight":
        return "bert/encoder/LayerNorm/gamma", shape
    if pt == "bert.embeddings.LayerNorm.bias":
        return "bert/encoder/LayerNorm/beta", shape
    if pt == "cls.predictions.bias":
        return "cls/predictions/output_bias", shape
    if pt.startswith("cls.seq_relationship."):
        return "cls/seq_relationship/output_" + ("weights" if pt.endswith("weight") else "bias"), shape
    if pt.startswith("cls.predictions.transform."):
        return bert_like(pt, shape, "cls", "cls")
    if pt.startswith("bert.pooler."):
        return _leaf("bert/pooler/dense", pt.rsplit(".", 1)[1], shape, False)
    got = bert_like(pt, shape, "bert")
    if got is None:
        return None
    name, tf_shape = got
    if re.search(r"/attention/self/(query|key|value)/kernel$", name):
        return name, (shape[1], heads, shape[0] // heads)
    if name.endswith("/attention/output/dense/kernel"):
        return name, (heads, shape[1] // heads, shape[0])
    return got


def tapas_name(pt: str, shape: tuple):
    top = {"output_weights": "output_weights", "output_bias": "output_bias",
           "column_output_weights": "column_output_weights", "column_output_bias": "column_output_bias",
           "aggregation_classifier.weight": "output_weights_agg",
           "aggregation_classifier.bias": "output_bias_agg"}
    if pt in top:
        return top[pt], shape
    return bert_like(pt, shape, "tapas")


def xlnet_name(pt: str, shape: tuple):
    fixed = {"transformer.word_embedding.weight": "model/transformer/word_embedding/lookup_table",
             "transformer.mask_emb": "model/transformer/mask_emb/mask_emb",
             "lm_loss.bias": "model/lm_loss/bias"}
    if pt in fixed:
        return fixed[pt], shape
    m = re.fullmatch(r"transformer\.layer\.(\d+)\.(.+)", pt)
    if not m:
        return None
    base, rest = f"model/transformer/layer_{m.group(1)}", m.group(2)
    if re.fullmatch(r"rel_attn\.(q|k|v|o|r)", rest):
        return f"{base}/{rest.replace('.', '/')}/kernel", shape
    if re.fullmatch(r"rel_attn\.(r_w_bias|r_r_bias|r_s_bias|seg_embed)", rest):
        return "stacked", shape  # made below from all layers
    part, leaf = rest.rsplit(".", 1)
    part = part.replace("layer_norm", "LayerNorm").replace(".", "/")
    return _leaf(f"{base}/{part}", leaf, shape, "LayerNorm" in part)


def mobilenet_name(version: int) -> Naming:
    top = f"MobilenetV{version}"

    def name(pt: str, shape: tuple):
        if pt.endswith("num_batches_tracked"):
            return None
        if pt.startswith("classifier."):
            if pt.endswith("weight"):
                return f"{top}/Logits/Conv2d_1c_1x1/weights", (1, 1) + _t(shape)
            return f"{top}/Logits/Conv2d_1c_1x1/biases", shape
        m = re.fullmatch(rf"mobilenet_v{version}\.(.+)\.(convolution|normalization)\.(\w+)", pt)
        block, kind, leaf = m.groups()
        if version == 1:
            if block == "conv_stem":
                scope = f"{top}/Conv2d_0"
            else:
                i = int(block.split(".")[1])
                scope = f"{top}/Conv2d_{i // 2 + 1}_{'pointwise' if i % 2 else 'depthwise'}"
        else:
            stem = {"conv_stem.first_conv": "Conv", "conv_stem.conv_3x3": "expanded_conv/depthwise",
                    "conv_stem.reduce_1x1": "expanded_conv/project", "conv_1x1": "Conv_1"}
            if block in stem:
                scope = f"{top}/{stem[block]}"
            else:
                _, i, sub = block.split(".")
                scope = f"{top}/expanded_conv_{int(i) + 1}/" + \
                    {"expand_1x1": "expand", "conv_3x3": "depthwise", "reduce_1x1": "project"}[sub]
        if kind == "normalization":
            return f"{scope}/BatchNorm/" + {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
                                             "running_var": "moving_variance"}[leaf], shape
        if "depthwise" in scope or block.endswith("conv_3x3"):
            return f"{scope}/depthwise_weights", (shape[2], shape[3], shape[0], shape[1])
        return f"{scope}/weights", (shape[2], shape[3], shape[1], shape[0])

    return name


#: preset -> (config class, config, PyTorch class, loader, naming, slot names, oracle call,
#:            PyTorch names left out because tied)
MODELS: dict[str, dict[str, Any]] = {
    "gpt2": dict(config=("GPT2Config", dict(n_embd=8, n_layer=2, n_head=2, vocab_size=11, n_positions=16)),
                 model="GPT2Model", loader="load_tf_weights_in_gpt2", naming=gpt2_name,
                 slots=("/adam_m", "/adam_v"), call="model_config_path", tied=()),
    "t5": dict(config=("T5Config", dict(vocab_size=99, d_model=16, d_kv=4, d_ff=24, num_layers=2, num_heads=4,
                                        relative_attention_num_buckets=8)),
               model="T5ForConditionalGeneration", loader="load_tf_weights_in_t5", naming=t5_name,
               slots=("_slot_vc", "_slot_vr"), call="model_config_path",
               tied=("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight")),
    "t5-v1.1": dict(preset="t5", config=("T5Config", dict(vocab_size=99, d_model=16, d_kv=4, d_ff=24, num_layers=2,
                                                           num_heads=4, relative_attention_num_buckets=8,
                                                           feed_forward_proj="gated-gelu",
                                                           tie_word_embeddings=False)),
                    model="T5ForConditionalGeneration", loader="load_tf_weights_in_t5", naming=t5_name,
                    slots=("_slot_v",), call="model_config_path",
                    tied=("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")),
    "mt5": dict(preset="t5", config=("MT5Config", dict(vocab_size=99, d_model=16, d_kv=4, d_ff=24, num_layers=2,
                                                        num_heads=4, relative_attention_num_buckets=8,
                                                        feed_forward_proj="gated-gelu",
                                                        tie_word_embeddings=False)),
                model="MT5ForConditionalGeneration", loader="load_tf_weights_in_t5", naming=t5_name,
                slots=("_slot_vc", "_slot_vr"), call="model_config_path",
                tied=("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")),
    "albert": dict(config=("AlbertConfig", dict(BERT_TINY, embedding_size=16)), model="AlbertForPreTraining",
                   loader="load_tf_weights_in_albert", naming=albert_name, slots=("/adam_m", "/adam_v"),
                   call="model_config_path", tied=("predictions.decoder.weight", "predictions.decoder.bias")),
    "electra": dict(config=("ElectraConfig", dict(BERT_TINY, embedding_size=16)), model="ElectraForPreTraining",
                    loader="load_tf_weights_in_electra", naming=electra_disc_name, slots=("/adam_m", "/adam_v"),
                    call="electra_discriminator", tied=(), with_generator=True),
    "electra-generator": dict(config=("ElectraConfig", dict(BERT_TINY, hidden_size=8, embedding_size=16,
                                                            num_attention_heads=2, intermediate_size=12)),
                              model="ElectraForMaskedLM", loader="load_tf_weights_in_electra",
                              naming=electra_gen_name, slots=("/adam_m", "/adam_v"),
                              call="electra_generator", tied=("generator_lm_head.weight",),
                              with_discriminator=True),
    "mobilebert": dict(config=("MobileBertConfig", dict(BERT_TINY, embedding_size=16, intra_bottleneck_size=16,
                                                        true_hidden_size=16, num_feedforward_networks=2)),
                       model="MobileBertForPreTraining", loader="load_tf_weights_in_mobilebert",
                       naming=mobilebert_name, slots=("/adam_m", "/adam_v"), call="model_config_path",
                       tied=("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")),
    "bigbird": dict(config=("BigBirdConfig", dict(BERT_TINY, attention_type="original_full")),
                    model="BigBirdForPreTraining", loader="load_tf_weights_in_big_bird",
                    naming=bigbird_name, slots=("/adam_m", "/adam_v"), call="model_path",
                    tied=("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")),
    "tapas": dict(config=("TapasConfig", dict(BERT_TINY, num_aggregation_labels=4, use_answer_as_supervision=True,
                                              type_vocab_sizes=[3, 256, 256, 2, 256, 256, 10])),
                  model="TapasForQuestionAnswering", loader="load_tf_weights_in_tapas", naming=tapas_name,
                  slots=("/adam_m", "/adam_v"), call="model_config_path", tied=()),
    "xlnet": dict(config=("XLNetConfig", dict(vocab_size=99, d_model=16, n_layer=2, n_head=2, d_inner=24)),
                  model="XLNetLMHeadModel", loader="load_tf_weights_in_xlnet", naming=xlnet_name,
                  slots=("/Adam", "/Adam_1"), call="model_config_path", tied=("lm_loss.weight",)),
    "mobilenet_v1": dict(config=("MobileNetV1Config", dict(depth_multiplier=0.25, image_size=32, num_labels=5)),
                         model="MobileNetV1ForImageClassification", loader="load_tf_weights_in_mobilenet_v1",
                         naming=mobilenet_name(1), slots=("/RMSProp", "/RMSProp_1", "/ExponentialMovingAverage"),
                         call="model_config_path", tied=()),
    "mobilenet_v2": dict(config=("MobileNetV2Config", dict(depth_multiplier=0.35, image_size=32, num_labels=5)),
                         model="MobileNetV2ForImageClassification", loader="load_tf_weights_in_mobilenet_v2",
                         naming=mobilenet_name(2), slots=("/RMSProp", "/RMSProp_1", "/Momentum"),
                         call="model_config_path", tied=()),
}
MODELS["mobilenet_v2-ema"] = dict(MODELS["mobilenet_v2"], ema=True,
                                  slots=("/RMSProp", "/RMSProp_1"))


def save(prefix: Path, tensors: dict) -> None:
    import tensorflow as tf

    prefix.parent.mkdir(parents=True, exist_ok=True)
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[n]) for n in names])


def pt_tensors(model: Any) -> dict:
    """Parameters, and BatchNorm statistics (the loaders fill those too)."""
    out = dict(model.named_parameters(remove_duplicate=False))
    out.update({k: v for k, v in model.named_buffers() if k.endswith(("running_mean", "running_var"))})
    return out


def variables(spec: dict, transformers: Any, cfg: Any, rng: Any) -> dict:
    import numpy as np

    model = getattr(transformers, spec["model"])(cfg)
    out: dict = {}
    stacked: dict = {}
    for pt, value in pt_tensors(model).items():
        if pt in spec["tied"]:
            continue  # PyTorch ties it; the original checkpoint has no variable for it
        got = spec["naming"](pt, tuple(value.shape))
        if got is None:
            continue
        name, shape = got
        if name == "stacked":  # XLNet: one [n_layer, ...] variable per kind
            stacked.setdefault(pt.rsplit(".", 1)[1], []).append(shape)
            continue
        if name.endswith(("moving_variance",)):
            out[name] = rng.uniform(0.5, 2.0, shape).astype("float32")
        else:
            out[name] = rng.standard_normal(shape).astype("float32")
    for kind, shapes in stacked.items():
        out[f"model/transformer/{kind}"] = rng.standard_normal((len(shapes),) + shapes[0]).astype("float32")
    return out


def make(name: str, out: Path) -> None:
    import numpy as np
    import transformers
    from safetensors.torch import save_file

    spec = MODELS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    config_cls, kwargs = spec["config"]
    cfg = getattr(transformers, config_cls)(**kwargs)
    tensors = variables(spec, transformers, cfg, rng)
    own = sorted(tensors)  # what the preset converts (and --reverse gives back)
    if spec.get("with_generator"):  # the other half of an ELECTRA checkpoint: left out
        gen = MODELS["electra-generator"]
        gcfg = getattr(transformers, gen["config"][0])(**gen["config"][1])
        tensors.update({k: v for k, v in variables(gen, transformers, gcfg, rng).items()
                        if not k.startswith("electra/")})
        tensors["temperature"] = np.array(1.0, dtype=np.float32)
    if spec.get("with_discriminator"):
        disc = MODELS["electra"]
        dcfg = getattr(transformers, disc["config"][0])(**disc["config"][1])
        tensors.update({k: v for k, v in variables(disc, transformers, dcfg, rng).items()
                        if not k.startswith("electra/embeddings/")})
    if spec.get("ema"):  # TF-slim releases: a moving-average shadow per trainable variable
        tensors.update({f"{k}/ExponentialMovingAverage": rng.standard_normal(v.shape).astype(v.dtype)
                        for k, v in list(tensors.items()) if not k.endswith(("moving_mean", "moving_variance"))})
    folder = out / name
    save(folder / "clean" / "model.ckpt", tensors)
    slots = dict(tensors, global_step=np.array(1000, dtype=np.int64))
    for k, v in tensors.items():
        if k.endswith("/ExponentialMovingAverage"):
            continue
        for suffix in spec["slots"]:
            slots[k + suffix] = rng.standard_normal(v.shape).astype(v.dtype)
    save(folder / "slots" / "model.ckpt", slots)
    cfg.save_pretrained(folder)  # config.json
    model = getattr(transformers, spec["model"])(cfg)
    loader = getattr(transformers, spec["loader"])
    prefix = str(folder / "clean" / "model.ckpt")
    call = spec["call"]
    if call == "model_config_path":
        loader(model, cfg, prefix)
    elif call == "model_path":
        loader(model, prefix)
    else:
        loader(model, cfg, prefix, "discriminator" if call == "electra_discriminator" else "generator")
    state = {k: v.detach().clone().contiguous() for k, v in pt_tensors(model).items()}
    save_file(state, str(folder / "oracle.safetensors"))
    (folder / "oracle.json").write_text(json.dumps({
        "preset": spec.get("preset", name), "tied": list(spec["tied"]), "pt_class": spec["model"],
        "tf_names": own}))


def main(argv: list[str]) -> int:
    import transformers

    transformers.logging.set_verbosity_error()
    out = Path(argv[0])
    for name in argv[1:] or list(MODELS):
        make(name, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
