"""Hugging Face sharded checkpoints: the layout ckconv writes and the ones it reads."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import ckconv
from ckconv.cli import main
from ckconv.errors import CkconvError, CorruptCheckpointError, FormatError, UsageError
from ckconv.tensor import Tensor
from ckconv.tensormap import TensorMap
from tests.helpers import assert_bit_exact
from tests.helpers import live_torch, read_safetensors, read_torch


def _arrays(n: int = 6, size: int = 100) -> dict[str, np.ndarray]:
    return {f"layer.{i}.weight": np.full(size, i, np.float32) for i in range(n)}


def _index(path) -> dict:
    with open(path) as f:
        return json.load(f)


def test_safetensors_shards_follow_hugging_face_layout(tmp_path):
    arrays = _arrays()  # 6 x 400 bytes
    notes = ckconv.save(arrays, tmp_path / "model.safetensors", max_shard_size=1000)
    files = sorted(os.listdir(tmp_path))
    assert files == ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                     "model-00003-of-00003.safetensors", "model.safetensors.index.json"]
    index = _index(tmp_path / "model.safetensors.index.json")
    assert index["metadata"] == {"total_size": 2400}
    assert list(index["weight_map"]) == list(arrays)
    assert index["weight_map"]["layer.0.weight"] == "model-00001-of-00003.safetensors"
    assert index["weight_map"]["layer.5.weight"] == "model-00003-of-00003.safetensors"
    assert any("3 shards" in n for n in notes)
    from safetensors.numpy import load_file

    merged = {}
    for fname in sorted(set(index["weight_map"].values())):  # what transformers does
        shard = load_file(str(tmp_path / fname))
        assert all(index["weight_map"][k] == fname for k in shard)
        merged.update(shard)
    assert sorted(merged) == sorted(arrays)
    for k, v in arrays.items():
        assert_bit_exact(merged[k], v, k)


def test_stem_of_destination_names_the_shards(tmp_path):
    ckconv.save(_arrays(), tmp_path / "run7.safetensors", max_shard_size=1000)
    assert sorted(os.listdir(tmp_path)) == [
        "run7-00001-of-00003.safetensors", "run7-00002-of-00003.safetensors",
        "run7-00003-of-00003.safetensors", "run7.safetensors.index.json"]


def test_directory_destination_uses_default_names(tmp_path):
    out = tmp_path / "hf"
    out.mkdir()
    ckconv.save(_arrays(), out, format="safetensors", max_shard_size=1000)
    assert "model.safetensors.index.json" in os.listdir(out)
    ckconv.save(_arrays(2), str(tmp_path / "single") + "/", format="safetensors")
    assert os.listdir(tmp_path / "single") == ["model.safetensors"]


def test_everything_fitting_one_shard_is_one_plain_file(tmp_path):
    ckconv.save(_arrays(), tmp_path / "model.safetensors", max_shard_size=10_000)
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_tensor_larger_than_limit_gets_its_own_shard(tmp_path):
    arrays = {"a": np.zeros(10, np.float32), "big": np.zeros(1000, np.float32),
              "b": np.zeros(10, np.float32)}
    ckconv.save(arrays, tmp_path / "model.safetensors", max_shard_size=100)
    wm = _index(tmp_path / "model.safetensors.index.json")["weight_map"]
    assert len(set(wm.values())) == 3 and wm["a"] != wm["big"] != wm["b"]


@pytest.mark.parametrize("how", ["index", "directory"])
def test_sharded_safetensors_read_as_one_map(tmp_path, how):
    arrays = _arrays()
    ckconv.save(arrays, tmp_path / "model.safetensors", max_shard_size=1000)
    src = tmp_path / "model.safetensors.index.json" if how == "index" else tmp_path
    tmap = ckconv.load(src)
    assert tmap.format == "safetensors" and list(tmap) == list(arrays)
    assert len(tmap.source_files) == 4
    for k, v in arrays.items():
        assert_bit_exact(tmap[k].numpy(), v, k)


def test_reads_index_written_like_transformers(tmp_path):
    """Sorted keys, indent 2, shards by safetensors.numpy, extra index metadata."""
    from safetensors.numpy import save_file

    save_file({"b.weight": np.ones(2, np.float32)}, str(tmp_path / "model-00001-of-00002.safetensors"),
              metadata={"format": "pt"})
    save_file({"a.weight": np.zeros(3, np.int64)}, str(tmp_path / "model-00002-of-00002.safetensors"),
              metadata={"format": "pt"})
    index = {"metadata": {"total_size": 32, "total_parameters": 5},
             "weight_map": {"a.weight": "model-00002-of-00002.safetensors",
                            "b.weight": "model-00001-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True))
    tmap = ckconv.load(tmp_path)
    assert list(tmap) == ["b.weight", "a.weight"]  # shard order
    assert tmap.metadata["format"] == "pt" and tmap.metadata["total_parameters"] == "5"
    assert "total_size" not in tmap.metadata


def test_directory_with_one_safetensors_file(tmp_path):
    ckconv.save({"x": np.ones(2, np.float32)}, tmp_path / "weights.safetensors")
    (tmp_path / "config.json").write_text("{}")
    assert list(ckconv.load(tmp_path)) == ["x"]


def test_directory_with_several_files_and_no_index_names_them(tmp_path):
    ckconv.save({"x": np.ones(2, np.float32)}, tmp_path / "a.safetensors")
    ckconv.save({"x": np.ones(2, np.float32)}, tmp_path / "b.safetensors")
    with pytest.raises(FormatError, match="a.safetensors, b.safetensors"):
        ckconv.load(tmp_path)


def test_missing_shard_and_incomplete_shard_are_corrupt(tmp_path):
    ckconv.save(_arrays(), tmp_path / "model.safetensors", max_shard_size=1000)
    index = tmp_path / "model.safetensors.index.json"
    doc = _index(index)
    doc["weight_map"]["ghost"] = "model-00001-of-00003.safetensors"
    index.write_text(json.dumps(doc))
    with pytest.raises(CorruptCheckpointError, match="ghost"):
        ckconv.load(index)
    os.remove(tmp_path / "model-00002-of-00003.safetensors")
    with pytest.raises(CorruptCheckpointError, match="missing: model-00002-of-00003"):
        ckconv.load(index)


def test_failed_sharded_write_leaves_nothing(tmp_path):
    class Broken(Tensor):
        def __init__(self):
            from ckconv import dtypes

            super().__init__(dtypes.BY_NAME["float32"], (100,))

        def _load(self):
            raise CkconvError("disk on fire")

    tmap = TensorMap(_arrays(4))
    tmap["zz.broken"] = Broken()
    with pytest.raises(CkconvError, match="disk on fire"):
        ckconv.save(tmap, tmp_path / "model.safetensors", max_shard_size=500)
    assert os.listdir(tmp_path) == []


def test_refuses_to_overwrite_an_input_shard(tmp_path):
    ckconv.save(_arrays(), tmp_path / "model.safetensors", max_shard_size=1000)
    tmap = ckconv.load(tmp_path)
    with pytest.raises(UsageError, match="overwrite"):
        ckconv.save(tmap, tmp_path / "model.safetensors", max_shard_size=1000)


def test_bad_shard_sizes(tmp_path):
    with pytest.raises(UsageError):
        ckconv.save(_arrays(), tmp_path / "m.safetensors", max_shard_size=-1)
    with pytest.raises(UsageError, match="single file"):
        ckconv.save(_arrays(), tmp_path / "m.h5", max_shard_size=1000)


def test_cli_max_shard_size(tmp_path, capsys):
    src = tmp_path / "in.safetensors"
    ckconv.save(_arrays(), src)
    out = tmp_path / "out"
    assert main([str(src), str(out / "model.safetensors"), "--max-shard-size", "1KB"]) == 0
    assert "model.safetensors.index.json" in os.listdir(out)


# --------------------------------------------------------------------------- PyTorch

@pytest.mark.live
def test_torch_shards_follow_hugging_face_layout(tmp_path):
    torch = live_torch()
    arrays = _arrays()
    ckconv.save(arrays, tmp_path / "pytorch_model.bin", max_shard_size=1000)
    index = _index(tmp_path / "pytorch_model.bin.index.json")
    assert index["metadata"] == {"total_size": 2400}
    files = sorted(set(index["weight_map"].values()))
    assert files == [f"pytorch_model-0000{i}-of-00003.bin" for i in (1, 2, 3)]
    merged = {}
    for fname in files:
        shard = torch.load(tmp_path / fname, weights_only=True)
        assert type(shard) is dict
        merged.update(shard)
    for k, v in arrays.items():
        assert merged[k].numpy().tobytes() == v.tobytes(), k
    tmap = ckconv.load(tmp_path)
    assert tmap.format == "torch" and list(tmap) == list(arrays)


@pytest.mark.live
def test_tied_tensors_stay_in_one_shard_and_share_storage(tmp_path):
    torch = live_torch()
    emb = torch.arange(100, dtype=torch.float32)
    state = {"embed.weight": emb, "mid": torch.zeros(100), "lm_head.weight": emb}
    torch.save(state, tmp_path / "src.pt")
    out = tmp_path / "out"
    ckconv.convert(tmp_path / "src.pt", out / "pytorch_model.bin", max_shard_size=500)
    wm = _index(out / "pytorch_model.bin.index.json")["weight_map"]
    assert wm["embed.weight"] == wm["lm_head.weight"] != wm["mid"]
    shard = torch.load(out / wm["embed.weight"], weights_only=True)
    assert shard["embed.weight"].untyped_storage().data_ptr() == \
        shard["lm_head.weight"].untyped_storage().data_ptr()
    assert read_torch(str(out / wm["mid"]))["mid"][0] == "float32"


@pytest.mark.live
def test_sharded_safetensors_from_torch_dedups_tied_and_restores(tmp_path):
    live_torch()
    from tests.helpers import other

    out = tmp_path / "st"
    notes = ckconv.convert(other("torch_state_dict.pt"), out / "model.safetensors",
                           max_shard_size=60)
    assert any("lm_head.weight (= embed.weight)" in n for n in notes)
    index = _index(out / "model.safetensors.index.json")
    assert "lm_head.weight" not in index["weight_map"]
    seen = {}
    for fname in set(index["weight_map"].values()):
        seen.update(read_safetensors(str(out / fname)))
    assert "lm_head.weight" not in seen and "embed.weight" in seen
    back = ckconv.load(out)
    assert back["lm_head.weight"] is back["embed.weight"]


def test_sharded_destination_given_back_as_source(tmp_path):
    dst = tmp_path / "model.safetensors"
    ckconv.save(_arrays(), dst, max_shard_size=1000)
    assert not dst.exists()
    assert list(ckconv.load(dst)) == list(_arrays())
