"""Quantized PyTorch weights (torch.ao.quantization) read as integer values plus their
scale / zero point / axis, or dequantized; every value checked against torch itself."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest

import ckconv
from ckconv.cli import main
from tests.helpers import live_torch
from tests.pytorch.pickle_oracle import oracle, pickle_fixture, raw

QUANTIZED_FILES = ["quantized_per_channel.pth", "quantized_per_tensor.pth", "quantized_tensors.pt"]


def _expected(obj: Any, torch: Any) -> dict[str, Any]:
    """The documented layout, computed from torch's own accessors."""
    want: dict[str, Any] = {}

    def add(name: str, t: Any) -> None:
        if not t.is_quantized:
            want[name] = t
            return
        want[name] = t.int_repr()
        if t.qscheme() == torch.per_tensor_affine:
            want[f"{name}.scale"] = torch.tensor(t.q_scale(), dtype=torch.float64)
            want[f"{name}.zero_point"] = torch.tensor(t.q_zero_point(), dtype=torch.int64)
        else:
            want[f"{name}.scale"] = t.q_per_channel_scales()
            want[f"{name}.zero_point"] = t.q_per_channel_zero_points()
            want[f"{name}.axis"] = torch.tensor(t.q_per_channel_axis(), dtype=torch.int64)

    for key, value in obj.items():
        if isinstance(value, tuple):  # Linear's _packed_params: (weight, bias)
            for i, t in enumerate(value):
                add(f"{key}.{i}", t)
        elif isinstance(value, torch.Tensor):
            add(key, value)
    return want


@pytest.mark.live
@pytest.mark.parametrize("name", QUANTIZED_FILES)
def test_integer_values_and_parameters_equal_torchs(name: str) -> None:
    torch = live_torch()
    path = pickle_fixture(name)
    want = _expected(oracle(path), torch)
    tmap = ckconv.load(path)
    assert list(tmap) == list(want)
    for key, t in want.items():
        got = tmap[key]
        assert str(got.dtype) == str(t.dtype).rpartition(".")[2], key
        assert got.shape == tuple(t.shape), key
        assert got.numpy().tobytes() == raw(t), key
    assert any(k.endswith(".axis") for k in tmap) == (name != "quantized_per_tensor.pth")


@pytest.mark.live
@pytest.mark.parametrize("name", QUANTIZED_FILES)
def test_dequantized_values_equal_torch_dequantize_bit_exact(name: str) -> None:
    torch = live_torch()
    path = pickle_fixture(name)
    obj = oracle(path)
    tmap = ckconv.load(path, dequantize=True)
    want = {}
    for key, value in obj.items():
        for sub, t in ([(f"{key}.{i}", t) for i, t in enumerate(value)]
                       if isinstance(value, tuple) else [(key, value)]):
            if isinstance(t, torch.Tensor):
                want[sub] = t.dequantize() if t.is_quantized else t
    assert list(tmap) == list(want)
    quantized = 0
    for key, t in want.items():
        got = tmap[key]
        assert got.dtype.name == str(t.dtype).rpartition(".")[2], key
        assert got.numpy().tobytes() == raw(t), key  # bit for bit, not approximately
        quantized += got.dtype.name == "float32"
    assert quantized >= 2 and not any(k.endswith((".scale", ".axis")) for k in tmap
                                      if not k.endswith(("conv.scale", "fc.scale", "quant.scale")))


