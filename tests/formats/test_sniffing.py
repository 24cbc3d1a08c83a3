"""The input format comes from content, the output format from the extension."""

from __future__ import annotations

import pickle
import shutil
import zipfile

import numpy as np
import pytest

import ckconv
from ckconv import formats
from ckconv.errors import FormatError
from tests.helpers import fixture_prefix
from tests.helpers import live_torch, other


@pytest.mark.parametrize("source,renamed,fmt", [
    ("lightning.ckpt", "model.h5", "torch"),
    ("torch_state_dict.pt", "weights.safetensors", "torch"),
    ("legacy.pt", "old.ckpt", "torch"),
    ("keras2_weights.h5", "weights.bin", "hdf5"),
    ("keras3.weights.h5", "model.pt", "hdf5"),
])
def test_renamed_files_are_recognised_by_content(tmp_path, source, renamed, fmt):
    dst = tmp_path / renamed
    shutil.copy(other(source), dst)
    assert formats.sniff(str(dst)) == fmt
    if fmt == "torch":
        live_torch()
    assert len(ckconv.load(dst)) > 0


def test_safetensors_renamed_ckpt_is_not_tf(tmp_path):
    ckconv.save({"w": np.ones(2, np.float32)}, tmp_path / "x.safetensors")
    (tmp_path / "x.safetensors").rename(tmp_path / "model.ckpt")
    assert formats.sniff(str(tmp_path / "model.ckpt")) == "safetensors"


def test_tf_checkpoint_still_tf():
    assert formats.sniff(fixture_prefix("dtypes")) == "tf"


@pytest.mark.parametrize("path,fmt", [
    ("m.pt", "torch"), ("m.pth", "torch"), ("pytorch_model.bin", "torch"),
    ("m.h5", "hdf5"), ("m.hdf5", "hdf5"), ("m.weights.h5", "hdf5"),
    ("m.safetensors", "safetensors"), ("model.ckpt", "tf"),
])
def test_output_format_from_extension(path, fmt):
    assert formats.for_output(path) == fmt


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name in members:
            z.writestr(name, b"x")
    return path


@pytest.mark.parametrize("make,words", [
    (lambda p: p.write_text("hello world\n"), "a text file"),
    (lambda p: p.write_bytes(pickle.dumps({"a": 1})), "Python pickle that is not a PyTorch"),
    (lambda p: _zip(p, ["config.json", "model.weights.h5"]), "Keras 3 .keras archive"),
    (lambda p: _zip(p, ["a.npy"]), "NumPy .npz"),
    (lambda p: _zip(p, ["readme.txt"]), "zip archive that is not a PyTorch"),
    (lambda p: np.save(p, np.ones(2)), "NumPy .npy"),
    (lambda p: p.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\0" * 30), "GGUF"),
    (lambda p: p.write_bytes(bytes(range(200, 256))), "unrecognised binary"),
    (lambda p: p.write_text('{"weight_map": {"a": "gone.safetensors"}}'), "first shard gone"),
])
def test_unknown_files_say_what_they_look_like(tmp_path, make, words):
    path = tmp_path / "mystery"
    make(path)
    if not path.exists():  # np.save adds .npy
        path = tmp_path / "mystery.npy"
    with pytest.raises(FormatError, match=words):
        ckconv.load(path)
