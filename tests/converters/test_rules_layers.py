"""The rule-language features layer presets need: named sizes, requires, create, sum and
unsum, reorder, fail, reversible reshapes and parameters, Keras 3 variable paths, and
strictness kept per file. Model-level proof is in test_layer_presets_live.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import ckconv
from ckconv import MappingError
from ckconv.cli import main
from ckconv.tensormap import TensorMap
from tests.converters.test_rules import CountingTensor, arange, assert_same, rules


def bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


# ---------------------------------------------------------------------------------------
# reorder


GRU_KERNEL = """
    [[rule]]
    match = '^(.*)/kernel$'
    transpose = true
    reorder = { axis = 0, blocks = "z r h -> r z h" }
    rename = '\\1.weight'
"""


def test_reorder_moves_gate_blocks_and_reverses_bit_exact():
    k = arange(2, 6)  # [in=2, 3 gates x 2 units]: columns z z r r h h
    m = TensorMap({"gru/kernel": k})
    out = m.map(rules(GRU_KERNEL))
    z, r, h = k.T[0:2], k.T[2:4], k.T[4:6]
    np.testing.assert_array_equal(out["gru.weight"].numpy(), np.concatenate([r, z, h]))
    back = out.map(rules(GRU_KERNEL).reversed())
    assert_same(back, m)


def test_reorder_is_lazy_and_checks_block_count():
    t = CountingTensor(arange(4, 6))
    out = TensorMap({"gru/kernel": t}).map(rules(GRU_KERNEL))
    assert t.reads == 0
    out["gru.weight"].numpy()
    assert t.reads == 1
    with pytest.raises(MappingError, match="does not divide into 3 blocks"):
        TensorMap({"gru/kernel": arange(2, 5)}).map(rules(GRU_KERNEL))


def test_reorder_rejects_different_blocks():
    with pytest.raises(MappingError, match="same distinct blocks"):
        rules("""
            [[rule]]
            reorder = { axis = 0, blocks = "z r h -> r z n" }
        """)


# ---------------------------------------------------------------------------------------
# unsum / sum, create


RNN_BIAS = """
    strict = true
    [[rule]]
    match = '^(.*)/bias$'
    unsum = { parts = ["ih", "hh"] }
    rename = '\\1.bias_\\g<part>_l0'
"""


def test_unsum_gives_the_value_and_zeros_and_sum_gives_it_back_bit_exact():
    b = np.array([1.5, -0.0, np.nan, 0.0], np.float32)
    b[2] = np.frombuffer(np.uint32(0x7FA00001).tobytes(), np.float32)[0]  # NaN payload
    m = TensorMap({"lstm/bias": b})
    out = m.map(rules(RNN_BIAS))
    assert list(out) == ["lstm.bias_ih_l0", "lstm.bias_hh_l0"]
    assert bits(out["lstm.bias_ih_l0"].numpy()) == bits(b)
    hh = out["lstm.bias_hh_l0"].numpy()
    assert hh.dtype == np.float32 and hh.shape == (4,) and not hh.any()
    assert_same(out.map(rules(RNN_BIAS).reversed()), m)  # -0.0 and the payload survive


def test_sum_adds_non_zero_parts():
    ih, hh = arange(4), np.array([0.5, 0, -1, 2], np.float32)
    m = TensorMap({"lstm.bias_ih_l0": ih, "lstm.bias_hh_l0": hh})
    out = m.map(rules(RNN_BIAS).reversed())
    assert list(out) == ["lstm/bias"]
    np.testing.assert_array_equal(out["lstm/bias"].numpy(), ih + hh)
    with pytest.raises(MappingError, match="part.s. hh missing"):
        TensorMap({"lstm.bias_ih_l0": ih}).map(rules(RNN_BIAS).reversed())


BN = """
    strict = true
    [[rule]]
    match = '^(.*)/moving_variance$'
    rename = '\\1.running_var'
    create = { name = '\\1.num_batches_tracked', shape = [], dtype = "int64" }
