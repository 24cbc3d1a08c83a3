"""The rule language: every action, strict-mode errors, laziness, files and reversal."""

from __future__ import annotations

import textwrap

import ml_dtypes
import numpy as np
import pytest

import ckconv
import ckconv
from ckconv import MappingError
from ckconv.tensor import Tensor
from ckconv.tensormap import TensorMap


class CountingTensor(Tensor):
    """A tensor that counts how often its values are read (laziness checks)."""

    def __init__(self, array: np.ndarray):
        from ckconv import dtypes

        super().__init__(dtypes.from_numpy(array.dtype), array.shape)
        self.array = array
        self.reads = 0

    def _load(self) -> np.ndarray:
        self.reads += 1
        return self.array


def rules(text: str, name: str = "test.toml", **kw) -> ckconv.rules.Rules:
    return ckconv.rules.parse(textwrap.dedent(text), name, **kw)


def arange(*shape: int, dtype=np.float32) -> np.ndarray:
    return np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)


def values(tmap: TensorMap) -> dict[str, np.ndarray]:
    return {k: t.numpy() for k, t in tmap.items()}


def assert_same(a: TensorMap, b: TensorMap) -> None:
    assert list(a) == list(b)
    for k in a:
        x, y = a[k].numpy(), b[k].numpy()
        assert x.dtype == y.dtype and x.shape == y.shape, k
        assert x.tobytes() == y.tobytes(), k


# ---------------------------------------------------------------------------------------
# actions


def test_rename_with_groups_and_global_substitution():
    m = TensorMap({"enc/layer_3/kernel": arange(2, 3), "a/b/c": arange(1)})
    r = rules("""
        [[rule]]
        match = '^enc/layer_(\\d+)/kernel$'
        rename = 'encoder.layer.\\1.weight'
        [[rule]]
        match = '/'
        rename = '.'
    """)
    out = m.map(r)
    assert list(out) == ["encoder.layer.3.weight", "a.b.c"]
    assert out["encoder.layer.3.weight"] is m["enc/layer_3/kernel"]  # untouched tensor


def test_first_match_wins_and_unmatched_pass_through_when_not_strict():
    m = TensorMap({"x/kernel": arange(2, 2), "y": arange(3)})
    r = rules("""
        [[rule]]
        match = 'kernel$'
        rename = 'first'
        [[rule]]
        match = 'kernel$'
        rename = 'second'
    """)
    assert list(m.map(r)) == ["x/first", "y"]


def test_drop_keep_and_keep_only():
    m = TensorMap({"a/w": arange(2), "a/adam_m": arange(2), "b/w": arange(2), "c": arange(1)})
    r = rules("""
        [[rule]]
        match = '^(a|b)/'
        keep_only = true
        [[rule]]
        match = 'adam_m$'
        drop = true
        [[rule]]
        match = '^a/'
        keep = true
    """)
    out = m.map(r)
    assert list(out) == ["a/w", "b/w"]
    report = {rec.sources[0]: rec for rec in ckconv.rules.report(out)}
    assert report["a/adam_m"].target is None and report["a/adam_m"].rules == ("test.toml:5",)
    assert report["c"].target is None and report["c"].rules == ("test.toml:2",)


def test_transpose_is_lazy():
    src = CountingTensor(arange(2, 3))
    out = TensorMap({"k": src}).map(rules("""
        [[rule]]
        match = 'k'
        transpose = true
    """))
    t = out["k"]
    assert t.shape == (3, 2) and src.reads == 0  # nothing read while mapping
    np.testing.assert_array_equal(t.numpy(), arange(2, 3).T)
    assert src.reads == 1
    assert t.numpy().flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("spec,expected", [
    ("[3, 2, 0, 1]", (3, 2, 0, 1)),
    ('"HWIO -> OIHW"', (3, 2, 0, 1)),
    ('"DHWIO->OIDHW"', (4, 3, 0, 1, 2)),
])
def test_permute(spec, expected):
    rank = len(expected)
    arr = np.random.default_rng(0).normal(size=tuple(range(2, 2 + rank))).astype(np.float32)
    out = TensorMap({"k": arr}).map(rules(f"""
        [[rule]]
        match = 'k'
        permute = {spec}
    """))
    np.testing.assert_array_equal(out["k"].numpy(), arr.transpose(expected))


