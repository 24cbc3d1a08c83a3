"""Fixtures of tests/fixtures/tf_legacy (V1 checkpoints, Snappy tables, SavedModels)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tests.helpers import ROOT, live_tf

LEGACY = ROOT / "tests" / "fixtures" / "tf_legacy"


def legacy_manifest(name: str) -> dict[str, Any]:
    return json.loads((LEGACY / name / "manifest.json").read_text())


def legacy_path(name: str) -> str:
    return str(LEGACY / name / legacy_manifest(name)["prefix"])


def tf_values(prefix: str) -> dict[str, tuple[str, tuple[int, ...], Any]]:
    """name -> (dtype, shape, bytes or list of bytes) as live TensorFlow reads them now.

    ``load_checkpoint`` where its V1 reader can ("Data type not supported" for complex,
    half and quantized types), else TF's ``RestoreV2`` kernel, which reads V1 files too.
    """
    tf = live_tf()
    reader = tf.train.load_checkpoint(prefix)
    types = reader.get_variable_to_dtype_map()
    out = {}
    for name, shape in reader.get_variable_to_shape_map().items():
        dt = types[name]
        try:
            value = reader.get_tensor(name)
        except Exception:
            value = tf.raw_ops.RestoreV2(prefix=prefix, tensor_names=[name],
                                         shape_and_slices=[""], dtypes=[dt])[0]
            if dt.is_quantized:
                value = tf.bitcast(value, {tf.qint8: tf.int8, tf.quint8: tf.uint8,
                                           tf.qint32: tf.int32}[dt])
            value = value.numpy()
        if dt == tf.string:
            flat = [value] if isinstance(value, bytes) else np.asarray(value, object).reshape(-1)
            out[name] = ("string", tuple(shape), [bytes(b) for b in flat])
        else:
            out[name] = (dt.name, tuple(shape), np.ascontiguousarray(value).tobytes())
    return out


def ckconv_values(tmap: Any) -> dict[str, tuple[str, tuple[int, ...], Any]]:
    out = {}
    for name, t in tmap.items():
        arr = t.numpy()
        if t.dtype.name == "string":
            out[name] = ("string", t.shape, [bytes(b) for b in arr.reshape(-1)])
        else:
            out[name] = (t.dtype.name, t.shape, np.ascontiguousarray(arr).tobytes())
    return out


def all_fixtures() -> list[str]:
    return sorted(p.name for p in Path(LEGACY).iterdir() if (p / "manifest.json").is_file())
