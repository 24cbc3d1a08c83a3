"""Training pickles whose tensors are plain but which hold objects of other classes:
Lightning 1.x / 2.x checkpoints, {"model": sd, "args": Namespace}, numpy values and arrays,
Hugging Face's rng_state.pth, torch.save(model). Every extracted tensor is compared with
what torch.load(weights_only=False) gives (the oracle), bit for bit."""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ckconv
from ckconv.cli import main
from tests.helpers import live_module, live_torch
from tests.pytorch.pickle_oracle import assert_same, oracle, pickle_fixture, raw


@pytest.fixture
def no_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)


@pytest.mark.live
@pytest.mark.parametrize("name,key", [("lightning2.ckpt", "state_dict"),
                                      ("lightning1_layout.ckpt", "state_dict"),
                                      ("model_args.pt", "model"), ("best_acc.pth", "state_dict")])
def test_state_dict_beside_other_objects_equals_torchs(name: str, key: str) -> None:
    live_torch()
    live_module("lightning")  # the oracle imports Lightning's classes
    path = pickle_fixture(name)
    want = oracle(path)[key]
    tmap = ckconv.load(path)
    assert_same(tmap, dict(want))


@pytest.mark.live
def test_whole_pickled_module_reads_as_its_state_dict() -> None:
    live_torch()
    path = pickle_fixture("whole_model.pt")
    model = oracle(path)
    sd = model.state_dict()
    assert "block.scratch" not in sd and "alias.weight" in sd  # what the fixture exercises
    tmap = ckconv.load(path)
    assert_same(tmap, dict(sd))
    assert any("as their state_dict" in n and "TinyNet" in n for n in tmap.notes)


