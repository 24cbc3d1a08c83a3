"""Checkpoint history of a directory, --step / DIR@STEP selection, inspect DIR."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ckconv
from ckconv.cli import main
from ckconv.errors import FormatError, UsageError
from ckconv.formats.tf.history import list_history, resolve, select_step
from ckconv.formats.tf.paths import split_step
from ckconv.formats.tf.paths import resolve_prefix
from tests.helpers import FIXTURES, SEED, live_tf

SAVER = FIXTURES / "tf1_saver"


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def _files_size(prefix: str) -> int:
    d = Path(prefix).parent
    name = Path(prefix).name
    return sum(p.stat().st_size for p in d.iterdir()
               if p.name == name + ".index" or p.name.startswith(name + ".data-"))


def test_history_of_tf1_saver_dir():
    entries = list_history(str(SAVER))
    assert [e.name for e in entries] == ["model.ckpt-2", "model.ckpt-3"]
    assert [e.step for e in entries] == [2, 3] and {e.step_source for e in entries} == {"name"}
    assert [e.latest for e in entries] == [False, True]
    assert all(e.listed and e.exists and e.has_meta for e in entries)
    assert [e.size for e in entries] == [_files_size(e.prefix) for e in entries] == [244, 244]
    assert entries[0].time == os.path.getmtime(entries[0].prefix + ".index")
    assert entries[0].time_source == "mtime"


def test_history_of_copied_seed_dir_with_stale_absolute_paths():
    (entry,) = list_history(str(SEED / "my_model"))
    assert entry.recorded == "/tmp/ckconv_seed_run/my_model/test_save-1000"
    assert entry.prefix == str(SEED / "my_model" / "test_save-1000")
    assert entry.exists and entry.listed and entry.latest and entry.step == 1000


def test_unlisted_missing_and_timestamps(tmp_path):
    d = _copy(SAVER, tmp_path)
    state = (d / "checkpoint").read_text()
    ckconv.save({"global_step": np.int64(1)}, d / "model.ckpt-1")  # kept, e.g. every n hours
    (d / "checkpoint").write_text(state.replace('all_model_checkpoint_paths: "model.ckpt-2"',
                                                'all_model_checkpoint_paths: "model.ckpt-0"\n'
                                                'all_model_checkpoint_paths: "model.ckpt-2"')
                                  + "all_model_checkpoint_timestamps: 1000.5\n"
                                  + "all_model_checkpoint_timestamps: 2000.25\n"
                                  + "all_model_checkpoint_timestamps: 3000.0\n")
    entries = {e.name: e for e in list_history(str(d))}
    assert list(entries) == ["model.ckpt-0", "model.ckpt-1", "model.ckpt-2", "model.ckpt-3"]
    gone, unlisted = entries["model.ckpt-0"], entries["model.ckpt-1"]
    assert gone.listed and not gone.exists and gone.size is None and gone.step == 0
    assert unlisted.exists and not unlisted.listed and unlisted.time_source == "mtime"
    assert (entries["model.ckpt-2"].time, entries["model.ckpt-2"].time_source) == (2000.25, "state")
    assert entries["model.ckpt-3"].time == 3000.0 and entries["model.ckpt-3"].latest
    assert select_step(str(d), 1) == str(d / "model.ckpt-1")  # not listed, still selectable
    with pytest.raises(FormatError, match=r"steps present: 1, 2, 3"):
        select_step(str(d), 0)  # listed, but its files are gone


def test_step_from_global_step_tensor(tmp_path):
    ckconv.save({"global_step": np.int64(42), "w": np.ones(2, np.float32)}, tmp_path / "model.ckpt")
    (entry,) = list_history(str(tmp_path))
    assert (entry.step, entry.step_source) == (42, "global_step")
    assert select_step(str(tmp_path), 42) == str(tmp_path / "model.ckpt")
    assert ckconv.load(f"{tmp_path}@42").source == str(tmp_path / "model.ckpt")


def test_select_by_step_every_spelling():
    d = str(SAVER)
    two = str(SAVER / "model.ckpt-2")
    assert ckconv.load(d, step=2).source == two
    assert ckconv.load(f"{d}@2").source == two
    assert ckconv.load(f"{d}/model.ckpt@2").source == two          # TF1 save path @ step
    assert ckconv.load(f"{d}/model.ckpt", step=2).source == two
    assert ckconv.load(two, step=2).source == two                  # the checkpoint itself
    assert ckconv.load(two + ".index", step=2).source == two
    assert resolve(d, 3) == str(SAVER / "model.ckpt-3")
    assert ckconv.load(d, step=2)["global_step"].numpy() == 2


def test_padded_step_numbers(tmp_path):
    ckconv.save({"w": [1.0]}, tmp_path / "model.ckpt-00000005")  # Saver(pad_step_number=True)
    assert select_step(str(tmp_path / "model.ckpt"), 5) == str(tmp_path / "model.ckpt-00000005")
    assert select_step(str(tmp_path), 5) == str(tmp_path / "model.ckpt-00000005")


def test_step_errors():
    with pytest.raises(FormatError, match=r"no checkpoint with step 7 \(steps present: 2, 3\)"):
        ckconv.load(f"{SAVER}@7")
    with pytest.raises(UsageError, match="is the checkpoint of step 2, not 3"):
        ckconv.load(SAVER / "model.ckpt-2", step=3)
    with pytest.raises(UsageError, match="conflicts with the step 3"):
        ckconv.load(f"{SAVER}@2", step=3)
    with pytest.raises(FormatError, match="steps present in"):
        ckconv.load(SAVER / "other.ckpt", step=3)


def test_several_checkpoints_with_one_step(tmp_path):
    ckconv.save({"w": [1.0]}, tmp_path / "a-5", format="tf")
    ckconv.save({"w": [2.0]}, tmp_path / "b-5", format="tf")
    with pytest.raises(UsageError, match=r"several checkpoints have step 5 \(a-5, b-5\)"):
        select_step(str(tmp_path), 5)


def test_split_step_never_splits_existing_paths(tmp_path):
    weird = tmp_path / "run@3"
    weird.mkdir()
    assert split_step(str(weird)) == (str(weird), None)
    assert split_step(str(tmp_path / "x@12")) == (str(tmp_path / "x"), 12)
    assert split_step("x@y") == ("x@y", None)


# ------------------------------------------------------------------------------ CLI

def test_inspect_dir_lists_history(capsys):
    assert main(["inspect", str(SAVER)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"checkpoints in {SAVER}:"
    assert any(ln.startswith(">") and "model.ckpt-3" in ln and "latest" in ln for ln in lines)
    assert any(" 2  model.ckpt-2" in ln and "latest" not in ln for ln in lines)
    assert "(mtime)" in out and "model.ckpt-3)" in out  # table footer names the shown prefix


def test_inspect_dir_step_json(capsys):
    assert main(["inspect", str(SAVER), "--step", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["source"] == str(SAVER / "model.ckpt-2")
    hist = doc["history"]
    assert [(h["name"], h["step"], h["latest"], h["selected"]) for h in hist] == [
        ("model.ckpt-2", 2, False, True), ("model.ckpt-3", 3, True, False)]
    assert hist[0]["size"] == 244 and hist[0]["time_source"] == "mtime"


def test_inspect_dir_without_state_file(tmp_path, capsys):
    for step in (10, 20):
        ckconv.save({"w": [float(step)]}, tmp_path / f"model.ckpt-{step}")
    os.unlink(tmp_path / "checkpoint")
    assert main(["inspect", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "model.ckpt-10" in captured.out and "model.ckpt-20" in captured.out
    assert "--step N" in captured.err
    assert main(["inspect", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["tensors"] is None and [h["step"] for h in doc["history"]] == [10, 20]
    assert main(["inspect", f"{tmp_path}@20", "--values", "w"]) == 0
    assert "[20.]" in capsys.readouterr().out
    code = main([str(tmp_path), str(tmp_path / "o.safetensors")])
    assert code == 1 and "--step N or DIR@N" in capsys.readouterr().err


def test_convert_with_step(tmp_path, capsys):
    from safetensors.numpy import load_file

    assert main([str(SAVER), str(tmp_path / "o.safetensors"), "--step", "2", "-q"]) == 0
    assert load_file(str(tmp_path / "o.safetensors"))["global_step"] == 2
    assert main([f"{SAVER}@3", str(tmp_path / "p.safetensors"), "-q"]) == 0
    assert load_file(str(tmp_path / "p.safetensors"))["global_step"] == 3
    assert main([f"{SAVER}@9", str(tmp_path / "q.safetensors")]) == 1
    assert "steps present: 2, 3" in capsys.readouterr().err


# ------------------------------------------------------------------------- live TF

@pytest.fixture(scope="module")
def tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return live_tf()


@pytest.mark.live
def test_history_matches_tf1_saver_retention(tf, tmp_path):
    """max_to_keep=2 plus keep_checkpoint_every_n_hours: kept checkpoints leave the list."""
    import time

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        step = v1.train.get_or_create_global_step()
        v1.Variable([1.0, 2.0], name="w")
        # 0.5 s "hours": checkpoints older than that when they fall out are kept on disk.
        saver = v1.train.Saver(max_to_keep=2, keep_checkpoint_every_n_hours=0.5 / 3600)
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            for s in (1, 2, 3, 4):
                step.load(s * 100, sess)
                saver.save(sess, str(tmp_path / "model.ckpt"), global_step=s * 100)
                time.sleep(0.6)
    state = tf.train.get_checkpoint_state(str(tmp_path))
    entries = list_history(str(tmp_path))
    listed = [e.prefix for e in entries if e.listed]
    assert listed == list(state.all_model_checkpoint_paths)
    assert [e.prefix for e in entries if e.latest] == [tf.train.latest_checkpoint(str(tmp_path))]
    on_disk = sorted(p.name[: -len(".index")] for p in tmp_path.glob("*.index"))
    assert sorted(e.name for e in entries) == on_disk
    unlisted = [e.name for e in entries if not e.listed]
    assert unlisted and all(e.exists for e in entries)
    for e in entries:
        reader = tf.train.load_checkpoint(e.prefix)
        assert e.step == reader.get_tensor("global_step")
        picked = ckconv.load(str(tmp_path), step=e.step)
        np.testing.assert_array_equal(picked["global_step"].numpy(), reader.get_tensor("global_step"))


@pytest.mark.live
def test_history_times_from_checkpoint_manager(tf, tmp_path):
    ckpt = tf.train.Checkpoint(v=tf.Variable(1.0))
    manager = tf.train.CheckpointManager(ckpt, str(tmp_path), max_to_keep=2)
    for _ in range(3):
        manager.save()
    state = tf.train.get_checkpoint_state(str(tmp_path))
    entries = list_history(str(tmp_path))
    assert [e.name for e in entries] == ["ckpt-2", "ckpt-3"]
    assert [e.time for e in entries] == list(state.all_model_checkpoint_timestamps)
    assert {e.time_source for e in entries} == {"state"}
    assert entries[-1].latest and entries[-1].prefix == tf.train.latest_checkpoint(str(tmp_path))
