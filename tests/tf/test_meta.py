"""`.meta` files without TensorFlow: collections, op counts, SaverDef, --collection, w1:0 names.

The expected numbers come from TF's own parse of the same files (see test_meta_live.py,
which re-checks them against tf.compat.v1.train.import_meta_graph + get_collection).
"""

from __future__ import annotations

import json

import pytest

import ckconv
from ckconv.cli import main
from ckconv.errors import CorruptCheckpointError, UsageError
from ckconv.formats.tf import protos
from ckconv.formats.tf.meta import meta_path_for, read_meta_graph, strip_output_index
from tests.helpers import SEED, fixture_prefix

SECOND = SEED / "my_second_model" / "test_save-1000"


def test_seed_second_model_meta():
    graph = read_meta_graph(str(SECOND) + ".meta")
    assert graph.op_count == 26 and not graph.text_format
    assert graph.op_types["VariableV2"] == 2 and graph.op_types["Placeholder"] == 2
    assert graph.tensorflow_version == "2.21.0"
    assert sorted(c.name for c in graph.collections.values()) == [
        "global_step", "global_variables", "trainable_variables"]
    assert graph.collection("global_variables") is graph.collection("variables")
    assert graph.collection("trainable_variables").candidates == ["bias"]
    assert [v.name for v in graph.collection("variables").variables] == ["bias:0", "global_step:0"]
    assert graph.saver == {"version": "V2", "max_to_keep": 5, "sharded": False,
                           "keep_checkpoint_every_n_hours": 10000.0,
                           "filename_tensor_name": "save/Const:0",
                           "save_tensor_name": "save/control_dependency:0",
                           "restore_op_name": "save/restore_all"}


@pytest.mark.parametrize("path,ops", [
    (SEED / "my_model" / "test_save-1000.meta", 32),
    (SEED / "my_test_model" / "my_test_model.meta", 32),
])
def test_seed_first_model_meta(path, ops):
    graph = read_meta_graph(str(path))
    assert graph.op_count == ops
    assert graph.collection("trainable_variables").candidates == ["w1", "w2"]


def test_partitioned_variables_map_to_full_names():
    graph = read_meta_graph(fixture_prefix("partitioned") + ".meta")
    assert graph.op_count == 103
    variables = graph.collection("global_variables").variables
    assert [v.key for v in variables] == ["emb"] * 3 + ["dense/kernel"] * 3 + ["dense/bias"]
    assert variables[1].name == "emb/part_1:0" and variables[1].is_resource
    assert variables[1].partition == {"full_shape": [10, 4], "var_offset": [4, 0],
                                      "var_shape": [3, 4]}
    tmap = ckconv.load(fixture_prefix("partitioned"), collections="trainable_variables")
    assert list(tmap) == ["dense/bias", "dense/kernel", "emb"]


def test_membership_and_collections_property():
    tmap = ckconv.load(SEED / "my_second_model")
    assert tmap.collections == {"global_step": ["global_step"],
                                "trainable_variables": ["bias"],
                                "global_variables": ["bias", "global_step"]}
    assert ckconv.load(fixture_prefix("keras2_ckpt")).collections == {}


def _text_meta(tmp_path, body: str):
    path = tmp_path / "graph.meta"
    path.write_text(body)
    return read_meta_graph(str(path))


