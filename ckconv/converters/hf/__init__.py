"""Hugging Face transformers layouts that depend on a model's config.json.

``tf2`` maps the TF2 checkpoints of transformers' TF classes (tf_model.h5) to the PyTorch
names of the same architecture and back. The rules are data: the generic ones are the
``hf-tf2`` preset, the per-model_type facts are ``tf2_models.toml`` and ``tf2/<type>.toml``.
"""