"""


def test_create_adds_a_zero_tensor_and_the_reverse_drops_it(capsys, tmp_path):
    m = TensorMap({"bn/moving_variance": arange(3)})
    out = m.map(rules(BN))
    assert list(out) == ["bn.running_var", "bn.num_batches_tracked"]
    n = out["bn.num_batches_tracked"].numpy()
    assert n.dtype == np.int64 and n.shape == () and n == 0
    assert_same(out.map(rules(BN).reversed()), m)
    # --dry-run shows it as new
    ckconv.save({"bn/moving_variance": arange(3)}, str(tmp_path / "a.safetensors"))
    (tmp_path / "bn.toml").write_text(BN)
    assert main([str(tmp_path / "a.safetensors"), "--dry-run", "--rules",
                 str(tmp_path / "bn.toml")]) == 0
    assert "(new) -> bn.num_batches_tracked  int64 []  create zeros[int64][]" in \
        capsys.readouterr().out


# ---------------------------------------------------------------------------------------
# named sizes, requires, fail


def test_named_sizes_tell_lstm_from_gru_by_shape():
    r = rules("""
        [[rule]]
        match = '^(.*)/recurrent_kernel$'
        shape = ["u", "4*u"]
        rename = '\\1.lstm'
        [[rule]]
        match = '^(.*)/recurrent_kernel$'
        shape = ["u", "3*u"]
        rename = '\\1.gru'
    """)
    out = TensorMap({"a/recurrent_kernel": arange(3, 12), "b/recurrent_kernel": arange(3, 9),
                     "c/recurrent_kernel": arange(3, 10)}).map(r)
    assert list(out) == ["a.lstm", "b.gru", "c/recurrent_kernel"]


def test_requires_another_tensor_with_shared_sizes():
    r = rules("""
        [[rule]]
        match = '^(.*)/kernel$'
        shape = [-1, -1, "c", "m"]
        requires = { name = '\\1/bias', shape = ["c*m"] }
        rename = '\\1/depthwise'
    """)
    m = TensorMap({"a/kernel": arange(2, 2, 3, 2), "a/bias": arange(6),
                   "b/kernel": arange(2, 2, 3, 2), "b/bias": arange(2),
                   "c/kernel": arange(2, 2, 3, 2)})
    assert list(m.map(r)) == ["a/depthwise", "a/bias", "b/kernel", "b/bias", "c/kernel"]


def test_reverse_requires_refers_to_the_forward_groups():
    r = rules("""
        [[rule]]
        match = '^(.*)/beta$'
        rename = '\\1.bias'
        reverse_requires = { name = '\\1.weight', shape = [-1] }
    """)
    m = TensorMap({"ln.weight": arange(4), "ln.bias": arange(4),
                   "fc.weight": arange(2, 4), "fc.bias": arange(2)})
    assert list(m.map(r.reversed())) == ["ln.weight", "ln/beta", "fc.weight", "fc.bias"]


def test_fail_reports_the_reason_with_rule_and_tensor():
    r = rules("""
        [[rule]]
        match = '/gru_cell/bias$'
        rank = 1
        fail = "reset_after=False has no torch equivalent"
    """)
    with pytest.raises(MappingError, match=r"test.toml:2: 'g/gru_cell/bias': reset_after=False"):
        TensorMap({"g/gru_cell/bias": arange(6)}).map(r)
    assert list(TensorMap({"g/gru_cell/bias": arange(2, 6)}).map(r)) == ["g/gru_cell/bias"]


# ---------------------------------------------------------------------------------------
# reshapes that reverse; parameters


SPLIT_THEN_RESHAPE = """
    strict = true
    [[rule]]
    match = '^(.*)/bias$'
    shape = [2, -1]
    split = { axis = 0, parts = ["ih", "hh"] }
    reshape = [-1]
    rename = '\\1.bias_\\g<part>'
"""


def test_split_then_reshape_reverses_bit_exact():
    m = TensorMap({"gru/bias": arange(2, 6)})
    out = m.map(rules(SPLIT_THEN_RESHAPE))
    assert {k: v.shape for k, v in out.items()} == {"gru.bias_ih": (6,), "gru.bias_hh": (6,)}
    assert_same(out.map(rules(SPLIT_THEN_RESHAPE).reversed()), m)


def test_reshape_folding_unknown_sizes_cannot_be_reversed_and_says_which_rule():
    r = rules("""
        [[rule]]
        match = '^(.*)/kernel$'
        shape = [-1, -1, 3]
        reshape = ["d0*d1", "d2"]
        rename = '\\1.weight'
    """)
    with pytest.raises(MappingError, match=r"test.toml:2 \(reshape cannot be reversed: "
                                           r"source axes d0, d1 are folded together"):
        r.reversed()
    no_shape = rules("""
        [[rule]]
        match = '^(.*)/kernel$'
        reshape = [-1]
        rename = '\\1.weight'
    """)
    with pytest.raises(MappingError, match=r"test.toml:2 \(reshape can only be reversed "
                                           r"when the rule's `shape` gives the source's rank"):
        no_shape.reversed()


HEADS = """
    strict = true
    [[rule]]
    match = '^(.*)/kernel$'
    shape = [-1, "num_heads", -1]
    reshape = ["d0", "d1*d2"]
    transpose = true
    rename = '\\1.weight'