def test_reshape_with_dim_products_and_minus_one_streams_bytes():
    arr = arange(2, 3, 4)
    src = CountingTensor(arr)
    r = rules("""
        [[rule]]
        match = 'a'
        reshape = ["d0*d1", -1]
        [[rule]]
        match = 'b'
        reshape = [4, 6]
    """)
    out = TensorMap({"a": src, "b": arr}).map(r)
    assert out["a"].shape == (6, 4) and out["b"].shape == (4, 6)
    assert b"".join(bytes(c) for c in out["a"].iter_bytes()) == arr.tobytes()
    np.testing.assert_array_equal(out["b"].numpy(), arr.reshape(4, 6))


def test_cast_to_bfloat16():
    arr = np.array([1.0, 1 / 3, -2.5e38, np.nan], np.float32)
    out = TensorMap({"w": arr, "step": np.int64(5)}).map(rules("""
        [[rule]]
        dtype = ["float32"]
        cast = "bf16"
    """))
    assert str(out["w"].dtype) == "bfloat16" and str(out["step"].dtype) == "int64"
    got = out["w"].numpy()
    assert got.dtype == ml_dtypes.bfloat16
    # Numbers round as ml_dtypes rounds them; NaN takes torch's CPU form (0xFFFF), which
    # tests/converters/test_casts_live.py checks against torch itself.
    assert got[:3].tobytes() == arr[:3].astype(ml_dtypes.bfloat16).tobytes()
    assert got[3:].view(np.uint16).tolist() == [0xFFFF]


def test_split_fused_qkv_and_merge_back():
    qkv = arange(4, 6)
    m = TensorMap({"blk/qkv/kernel": qkv})
    split = rules("""
        [[rule]]
        match = '^(.*)/qkv/kernel$'
        rename = '\\1/\\g<part>/kernel'
        split = { axis = 1, parts = ["q", "k", "v"] }
    """)
    out = m.map(split)
    assert list(out) == ["blk/q/kernel", "blk/k/kernel", "blk/v/kernel"]
    for i, p in enumerate("qkv"):
        np.testing.assert_array_equal(out[f"blk/{p}/kernel"].numpy(), qkv[:, 2 * i: 2 * i + 2])
    merge = rules("""
        [[rule]]
        match = '^(.*)/(?P<part>q|k|v)/kernel$'
        rename = '\\1/qkv/kernel'
        merge = { axis = 1, parts = ["q", "k", "v"] }
    """)
    assert_same(out.map(merge), m)


def test_split_with_sizes_then_transpose_each_part():
    w = arange(10, 3)
    out = TensorMap({"w": w}).map(rules("""
        [[rule]]
        match = '^w$'
        rename = 'w_\\g<part>'
        split = { axis = 0, parts = ["big", "small"], sizes = [7, 3] }
        transpose = true
    """))
    np.testing.assert_array_equal(out["w_big"].numpy(), w[:7].T)
    np.testing.assert_array_equal(out["w_small"].numpy(), w[7:].T)


def test_split_reads_source_once_for_all_parts():
    src = CountingTensor(arange(6, 2))
    out = TensorMap({"x": src}).map(rules("""
        [[rule]]
        match = 'x'
        rename = 'x\\g<part>'
        split = { axis = 0, parts = 3 }
    """))
    for k in out:
        out[k].numpy()
    assert src.reads == 1 and list(out) == ["x0", "x1", "x2"]


def test_lstm_gate_reorder_with_split_and_merge_stages():
    # TF's fused LSTM kernel holds gates i, c, f, o; PyTorch wants i, f, g(c), o.
    gates = {g: np.full((3, 2), i, np.float32) for i, g in enumerate("icfo")}
    kernel = np.concatenate([gates[g] for g in "icfo"], axis=1)
    r = rules("""
        [[stage]]
        [[stage.rule]]
        match = '^lstm/kernel$'
        rename = 'lstm/gate_\\g<part>'
        split = { axis = 1, parts = ["i", "c", "f", "o"] }
        [[stage]]
        [[stage.rule]]
        match = '^lstm/gate_(?P<part>[icfo])$'
        rename = 'lstm.weight_ih'
        merge = { axis = 1, parts = ["i", "f", "c", "o"] }
        transpose = true
    """)
    out = TensorMap({"lstm/kernel": kernel}).map(r)
    expected = np.concatenate([gates[g] for g in "ifco"], axis=1).T
    np.testing.assert_array_equal(out["lstm.weight_ih"].numpy(), expected)
    back = out.map(r.reversed())
    np.testing.assert_array_equal(back["lstm/kernel"].numpy(), kernel)


