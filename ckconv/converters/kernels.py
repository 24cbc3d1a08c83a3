"""The numpy loops behind transposes and casts, on one block at a time.

Each kernel writes into a given output array (a block of the result, or the result itself)
so that callers control where bytes land and how much memory is used; see
:mod:`ckconv.io.blocks` for the threads.

Casts follow what PyTorch's CPU kernels produce for a contiguous tensor, bit for bit:
round to nearest even, overflow to infinity, subnormals kept. For NaN the libraries
disagree, and torch even with itself: float32 -> bfloat16 gives ``0xFFFF`` for every NaN
in its vectorised loop (the one every tensor of more than a few elements takes) while
ml_dtypes keeps the sign (``0x7FC0``/``0xFFC0``); float32 <-> float16 keeps the sign and
the payload (its top bits, going down) and sets the quiet bit (the F16C instructions'
rule), where numpy keeps a signalling NaN signalling. ckconv gives torch's vectorised
results.
"""

from __future__ import annotations

import sys
from typing import Optional

import numpy as np

from .native import transpose_cut

#: Rows of the source a transpose tile spans: with the block's rows this keeps a tile's
#: source cache lines resident while the output rows are written.
TILE = 32

_LITTLE = sys.byteorder == "little"


def raw_dtype(itemsize: int) -> np.dtype:
    """An integer (or opaque) dtype of ``itemsize`` bytes: copies move bits, never values."""
    return np.dtype(f"<u{itemsize}") if itemsize in (1, 2, 4, 8) else np.dtype(f"V{itemsize}")


def transpose_rows(src: np.ndarray, out: np.ndarray, r0: int) -> None:
    """``out[:] = src.T[r0:r0 + len(out)]`` for a 2-D ``src``, in tiles of source rows."""
    r1 = r0 + out.shape[0]
    rows = src.shape[0]
    for a0 in range(0, rows, TILE):
        a1 = min(a0 + TILE, rows)
        np.copyto(out[:, a0:a1], src[a0:a1, r0:r1].T)


