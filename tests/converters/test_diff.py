"""``ckconv diff`` and ckconv.diff: names, dtypes, shapes, differences, tolerances, exit codes."""

from __future__ import annotations

import numpy as np
import pytest

import ckconv
from ckconv.cli import main
from ckconv.converters.diff import diff, render
from ckconv.tensormap import TensorMap
from tests.helpers import fixture_prefix


def f32(*values) -> np.ndarray:
    return np.array(values, np.float32)


def test_identical_maps_are_equal():
    a = TensorMap({"w": f32(1, 2, 3), "s": np.array([b"x", b""], object), "i": np.int64(4)})
    report = diff(a, a.copy())
    assert report.equal
    assert report.summary().startswith("EQUAL (exact): 3 tensors in both: 3 equal")


def test_every_kind_of_difference_is_reported():
    a = TensorMap({"only_a": f32(1), "w": f32(1, 2, 3), "shape": f32(1, 2),
                   "dtype": f32(1, 2), "same": f32(5)})
    b = TensorMap({"only_b": f32(1), "w": f32(1, 2.5, 3), "shape": f32(1, 2, 3),
                   "dtype": np.array([1, 2], np.float64), "same": f32(5)})
    report = diff(a, b)
    assert not report.equal
    assert [n for n, _, _ in report.only_a] == ["only_a"]
    assert [n for n, _, _ in report.only_b] == ["only_b"]
    status = {t.name: t for t in report.tensors}
    assert status["w"].status == "differs" and status["w"].max_abs == 0.5
    assert status["w"].max_rel == pytest.approx(0.2) and status["w"].mismatched == 1
    assert status["shape"].status == "shape"
    assert status["dtype"].status == "dtype" and status["dtype"].max_abs == 0
    assert status["same"].status == "equal"
    text = render(report)
    assert "only in A: only_a  float32 [1]" in text
    assert "only in B: only_b  float32 [1]" in text
    assert "shape: shape  [2] vs [3]" in text
    assert "dtype: dtype  float32 vs float64" in text
    assert "differs: w  float32 [3]  max abs 0.5  max rel 0.2" in text
    assert text.splitlines()[-1] == (
        "DIFFERENT (exact): 4 tensors in both: 1 equal, 1 differ, 1 dtype mismatch, "
        "1 shape mismatch; 1 only in A, 1 only in B; max abs diff 0.5, max rel diff 0.2")


def test_tolerances():
    a = TensorMap({"w": f32(1.0, 100.0)})
    b = TensorMap({"w": f32(1.001, 100.1)})
    assert not diff(a, b).equal
    assert not diff(a, b, atol=0.01).equal            # 0.1 off at 100
    assert diff(a, b, atol=0.01, rtol=0.001).equal
    assert diff(a, b, atol=0.2).equal
    assert not diff(a, b, rtol=0.0005).equal          # 0.001/1.001 > 0.0005


def test_nan_inf_and_signed_zero():
    a = TensorMap({"w": f32(np.nan, np.inf, -np.inf, 0.0)})
    b = TensorMap({"w": f32(np.nan, np.inf, -np.inf, -0.0)})
    report = diff(a, b)
    # -0.0 and 0.0 have different bytes but are equal numbers
    assert report.equal and report.tensors[0].max_abs == 0
    c = TensorMap({"w": f32(1.0, np.inf, -np.inf, 0.0)})
    r2 = diff(a, c, atol=1e9)
    assert not r2.equal and r2.tensors[0].max_abs == np.inf
    d = TensorMap({"w": f32(np.nan, -np.inf, -np.inf, 0.0)})
    assert not diff(a, d, atol=1e9).equal


def test_strings_and_exotic_dtypes():
    import ml_dtypes

    a = TensorMap({"s": np.array([b"a", b"b"], object),
                   "q": np.arange(-8, 8).astype(ml_dtypes.int4)})
    b = TensorMap({"s": np.array([b"a", b"c"], object),
                   "q": np.arange(-8, 8).astype(ml_dtypes.int4)})
    status = {t.name: t for t in diff(a, b).tensors}
    assert status["s"].status == "differs" and status["s"].mismatched == 1
    assert status["q"].status == "equal"


def test_library_entry_point_and_empty_tensors():
    a = TensorMap({"e": np.zeros((0, 3), np.float32)})
    assert ckconv.diff(a, {"e": np.zeros((0, 3), np.float32)}).equal


# ---------------------------------------------------------------------------------------
# the command


def test_cli_diff_exit_codes(tmp_path, capsys):
    from safetensors.numpy import save_file

    save_file({"w": f32(1, 2), "b": f32(0)}, str(tmp_path / "a.safetensors"))
    save_file({"w": f32(1, 2.001), "b": f32(0)}, str(tmp_path / "b.safetensors"))
    a, b = str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")
    assert main(["diff", a, a]) == 0
    assert capsys.readouterr().out.startswith("EQUAL (exact): 2 tensors")
    assert main(["diff", a, b]) == 1
    out = capsys.readouterr().out
    assert "differs: w" in out and out.strip().splitlines()[-1].startswith("DIFFERENT")
    assert main(["diff", a, b, "--atol", "0.01"]) == 0
    assert main(["diff", a, b, "--summary"]) == 1
    assert len(capsys.readouterr().out.strip().splitlines()) == 2  # two summary lines
    assert main(["diff", a, b, "--exclude", "^w$"]) == 0
    assert main(["diff", a, str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err.startswith("error: ")
    assert main(["diff", a, b, "--atol", "-1"]) == 2
    capsys.readouterr()
    assert main(["diff", a]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_diff_proves_a_preset_migration(tmp_path, capsys):
    src = fixture_prefix("bert_tiny")
    dst = tmp_path / "bert.safetensors"
    assert main([src, str(dst), "--preset", "bert", "-q"]) == 0
    assert main(["diff", src, str(dst), "--preset", "bert"]) == 0
    assert "46 equal" in capsys.readouterr().out
    # the reverse direction: rules apply to A, the safetensors file
    assert main(["diff", str(dst), src, "--preset", "hf-to-bert", "--exclude", "adam_|global_step"]) == 0
    # without the preset nothing lines up
    assert main(["diff", src, str(dst)]) == 1
    # a cast A against an fp32 B: dtype mismatch; against a bf16 B: equal
    bf16 = tmp_path / "bert16.safetensors"
    assert main([src, str(bf16), "--preset", "bert", "--dtype", "bf16", "-q"]) == 0
    capsys.readouterr()
    assert main(["diff", src, str(dst), "--preset", "bert", "--dtype", "bf16"]) == 1
    assert "46 dtype mismatches" in capsys.readouterr().out
    assert main(["diff", src, str(bf16), "--preset", "bert", "--dtype", "bf16"]) == 0
    # strict-mode failure is a one-line error, exit 1
    assert main(["diff", src, str(dst), "--preset", "keras-to-torch"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
