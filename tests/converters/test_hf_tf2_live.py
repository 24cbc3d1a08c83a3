"""--preset hf-tf2 against transformers itself: tiny random TF models of 17 architectures are
saved by transformers 4.46's TF classes (``save_pretrained``); the oracle is the state dict
``<PyTorch class>.from_pretrained(folder, from_tf=True)`` gives in 4.46. ckconv's folder
output must load in transformers 5 (this virtualenv) with nothing missing but tied weights
and nothing unexpected, and hold the oracle's tensors bit for bit.

The 4.46 side runs in one subprocess of the virtualenv named by CKCONV_HF446_PYTHON
(transformers==4.46.3, tensorflow-cpu, tf-keras; .ci/run makes it). Without it the tests
skip locally and fail in CI (CKCONV_REQUIRE_LIVE=1).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ckconv.cli import main
from tests.converters.hf446.make_tf2_models import MODELS, OUTPUT_INDEX
from tests.helpers import REQUIRE_LIVE, ROOT, live_module

pytestmark = pytest.mark.live
HF446_ENV = "CKCONV_HF446_PYTHON"


def hf446_python() -> str:
    python = os.environ.get(HF446_ENV)
    if not python:
        if REQUIRE_LIVE:
            pytest.fail(f"{HF446_ENV} is not set: CI must name the transformers 4.46 Python")
        pytest.skip(f"{HF446_ENV} not set (a Python with transformers 4.46 and TensorFlow)")
    return python


def run_446(module: str, *args: str) -> str:
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=str(ROOT))
    done = subprocess.run([hf446_python(), "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The TF folders and 4.46 oracles of every architecture (one subprocess)."""
    live_module("transformers"), live_module("torch"), live_module("safetensors")
    out = tmp_path_factory.mktemp("hf446")
    run_446("tests.converters.hf446.make_tf2_models", str(out))
    return out


def oracle(made: Path, name: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from safetensors.numpy import load_file

    return (json.loads((made / name / "oracle.json").read_text()),
            load_file(str(made / name / "oracle.safetensors")))


def convert(made: Path, name: str, tmp_path: Path, *extra: str) -> Path:
    src = made / name / "tf"
    (src / "tokenizer_config.json").write_text('{"model_max_length": 64}\n')
    out = tmp_path / f"{name}-pt"
    assert main([str(src), str(out), "--preset", "hf-tf2", "-q", *extra]) == 0
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_tf2_folder_loads_in_transformers5_bit_exact(made: Path, name: str,
                                                     tmp_path: Path) -> None:
    transformers = live_module("transformers")
    torch = live_module("torch")
    info, expected = oracle(made, name)
    out = convert(made, name, tmp_path)
    assert (out / "config.json").read_bytes() == (made / name / "tf" / "config.json").read_bytes()
    assert (out / "tokenizer_config.json").is_file() and not (out / "tf_model.h5").exists()

    from safetensors.numpy import load_file

    got = load_file(str(out / "model.safetensors"))
    random_in_446 = set(info["missing_keys"])  # not loaded by 4.46: tied, or (DeBERTa) missed
    for key in set(got) & set(expected) - random_in_446:
        assert got[key].dtype == expected[key].dtype and got[key].shape == expected[key].shape, key
        assert got[key].tobytes() == expected[key].tobytes(), f"{name}: {key} differs from 4.46"
    pt_class = getattr(transformers, info["pt_class"])
    model, loading = pt_class.from_pretrained(str(out), output_loading_info=True)
    assert not loading["unexpected_keys"] and not loading["mismatched_keys"], loading
    params = dict(model.named_parameters(remove_duplicate=False))
    stored = {params[k].data_ptr() for k in got if k in params}
    for key in loading["missing_keys"]:
        assert params[key].data_ptr() in stored, f"{name}: {key} is missing and not tied"
    # Tied ones included, as 4.46 had them. transformers 5 renames some modules on loading
    # (ViT's attention.attention.key -> attention.k_proj): those were compared in the file.
    for key, value in expected.items():
        if key not in random_in_446 and key in params:
            mine = params[key].detach().numpy()
            assert mine.tobytes() == value.tobytes(), f"{name}: {key} differs after loading"
    state = model.state_dict()
    for key in set(got) - set(expected):  # beyond 4.46's parameters: buffers (final_logits_bias)
        assert key in state and torch.equal(state[key], torch.from_numpy(got[key])), key

    # The model itself: transformers 5 computes what the TF model computed in 4.46.
    io = np.load(made / name / "io.npz")
    inputs = {k: torch.from_numpy(io[k]).long() if "ids" in k else torch.from_numpy(io[k])
              for k in io.files if k != "output"}
    with torch.no_grad():
        result = model.eval()(**inputs)
    mine = result[OUTPUT_INDEX.get(name, 0)].numpy()
    np.testing.assert_allclose(mine, io["output"], rtol=1e-4, atol=2e-5, err_msg=name)


#: TF weights that --reverse cannot give back because PyTorch does not have them: MobileBERT's
#: output embedding, which PyTorch ties to the word embeddings (ckconv writes those).
NOT_IN_PYTORCH = {"mobilebert": {"tf_mobile_bert_for_pre_training/predictions___cls/predictions/decoder/weight:0"}}


def test_tf2_reverse_loads_in_transformers446_tf(made: Path, tmp_path: Path) -> None:
    """PyTorch folder -> tf_model.h5 (--reverse), loaded by 4.46's TF class: every weight
    the original TF model had comes back bit-exact (one subprocess for all architectures)."""
    live_module("transformers"), live_module("safetensors")
    folders = []
    for name in sorted(MODELS):
        pt = convert(made, name, tmp_path)
        back = tmp_path / f"{name}-tf"
        assert main([str(pt), str(back), "--preset", "hf-tf2", "--reverse", "-q"]) == 0
        assert (back / "tf_model.h5").is_file() and (back / "config.json").is_file()
        assert not (back / "model.safetensors").exists()
        folders.append(f"{name}={back}")
    result = json.loads(run_446("tests.converters.hf446.load_tf2_folders", str(made), *folders)
                        .strip().splitlines()[-1])
    for name in sorted(MODELS):
        r = result[name]
        assert not r["missing"], (name, r)
        assert set(r["differ"]) <= NOT_IN_PYTORCH.get(name, set()), (name, r)
        assert r["loaded"] > 0


def test_tf2_folder_sharded_loads_in_transformers5(made: Path, tmp_path: Path) -> None:
    """--max-shard-size: Hugging Face shards and index, loaded by transformers 5 as one model."""
    transformers = live_module("transformers")
    out = convert(made, "bert", tmp_path, "--max-shard-size", "20KB")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all((out / s).is_file() for s in shards)
    assert not (out / "model.safetensors").exists()
    model, loading = transformers.BertForPreTraining.from_pretrained(str(out), output_loading_info=True)
    assert not loading["missing_keys"] and not loading["unexpected_keys"], loading
    _, expected = oracle(made, "bert")
    got = model.state_dict()["bert.encoder.layer.1.output.dense.weight"].numpy()
    assert got.tobytes() == expected["bert.encoder.layer.1.output.dense.weight"].tobytes()