def test_add_and_strip_prefix():
    m = TensorMap({"module.fc.weight": arange(2), "module.fc.bias": arange(1)})
    stripped = m.map(rules("""
        [[rule]]
        strip_prefix = "module."
    """))
    assert list(stripped) == ["fc.weight", "fc.bias"]
    added = stripped.map(rules("""
        [[rule]]
        match = 'weight$'
        add_prefix = "model."
    """))
    assert list(added) == ["model.fc.weight", "fc.bias"]


def test_rank_shape_and_dtype_criteria():
    m = TensorMap({"k": arange(2, 3), "v": arange(3), "big": arange(4, 4),
                   "i": np.arange(4, dtype=np.int32).reshape(2, 2)})
    r = rules("""
        [[rule]]
        rank = 1
        rename = 'r1'
        match = 'v'
        [[rule]]
        shape = [4, "*"]
        match = '.*'
        rename = 'four'
        [[rule]]
        dtype = "int32"
        match = '.*'
        rename = 'ints'
    """)
    assert list(m.map(r)) == ["k", "r1", "four", "ints"]


def test_when_and_unless_flags():
    text = """
        [[rule]]
        match = 'opt'
        drop = true
        unless = "keep-optimizer"
        [[rule]]
        match = 'opt'
        rename = 'kept'
        when = "keep-optimizer"
    """
    m = TensorMap({"opt": arange(1), "w": arange(1)})
    assert list(m.map(rules(text))) == ["w"]
    assert list(m.map(rules(text).with_flags("keep-optimizer"))) == ["kept", "w"]


def test_stages_run_in_order():
    r = rules("""
        [[stage]]
        [[stage.rule]]
        match = 'kernel$'
        rename = 'weight'
        [[stage]]
        [[stage.rule]]
        match = '/'
        rename = '.'
    """)
    assert list(TensorMap({"a/kernel": arange(1)}).map(r)) == ["a.weight"]


def test_rules_combine_with_plus_and_load_files(tmp_path):
    (tmp_path / "one.toml").write_text("[[rule]]\nmatch = 'a'\nrename = 'b'\n")
    (tmp_path / "two.toml").write_text("[[rule]]\nmatch = 'b'\nrename = 'c'\n")
    r = ckconv.rules.load([tmp_path / "one.toml", str(tmp_path / "two.toml")])
    m = TensorMap({"a": arange(1)})
    assert list(m.map(r)) == ["c"]
    assert list(ckconv.rules.apply(m, str(tmp_path / "one.toml"))) == ["b"]
    assert list(ckconv.rules.apply({"a": arange(1)}, r)) == ["c"]