"""


def test_a_parameter_gives_the_size_a_reversed_reshape_needs():
    m = TensorMap({"q/kernel": arange(8, 2, 4)})
    out = m.map(rules(HEADS))
    assert out["q.weight"].shape == (8, 8)
    with pytest.raises(MappingError, match=r"--param num_heads=N"):
        out.map(rules(HEADS).reversed())
    assert_same(out.map(rules(HEADS).with_params(num_heads=2).reversed()), m)
    # a set parameter also checks the forward direction
    with pytest.raises(MappingError, match="matched by no rule"):
        m.map(rules(HEADS).with_params(num_heads=4))


def test_file_defaults_serve_only_reversal():
    text = HEADS.replace("strict = true", "strict = true\n[defaults]\nnum_heads = 4")
    m = TensorMap({"q/kernel": arange(8, 2, 4)})
    out = m.map(rules(text))  # the default does not constrain matching: 2 heads is fine
    back = out.map(rules(text).reversed())
    assert back["q/kernel"].shape == (8, 4, 2)  # the default is used when undoing
    assert_same(out.map(rules(text).with_params(num_heads=2).reversed()), m)


# ---------------------------------------------------------------------------------------
# Keras 3 variable paths


def keras3_map(**shapes: tuple) -> TensorMap:
    return TensorMap({k.replace("__", "/"): arange(*s) for k, s in shapes.items()})


def test_keras3_paths_named_by_class_and_by_shapes():
    m = TensorMap({
        "layers/dense_1/vars/0": arange(4, 3), "layers/dense_1/vars/1": arange(3),
        "layers/lstm/cell/vars/0": arange(3, 8), "layers/lstm/cell/vars/1": arange(2, 8),
        "layers/lstm/cell/vars/2": arange(8),
        "layers/encoder/vars/0": arange(2, 2, 3, 4),  # a Conv2D, by shape
        "layers/encoder/vars/1": arange(4),
        "layers/head/cell/vars/0": arange(3, 6),  # a GRU, by shape
        "layers/head/cell/vars/1": arange(2, 6), "layers/head/cell/vars/2": arange(2, 6),
    })
    out = m.map(ckconv.rules.preset("keras3-to-keras"))
    assert list(out) == ["dense_1/kernel", "dense_1/bias", "lstm/lstm_cell/kernel",
                         "lstm/lstm_cell/recurrent_kernel", "lstm/lstm_cell/bias",
                         "encoder/kernel", "encoder/bias", "head/gru_cell/kernel",
                         "head/gru_cell/recurrent_kernel", "head/gru_cell/bias"]
    back = out.map(ckconv.rules.preset("keras-to-keras3"))
    assert_same(TensorMap({k: back[k] for k in m}), m)  # every path and position back


def test_keras3_layer_of_undecidable_class_is_an_error_saying_what_is_unknown():
    m = TensorMap({"encoder/vars/0": arange(10, 4)})
    with pytest.raises(MappingError, match=r"cannot tell which Keras layer holds "
                                           r"encoder/vars/0..0 \(shapes \[10, 4\]\): a Dense "
                                           r"without bias or an Embedding; convert the "
                                           r"model's .keras file instead"):
        m.map(ckconv.rules.preset("keras-to-torch"))


# ---------------------------------------------------------------------------------------
# strictness stays with each file


def test_presets_stay_strict_around_a_user_file(tmp_path, capsys):
    src = tmp_path / "k.safetensors"
    ckconv.save({"dense/kernel": arange(3, 4), "dense/bias": arange(4),
                 "extra/step": np.zeros((), np.int64)}, str(src))
    user = tmp_path / "user.toml"
    user.write_text("[[rule]]\nmatch = '^extra/'\ndrop = true\n"
                    "[[rule]]\nmatch = '^dense/'\nrename = 'head/'\n")
    out = tmp_path / "t.safetensors"
    args = [str(src), str(out), "--rules", str(user), "--preset", "keras-to-torch", "-q"]
    assert main(args) == 0
    assert sorted(ckconv.load(str(out))) == ["head.bias", "head.weight"]
    # --no-strict is for the user's file: the preset after it still rejects names it
    # does not know (a rank-3 bias is no Keras weight it maps)
    ckconv.save({"dense/kernel": arange(3, 4), "dense/odd": arange(1, 1, 1)}, str(src))
    assert main([*args, "--no-strict"]) == 1
    assert "matched by no rule (strict mode): head/odd" in capsys.readouterr().err


def test_dry_run_shows_the_new_operations(tmp_path, capsys):
    src = tmp_path / "rnn.safetensors"
    ckconv.save({"gru/gru_cell/kernel": arange(2, 6), "gru/gru_cell/recurrent_kernel": arange(2, 6),
                 "gru/gru_cell/bias": arange(2, 6), "lstm/lstm_cell/kernel": arange(3, 8),
                 "lstm/lstm_cell/recurrent_kernel": arange(2, 8),
                 "lstm/lstm_cell/bias": arange(8)}, str(src))
    assert main([str(src), "--dry-run", "--preset", "keras-to-torch"]) == 0
    out = capsys.readouterr().out
    assert "gru/gru_cell/bias -> gru.bias_hh_l0  float32 [2, 6] -> [6]  split[axis 0: ih, hh] " \
           "-> hh, reshape[-1], reorder[axis 0: z r h -> r z h]" in out
    assert "lstm/lstm_cell/bias -> lstm.bias_hh_l0  float32 [8]  unsum[ih; zeros: hh] -> hh" in out
    mid = tmp_path / "torch.safetensors"
    assert main([str(src), str(mid), "--preset", "keras-to-torch", "-q"]) == 0
    assert main([str(mid), "--dry-run", "--preset", "keras-to-torch", "--reverse"]) == 0
    out = capsys.readouterr().out
    assert "lstm.bias_ih_l0 + lstm.bias_hh_l0 -> lstm/lstm_cell/bias  float32 [8] + [8] -> [8]" \
           "  sum[ih + hh]" in out
    assert "gru.bias_ih_l0 + gru.bias_hh_l0 -> gru/gru_cell/bias  float32 [6] + [6] -> [2, 6]  " \
           "reorder[axis 0: r z h -> z r h], reshape[1, 'd1'], merge[axis 0: ih, hh]" in out


# ---------------------------------------------------------------------------------------
# properties


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=2, max_size=4), st.data())
def test_folding_two_axes_reverses_when_one_is_named(dims, data):
    """reshape ["d0*d1", ...] on any shape comes back once d1's size is a parameter."""
    rest = ", ".join(f'"d{i}"' for i in range(2, len(dims)))
    text = f"""
        [[rule]]
        match = '^(.*)/w$'
        shape = [-1, "inner"{', -1' * (len(dims) - 2)}]
        reshape = ["d0*d1"{', ' + rest if rest else ''}]
        rename = '\\1.w'
    """
    m = TensorMap({"a/w": arange(*dims)})
    out = m.map(rules(text))
    assert out["a.w"].shape == (dims[0] * dims[1], *dims[2:])
    assert_same(out.map(rules(text).with_params(inner=dims[1]).reversed()), m)


@settings(max_examples=60, deadline=None)
@given(st.permutations("abcd"), st.integers(1, 3), st.integers(0, 1))
def test_reorder_then_reverse_is_identity(order, block, axis):
    spec = f"a b c d -> {' '.join(order)}"
    text = f"""
        [[rule]]
        match = 'x'
        reorder = {{ axis = {axis}, blocks = "{spec}" }}
    """
    shape = (4 * block, 3) if axis == 0 else (3, 4 * block)
    m = TensorMap({"x": arange(*shape)})
    out = m.map(rules(text))
    blocks = np.split(m["x"].numpy(), 4, axis=axis)
    expected = np.concatenate([blocks["abcd".index(b)] for b in order], axis=axis)
    np.testing.assert_array_equal(out["x"].numpy(), expected)
    assert_same(out.map(rules(text).reversed()), m)
