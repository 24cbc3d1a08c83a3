"""The scripts in examples/ run as users run them: ``python examples/<name>.py`` from the root."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import ckconv
from tests.helpers import FIXTURES, ROOT, live_tf


def run_example(name: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, f"examples/{name}", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.live
def test_seed_tutorial(tmp_path):
    torch = pytest.importorskip("torch")
    out = run_example("seed_tutorial.py", str(tmp_path))
    assert "op_to_restore(w1=4, w2=8)   = 24.0" in out
    assert "op_to_restore(w1=13, w2=17) = 60.0" in out
    assert "op_to_restore * 2           = 120.0" in out
    state = torch.load(tmp_path / "my_second_model.pt", weights_only=True)
    assert list(state) == ["bias"] and state["bias"].item() == 2.0


@pytest.mark.live
def test_warm_start(tmp_path):
    live_tf()
    out = run_example("warm_start.py", str(tmp_path))
    assert "features of 16 inputs identical" in out and "max |diff| = 0.0" in out
    warm = ckconv.load(tmp_path / "warm")
    assert list(warm) == ["student/encoder/dense_0/bias", "student/encoder/dense_0/kernel",
                          "student/encoder/dense_1/bias", "student/encoder/dense_1/kernel"]
    pretrained = ckconv.load(tmp_path / "pretrained", step=20)
    for name in warm:
        old = name.replace("student/", "", 1)
        np.testing.assert_array_equal(warm[name].numpy(), pretrained[old].numpy())


def test_bert_to_hf(tmp_path):
    import ckconv

    if "bert" not in ckconv.rules.presets():
        pytest.skip("bert preset missing")
    out = run_example("bert_to_hf.py", str(FIXTURES / "bert_tiny"), str(tmp_path / "hf"))
    assert "139 TF tensors -> 46 Hugging Face tensors" in out
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    original = json.loads((FIXTURES / "bert_tiny" / "bert_config.json").read_text())
    assert {k: config[k] for k in original} == original
    assert config["model_type"] == "bert" and config["architectures"] == ["BertForPreTraining"]
    hf = ckconv.load(tmp_path / "hf" / "model.safetensors")
    tf = ckconv.load(FIXTURES / "bert_tiny")
    np.testing.assert_array_equal(
        hf["bert.encoder.layer.1.intermediate.dense.weight"].numpy(),
        tf["bert/encoder/layer_1/intermediate/dense/kernel"].numpy().T)
    np.testing.assert_array_equal(hf["bert.embeddings.word_embeddings.weight"].numpy(),
                                  tf["bert/embeddings/word_embeddings"].numpy())
    assert not any("adam" in n for n in hf) and "global_step" not in hf
