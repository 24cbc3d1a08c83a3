"""`.meta` graphs compared with what real TensorFlow reports (import_meta_graph + get_collection).

One TF1 graph exercises every variable collection (global, trainable, local, model, moving
average, metric, global_step), ref and resource variables, a partitioned variable, custom
collections of variables, strings, ints and floats, and an op collection; it is saved by a
``tf.compat.v1.train.Saver`` and exported in binary and text form.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ckconv
from ckconv.cli import main
from ckconv.formats.tf.meta import read_meta_graph
from tests.helpers import live_tf

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return live_tf()


@pytest.fixture(scope="module")
def saved(tf, tmp_path_factory) -> dict[str, Any]:
    """Build, initialise and save the graph; returns paths and what TF saw at save time."""
    v1 = tf.compat.v1
    out = tmp_path_factory.mktemp("meta_live")
    graph = tf.Graph()
    with graph.as_default():
        w1 = v1.Variable([1.0, 2.0], name="w1", use_resource=False)  # classic VariableV2
        with v1.variable_scope("enc"):
            w2 = v1.get_variable("w2", shape=[3], initializer=v1.ones_initializer())
        v1.Variable(0, name="counter", trainable=False,
                    collections=[v1.GraphKeys.LOCAL_VARIABLES])
        v1.Variable(1.5, name="model_var",
                    collections=[v1.GraphKeys.GLOBAL_VARIABLES, v1.GraphKeys.MODEL_VARIABLES])
        emb = v1.get_variable("emb", shape=[10, 4], initializer=v1.zeros_initializer(),
                              partitioner=v1.fixed_size_partitioner(3))
        ema_op = v1.train.ExponentialMovingAverage(0.9).apply([w1])
        v1.metrics.mean(tf.constant([1.0, 3.0]), name="mean")
        step = v1.train.get_or_create_global_step()
        v1.add_to_collection("my_vars", w2)
        v1.add_to_collection("my_vars", w1)
        v1.add_to_collection("my_vars", emb)
        v1.add_to_collection("my_strings", "hello")
        v1.add_to_collection("my_ints", 3)
        v1.add_to_collection("my_floats", 0.5)
        v1.add_to_collection("train_op", ema_op)
        saver = v1.train.Saver(max_to_keep=3)
        with v1.Session(graph=graph) as sess:
            sess.run(w1.initializer)  # the moving average's initial value reads w1
            sess.run([v1.global_variables_initializer(), v1.local_variables_initializer()])
            step.load(5, sess)
            prefix = saver.save(sess, str(out / "model.ckpt"), global_step=5)
        text_meta = str(out / "text.meta")
        v1.train.export_meta_graph(filename=text_meta, as_text=True, graph=graph,
                                   saver_def=saver.saver_def)
        ops_at_save = len(graph.get_operations())
    return {"prefix": prefix, "meta": prefix + ".meta", "text_meta": text_meta,
            "ops_at_save": ops_at_save, "dir": str(out)}


def _tf_view(tf, meta_path: str) -> dict[str, Any]:
    """What TF's import_meta_graph + get_collection make of a .meta file."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        saver = v1.train.import_meta_graph(meta_path)
        collections = {}
        for key in graph.get_all_collection_keys():
            items = []
            for item in graph.get_collection(key):
                if isinstance(item, tf.Variable):
                    info = getattr(item, "_save_slice_info", None)
                    items.append(("var", info.full_name if info else item.op.name))
                elif hasattr(item, "name"):
                    items.append(("node", item.name))
                else:
                    items.append(("value", item))
            collections[key] = items
        return {"ops": len(graph.get_operations()), "collections": collections,
                "saver_def": saver.saver_def}