@pytest.mark.live
def test_module_saved_under_model_key_and_with_every_protocol(tmp_path: Path) -> None:
    torch = live_torch()
    from tests.fixtures.pickle_models import TinyNet

    torch.manual_seed(0)
    model = TinyNet()
    args = argparse.Namespace(lr=0.1, sizes=(1, 2))
    # torch.save with protocol 0 writes a text persistent id that torch.load itself refuses
    for protocol in range(1, pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"p{protocol}.pt"
        torch.save({"model": model, "args": args, "epoch": 3}, path, pickle_protocol=protocol)
        tmap = ckconv.load(path)
        assert_same(tmap, dict(oracle(str(path))["model"].state_dict()))
        assert any("argparse.Namespace" in n for n in tmap.notes), protocol


@pytest.mark.live
def test_numpy_arrays_become_tensors_and_scalars_values() -> None:
    live_torch()
    path = pickle_fixture("numpy_arrays.pt")
    want = oracle(path)
    tmap = ckconv.load(path)
    assert list(tmap) == ["features", "counts", "fortran", "mask", "half", "tensor"]
    for name in tmap:
        w = want[name]
        got = tmap[name].numpy()
        assert got.shape == tuple(w.shape), name
        assert got.tobytes() == raw(w), name
        if isinstance(w, np.ndarray):
            assert got.dtype == w.dtype.newbyteorder("<"), name
    assert tmap.extras["torch_non_tensors"]["scalar"] == 2.5
    assert any("names=" in n for n in tmap.notes)  # an object array is not data


@pytest.mark.live
def test_hf_rng_state() -> None:
    live_torch()
    path = pickle_fixture("rng_state.pth")
    want = oracle(path)
    tmap = ckconv.load(path)
    assert list(tmap) == ["numpy.1", "cpu"]
    assert tmap["numpy.1"].numpy().tobytes() == raw(want["numpy"][1])
    assert tmap["cpu"].numpy().tobytes() == raw(want["cpu"])


@pytest.mark.parametrize("name", ["lightning2.ckpt", "lightning1_layout.ckpt", "model_args.pt",
                                  "best_acc.pth", "whole_model.pt", "numpy_arrays.pt",
                                  "rng_state.pth", "quantized_per_channel.pth"])
def test_fixtures_read_without_torch_or_lightning(name: str, no_torch: None) -> None:
    """Nothing is imported: neither torch nor the classes the pickle names."""
    before = set(sys.modules)
    tmap = ckconv.load(pickle_fixture(name))
    tmap.to_numpy()
    new = {m.split(".")[0] for m in set(sys.modules) - before}
    assert not new & {"torch", "lightning", "pytorch_lightning", "argparse", "tests"}, new
    assert len(tmap) > 0


def test_lightning_placeholders_are_listed_by_class(capsys: pytest.CaptureFixture[str]) -> None:
    tmap = ckconv.load(pickle_fixture("lightning1_layout.ckpt"))
    classes = {p["class"] for p in tmap.extras["torch_placeholders"]}
    assert classes == {"pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
                       "pytorch_lightning.callbacks.early_stopping.EarlyStopping",
                       "pytorch_lightning.utilities.parsing.AttributeDict"}
    assert main(["inspect", pickle_fixture("lightning2.ckpt")]) == 0
    err = capsys.readouterr().err
    assert "argparse.Namespace x1 (hyper_parameters.args)" in err
    assert "hyper_parameters.loss (tests.fixtures.pickle_models.TinyLoss)" in err
    assert main(["inspect", "--json", pickle_fixture("model_args.pt")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert any("argparse.Namespace" in n for n in doc["notes"])
    assert doc["placeholders"] == [{"where": "args", "class": "argparse.Namespace", "tensors": 0}]


def test_placeholder_records_state_without_running_it() -> None:
    tmap = ckconv.load(pickle_fixture("model_args.pt"))
    args = tmap.extras["torch_non_tensors"]["args"]
    assert args.class_name() == "argparse.Namespace"
    assert args.attributes() == {"lr": 3e-4, "arch": "tiny", "layers": [8, 4, 3], "seed": 0}
    assert not callable(args)


@pytest.mark.live
def test_converted_whole_model_loads_into_a_fresh_model(tmp_path: Path) -> None:
    """Model-level check: converted weights give the original model's outputs."""
    torch = live_torch()
    from tests.fixtures.pickle_models import TinyNet

    out = tmp_path / "w.pt"
    ckconv.convert(pickle_fixture("whole_model.pt"), out)
    original = oracle(pickle_fixture("whole_model.pt")).eval()
    fresh = TinyNet().eval()
    fresh.load_state_dict(torch.load(out, weights_only=True), strict=True)
    x, img = torch.randn(2, 8), torch.randn(2, 1, 5, 5)
    assert torch.equal(fresh.body(x), original.body(x))
    assert torch.equal(fresh.block.bn(fresh.block.conv(img)),
                       original.block.bn(original.block.conv(img)))


@pytest.mark.live
def test_whole_quantized_model_is_refused_unless_skipping(tmp_path: Path) -> None:
    """torch.save(quantized_model): the packed weights are never dropped silently."""
    torch = live_torch()
    from torch.ao import quantization as tq

    from ckconv.errors import UnsupportedError
    from tests.fixtures.pickle_models import QuantNet

    model = QuantNet().eval()
    model.qconfig = tq.get_default_qconfig("fbgemm")
    prepared = tq.prepare(model)
    prepared(torch.randn(4, 2, 4, 4))
    path = tmp_path / "whole_int8.pt"
    torch.save(tq.convert(prepared), path)
    with pytest.raises(UnsupportedError, match=r"whole_int8\.pt: .*4 tensor\(s\) packed.*"
                                               r"conv \(torch\.ao\.nn\.quantized.*--skip-unsupported"):
        ckconv.load(path)
    assert main([str(path), str(tmp_path / "o.safetensors")]) == 1
    assert not (tmp_path / "o.safetensors").exists()
    notes = ckconv.convert(path, tmp_path / "o.safetensors", skip_unsupported=True)
    assert any("packed their own way" in n and "fc._packed_params" in n for n in notes)
    assert main([str(path), str(tmp_path / "o2.safetensors"), "--skip-unsupported"]) == 0
    assert main(["inspect", str(path)]) == 0  # inspect lists, with the note


@pytest.mark.live
def test_plain_tensor_attributes_are_noted_like_state_dict_omits_them(tmp_path: Path) -> None:
    torch = live_torch()
    from tests.fixtures.pickle_models import TinyLoss

    loss = TinyLoss()
    loss.table = torch.arange(3.0)  # an attribute, not a buffer: not in state_dict()
    path = tmp_path / "m.pt"
    torch.save(loss, path)
    tmap = ckconv.load(path)
    assert_same(tmap, dict(oracle(str(path)).state_dict()))
    assert any("plain attributes" in n and "TinyLoss: 1" in n for n in tmap.notes)


@pytest.mark.live
def test_convert_passes_reading_options(tmp_path: Path) -> None:
    live_torch()
    out = tmp_path / "d.safetensors"
    ckconv.convert(pickle_fixture("quantized_per_tensor.pth"), out, dequantize=True)
    assert ckconv.load(out)["conv.weight"].dtype.name == "float32"


@pytest.mark.live
@pytest.mark.parametrize("name,key", [("lightning2.ckpt", "state_dict"), ("model_args.pt", "model"),
                                      ("whole_model.pt", None), ("quantized_tensors.pt", None)])
def test_legacy_format_training_pickles_read_without_torch(tmp_path: Path, name: str,
                                                           key: Any) -> None:
    """The same objects saved in the pre-1.6 format (as old Lightning / torch wrote them):
    read by ckconv's own legacy reader, equal to torch's values."""
    torch = live_torch()
    live_module("lightning")
    obj = oracle(pickle_fixture(name))
    path = tmp_path / f"legacy_{name}"
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    want = obj.state_dict() if key is None and isinstance(obj, torch.nn.Module) else \
        (obj[key] if key else obj)
    if name == "quantized_tensors.pt":
        want = {k: v.int_repr() if v.is_quantized else v for k, v in obj.items()}
        tmap = ckconv.load(path)
        for k, v in want.items():
            assert tmap[k].numpy().tobytes() == raw(v), k
        return
    saved = sys.modules["torch"]
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        tmap = ckconv.load(path)
    finally:
        sys.modules["torch"] = saved
    assert_same(tmap, dict(want))


def test_damaged_legacy_files_are_corrupt(tmp_path: Path, no_torch: None) -> None:
    from ckconv.errors import CkconvError
    from tests.helpers import other

    data = Path(other("legacy.pt")).read_bytes()
    for cut in (20, 140, 300, 420, len(data) - 10, len(data) - 1):
        bad = tmp_path / f"cut{cut}.pt"
        bad.write_bytes(data[:cut])
        with pytest.raises(CkconvError) as info:
            ckconv.load(bad, "torch").to_numpy()
        assert str(bad) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.live
def test_legacy_fixture_equals_torch() -> None:
    torch = live_torch()
    path = pickle_fixture("legacy_training.pt")
    want = oracle(path)
    tmap = ckconv.load(path)
    assert_same(tmap, dict(want["state_dict"]))
    assert any("argparse.Namespace" in n for n in tmap.notes)
    assert any("stats (1 tensor)" in n and "qweight (1 tensor)" in n for n in tmap.notes)
    assert isinstance(want["qweight"], torch.Tensor) and want["qweight"].is_quantized