def test_text_format_with_unknown_fields(tmp_path):
    # Fields ckconv does not declare (attrs, versions, stripped_op_list, an expanded Any)
    # must be skipped, not rejected: text .meta files carry the whole graph.
    vd = protos.VariableDef(variable_name="w:0", trainable=True).SerializeToString()
    escaped = "".join(f"\\{b:03o}" for b in vd)
    import google.protobuf

    # protobuf 3.x's text parser cannot skip an expanded Any of an unknown type (a known
    # limitation of that release, documented in the README); 4.x and later can.
    any_line = ("any_info { [type.googleapis.com/some.Unknown] { x: 1 } }"
                if int(google.protobuf.__version__.split(".")[0]) >= 4 else "")
    graph = _text_meta(tmp_path, f"""
meta_info_def {{
  stripped_op_list {{ op {{ name: "Const" output_arg {{ name: "output" type_attr: "dtype" }} }} }}
  tensorflow_version: "2.21.0"
  {any_line}
}}
graph_def {{
  node {{ name: "w" op: "VariableV2" attr {{ key: "shape" value {{ shape {{ dim {{ size: 2 }} }} }} }} }}
  node {{ name: "c" op: "Const" attr {{ key: "value" value {{ tensor {{ dtype: DT_FLOAT
          tensor_shape {{ }} float_val: 1.5 }} }} }} }}
  versions {{ producer: 1808 }}
}}
saver_def {{ filename_tensor_name: "save/Const:0" max_to_keep: 7 version: V2 }}
collection_def {{ key: "trainable_variables" value {{ bytes_list {{ value: "{escaped}" }} }} }}
collection_def {{ key: "train_op" value {{ node_list {{ value: "train" value: "w:0" }} }} }}
collection_def {{ key: "floats" value {{ float_list {{ value: 0.5 value: 2 }} }} }}
""")
    assert graph.text_format and graph.op_count == 2
    assert graph.tensorflow_version == "2.21.0"
    assert graph.saver["max_to_keep"] == 7 and graph.saver["version"] == "V2"
    assert graph.collection("trainable_variables").candidates == ["w"]
    assert graph.collection("train_op").candidates == ["train", "w"]
    assert graph.collection("floats").kind == "float_list" and graph.collection("floats").size == 2


def test_binary_round_trip_through_text(tmp_path):
    from google.protobuf import text_format

    msg = protos.MetaGraphDef()
    msg.ParseFromString((SECOND.parent / "test_save-1000.meta").read_bytes())
    (tmp_path / "t.meta").write_text(text_format.MessageToString(msg))
    text = read_meta_graph(str(tmp_path / "t.meta"))
    binary = read_meta_graph(str(SECOND) + ".meta")
    assert text.text_format and text.op_count == binary.op_count == 26
    assert {k: c.candidates for k, c in text.collections.items()} == \
        {k: c.candidates for k, c in binary.collections.items()}


@pytest.mark.parametrize("data", [b"\x0a\xff\xff\xff\xff\x0f", b"\x12\x05ab", b"not { a meta",
                                  bytes(range(256))])
def test_corrupt_meta_is_a_clear_error(tmp_path, data):
    path = tmp_path / "bad.meta"
    path.write_bytes(data)
    with pytest.raises(CorruptCheckpointError, match="not a MetaGraphDef"):
        read_meta_graph(str(path))


def test_bad_variable_def_is_corrupt(tmp_path):
    msg = protos.MetaGraphDef()
    entry = msg.collection_def.add(key="variables")
    entry.value.bytes_list.value.append(b"\x0a\xff")  # truncated string field
    path = tmp_path / "v.meta"
    path.write_bytes(msg.SerializeToString())
    with pytest.raises(CorruptCheckpointError, match="VariableDef"):
        read_meta_graph(str(path))


def test_private_descriptor_pool():
    from google.protobuf import descriptor_pool

    desc = protos.MetaGraphDef.DESCRIPTOR
    assert desc.full_name == "ckconv.tf.MetaGraphDef"
    assert desc.file.pool is not descriptor_pool.Default()


def test_meta_path_and_output_index():
    assert meta_path_for("run/model.ckpt-1000") == "run/model.ckpt-1000.meta"
    assert meta_path_for("run/model.ckpt-1000-?????-of-00002") == "run/model.ckpt-1000.meta"
    assert strip_output_index("w1:0") == "w1" and strip_output_index("a/b") == "a/b"


# ------------------------------------------------------------------------ CLI and API

def test_cli_convert_collection_keeps_bias_only(tmp_path, capsys):
    from safetensors.numpy import load_file

    dst = tmp_path / "out.safetensors"
    code = main([str(SEED / "my_second_model"), str(dst), "--collection", "trainable_variables"])
    assert code == 0
    assert sorted(load_file(str(dst))) == ["bias"]
    assert "left out 1" in capsys.readouterr().err


def test_cli_collection_repeatable_and_aliases(tmp_path):
    from safetensors.numpy import load_file

    dst = tmp_path / "out.safetensors"
    assert main([str(SEED / "my_second_model"), str(dst), "--collection", "global_step",
                 "--collection", "trainable_variables", "-q"]) == 0
    assert sorted(load_file(str(dst))) == ["bias", "global_step"]
    assert list(ckconv.load(SEED / "my_second_model", collections="variables")) == [
        "bias", "global_step"]


