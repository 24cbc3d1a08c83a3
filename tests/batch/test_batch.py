"""Many checkpoints at once: ``ckconv SRC... DIR/``, ``ckconv batch MANIFEST``, convert_many."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

import ckconv
from ckconv.batch import output_name, read_manifest
from ckconv.cli.main import main
from tests.batch.common import KINDS, check_output, copy_fixture


@pytest.fixture
def sources(tmp_path):
    return {kind: copy_fixture(kind, tmp_path / "in" / kind) for kind in KINDS}


def test_several_sources_into_a_directory(sources, tmp_path, capsys):
    out = tmp_path / "out"
    srcs = [sources["tf1_saver"], sources["keras2_ckpt"], sources["sharded"]]
    code = main([*srcs, str(out) + "/", "--to", "safetensors", "-q"])
    err = capsys.readouterr().err
    # sharded holds a string tensor: that item fails (one line), the others are written
    assert code == 1
    assert err.count("error: ") == 1 and "dev2/d" in err and "model.ckpt-7" in err
    assert "3 item(s): 2 converted, 0 skipped" in err and "1 failed" in err
    assert sorted(os.listdir(out)) == ["ckpt-1.safetensors", "model-3.safetensors"]
    check_output(str(out / "model-3.safetensors"), "tf1_saver")
    check_output(str(out / "ckpt-1.safetensors"), "keras2_ckpt")
    # again with --skip-unsupported: the two finished outputs are skipped, the third is made
    code = main([*srcs, str(out), "--to", "safetensors", "--skip-unsupported"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "1 converted, 2 skipped" in err
    check_output(str(out / "model-7.safetensors"), "sharded")
    before = os.stat(out / "model-3.safetensors").st_mtime_ns
    assert main([*srcs, str(out), "--to", "safetensors", "--skip-unsupported", "--force",
                 "--jobs", "2"]) == 0
    assert "3 converted, 0 skipped" in capsys.readouterr().err
    assert os.stat(out / "model-3.safetensors").st_mtime_ns != before


def test_name_template_picks_the_format(sources, tmp_path, capsys):
    code = main([sources["tf1_saver"], sources["keras2_ckpt"], str(tmp_path / "o" / "{name}.h5")])
    assert code == 0, capsys.readouterr().err
    check_output(str(tmp_path / "o" / "model-3.h5"), "tf1_saver")
    check_output(str(tmp_path / "o" / "ckpt-1.h5"), "keras2_ckpt")


def test_two_sources_with_one_output_name_is_usage_error(tmp_path, capsys):
    a = copy_fixture("tf1_saver", tmp_path / "a")
    b = copy_fixture("tf1_saver", tmp_path / "b")
    assert main([a, b, str(tmp_path / "out"), "--to", "torch"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ckconv batch" in err
    assert main([a, b, str(tmp_path / "out")]) == 2  # no --to, no template
    assert "--to" in capsys.readouterr().err


def test_batch_csv_manifest(sources, tmp_path, capsys):
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(
        "src,dst,options\n"
        "# comments and blank lines are skipped\n\n"
        f"{sources['tf1_saver']},{tmp_path / 'o' / 'a.pt'}\n"
        f"{sources['sharded']},{tmp_path / 'o' / 'b.safetensors'},skip_unsupported=true\n"
        f"{sources['keras2_ckpt']},{tmp_path / 'o' / 'c'},dst_format=hdf5\n"
        f"{tmp_path / 'missing'},{tmp_path / 'o' / 'd.pt'}\n")
    code = main(["batch", str(manifest), "--jobs", "2"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("error: ") == 1 and "missing" in err and "no such file" in err
    assert "4 item(s): 3 converted, 0 skipped (output exists; --force redoes them), 1 failed" in err
    check_output(str(tmp_path / "o" / "a.pt"), "tf1_saver")
    check_output(str(tmp_path / "o" / "b.safetensors"), "sharded")
    check_output(str(tmp_path / "o" / "c"), "keras2_ckpt")
    assert not (tmp_path / "o" / "d.pt").exists()
    code = main(["batch", str(manifest)])
    assert code == 1 and "0 converted, 3 skipped" in capsys.readouterr().err


def test_batch_jsonl_manifest(sources, tmp_path, capsys):
    manifest = tmp_path / "jobs.jsonl"
    rows = [{"src": sources["tf1_saver"], "dst": str(tmp_path / "x" / "w.ckpt")},
            {"src": sources["sharded"], "dst": str(tmp_path / "x" / "s.h5"),
             "options": {"include": ["dev0/.*"]}}]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["batch", str(manifest), "-q"]) == 0
    check_output(str(tmp_path / "x" / "w.ckpt"), "tf1_saver")
    assert sorted(ckconv.load(str(tmp_path / "x" / "s.h5"))) == ["dev0/a", "dev0/b"]


def test_bad_manifest_rows_are_usage_errors(tmp_path, capsys):
    m = tmp_path / "m.csv"
    m.write_text("a.pt\n")
    assert main(["batch", str(m)]) == 2
    assert "m.csv:1: expected src,dst" in capsys.readouterr().err
    m.write_text("a.pt,b.pt,max_shard_size\n")
    with pytest.raises(ckconv.UsageError, match="not key=value"):
        read_manifest(str(m))


def test_convert_many_on_an_executor(sources, tmp_path):
    pairs = [(sources["tf1_saver"], str(tmp_path / "1.safetensors")),
             (sources["keras2_ckpt"], str(tmp_path / "2.pt")),
             (str(tmp_path / "nothing"), str(tmp_path / "3.pt")),
             (sources["sharded"], str(tmp_path / "4.h5"), {"skip_unsupported": True})]
    with ThreadPoolExecutor(2) as pool:
        results = ckconv.convert_many(pairs, executor=pool)
    assert [r.ok for r in results] == [True, True, False, True]
    assert [r.dst for r in results] == [p[1] for p in pairs]  # in the order given
    assert "nothing" in results[2].error and "\n" not in results[2].error
    check_output(str(tmp_path / "4.h5"), "sharded")
    again = ckconv.convert_many(pairs[:2])
    assert all(r.ok and r.skipped for r in again)


@pytest.mark.parametrize("src,fmt,name", [
    ("run/model.ckpt-1000", "safetensors", "model-1000.safetensors"),
    ("run/model.ckpt-1000.index", "tf", "model.ckpt-1000"),
    ("s3://b/x/model.safetensors.index.json", "torch", "model.pt"),
    ("runs/exp1/", "hdf5", "exp1.h5"),
    ("runs/exp1@500", "tf", "exp1-500.ckpt"),
])
def test_output_names(src, fmt, name):
    assert output_name(src, fmt) == name
