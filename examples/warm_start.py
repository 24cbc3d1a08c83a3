"""Fine-tuning the TF1 way: warm-start a new network from part of a trained one.

The end of the classic save/restore tutorial reuses a trained network's lower layers and puts
a new head on top. This script does that with a checkpoint surgery in ckconv:

1. a stand-in "pretrained" model (encoder of two dense layers + a 2-class head) is trained a
   few Adam steps and saved by ``tf.compat.v1.train.Saver`` (with ``.meta``, global step,
   Adam slots), as a real TF1 job would leave it;
2. ckconv takes its encoder, drops the optimizer slots, renames the scope ``encoder/`` to
   ``student/encoder/`` and writes a new TF checkpoint (no TensorFlow needed for this part);
3. a new graph, ``student/encoder`` + a NEW 3-class ``student/head``, is warm-started from that
   checkpoint with ``tf.compat.v1.train.init_from_checkpoint``: the encoder computes exactly
   the pretrained features, the head starts from its own initializer.

Needs TensorFlow (``pip install tensorflow-cpu``) to train the stand-in model and run the
warm-started graph; step 2 alone runs with ``pip install .``.

Run from the repository root::

    python examples/warm_start.py [OUTPUT_DIR]
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

import sys
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

import ckconv

v1 = tf.compat.v1
SIZES = (4, 8, 6)  # input -> encoder/dense_0 -> encoder/dense_1


def encoder(x):
    """Two dense layers; variables under the current variable scope."""
    for i, (n_in, n_out) in enumerate(zip(SIZES, SIZES[1:])):
        with v1.variable_scope(f"dense_{i}"):
            w = v1.get_variable("kernel", [n_in, n_out])
            b = v1.get_variable("bias", [n_out], initializer=v1.zeros_initializer())
            x = tf.nn.relu(tf.matmul(x, w) + b)
    return x


def head(x, classes: int):
    w = v1.get_variable("kernel", [SIZES[-1], classes])
    b = v1.get_variable("bias", [classes], initializer=v1.zeros_initializer())
    return tf.matmul(x, w) + b


def train_pretrained(run_dir: Path, data: np.ndarray) -> tuple[str, np.ndarray]:
    """Step 1 (TensorFlow): the model someone trained; returns its prefix and features."""
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(7)
        x = v1.placeholder(tf.float32, [None, SIZES[0]], name="x")
        labels = v1.placeholder(tf.int64, [None], name="labels")
        with v1.variable_scope("encoder"):
            features = encoder(x)
        with v1.variable_scope("head"):
            logits = head(features, 2)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=logits))
        step = v1.train.get_or_create_global_step()
        train_op = v1.train.AdamOptimizer(0.01).minimize(loss, global_step=step)
        saver = v1.train.Saver(max_to_keep=2)
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            for _ in range(20):
                sess.run(train_op, {x: data, labels: (data.sum(axis=1) > 0).astype(np.int64)})
            prefix = saver.save(sess, str(run_dir / "model.ckpt"), global_step=step)
            return prefix, sess.run(features, {x: data})


def extract_encoder(run_dir: Path, out_prefix: Path) -> list[str]:
    """Step 2 (ckconv only): encoder weights, renamed into the new model's scope."""
    trained = ckconv.load(f"{run_dir}@20")             # the checkpoint of global step 20
    print(f"pretrained: {len(trained)} tensors: {', '.join(trained)}")
    part = (trained
            .select(collection="trainable_variables")  # no Adam slots, no global_step
            .select("encoder/.*")                      # no old head
            .rename(r"^encoder/", "student/encoder/"))
    print(f"warm-start checkpoint: {', '.join(part)}")
    return ckconv.save(part, out_prefix)


def warm_start(warm_prefix: Path, data: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Step 3 (TensorFlow): the new model, initialised from the warm-start checkpoint."""
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(99)
        x = v1.placeholder(tf.float32, [None, SIZES[0]], name="x")
        with v1.variable_scope("student"):
            with v1.variable_scope("encoder"):
                features = encoder(x)
            with v1.variable_scope("head"):
                head(features, 3)                      # new: three classes
        # Every variable under student/encoder/ in the checkpoint -> the same name here.
        v1.train.init_from_checkpoint(str(warm_prefix), {"student/encoder/": "student/encoder/"})
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            values = {v.op.name: sess.run(v) for v in v1.global_variables()}
            return sess.run(features, {x: data}), values


def main(argv: list[str]) -> int:
    data = np.random.default_rng(0).normal(size=(16, SIZES[0])).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(argv[0]) if argv else Path(tmp)
        (root / "pretrained").mkdir(parents=True, exist_ok=True)
        prefix, pretrained_features = train_pretrained(root / "pretrained", data)
        for note in extract_encoder(root / "pretrained", root / "warm" / "encoder.ckpt"):
            print(f"note: {note}")
        features, values = warm_start(root / "warm" / "encoder.ckpt", data)
        original = ckconv.load(prefix).to_numpy()  # read before the directory goes

    for name in ("dense_0/kernel", "dense_0/bias", "dense_1/kernel", "dense_1/bias"):
        np.testing.assert_array_equal(values[f"student/encoder/{name}"],
                                      original[f"encoder/{name}"])
    np.testing.assert_array_equal(features, pretrained_features)
    assert values["student/head/kernel"].shape == (SIZES[-1], 3)
    assert not values["student/head/bias"].any()  # the new head starts from its initializer
    print(f"warm-started student/encoder from {Path(prefix).name}: features of "
          f"{len(data)} inputs identical to the pretrained model's "
          f"(max |diff| = {np.abs(features - pretrained_features).max()}); "
          f"new head {list(values['student/head/kernel'].shape)} freshly initialised")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