def test_collections_match_tensorflow(tf, saved):
    want = _tf_view(tf, saved["meta"])
    graph = read_meta_graph(saved["meta"])
    assert graph.op_count == want["ops"] == saved["ops_at_save"]
    assert set(graph.collections) == set(want["collections"])
    for key, items in want["collections"].items():
        coll = graph.collections[key]
        assert coll.size == len(items), key
        if items and items[0][0] == "var":  # VariableDef collections: the checkpoint keys
            assert coll.candidates == [name for _, name in items], key
    # Known variable collections, spelled out (checkpoint keys; partitions -> full name).
    c = graph.collections
    assert c["variables"].candidates == ["w1", "enc/w2", "model_var", "emb", "emb", "emb",
                                         "w1/ExponentialMovingAverage", "global_step"]
    assert c["trainable_variables"].candidates == ["w1", "enc/w2", "model_var", "emb", "emb",
                                                   "emb"]
    assert c["local_variables"].candidates == ["counter", "mean/total", "mean/count"]
    assert c["metric_variables"].candidates == ["mean/total", "mean/count"]
    assert c["model_variables"].candidates == ["model_var"]
    assert c["moving_average_variables"].candidates == ["w1"]
    assert c["global_step"].candidates == ["global_step"]
    # Custom collection of variables: node_list of graph names, mapped to checkpoint keys.
    assert c["my_vars"].kind == "node_list"
    assert c["my_vars"].candidates == ["enc/w2", "w1", "emb"]
    assert [v for _, v in want["collections"]["my_strings"]] in ([b"hello"], ["hello"])
    assert (c["my_strings"].kind, c["my_ints"].kind, c["my_floats"].kind) == (
        "bytes_list", "int64_list", "float_list")
    parts = [v.partition for v in c["variables"].variables if v.key == "emb"]
    assert [p["var_offset"] for p in parts] == [[0, 0], [4, 0], [7, 0]]


def test_saver_def_matches_tensorflow(tf, saved):
    want = _tf_view(tf, saved["meta"])["saver_def"]
    s = read_meta_graph(saved["meta"]).saver
    assert s["max_to_keep"] == want.max_to_keep == 3
    assert s["version"] == "V2" and want.version == 2
    assert s["sharded"] == want.sharded
    assert s["keep_checkpoint_every_n_hours"] == pytest.approx(want.keep_checkpoint_every_n_hours)
    assert s["filename_tensor_name"] == want.filename_tensor_name
    assert s["save_tensor_name"] == want.save_tensor_name
    assert s["restore_op_name"] == want.restore_op_name


def test_text_meta_same_as_binary(tf, saved):
    binary = read_meta_graph(saved["meta"])
    text = read_meta_graph(saved["text_meta"])
    assert text.text_format and not binary.text_format
    assert Path(saved["text_meta"]).read_bytes()[:20].isascii()
    assert text.op_count == binary.op_count == _tf_view(tf, saved["text_meta"])["ops"]
    assert text.op_types == binary.op_types
    assert {k: (c.kind, c.size, c.candidates) for k, c in text.collections.items()} == \
        {k: (c.kind, c.size, c.candidates) for k, c in binary.collections.items()}
    assert text.saver == binary.saver


def test_collection_filter_against_checkpoint(tf, saved):
    names = {n for n, _ in tf.train.list_variables(saved["prefix"])}
    everything = ckconv.load(saved["prefix"], collections="global_variables")
    assert set(everything) == names
    trainable = ckconv.load(saved["prefix"], collections=["trainable_variables"])
    assert list(trainable) == sorted({"w1", "enc/w2", "emb", "model_var"})
    mine = ckconv.load(saved["prefix"], collections=["my_vars", "model_variables"])
    assert set(mine) == {"w1", "enc/w2", "emb", "model_var"}
    with pytest.raises(ckconv.UsageError, match="local variables"):
        ckconv.load(saved["prefix"], collections="local_variables")
    reader = tf.train.load_checkpoint(saved["prefix"])
    np.testing.assert_array_equal(mine["emb"].numpy(), reader.get_tensor("emb"))