def test_collection_without_meta_is_usage_error(tmp_path, capsys):
    ckconv.save({"w": [1.0]}, tmp_path / "plain.ckpt")
    code = main([str(tmp_path / "plain.ckpt"), str(tmp_path / "o.safetensors"),
                 "--collection", "trainable_variables"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert ".meta" in err and "tf.compat.v1.train.Saver" in err
    code = main([fixture_prefix("keras2_ckpt"), str(tmp_path / "o.safetensors"),
                 "--collection", "trainable_variables"])
    assert code == 2 and "TF2 object-based" in capsys.readouterr().err
    assert not (tmp_path / "o.safetensors").exists()


def test_unknown_collection_lists_known(capsys, tmp_path):
    code = main([str(SEED / "my_second_model"), str(tmp_path / "o.safetensors"),
                 "--collection", "model_variables"])
    err = capsys.readouterr().err
    assert code == 2
    assert "global_step, global_variables, trainable_variables" in err


def test_inspect_shows_collections_and_ops(capsys):
    assert main(["inspect", str(SECOND)]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("bias"))
    assert line.endswith("global_variables, trainable_variables")
    assert "26 ops" in out and "saver: V2, max_to_keep 5" in out
    assert main(["inspect", str(SECOND), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["meta"]["ops"] == 26
    assert doc["meta"]["collections"]["trainable_variables"] == {
        "key": "trainable_variables", "kind": "bytes_list", "size": 1, "tensors": ["bias"]}
    assert {t["name"]: t["collections"] for t in doc["tensors"]} == {
        "bias": ["global_variables", "trainable_variables"],
        "global_step": ["global_step", "global_variables"]}


def test_inspect_collection_filter(capsys):
    assert main(["inspect", str(SECOND), "--json", "--collection", "global_step"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [t["name"] for t in doc["tensors"]] == ["global_step"]


def test_inspect_without_meta_has_no_collections_column(capsys):
    assert main(["inspect", fixture_prefix("keras2_ckpt")]) == 0
    out = capsys.readouterr().out
    assert "collections" not in out.splitlines()[0] and "graph " not in out


def test_tf_tensor_names_with_output_index(capsys):
    tmap = ckconv.load(SEED / "my_model")
    assert tmap["w1:0"] is tmap["w1"] and "w2:0" in tmap and tmap.resolve("w2:0") == "w2"
    assert "w1:1" not in tmap and tmap.resolve("w3:0") is None
    with pytest.raises(KeyError):
        tmap["w1:1"]
    assert main(["inspect", str(SEED / "my_model"), "--json", "--values", "w1:0"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["values"]["w1:0"] == pytest.approx(tmap["w1"].numpy().tolist())
    copy = tmap.copy()
    del copy["w2:0"]
    assert list(copy) == ["w1"]
    copy["w1:0"] = [0.0, 0.0]
    assert list(copy) == ["w1"]


def test_step_and_collection_are_tf_only(tmp_path):
    ckconv.save({"w": [1.0]}, tmp_path / "a.safetensors")
    with pytest.raises(UsageError, match="TF checkpoints"):
        ckconv.load(tmp_path / "a.safetensors", step=3)
    with pytest.raises(UsageError, match=".meta"):
        ckconv.load(tmp_path / "a.safetensors", collections=["trainable_variables"])


def test_tf_tensor_names_in_filters_and_diff(tmp_path, capsys):
    from safetensors.numpy import load_file

    from ckconv.surgery import tf_name_regex

    dst = tmp_path / "w1.safetensors"
    assert main([str(SEED / "my_model"), str(dst), "--include", "w1:0", "-q"]) == 0
    assert list(load_file(str(dst))) == ["w1"]
    assert main(["diff", str(SEED / "my_model"), str(SEED / "my_test_model"),
                 "--exclude", "w2:0", "--summary"]) == 0
    assert "1 tensor in both" in capsys.readouterr().out
    assert tf_name_regex("w1:0") == "w1(?::0)?$" and tf_name_regex("a.*:0$") == "a.*(?::0)?$"
    assert tf_name_regex(r"x\:0") == r"x\:0" and tf_name_regex("dense/.*") == "dense/.*"


def test_api_convert_with_step_and_collections(tmp_path):
    from safetensors.numpy import load_file

    notes = ckconv.convert(SEED / "my_second_model", tmp_path / "b.safetensors", step=1000,
                           collections="trainable_variables")
    assert list(load_file(str(tmp_path / "b.safetensors"))) == ["bias"]
    assert any("left out 1" in n for n in notes)
