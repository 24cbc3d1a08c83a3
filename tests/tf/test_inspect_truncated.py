"""``ckconv inspect`` reads no tensor bytes, yet notices a file cut short (600 bytes, half)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ckconv.cli.main import main
from tests.helpers import FIXTURES, OTHER
from tests.tf.legacy_helpers import LEGACY

# name: (fixture directory or None, argument given to inspect, file to truncate, error text)
CASES = {
    "tf": (FIXTURES / "dtypes", "ckpt", "ckpt.data-00000-of-00001",
           r"ckpt\.data-00000-of-00001: truncated: tensor '[^']+' ends at byte"),
    "tf-sharded": (FIXTURES / "sharded", "model.ckpt-7", "model.ckpt-7.data-00001-of-00003",
                   r"model\.ckpt-7\.data-00001-of-00003: truncated: tensor '[^']+' ends at"),
    "tf-partitioned": (FIXTURES / "partitioned", "model.ckpt", "model.ckpt.data-00000-of-00001",
                       r"data-00000-of-00001: truncated: tensor '[^']+' ends at byte"),
    "tf-v1": (LEGACY / "v1_dtypes", "ckpt", "ckpt",
              r"ckpt: .*start of a TF V1 checkpoint whose end .* is missing: truncated"),
    "safetensors": (None, "w.safetensors", "w.safetensors",
                    r"w\.safetensors: truncated: the header describes"),
    "torch": (OTHER, "torch_state_dict.pt", "torch_state_dict.pt",
              r"torch_state_dict\.pt: .*truncated zip archive"),
    "hdf5": (OTHER, "keras2_weights.h5", "keras2_weights.h5",
             r"keras2_weights\.h5: .*truncated file"),
}


def _copy(src: "Path | None", dst: Path) -> None:
    if src is None:
        from safetensors.numpy import save_file

        save_file({"a": np.arange(300, dtype=np.float32), "b": np.ones(400)},
                  str(dst / "w.safetensors"))
        return
    for f in src.iterdir():
        if f.is_file():
            shutil.copy(f, dst / f.name)


@pytest.mark.parametrize("cut", ["600", "half"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_inspect_reports_a_truncated_file(tmp_path, capsys, case, cut):
    src, arg, victim, pattern = CASES[case]
    _copy(src, tmp_path)
    path = tmp_path / victim
    size = path.stat().st_size
    n = min(600, size - 1) if cut == "600" else size // 2
    with open(path, "r+b") as f:
        f.truncate(n)
    assert main(["inspect", str(tmp_path / arg)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {tmp_path}"), err
    import re

    assert re.search(pattern, err), err


def test_intact_files_pass_and_the_first_cut_tensor_is_named(tmp_path, capsys):
    _copy(FIXTURES / "dtypes", tmp_path)
    assert main(["inspect", str(tmp_path / "ckpt")]) == 0
    capsys.readouterr()
    import ckconv

    tmap = ckconv.load(str(tmp_path / "ckpt"))
    ends = sorted((t.stored_extents()[0][1], n) for n, t in tmap.items() if t.nbytes)
    end, name = ends[len(ends) // 2]
    with open(tmp_path / "ckpt.data-00000-of-00001", "r+b") as f:
        f.truncate(end - 1)
    assert main(["inspect", str(tmp_path / "ckpt")]) == 1
    err = capsys.readouterr().err
    assert f"tensor {name!r} ends at byte {end:,} but the file has {end - 1:,} bytes" in err


@pytest.mark.parametrize("ext", [".h5", ".pt", ".safetensors"])
def test_other_formats_say_where_tensors_end(tmp_path, ext):
    """The extents the check uses are the real ones (h5py's offsets, the zip's, the header's)."""
    import ckconv

    dst = str(tmp_path / f"w{ext}")
    ckconv.save({"a": np.arange(3000, dtype=np.float32), "b": np.ones((20, 30))}, dst)
    tmap = ckconv.load(dst)
    raw = Path(dst).read_bytes()
    for name, t in tmap.items():
        (path, end), = t.stored_extents()
        assert path == dst
        assert raw[end - t.nbytes:end] == np.ascontiguousarray(t.numpy()).tobytes(), name
