"""Recreate the checkpoints of the classic TF1 "save and restore" tutorial (cv-tricks.com).

Run with the TensorFlow venv::

    python examples/seed/make_seed.py

Writes, next to this script:

* ``my_test_model/``   -- ``saver.save(sess, ".../my_test_model")``: variables ``w1`` [2], ``w2`` [5]
* ``my_model/``        -- the same graph saved with ``global_step=1000`` as ``test_save-1000``
* ``my_second_model/`` -- placeholders ``w1``/``w2``, variable ``bias`` = 2.0,
  ``op_to_restore = (w1 + w2) * bias`` and a ``global_step``, saved as ``test_save-1000``

Like a real run, each checkpoint is first written by a default ``tf.compat.v1.train.Saver`` into
a scratch run directory, so the ``checkpoint`` state file holds that run's ABSOLUTE paths. The
files are then copied here and the scratch directory deleted: the state files point at paths
that no longer exist, as in a copied training directory, and a reader must fall back to the
files that sit beside the state file.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

import shutil
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

v1 = tf.compat.v1

HERE = Path(__file__).resolve().parent
SEED = 1234
# A fixed scratch location (not mkdtemp) keeps the absolute paths inside the state files, and
# so the committed bytes, identical from one regeneration to the next.
RUN_DIR = Path(tempfile.gettempdir()) / "ckconv_seed_run"
OUTPUTS = ("my_test_model", "my_model", "my_second_model")


def first_model_graph() -> tuple[tf.Graph, v1.train.Saver]:
    """The tutorial's first graph: two randomly initialised variables."""
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(SEED)  # graph-level seed: same values every time the graph is built
        v1.Variable(v1.random_normal(shape=[2]), name="w1")
        v1.Variable(v1.random_normal(shape=[5]), name="w2")
        saver = v1.train.Saver()  # defaults, as in the tutorial: absolute paths, max_to_keep=5
    return graph, saver


def save_first_model(save_path: Path, global_step: int | None) -> dict[str, np.ndarray]:
    """Build, initialise and save the first model; returns the saved values."""
    graph, saver = first_model_graph()
    save_path.parent.mkdir(parents=True, exist_ok=True)  # the TF1 Saver does not create it
    with graph.as_default(), v1.Session(graph=graph) as sess:
        sess.run(v1.global_variables_initializer())
        saver.save(sess, str(save_path), global_step=global_step)
        return {v.op.name: sess.run(v) for v in v1.global_variables()}


def save_second_model(save_path: Path) -> float:
    """The tutorial's second graph, with an op to restore and feed; returns op_to_restore's value."""
    graph = tf.Graph()
    with graph.as_default():
        w1 = v1.placeholder(tf.float32, name="w1")
        w2 = v1.placeholder(tf.float32, name="w2")
        bias = v1.Variable(2.0, name="bias")
        w3 = tf.add(w1, w2)
        w4 = tf.multiply(w3, bias, name="op_to_restore")
        step = v1.train.get_or_create_global_step()
        saver = v1.train.Saver()
        save_path.parent.mkdir(parents=True, exist_ok=True)
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            result = float(sess.run(w4, {w1: 4.0, w2: 8.0}))  # (4 + 8) * 2 = 24
            # Pretend 1000 steps ran, so the stored global_step matches the "-1000" file name.
            step.load(1000, sess)
            saver.save(sess, str(save_path), global_step=step)
    return result


def copy_run(name: str) -> None:
    """Copy a run directory here, keeping its state file (with the stale absolute paths)."""
    target = HERE / name
    shutil.copytree(RUN_DIR / name, target)
    state = (target / "checkpoint").read_text()
    assert str(RUN_DIR) in state, "expected absolute paths in the state file"


def verify(name: str, prefix: str, expected: dict[str, object]) -> None:
    """Check the copied checkpoint with TF's reader (by explicit prefix, not via the state file)."""
    reader = tf.train.load_checkpoint(str(HERE / name / prefix))
    names = set(reader.get_variable_to_shape_map())
    assert names == set(expected), (name, names)
    for key, value in expected.items():
        np.testing.assert_array_equal(reader.get_tensor(key), value)
    # The state file names the vanished absolute run path, so TF's own resolver
    # (tf.train.latest_checkpoint) would find nothing here.
    state = tf.train.get_checkpoint_state(str(HERE / name))
    assert state.model_checkpoint_path == str(RUN_DIR / name / prefix), state
    assert not Path(state.model_checkpoint_path + ".index").exists()
    print(f"{name}/{prefix}: " + ", ".join(
        f"{k} {reader.get_variable_to_dtype_map()[k].name} {reader.get_variable_to_shape_map()[k]}"
        for k in sorted(names)))


def main() -> None:
    tf.get_logger().setLevel("ERROR")  # hide TF1 deprecation chatter
    v1.disable_eager_execution()
    # Classic TF1 reference variables (VariableV2 + "w1/read"), as the 2017 tutorial produced;
    # the tensor values on disk are the same either way, only the .meta graph differs.
    v1.disable_resource_variables()

    for path in [RUN_DIR, *(HERE / name for name in OUTPUTS)]:
        shutil.rmtree(path, ignore_errors=True)
    first = save_first_model(RUN_DIR / "my_test_model" / "my_test_model", None)
    again = save_first_model(RUN_DIR / "my_model" / "test_save", 1000)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])  # seeded: identical values
    result = save_second_model(RUN_DIR / "my_second_model" / "test_save")
    assert result == 24.0, result

    for name in OUTPUTS:
        copy_run(name)
    shutil.rmtree(RUN_DIR)

    verify("my_test_model", "my_test_model", first)
    verify("my_model", "test_save-1000", first)
    verify("my_second_model", "test_save-1000", {"bias": np.float32(2.0), "global_step": 1000})
    total = sum(p.stat().st_size for name in OUTPUTS for p in (HERE / name).rglob("*"))
    print(f"total size: {total} bytes")


if __name__ == "__main__":
    main()