def permute_rows(src: np.ndarray, axes: tuple[int, ...], out: np.ndarray, r0: int) -> None:
    """``out[:] = src.transpose(axes)[r0:r0 + len(out)]``."""
    merged = _as_2d_transpose(src, axes)
    if merged is not None and out.shape[0]:
        # Each output row (first axis) holds a whole number of rows of the 2-D transpose.
        out2d = out.reshape(-1, merged.shape[0])
        transpose_rows(merged, out2d, r0 * (out2d.shape[0] // out.shape[0]))
        return
    np.copyto(out, src.transpose(axes)[r0:r0 + out.shape[0]])


def _as_2d_transpose(src: np.ndarray, axes: tuple[int, ...]) -> Optional[np.ndarray]:
    """``src`` as a 2-D array whose transpose is the permutation, when the permutation
    only swaps two groups of consecutive axes ([a, b, c] -> [c, a, b] and the like)."""
    cut = transpose_cut(axes)
    if cut is None:
        return None
    lead = int(np.prod(src.shape[:cut], dtype=np.int64))
    return src.reshape(lead, -1)


# ---------------------------------------------------------------------------------- casts


def f32_to_bf16(src: np.ndarray, out: np.ndarray, scratch: np.ndarray) -> None:
    """float32 bits (uint32) -> bfloat16 bits (uint16), rounding to nearest even.

    ``scratch`` is a uint32 array of the same length. Adding 0x7FFF plus the lowest kept
    bit and dropping the low half rounds half to even, and carries into the exponent
    exactly when the value rounds up to the next binade or to infinity.
    """
    np.right_shift(src, 16, out=scratch)
    np.bitwise_and(scratch, 1, out=scratch)
    np.add(scratch, src, out=scratch)
    np.add(scratch, 0x7FFF, out=scratch)
    if _LITTLE:
        np.copyto(out, scratch.view(np.uint16)[1::2])
    else:
        np.right_shift(scratch, 16, out=scratch)
        np.copyto(out, scratch, casting="unsafe")
    nan = np.isnan(src.view(np.float32))
    if nan.any():
        out[nan] = 0xFFFF


def bf16_to_f32(src: np.ndarray, out: np.ndarray) -> None:
    """bfloat16 bits (uint16) -> float32 bits (uint32): exact, the bits move up."""
    np.left_shift(src, 16, out=out, dtype=np.uint32)


def f32_to_f16(src: np.ndarray, out: np.ndarray, scratch: np.ndarray) -> None:
    """float32 bits (uint32) -> float16 bits (uint16), rounding to nearest even, in integer
    arithmetic (numpy's own conversion goes element by element, several times slower).

    ``scratch`` is a uint32 array of twice the length. Normal results: rebias the
    exponent and round the 13 dropped bits as bfloat16 does with 16; past the largest
    half that is infinity. Results below the smallest normal half: adding 0.5 in float32
    puts the half's last bit at float32's, so the FPU rounds to nearest even for us.
    NaNs get torch's (F16C's) form: sign, quiet bit, the payload's top ten bits.
    """
    n = len(src)
    mag, res = scratch[:n], scratch[n:2 * n]
    np.bitwise_and(src, 0x7FFFFFFF, out=mag)
    np.right_shift(mag, 13, out=res)
    np.bitwise_and(res, 1, out=res)
    np.add(res, mag, out=res)
    np.add(res, np.uint32((0x0FFF - 0x38000000) % 2**32), out=res)
    np.right_shift(res, 13, out=res)
    np.minimum(res, 0x7C00, out=res)  # overflow (and the wrapped small values) -> inf
    small = mag < 0x38800000
    if small.any():
        tiny = mag[small].view(np.float32) + np.float32(0.5)
        res[small] = tiny.view(np.uint32) - np.uint32(0x3F000000)
    np.copyto(out, res, casting="unsafe")
    np.right_shift(src, 16, out=res)
    np.bitwise_and(res, 0x8000, out=res)
    np.bitwise_or(out, res, out=out, casting="unsafe")
    nan = np.isnan(src.view(np.float32))
    if nan.any():
        bits = src[nan]
        out[nan] = (((bits >> 16) & 0x8000) | 0x7E00 | ((bits >> 13) & 0x3FF)).astype(np.uint16)


def f16_to_f32(src: np.ndarray, out: np.ndarray) -> None:
    """float16 bits (uint16) -> float32 bits (uint32): exact; a NaN keeps sign and payload
    and is made quiet, as torch's (F16C's) conversion does (numpy leaves it signalling)."""
    np.copyto(out.view(np.float32), src.view(np.float16))
    nan = np.isnan(out.view(np.float32))
    if nan.any():
        out[nan] |= np.uint32(0x00400000)


def bf16_to_f16(src: np.ndarray, out: np.ndarray, scratch: np.ndarray) -> None:
    """bfloat16 bits -> float16 bits, through float32 (exact), rounding once."""
    n = len(src)
    bf16_to_f32(src, scratch[:n])
    f32_to_f16(scratch[:n], out, scratch[n:3 * n])


def f16_to_bf16(src: np.ndarray, out: np.ndarray, scratch: np.ndarray) -> None:
    """float16 bits -> bfloat16 bits, through float32 (exact), rounding once. torch takes
    another loop for this pair, whose NaN is ``0x7FC0`` whatever the sign and payload."""
    n = len(src)
    f16_to_f32(src, scratch[:n])
    f32_to_bf16(scratch[:n], out, scratch[n:2 * n])
    nan = np.isnan(scratch[:n].view(np.float32))
    if nan.any():
        out[nan] = 0x7FC0


#: (source dtype name, target dtype name) -> kernel on raw bits, for the casts checkpoints
#: go through most; with a scratch array when the kernel needs one.
FAST = {
    ("float32", "bfloat16"): f32_to_bf16,
    ("bfloat16", "float32"): bf16_to_f32,
    ("float32", "float16"): f32_to_f16,
    ("float16", "float32"): f16_to_f32,
    ("bfloat16", "float16"): bf16_to_f16,
    ("float16", "bfloat16"): f16_to_bf16,
}


def scratch_words(src: str, dst: str) -> int:
    """uint32 scratch words per element a FAST kernel needs."""
    return {("float32", "bfloat16"): 1, ("float32", "float16"): 2, ("bfloat16", "float16"): 3,
            ("float16", "bfloat16"): 2}.get((src, dst), 0)


def cast_values(src: np.ndarray, out: np.ndarray) -> None:
    """Any other cast: numpy / ml_dtypes' conversion, as ``astype`` does it."""
    with np.errstate(invalid="ignore", over="ignore"):
        np.copyto(out, src, casting="unsafe")