@pytest.mark.live
def test_every_scheme_and_integer_type_dequantizes_like_torch() -> None:
    """Random values, large qint32 magnitudes, negative zero points, every scheme."""
    torch = live_torch()
    torch.manual_seed(0)
    x = torch.randn(64, 33) * 50
    cases = {"pt_" + str(dt): torch.quantize_per_tensor(x, 0.0173, zp, dt)
             for dt, zp in ((torch.quint8, 130), (torch.qint8, -9), (torch.qint32, -77))}
    cases["pt_qint32_big"] = torch.quantize_per_tensor(x * 1e7, 0.37, 5, torch.qint32)
    scales = torch.rand(33, dtype=torch.float64) * 0.2 + 1e-3
    zps = torch.randint(-20, 20, (33,))
    for dt in (torch.qint8, torch.quint8, torch.qint32):
        cases["pc_" + str(dt)] = torch.quantize_per_channel(
            x, scales, zps.abs() if dt == torch.quint8 else zps, 1, dt)
    for axis in (0, 1):  # magnitudes where float32(q) rounds
        n = x.shape[axis]
        cases[f"pc_qint32_big_{axis}"] = torch.quantize_per_channel(
            x * 1e7, torch.rand(n, dtype=torch.float64) + 0.1, torch.randint(-20, 20, (n,)),
            axis, torch.qint32)
    cases["fq"] = torch.quantize_per_channel(x.abs(), scales.float(), zps.abs().float(), 1,
                                             torch.quint8)
    from ckconv.formats.pytorch.quantized import DequantizedTensor
    from ckconv.tensor import ArrayTensor

    for name, q in cases.items():
        scheme = str(q.qscheme()).rpartition(".")[2]
        if scheme == "per_tensor_affine":
            scale, zp, axis = q.q_scale(), q.q_zero_point(), None
        else:
            scale = ArrayTensor(q.q_per_channel_scales().numpy())
            zp = ArrayTensor(q.q_per_channel_zero_points().numpy())
            axis = q.q_per_channel_axis()
        got = DequantizedTensor(ArrayTensor(q.int_repr().numpy()), scheme, scale, zp, axis)
        assert got.numpy().tobytes() == raw(q.dequantize()), name


def test_cli_dequantize_flag(tmp_path: Any) -> None:
    live_torch()
    out = tmp_path / "q.safetensors"
    assert main([pickle_fixture("quantized_per_channel.pth"), str(out), "--dequantize"]) == 0
    got = ckconv.load(out)
    assert got["conv.weight"].dtype.name == "float32" and "conv.weight.scale" not in got
    out2 = tmp_path / "q2.safetensors"
    assert main([pickle_fixture("quantized_per_channel.pth"), str(out2)]) == 0
    assert ckconv.load(out2)["conv.weight"].dtype.name == "int8"
    assert "conv.weight.axis" in ckconv.load(out2)


def test_quantized_files_read_without_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    tmap = ckconv.load(pickle_fixture("quantized_per_channel.pth"))
    assert tmap["conv.weight"].dtype.name == "int8" and tmap["conv.weight.axis"].numpy() == 0
    deq = ckconv.load(pickle_fixture("quantized_per_channel.pth"), dequantize=True)
    w = tmap["conv.weight"].numpy().astype(np.float64)
    scale = tmap["conv.weight.scale"].numpy().reshape(-1, 1, 1, 1)
    assert deq["conv.weight"].numpy().shape == w.shape
    np.testing.assert_allclose(deq["conv.weight"].numpy(), w * scale, rtol=1e-6)
    assert "torch" not in sys.modules or sys.modules["torch"] is None


@pytest.mark.live
@pytest.mark.parametrize("legacy", [False, True])
def test_torch_fallback_path_keeps_quantized_weights(tmp_path: Any, legacy: bool) -> None:
    """A file only torch can rebuild (a tensor with a Python attribute) goes through
    torch.load(weights_only=True): its quantized tensors get the same layout."""
    torch = live_torch()
    from ckconv.formats.pytorch.reader import TorchTensor

    obj = oracle(pickle_fixture("quantized_tensors.pt"))
    tagged = torch.ones(2)
    tagged.tag = "python attribute"
    path = tmp_path / "fallback.pt"
    torch.save({**obj, "tagged": tagged}, path, _use_new_zipfile_serialization=not legacy)
    zipped = ckconv.load(pickle_fixture("quantized_tensors.pt"))
    fallback = ckconv.load(path)
    assert isinstance(fallback["pc_qint8"], TorchTensor)
    assert list(fallback) == list(zipped) + ["tagged"]
    for name in zipped:
        assert fallback[name].dtype == zipped[name].dtype, name
        assert fallback[name].numpy().tobytes() == zipped[name].numpy().tobytes(), name
    deq = ckconv.load(path, dequantize=True)
    for name in ("pc_qint8", "pt_qint32", "float_qparams", "pt_view"):
        assert deq[name].numpy().tobytes() == raw(obj[name].dequantize()), name
