"""Hugging Face model folders: convert the weights, carry the other files along.

``ckconv tf_folder/ pt_folder/ --preset hf-tf2`` reads a folder written by a transformers
TF class's ``save_pretrained`` (``tf_model.h5`` + ``config.json`` + tokenizer files),
writes ``model.safetensors`` in the PyTorch layout of the same architecture (sharded with
an index above ``max_shard_size``) and copies every file that is not a weight file, so that
``from_pretrained(pt_folder)`` works in transformers 5 (which has no TensorFlow).
``--reverse`` goes from a PyTorch folder to a ``tf_model.h5`` the TF classes of
transformers 4.x load.

The command line calls :func:`wants_folder` and :func:`convert_folder` (its only hook).
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from .errors import FormatError, UsageError

#: Presets that describe a whole Hugging Face folder, not a single weight file.
FOLDER_PRESETS = ("hf-tf2",)
TF_WEIGHTS = "tf_model.h5"
PT_WEIGHTS = "model.safetensors"
# Weight files of any framework: never copied into the converted folder.
_WEIGHT_SUFFIXES = (".h5", ".safetensors", ".bin", ".msgpack", ".ckpt", ".pt", ".pth")
_WEIGHT_INDEXES = (".safetensors.index.json", ".bin.index.json", ".h5.index.json",
                   ".msgpack.index.json")


def wants_folder(sources: list[tuple[str, str]]) -> Optional[str]:
    """The folder preset among the (kind, value) rule sources of the command line (it must
    then be the only source), or None."""
    hits = [v for kind, v in sources if kind == "preset" and v in FOLDER_PRESETS]
    if not hits:
        return None
    if len(sources) > 1:
        raise UsageError(f"--preset {hits[0]} converts a whole model and combines with no "
                         "other preset or rules file")
    return hits[0]


def read_config(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except OSError as exc:
        raise FormatError(f"{path}: cannot read the model config ({exc.strerror})") from None
    except ValueError as exc:
        raise FormatError(f"{path}: the model config is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise FormatError(f"{path}: the model config is not a JSON object")
    return config


def _config_for(src: str, config_path: Optional[str]) -> tuple[dict[str, Any], str]:
    if config_path is None:
        folder = src if os.path.isdir(src) else os.path.dirname(os.path.abspath(src))
        config_path = os.path.join(folder, "config.json")
        if not os.path.isfile(config_path):
            raise UsageError(f"{src}: no config.json beside the weights; the hf-tf2 mapping "
                             "depends on the model (architecture, base model prefix): pass "
                             "--config CONFIG.json")
    return read_config(config_path), config_path


def _weights_in(src: str, reverse: bool) -> str:
    if not os.path.isdir(src):
        return src
    if reverse:
        return src  # ckconv's readers resolve a folder's safetensors/PyTorch weights
    path = os.path.join(src, TF_WEIGHTS)
    if os.path.isfile(path):
        return path
    if os.path.isfile(path + ".index.json"):
        raise UsageError(f"{src}: sharded TF weights (tf_model.h5.index.json) are not "
                         "supported yet; load and save the model once unsharded")
    raise UsageError(f"{src}: no {TF_WEIGHTS} in this folder (a transformers TF model "
                     "folder holds tf_model.h5 and config.json)")


def _is_weight_file(name: str) -> bool:
    return name.endswith(_WEIGHT_INDEXES) or name.endswith(_WEIGHT_SUFFIXES)


def convert_folder(src: str, dst: str, *, preset: str = "hf-tf2", reverse: bool = False,
                   config: Optional[str] = None, max_shard_size: Optional[int] = None,
                   progress: Any = None) -> list[str]:
    """Convert a Hugging Face folder (or one weight file) with a folder preset.

    ``dst`` is a folder when ``src`` is one (weights plus the copied non-weight files), or
    else the output weight file. ``config`` is a config.json to use instead of the one
    beside the weights. Returns notes for the user.
    """
    from . import api
    from .converters.hf import tf2

    if preset not in FOLDER_PRESETS:
        raise UsageError(f"{preset!r} is not a folder preset ({', '.join(FOLDER_PRESETS)})")
    cfg, cfg_path = _config_for(src, config)
    weights = _weights_in(src, reverse)
    tmap = api.load(weights)
    if reverse:
        tmap = tf2.to_tf2(tmap, cfg, cfg_path)
    else:
        tmap = tf2.without_shared_copies(tmap)
        names = list(tmap)
        tmap = tmap.map(tf2.forward_rules(cfg, names, cfg_path))
    folder_out = os.path.isdir(src)
    if folder_out:
        os.makedirs(dst, exist_ok=True)
        target = os.path.join(dst, TF_WEIGHTS if reverse else PT_WEIGHTS)
    else:
        target = dst
    options: dict[str, Any] = {"progress": progress}
    if reverse:
        options["h5_layout"] = "keras"
    elif max_shard_size is not None:
        options["max_shard_size"] = max_shard_size
    notes = list(tmap.notes) + api.save(tmap, target, "hdf5" if reverse else None, **options)
    if folder_out:
        notes += copy_other_files(src, dst)
    return notes


def copy_other_files(src: str, dst: str) -> list[str]:
    """Copy config, tokenizer and generation files (everything but weights) from src to dst."""
    from .io.atomic import AtomicFiles

    copied = []
    with AtomicFiles() as files:
        for name in sorted(os.listdir(src)):
            path = os.path.join(src, name)
            if not os.path.isfile(path) or _is_weight_file(name) or name.startswith("."):
                continue
            target = os.path.join(dst, name)
            if os.path.exists(target) and os.path.samefile(path, target):
                continue
            import shutil

            shutil.copyfile(path, files.path(target))
            copied.append(name)
    return [f"copied {len(copied)} non-weight file(s): {', '.join(copied)}"] if copied else []