def test_yaml_rules_with_line_numbers(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "r.yaml"
    path.write_text("strict: true\nrule:\n  - match: '^a$'\n    rename: b\n  - match: '^zzz$'\n"
                    "    drop: true\n")
    r = ckconv.rules.load(path)
    with pytest.raises(MappingError, match=r"r\.yaml:5"):
        TensorMap({"a": arange(1)}).map(r)


# ---------------------------------------------------------------------------------------
# strict mode and error messages


def test_strict_lists_every_unmatched_name_at_once():
    r = rules("""
        strict = true
        [[rule]]
        match = '^keep$'
        keep = true
    """)
    m = TensorMap({"keep": arange(1), "x/1": arange(1), "x/2": arange(1), "x/3": arange(1)})
    with pytest.raises(MappingError) as exc:
        m.map(r)
    msg = str(exc.value)
    assert "3 tensors matched by no rule" in msg
    for name in ("x/1", "x/2", "x/3"):
        assert name in msg
    assert list(m.map(r.with_strict(False))) == list(m)


def test_strict_rule_matching_nothing_names_file_and_line():
    r = rules("""
        strict = true

        [[rule]]
        match = '.*'
        keep = true

        [[rule]]
        # never reached
        match = '^nothing$'
        drop = true

        [[rule]]
        match = '^also_nothing$'
        drop = true
        optional = true
    """, "mine.toml")
    with pytest.raises(MappingError, match=r"mine\.toml:8 \(match '\^nothing\$'\)") as exc:
        TensorMap({"a": arange(1)}).map(r)
    assert "mine.toml:12" not in str(exc.value)


def test_two_sources_one_target_is_an_error_naming_rules_and_tensors():
    r = rules("""
        [[rule]]
        match = '^(a|b)$'
        rename = 'same'
    """)
    with pytest.raises(MappingError) as exc:
        TensorMap({"a": arange(1), "b": arange(1)}).map(r)
    assert "'same'" in str(exc.value) and "test.toml:2" in str(exc.value)
    assert "a (" in str(exc.value) and "b (" in str(exc.value)


def test_collision_with_an_unmatched_name():
    r = rules("[[rule]]\nmatch = '^a$'\nrename = 'b'\n")
    with pytest.raises(MappingError, match="two tensors map to 'b'"):
        TensorMap({"a": arange(1), "b": arange(1)}).map(r)


@pytest.mark.parametrize("action,shape,message", [
    ("transpose = true", (2, 3, 4), "transpose needs a 2-D tensor"),
    ("permute = [1, 0]", (2, 3, 4), "needs a rank-2 tensor"),
    ("reshape = [5, -1]", (2, 3), "cannot reshape"),
    ('split = { axis = 0, parts = ["a", "b", "c"] }', (4, 2), "3 equal parts"),
    ('split = { axis = 5, parts = ["a", "b"] }', (4, 2), "out of range"),
    ('cast = "bf16"', None, "cannot cast string"),
])
def test_transform_that_does_not_fit_names_rule_and_tensor(action, shape, message):
    value = np.array([b"s"], object) if shape is None else np.zeros(shape, np.float32)
    rename = "rename = 'w\\g<part>'\n" if "split" in action else ""
    r = rules(f"[[rule]]\nmatch = '^w$'\n{rename}{action}\n", "fit.toml")
    with pytest.raises(MappingError) as exc:
        TensorMap({"w": value, "w2": value}).map(r)
    assert "fit.toml:1" in str(exc.value) and "'w'" in str(exc.value)
    assert message in str(exc.value)


def test_merge_with_missing_part_is_an_error():
    r = rules("""
        [[rule]]
        match = '^(?P<part>q|k|v)$'
        rename = 'qkv'
        merge = { axis = 0, parts = ["q", "k", "v"] }
    """)
    with pytest.raises(MappingError, match=r"part\(s\) v missing"):
        TensorMap({"q": arange(2), "k": arange(2)}).map(r)
    with pytest.raises(MappingError, match="cannot be joined"):
        TensorMap({"q": arange(2), "k": arange(3), "v": arange(2, 1)}).map(r)


@pytest.mark.parametrize("text,message", [
    ("[[rule]]\nmatch = 'a'\nrenam = 'b'\n", "test.toml:1: unknown key(s) 'renam'"),
    ("[[rule]]\nmatch = '('\nrename = 'b'\n", "test.toml:1: missing )"),
    ("[[rule]]\nrename = 'b'\n", "rename needs a match pattern"),
    ("[[rule]]\nmatch = 'a'\ndrop = true\nrename = 'b'\n", "drop cannot be combined"),
    ("[[rule]]\nmatch = 'a'\npermute = [0, 0]\n", "not a permutation"),
    ("[[rule]]\nmatch = 'a'\npermute = 'HWIO -> OIH'\n", "two layouts"),
    ("[[rule]]\nmatch = 'a'\ncast = 'float99'\n", "unknown dtype"),
    ("[[rule]]\nmatch = 'a'\nrename = 'b'\nsplit = { axis = 0, parts = 2 }\n", "must use"),
    ("[[rule]]\nmatch = 'a'\nrename = 'b'\nmerge = { parts = ['x'] }\n", "(?P<part>"),
    ("[[rule]]\nmatch = 'a'\ndirection = 'sideways'\n", "direction must be"),
    ("[[rule]]\nmatch = 'a'\nadd_prefix = 'x'\nrename = 'y'\n", "one of rename, add_prefix"),
    ("[[rule]]\nmatch = 'a'\nrank = 2\npermute = [0, 1, 2]\n", "cannot apply to rank"),
    ("strict = 1\n", "strict must be true or false"),
    ("[[rule]\n", "not valid TOML"),
    ("bogus = 1\n", "unknown top-level key"),
    ("rule = 3\n", "expected a list of tables"),
])
def test_bad_rules_files(text, message):
    with pytest.raises(MappingError) as exc:
        rules(text)
    assert message in str(exc.value)


def test_rules_file_errors_cite_the_line_of_the_rule(tmp_path):
    path = tmp_path / "lines.toml"
    path.write_text("# comment\n\n[[rule]]\nmatch = 'a'\nrename = 'b'\n\n[[rule]]\nmatch = 'c'\n"
                    "transpose = 3\n")
    with pytest.raises(MappingError, match=r"lines\.toml:7: transpose must be true or false"):
        ckconv.rules.load(path)
    with pytest.raises(MappingError, match="cannot read rules file"):
        ckconv.rules.load(tmp_path / "missing.toml")


def test_include_exclude_and_dtype_helpers():
    from ckconv.converters.catalog import build

    m = TensorMap({"a/w": arange(2), "a/b": arange(2), "c/w": arange(2),
                   "i": np.arange(2, dtype=np.int64)})
    r = build(include=["^a/", "^i$"], exclude=["b$"], dtype="fp16")
    out = m.map(r)
    assert list(out) == ["a/w", "i"]
    assert str(out["a/w"].dtype) == "float16" and str(out["i"].dtype) == "int64"
    with pytest.raises(ckconv.UsageError):
        build(dtype="int8")
    assert build() is None


# ---------------------------------------------------------------------------------------
# reversal


REVERSIBLE = """
    [[stage]]
    [[stage.rule]]
    match = '^enc/layer_(\\d+)/(query|key)/kernel$'
    rename = 'encoder.layer.\\1.\\2.weight'
    transpose = true
    [[stage.rule]]
    match = '^conv/kernel$'
    rename = 'conv.weight'
    permute = "HWIO -> OIHW"
    [[stage.rule]]
    match = '^(.*)/qkv$'
    rename = '\\1.\\g<part>'
    split = { axis = 0, parts = ["q", "k", "v"] }
    [[stage.rule]]
    match = '^gates/(?P<part>[ab])$'
    rename = 'gates'
    merge = { axis = 1, parts = ["a", "b"], sizes = [3, 1] }
    [[stage.rule]]
    match = '^opt/'
    drop = true
    [[stage.rule]]
    match = '^(?P<name>bn)/(gamma)?$'
    rename = 'norm.\\g<name>.\\2'
    [[stage.rule]]
    strip_prefix = "model/"
    [[stage]]
    [[stage.rule]]
    add_prefix = "net."
"""


def reversible_map() -> TensorMap:
    rng = np.random.default_rng(1)
    return TensorMap({
        "enc/layer_0/query/kernel": rng.normal(size=(3, 4)).astype(np.float32),
        "enc/layer_12/key/kernel": rng.normal(size=(4, 3)).astype(np.float32),
        "conv/kernel": rng.normal(size=(3, 3, 2, 5)).astype(np.float32),
        "attn/qkv": rng.normal(size=(6, 2)).astype(np.float16),
        "gates/a": rng.normal(size=(2, 3)).astype(np.float64),
        "gates/b": rng.normal(size=(2, 1)).astype(np.float64),
        "bn/gamma": rng.normal(size=(2,)).astype(np.float32),
        "bn/": rng.normal(size=(2,)).astype(np.float32),
        "model/extra": np.arange(3, dtype=np.int64),
    })


def test_rules_then_reverse_rules_give_back_the_input():
    m = reversible_map()
    r = rules(REVERSIBLE)
    out = m.map(r)
    assert sorted(out) == sorted([
        "net.encoder.layer.0.query.weight", "net.encoder.layer.12.key.weight", "net.conv.weight",
        "net.attn.q", "net.attn.k", "net.attn.v", "net.gates", "net.norm.bn.gamma",
        "net.norm.bn.", "net.extra"])
    assert out["net.conv.weight"].shape == (5, 2, 3, 3)
    back = out.map(r.reversed())
    assert sorted(back) == sorted(m)
    for k in m:
        assert back[k].numpy().tobytes() == m[k].numpy().tobytes(), k
        assert back[k].dtype == m[k].dtype and back[k].shape == m[k].shape
    assert r.reversed().reversed() == r


def test_reversed_rules_only_match_names_the_forward_rules_can_produce():
    r = rules("""
        strict = true
        [[rule]]
        match = '^a/(\\d+)$'
        rename = 'a.\\1'
    """)
    back = r.reversed()
    assert list(TensorMap({"a.7": arange(1)}).map(back)) == ["a/7"]
    with pytest.raises(MappingError, match="matched by no rule.*a.x"):
        TensorMap({"a.7": arange(1), "a.x": arange(1)}).map(back)


def test_unanchored_rename_reversal_is_checked_per_name():
    r = rules("[[rule]]\nmatch = '/'\nrename = '.'\n")
    assert list(TensorMap({"a.b": arange(1)}).map(r.reversed())) == ["a/b"]
    # "x.y/z" -> "x.y.z" cannot be undone: the reversed rule declines and the name stays.
    # Forward maps "x.y/z" and "x/y/z" alike, so no rule can tell them apart backwards:
    # a name that already holds the replacement text does not survive the round trip.
    out = TensorMap({"x.y/z": arange(1)}).map(r)
    assert list(out.map(r.reversed())) == ["x/y/z"]
    assert list(TensorMap({"x/y": arange(1)}).map(r).map(r.reversed())) == ["x/y"]


@pytest.mark.parametrize("action", [
    'cast = "bf16"', "reshape = [-1]", "object_graph = true",
])
def test_non_invertible_rules_are_reported_by_line(action):
    r = rules(f"[[rule]]\nmatch = 'a'\n{action}\n", "one.toml")
    with pytest.raises(MappingError, match=r"cannot be reversed: one\.toml:1"):
        r.reversed()


@pytest.mark.parametrize("pattern,template", [
    ("^a(.*)b$", "x\\1\\1"),          # group used twice
    ("^a(.*)b$", "constant"),         # group dropped
    ("^a|b$", "x"),                   # top-level alternation
    ("^a.b$", "x"),                   # top-level wildcard
    ("^(a)+$", "\\1"),                # repeated group
])
def test_non_invertible_renames(pattern, template):
    r = rules(f"[[rule]]\nmatch = '{pattern}'\nrename = '{template}'\n")
    with pytest.raises(MappingError, match="cannot be reversed"):
        r.reversed()


def test_reshape_with_exact_source_shape_is_invertible():
    r = rules("""
        [[rule]]
        match = '^w$'
        shape = [2, 3, 4]
        reshape = [6, 4]
    """)
    m = TensorMap({"w": arange(2, 3, 4)})
    back = m.map(r).map(r.reversed())
    assert back["w"].shape == (2, 3, 4)
    np.testing.assert_array_equal(back["w"].numpy(), arange(2, 3, 4))


def test_direction_forward_and_reverse_rules():
    r = rules("""
        [[rule]]
        match = '^step$'
        drop = true
        [[rule]]
        match = '^x$'
        rename = 'y'
        [[rule]]
        match = '^extra$'
        drop = true
        direction = "reverse"
    """)
    out = TensorMap({"step": arange(1), "x": arange(1)}).map(r)
    assert list(out) == ["y"]
    out["extra"] = arange(1)
    assert list(out.map(r.reversed())) == ["x"]


def test_reversal_of_a_combination_reverses_the_order():
    one = rules("[[rule]]\nmatch = '^a$'\nrename = 'b'\n", "one.toml")
    two = rules("[[rule]]\nmatch = '^b$'\nrename = 'c'\n", "two.toml")
    both = one + two
    m = TensorMap({"a": arange(1)})
    assert list(m.map(both)) == ["c"]
    assert list(m.map(both).map(both.reversed())) == ["a"]
    assert list(m.map(both).map(ckconv.rules.load([one, two], reverse=True))) == ["a"]


# ---------------------------------------------------------------------------------------
# the rename inverter


def test_invert_examples():
    from ckconv.converters.invert import invert

    assert invert(r"^bert/layer_(\d+)/(q|k)/kernel$", r"bert.layer.\1.\2.weight") == (
        r"^bert\.layer\.(?P<_g1>\d+)\.(?P<_g2>q|k)\.weight$", r"bert/layer_\g<_g1>/\g<_g2>/kernel")
    assert invert("/", ".") == (r"\.", "/")
    assert invert(r"(?i)^(.*/)?kernel$", r"\1weight") == (
        r"(?i)^(?P<_g1>(?:.*/)?)weight$", r"\g<_g1>kernel")
    assert invert(r"^(?P<layer>\d+)\.w$", r"w/\g<layer>") == (
        r"^w/(?P<layer>\d+)$", r"\g<layer>.w")
    # nested groups keep the outer group's number right
    assert invert(r"^((a)|(b))_(\d)$", r"\4-\1") == (
        r"^(?P<_g4>\d)\-(?P<_g1>(a)|(b))$", r"\g<_g1>_\g<_g4>")


from hypothesis import given, settings, strategies as st  # noqa: E402

_SEPS = st.sampled_from(["/", ".", "-", "/x/", ".y.", ":"])


@settings(max_examples=200, deadline=None)
@given(seps=st.lists(_SEPS, min_size=3, max_size=3),
       tseps=st.lists(_SEPS, min_size=3, max_size=3),
       order=st.permutations([1, 2]),
       values=st.tuples(st.from_regex(r"[a-z_]{1,6}", fullmatch=True),
                        st.from_regex(r"[0-9]{1,4}", fullmatch=True)))
def test_rename_round_trip_property(seps, tseps, order, values):
    """Anchored renames whose separators cannot occur in group values invert exactly."""
    import re as _re

    pattern = "^" + _re.escape(seps[0]) + r"([a-z_]+)" + _re.escape(seps[1]) + r"(\d+)" \
        + _re.escape(seps[2]) + "$"
    template = (tseps[0] + f"\\{order[0]}" + tseps[1] + f"\\{order[1]}" + tseps[2]).replace(
        "\\.", "\\\\.")
    name = seps[0] + values[0] + seps[1] + values[1] + seps[2]
    r = ckconv.rules.parse(f"[[rule]]\nmatch = '''{pattern}'''\nrename = '''{template}'''\n")
    out = TensorMap({name: arange(1)}).map(r)
    back = out.map(r.reversed())
    assert list(back) == [name]


@pytest.mark.parametrize("pattern,template,name", [
    (r"(a)(b)?", r"[\1|\2]\n\\\0\012\101x", "ab a"),
    (r"(\d+)", r"\g<1>0", "x12y3"),
    ("/", ".", "a/b/c"),
    (r"^(?P<n>\w+)$", r"\g<n>!", "abc"),
    (r"(x)", r"\.\-", "x"),
])
def test_substitution_agrees_with_re_sub(pattern, template, name):
    import re as _re

    from ckconv.converters.model import substitute

    assert substitute(_re.compile(pattern), template, name) == _re.sub(pattern, template, name)


def test_bad_templates_are_caught_when_loading():
    with pytest.raises(MappingError, match=r"test\.toml:1: invalid group reference 3"):
        rules("[[rule]]\nmatch = '(a)'\nrename = '\\3'\n")
    with pytest.raises(MappingError, match="bad escape"):
        rules("[[rule]]\nmatch = '(a)'\nrename = '\\q'\n")


def test_permute_then_reshape_inverts_with_the_intermediate_shape():
    r = rules("""
        [[rule]]
        match = '^dw$'
        shape = [3, 3, 4, 2]
        permute = "HWCM -> CMHW"
        reshape = ["d0*d1", 1, "d2", "d3"]
    """)
    k = np.random.default_rng(5).normal(size=(3, 3, 4, 2)).astype(np.float32)
    out = TensorMap({"dw": k}).map(r)
    assert out["dw"].shape == (8, 1, 3, 3)
    back = out.map(r.reversed())
    assert back["dw"].numpy().tobytes() == k.tobytes()
