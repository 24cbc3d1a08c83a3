"""bfloat16 tensors go to HDF5 and back without importing ml_dtypes.

HDF5 stores them as their bits (uint16 plus a ``ckconv_dtype`` attribute), so the bytes
never need ml_dtypes' numpy type; importing it costs ~0.8 s with ml_dtypes 0.7 on this
project's VM, which had tripled the time of TF <-> HDF5 conversions (docs/performance.md).
"""

from __future__ import annotations

import subprocess
import sys

import ml_dtypes
import numpy as np

import ckconv

CHILD = """
import sys
from ckconv.cli import main
assert main([sys.argv[1], sys.argv[2], '-q']) == 0
assert main([sys.argv[2], sys.argv[3], '-q']) == 0
assert 'ml_dtypes' not in sys.modules, 'ml_dtypes was imported'
"""


def test_bfloat16_round_trip_through_hdf5_leaves_ml_dtypes_alone(tmp_path):
    rng = np.random.default_rng(5)
    half = rng.standard_normal((300, 700)).astype(ml_dtypes.bfloat16)  # > SMALL: kernel copy
    small = rng.standard_normal(5).astype(ml_dtypes.bfloat16)
    src, h5, back = tmp_path / "in.safetensors", tmp_path / "mid.h5", tmp_path / "out.safetensors"
    ckconv.save({"half": half, "small": small, "plain": np.arange(6, dtype=np.float32)}, str(src))
    subprocess.run([sys.executable, "-c", CHILD, str(src), str(h5), str(back)], check=True)
    out = ckconv.load(str(back))
    assert str(out["half"].dtype) == "bfloat16" and str(out["small"].dtype) == "bfloat16"
    assert out["half"].numpy().tobytes() == half.tobytes()
    assert out["small"].numpy().tobytes() == small.tobytes()
    assert out["plain"].numpy().tolist() == list(range(6))
