"""The compiled kernels (ckconv/converters/_native.c) against numpy, bit for bit.

numpy's transposes are the reference for the compiled ones (every element size, shapes
that do not divide the tiles, blocks that start mid-matrix); ckconv's numpy cast kernels,
which test_casts_live.py holds to torch's bytes, are the reference for the compiled casts
(every bit pattern of the half types, random float32 bit patterns and the special values).
test_casts_live.py and test_block_plans.py also run whole conversions both ways.
"""

from __future__ import annotations

import numpy as np
import pytest

from ckconv import dtypes
from ckconv.converters import kernels as numpy_kernels
from ckconv.converters import native
from ckconv.converters.tensors import CastTensor, PermutedTensor
from ckconv.tensor import ArrayTensor
from tests.converters.test_casts_live import F32_SPECIAL

RNG = np.random.default_rng(11)


@pytest.fixture
def compiled(kernels):
    if kernels != "compiled":
        pytest.skip("compares the compiled kernels with numpy's")
    return native.NATIVE


@pytest.mark.parametrize("kernels", ["compiled"], indirect=True)
@pytest.mark.parametrize("itemsize", [1, 2, 3, 4, 8, 16])
@pytest.mark.parametrize("rows,cols", [(1, 1), (5, 3), (37, 53), (64, 48), (300, 129)])
def test_transpose_matches_numpy(compiled, itemsize, rows, cols):
    dt = np.dtype(f"V{itemsize}")
    src = np.frombuffer(RNG.bytes(rows * cols * itemsize), dtype=dt).reshape(rows, cols)
    expected = np.ascontiguousarray(src.T)
    for r0, n in [(0, cols), (cols // 3, cols - cols // 3), (cols - 1, 1)]:
        out = bytearray(n * rows * itemsize)
        compiled.transpose(src, out, rows, cols, itemsize, r0)
        assert bytes(out) == expected[r0:r0 + n].tobytes(), (r0, n)


@pytest.mark.parametrize("kernels", ["compiled"], indirect=True)
def test_transpose_and_cast_refuse_bad_sizes(compiled):
    src = bytearray(4 * 6)
    with pytest.raises(ValueError, match="whole rows"):
        compiled.transpose(src, bytearray(4 * 2 + 1), 2, 3, 4, 0)
    with pytest.raises(ValueError, match="past the source"):
        compiled.transpose(src, bytearray(4 * 2 * 2), 2, 3, 4, 2)
    with pytest.raises(ValueError, match="past the source"):
        compiled.transpose(bytearray(4 * 5), bytearray(4 * 2), 2, 3, 4, 0)
    with pytest.raises(TypeError):
        compiled.transpose(src, b"read-only", 2, 3, 4, 0)
    with pytest.raises(ValueError, match="no kernel"):
        compiled.cast("float32>int8", src, bytearray(6))
    with pytest.raises(ValueError, match="do not agree"):
        compiled.cast("float32>bfloat16", src, bytearray(10))


def _f32_bits() -> np.ndarray:
    special = np.array(F32_SPECIAL, dtype=np.uint32)
    return np.concatenate([special, RNG.integers(0, 2**32, size=200_003, dtype=np.uint32)])


@pytest.mark.parametrize("kernels", ["compiled"], indirect=True)
@pytest.mark.parametrize("pair", ["float32>bfloat16", "float32>float16", "bfloat16>float32",
                                  "float16>float32", "bfloat16>float16", "float16>bfloat16"])
def test_casts_match_the_numpy_kernels(compiled, pair):
    source, target = pair.split(">")
    if source == "float32":
        bits = _f32_bits()
    else:  # every bit pattern, then again at an odd offset (the vector loops' tails)
        every = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
        bits = np.concatenate([every, every[:7]])
    out_dt = np.uint32 if target == "float32" else np.uint16
    got = np.empty(len(bits), out_dt)
    compiled.cast(pair, bits, got)
    want = np.empty(len(bits), out_dt)
    kernel = numpy_kernels.FAST[(source, target)]
    words = numpy_kernels.scratch_words(source, target)
    if words:
        kernel(bits, want, np.empty(len(bits) * words, np.uint32))
    else:
        kernel(bits, want)
    assert got.tobytes() == want.tobytes()


def test_tensors_compute_the_same_bytes_either_way(kernels):
    """The tensors' own plans (transposes of any 2-D-like permutation, casts), whichever
    kernels run; a permutation that is not one 2-D transpose always goes through numpy."""
    cube = RNG.standard_normal((6, 70, 90)).astype(np.float32)
    for axes in [(1, 0, 2), (2, 0, 1), (1, 2, 0), (0, 2, 1)]:
        got = PermutedTensor(ArrayTensor(cube), axes).numpy()
        assert got.tobytes() == np.ascontiguousarray(cube.transpose(axes)).tobytes(), axes
    half = CastTensor(ArrayTensor(cube), dtypes.BY_NAME["float16"]).numpy()
    assert half.tobytes() == cube.astype(np.float16).tobytes()


@pytest.mark.parametrize("kernels", ["compiled"], indirect=True)
def test_numpy_stays_unimported_on_the_compiled_path(tmp_path, kernels):
    """A transpose or cast between files needs no numpy when the kernels are built."""
    import subprocess
    import sys

    import ckconv

    big = RNG.standard_normal((600, 900)).astype(np.float32)  # > SMALL: mapped from the file
    src, dst = tmp_path / "in.safetensors", tmp_path / "out.safetensors"
    ckconv.save({"w": big, "v": big}, str(src))
    rules = tmp_path / "t.toml"
    rules.write_text("[[rule]]\nmatch = 'w'\ntranspose = true\n"
                     "[[rule]]\nmatch = 'v'\ncast = 'bf16'\n")
    code = ("import sys, ckconv.cli\n"
            "code = ckconv.cli.main([sys.argv[1], sys.argv[2], '--rules', sys.argv[3], '-q'])\n"
            "assert code == 0, code\n"
            "assert 'numpy' not in sys.modules, 'numpy was imported'\n")
    subprocess.run([sys.executable, "-c", code, str(src), str(dst), str(rules)], check=True)
    import ml_dtypes

    out = ckconv.load(str(dst))
    assert out["w"].numpy().tobytes() == np.ascontiguousarray(big.T).tobytes()
    assert out["v"].numpy().tobytes() == big.astype(ml_dtypes.bfloat16).tobytes()