def test_inspect_json_reports_collections(saved, capsys):
    assert main(["inspect", saved["prefix"], "--json"]) == 0
    import json

    doc = json.loads(capsys.readouterr().out)
    by_name = {t["name"]: t for t in doc["tensors"]}
    assert by_name["w1"]["collections"] == ["global_variables", "moving_average_variables",
                                            "my_vars", "trainable_variables"]
    assert by_name["global_step"]["collections"] == ["global_step", "global_variables"]
    assert doc["meta"]["ops"] == read_meta_graph(saved["meta"]).op_count
    assert doc["meta"]["collections"]["local_variables"]["tensors"] == []
    assert doc["meta"]["collections"]["my_ints"] == {"key": "my_ints", "kind": "int64_list",
                                                     "size": 1, "tensors": []}


def test_modified_checkpoint_restores_in_tf1(tf, saved, tmp_path):
    """assign + write back: TF1 import_meta_graph + Saver.restore takes the result."""
    v1 = tf.compat.v1
    weights = ckconv.load(saved["prefix"])
    weights.assign("global_step", 0).assign_add("w1:0", [10.0, 20.0])
    out = tmp_path / "model.ckpt-0"
    notes = ckconv.save(weights, out)
    assert any("copied the graph" in n for n in notes)
    assert (tmp_path / "model.ckpt-0.meta").read_bytes() == Path(saved["meta"]).read_bytes()
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as sess:
        saver = v1.train.import_meta_graph(str(out) + ".meta")
        saver.restore(sess, str(out))
        values = {v.op.name: sess.run(v) for v in v1.global_variables()
                  if getattr(v, "_save_slice_info", None) is None}
    assert values["global_step"] == 0
    np.testing.assert_array_equal(values["w1"], [11.0, 22.0])
    np.testing.assert_array_equal(values["enc/w2"], [1, 1, 1])
    assert values["model_var"] == np.float32(1.5)


REPO_METAS = sorted(str(p) for p in Path(__file__).resolve().parents[2].glob(
    "*/**/*.meta") if "fixtures" in p.parts or "seed" in p.parts)


@pytest.mark.parametrize("meta", REPO_METAS, ids=lambda p: "/".join(Path(p).parts[-2:]))
def test_repo_meta_files_match_tensorflow(tf, meta):
    """Every committed .meta (seed tutorial, fixtures): op count and collections as TF sees them."""
    want = _tf_view(tf, meta)
    graph = read_meta_graph(meta)
    assert graph.op_count == want["ops"]
    assert set(graph.collections) == set(want["collections"])
    for key, items in want["collections"].items():
        assert graph.collections[key].candidates == [name for _, name in items], key


@pytest.mark.parametrize("fixture", ["partitioned", "sharded", "tf1_saver"])
def test_rewritten_fixture_restores_through_copied_meta(tf, fixture, tmp_path):
    """A checkpoint re-written by ckconv (one shard, slices merged) restores via its .meta."""
    from tests.helpers import fixture_prefix

    v1 = tf.compat.v1
    src = fixture_prefix(fixture)
    out = str(tmp_path / "copy.ckpt")
    notes = ckconv.convert(src, out, dst_format="tf")
    assert any("copied the graph" in n for n in notes)
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as sess:
        # The sharded fixture pins variables to CPU:1 and CPU:2, which this host lacks.
        saver = v1.train.import_meta_graph(out + ".meta", clear_devices=True)
        saver.restore(sess, out)
        reader = tf.train.load_checkpoint(src)
        for var in v1.global_variables():
            info = getattr(var, "_save_slice_info", None)
            key = info.full_name if info else var.op.name
            want = reader.get_tensor(key)
            if info:
                region = tuple(slice(o, o + n) for o, n in zip(info.var_offset, info.var_shape))
                want = want[region]
            got = sess.run(var)
            np.testing.assert_array_equal(got, want, err_msg=key)
