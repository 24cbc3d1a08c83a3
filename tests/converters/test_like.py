"""``like()`` pairing rules, without the frameworks (templates written by ckconv itself;
the live journeys are in test_like_live.py)."""

from __future__ import annotations

import numpy as np
import pytest

import ckconv
from ckconv.cli import main
from ckconv.converters.like import render_pairing
from ckconv.errors import MappingError, UsageError


def _template(tmp_path, tensors: dict, name: str = "tpl.pt") -> str:
    path = tmp_path / name
    ckconv.save({k: np.full(v, 7, dtype="float32") if isinstance(v, tuple) else v
                 for k, v in tensors.items()}, path)
    return str(path)


def _source(**named):
    rng = np.random.default_rng(0)
    return ckconv.TensorMap({k.replace("__", "/"): rng.normal(size=v).astype("float32")
                             for k, v in named.items()})


def test_names_first_then_model_order_and_no_template_value_is_written(tmp_path):
    tpl = _template(tmp_path, {"enc.weight": (4, 3), "enc.bias": (4,), "head.weight": (2, 4),
                               "head.bias": (2,)})
    src = _source(**{"enc.bias": (4,), "a__kernel": (4, 3), "b__kernel": (2, 4), "b__bias": (2,)})
    out = src.like(tpl)
    assert list(out) == ["enc.weight", "enc.bias", "head.weight", "head.bias"]
    assert out["enc.bias"] is src["enc.bias"]  # by name
    assert out["enc.weight"] is src["a/kernel"] and out["head.bias"] is src["b/bias"]  # by order
    text = render_pairing(out)
    assert "enc.bias -> enc.bias  [4]  by name" in text
    assert "a/kernel -> enc.weight  [4, 3]  by order" in text
    assert "1 by name, 3 by model order" in text
    ckconv.save(out, tmp_path / "out.pt")
    back = ckconv.load(tmp_path / "out.pt")
    for name in back:
        assert not np.any(back[name].numpy() == 7)


def test_counters_are_zeros_and_dtypes_are_the_templates(tmp_path):
    tpl = _template(tmp_path, {"bn.weight": (3,), "bn.num_batches_tracked": np.array(5, "int64"),
                               "fc.weight": (2, 3)})
    src = ckconv.TensorMap({"bn/gamma": np.ones(3, "float64"), "fc/kernel": np.ones((2, 3), "float64")})
    out = src.like(tpl)
    assert out["bn.num_batches_tracked"].numpy() == 0
    assert str(out["fc.weight"].dtype) == "float32"
    assert any("zeros for 1 counter" in n for n in out.notes)


def test_shape_disagreement_in_order_names_both_sides(tmp_path):
    tpl = _template(tmp_path, {"a.weight": (4, 3), "b.weight": (9, 8)})
    src = _source(x__kernel=(4, 3), y__kernel=(8, 8))
    with pytest.raises(MappingError) as err:
        src.like(tpl)
    msg = str(err.value)
    assert "\n" not in msg
    assert "source y/kernel [8, 8]" in msg and "template b.weight [9, 8]" in msg


def test_left_over_tensors_are_listed_with_a_count(tmp_path):
    tpl = _template(tmp_path, {f"l{i}.weight": (2,) for i in range(3)})
    src = _source(**{f"x{i}__w": (2,) for i in range(9)})
    with pytest.raises(MappingError, match=r"the source has more: x3/w \[2\], .* \(and 2 more\)"):
        src.like(tpl)


def test_same_name_other_shape_is_an_error(tmp_path):
    tpl = _template(tmp_path, {"w": (2, 3)})
    with pytest.raises(MappingError, match=r"has the name of w \[2, 3\].*not its shape"):
        _source(w=(3, 2)).like(tpl)


def test_unknown_source_order_refuses_to_guess(tmp_path):
    """Safetensors keeps no model order: same-shaped leftovers cannot be paired."""
    ckconv.save(_source(b=(2,), a=(2,)), tmp_path / "src.safetensors")
    tpl = _template(tmp_path, {"x": (2,), "y": (2,)})
    with pytest.raises(MappingError, match="model order is unknown .*safetensors"):
        ckconv.load(tmp_path / "src.safetensors").like(tpl)


def test_output_format_is_the_templates(tmp_path):
    tpl = _template(tmp_path, {"w": (2,)})
    ckconv.save(_source(w=(2,)), tmp_path / "src.safetensors")
    with pytest.raises(UsageError, match="template is a torch checkpoint"):
        ckconv.convert(tmp_path / "src.safetensors", tmp_path / "out.h5", like=tpl)
    ckconv.convert(tmp_path / "src.safetensors", tmp_path / "out_no_ext", like=tpl)
    assert ckconv.load(tmp_path / "out_no_ext").format == "torch"


def test_cli_like_and_dry_run(tmp_path, capsys):
    tpl = _template(tmp_path, {"fc.weight": (2, 3)})
    ckconv.save(_source(dense__kernel=(3, 2)), tmp_path / "src.safetensors")
    args = [str(tmp_path / "src.safetensors"), str(tmp_path / "out.pt"), "--like", tpl,
            "--preset", "keras-to-torch"]
    assert main(args + ["--dry-run"]) == 0
    assert "dense.weight -> fc.weight  [2, 3]  by shape" in capsys.readouterr().out
    assert main([args[0], "--dry-run"] + args[2:]) == 0  # no DST with --dry-run
    assert not (tmp_path / "out.pt").exists()
    assert main(args + ["-q"]) == 0
    np.testing.assert_array_equal(ckconv.load(tmp_path / "out.pt")["fc.weight"].numpy(),
                                  ckconv.load(tmp_path / "src.safetensors")["dense/kernel"].numpy().T)


def test_keras_archive_needs_a_template(tmp_path):
    with pytest.raises(UsageError, match="like= a .keras file"):
        ckconv.save(_source(w=(2,)), tmp_path / "m.keras")


def test_full_model_h5_template_keeps_its_config_and_drops_its_optimizer(tmp_path):
    import h5py

    from tests.helpers import other

    src = ckconv.load(other("keras2_weights.h5"))
    out = tmp_path / "full.h5"
    notes = ckconv.save(src.like(other("keras2_full.h5")), out)
    assert any("optimizer weight(s)" in n for n in notes)
    with h5py.File(out, "r") as f, h5py.File(other("keras2_full.h5"), "r") as g:
        assert f.attrs["model_config"] == g.attrs["model_config"]
        assert "optimizer_weights" not in f and "model_weights" in f
    back = ckconv.load(out)
    assert list(back) == list(src)
    for name in src:
        np.testing.assert_array_equal(back[name].numpy(), src[name].numpy())


def test_in_memory_template_and_dst_extension(tmp_path):
    template = ckconv.TensorMap({"fc.weight": np.zeros((2, 3), "float32")})
    src = _source(dense__kernel=(2, 3))
    ckconv.save(src, tmp_path / "src.safetensors")
    ckconv.convert(tmp_path / "src.safetensors", tmp_path / "o.safetensors", like=template)
    assert list(ckconv.load(tmp_path / "o.safetensors")) == ["fc.weight"]
