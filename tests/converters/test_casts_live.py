"""Casts between float32 and bfloat16 / float16 give torch's bytes, bit for bit.

torch is the oracle: each test builds the expected bytes with ``.to(torch.bfloat16)``,
``.half()`` or ``.float()`` on a contiguous tensor and compares them with what ckconv
computes, in memory (``numpy()``), through a file written by the CLI's ``--dtype`` and through
``.torch()``, with the compiled kernels and with numpy's (the ``kernels`` fixture). The
inputs hold the values where conversions differ: signed zeros, infinities,
NaNs with payloads and signs, quiet and signalling, subnormals, ties that round to even,
the largest finites and values that overflow, plus random bit patterns of every kind.
Lengths are multiples of 64: torch converts a ragged tail with a scalar loop that treats
NaN differently from its vectorised loop (kernels.py says which one ckconv follows).
"""

from __future__ import annotations

import numpy as np
import pytest

from ckconv import dtypes, load
from ckconv.api import mapped
from ckconv.cli import main
from ckconv.converters.tensors import CastTensor
from ckconv.formats.safetensors.writer import write as write_safetensors
from ckconv.tensor import ArrayTensor
from ckconv.tensormap import TensorMap
from tests.helpers import live_torch

pytestmark = pytest.mark.live

F32_SPECIAL = [
    0x00000000, 0x80000000, 0x7F800000, 0xFF800000,            # zeros, infinities
    0x7FC00000, 0xFFC00000, 0x7FC12345, 0xFFC12345,            # quiet NaNs with payloads
    0x7F800001, 0xFF800001, 0x7FA00000, 0x7FBFFFFF,            # signalling NaNs
    0x7FFFFFFF, 0xFFFFFFFF, 0x7F80FFFF, 0x7F810000,
    0x00000001, 0x807FFFFF, 0x007FFFFF, 0x00008000, 0x00018000, 0x00007FFF,  # subnormals
    0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001, 0xBF808000, 0xBF818000,  # bf16 ties
    0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F7FFF, 0x7F7F8000,            # largest finites, overflow
    0x477FEFFF, 0x477FF000, 0x477FE000, 0xC77FF000,            # float16: 65504 and overflow
    0x33800000, 0x33000000, 0x33000001, 0x387FC000, 0x38800000, 0x337FFFFF,  # f16 subnormals
    0x3F800000, 0x3EAAAAAB, 0x40490FDB, 0xC2F6E979,            # ordinary numbers
]


def _f32_bits(n: int) -> np.ndarray:
    """The special values, then random bit patterns (every exponent, NaNs included), then
    random normal values; ``n`` elements in all (a multiple of 64)."""
    rng = np.random.default_rng(7)
    special = np.array(F32_SPECIAL, dtype=np.uint32)
    bits = rng.integers(0, 2**32, size=n // 2, dtype=np.uint32)
    normal = rng.standard_normal(n - n // 2 - len(special)).astype(np.float32).view(np.uint32)
    return np.concatenate([special, bits, normal])


def _torch_bits(torch, values: np.ndarray, to) -> np.ndarray:
    """torch's conversion of ``values`` (raw bits) as raw bits."""
    itemsize = values.dtype.itemsize
    source = {4: torch.float32, 2: to[1]}[itemsize]
    t = torch.from_numpy(values.view({4: np.int32, 2: np.int16}[itemsize]).copy()).view(source)
    out = to[0](t).contiguous()
    width = out.element_size()
    return out.view({4: torch.int32, 2: torch.int16}[width]).numpy().view(f"<u{width}")


@pytest.mark.parametrize("target", ["bfloat16", "float16"])
@pytest.mark.parametrize("n", [64 * 1024, 3 << 20])  # one block, and many blocks on two threads
def test_float32_to_half_matches_torch(target, n, kernels):
    torch = live_torch()
    bits = _f32_bits(n)
    conv = {"bfloat16": (lambda t: t.to(torch.bfloat16), None),
            "float16": (lambda t: t.half(), None)}[target]
    expected = _torch_bits(torch, bits, conv)
    got = CastTensor(ArrayTensor(bits.view(np.float32)), dtypes.BY_NAME[target]).numpy()
    assert got.view(np.uint16).tobytes() == expected.tobytes()


@pytest.mark.parametrize("source", ["bfloat16", "float16"])
def test_half_to_float32_matches_torch(source, kernels):
    torch = live_torch()
    every = np.arange(2**16, dtype=np.uint32).astype(np.uint16)  # every bit pattern
    source_torch = {"bfloat16": torch.bfloat16, "float16": torch.float16}[source]
    expected = _torch_bits(torch, every, (lambda t: t.float(), source_torch))
    half = ArrayTensor(every.view(dtypes.BY_NAME[source].numpy), dtypes.BY_NAME[source])
    got = CastTensor(half, dtypes.BY_NAME["float32"]).numpy()
    assert got.view(np.uint32).tobytes() == expected.tobytes()


@pytest.mark.parametrize("flag,target", [("bf16", "bfloat16"), ("fp16", "float16")])
def test_cli_dtype_writes_torch_bytes(tmp_path, flag, target, kernels):
    """From a file (the source mapped block by block, written on two threads) to a file."""
    torch = live_torch()
    bits = _f32_bits((5 << 20) // 4).reshape(-1, 64)  # 5 MiB
    src, dst = tmp_path / "in.safetensors", tmp_path / "out.safetensors"
    write_safetensors(TensorMap({"w": bits.view(np.float32), "small": bits[:3].view(np.float32)}),
                      str(src))
    assert main([str(src), str(dst), "--dtype", flag, "-q"]) == 0
    conv = (lambda t: t.to(torch.bfloat16), None) if target == "bfloat16" else (lambda t: t.half(), None)
    out = load(str(dst))
    for name, arr in (("w", bits), ("small", bits[:3])):
        assert str(out[name].dtype) == target
        expected = _torch_bits(torch, arr.reshape(-1), conv)
        assert out[name].numpy().view(np.uint16).tobytes() == expected.tobytes()
    # .torch() of the cast map computes the same bytes straight into torch tensors
    cast = mapped(load(str(src)), dtype=flag)
    got = cast.torch()["w"]
    assert got.dtype == getattr(torch, target)
    assert got.view(torch.int16).numpy().view(np.uint16).tobytes() == \
        _torch_bits(torch, bits.reshape(-1), conv).tobytes()


@pytest.mark.parametrize("source,target", [("bfloat16", "float16"), ("float16", "bfloat16")])
def test_half_to_half_matches_torch(source, target, kernels):
    """Between the two halves (through float32, rounding once), without ml_dtypes' casts."""
    torch = live_torch()
    every = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    names = {"bfloat16": torch.bfloat16, "float16": torch.float16}
    t = torch.from_numpy(every.view(np.int16).copy()).view(names[source]).to(names[target])
    expected = t.view(torch.int16).numpy().view(np.uint16)
    half = ArrayTensor(every.view(dtypes.BY_NAME[source].numpy), dtypes.BY_NAME[source])
    got = CastTensor(half, dtypes.BY_NAME[target]).numpy()
    assert got.view(np.uint16).tobytes() == expected.tobytes()
