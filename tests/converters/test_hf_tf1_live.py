"""Presets for original TF1 research checkpoints against transformers 4.46's
``load_tf_weights_in_<model>``: a random checkpoint in the original names (made by TF in a
4.46 subprocess, see hf446/make_tf1_checkpoints.py) with Adam slots and global_step converts
bit-exact to the state dict 4.46's loader makes of it (slots dropped), and ``--reverse``
gives back the original tensors bit-exact (read by TensorFlow's own reader).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ckconv.cli import main
from tests.converters.hf446.make_tf1_checkpoints import MODELS
from tests.converters.test_hf_tf2_live import run_446
from tests.helpers import live_module, live_tf

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    live_module("safetensors"), live_tf()
    out = tmp_path_factory.mktemp("tf1")
    run_446("tests.converters.hf446.make_tf1_checkpoints", str(out))
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_tf1_preset_matches_446_loader_and_reverses(made: Path, name: str, tmp_path: Path) -> None:
    tf = live_tf()
    from safetensors.numpy import load_file

    info = json.loads((made / name / "oracle.json").read_text())
    preset, config = info["preset"], str(made / name / "config.json")
    out = tmp_path / "model.safetensors"
    assert main([str(made / name / "slots" / "model.ckpt"), str(out), "--preset", preset,
                 "--config", config, "-q"]) == 0
    got, expected = load_file(str(out)), load_file(str(made / name / "oracle.safetensors"))
    assert sorted(got) == sorted(set(expected) - set(info["tied"]))
    for key, value in got.items():
        want = expected[key]
        assert value.dtype == want.dtype and value.shape == want.shape, key
        assert value.tobytes() == want.tobytes(), f"{name}: {key} differs from 4.46"

    back = tmp_path / "back" / "model.ckpt"
    assert main([str(out), str(back), "--preset", preset, "--config", config, "--reverse",
                 "-q"]) == 0
    original = tf.train.load_checkpoint(str(made / name / "clean" / "model.ckpt"))
    returned = tf.train.load_checkpoint(str(back))
    names = returned.get_variable_to_shape_map()
    assert sorted(names) == info["tf_names"]  # the other half of an ELECTRA checkpoint stays out
    shadows = set(original.get_variable_to_shape_map())
    for key in names:
        # mobilenet_v2-ema writes the moving averages under the plain names
        source = f"{key}/ExponentialMovingAverage" if preset.endswith("-ema") and \
            f"{key}/ExponentialMovingAverage" in shadows else key
        a, b = original.get_tensor(source), returned.get_tensor(key)
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), key
