"""Make the benchmark's input checkpoints with real TensorFlow (not committed: they are large).

Run by bench/run.py in a subprocess so that TensorFlow's import never touches the timings.
    python bench/make_inputs.py DIR [--gib N]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def save(prefix: str, names: list[str], arrays: list) -> None:
    import tensorflow as tf

    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    # SaveV2 is the op behind tf.compat.v1.train.Saver and tf.train.Checkpoint.
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=arrays)


def big(prefix: str, gib: int) -> None:
    """N GiB TF1-style checkpoint: 48*N float32 [2048, 2560] + a bfloat16 and an int64."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    names, arrays = [], []
    for i in range(48 * gib):
        names.append(f"encoder/layer_{i:03d}/kernel")
        arrays.append(tf.constant(rng.standard_normal((2048, 2560), dtype=np.float32)))
    names += ["embeddings/word_embeddings", "global_step"]
    arrays += [tf.cast(rng.standard_normal((1024, 1024), dtype=np.float32), tf.bfloat16),
               tf.constant(1000, tf.int64)]
    save(prefix, names, arrays)


def many_small(prefix: str, count: int = 20_000) -> None:
    """20,000 small tensors: measures per-tensor overhead, not bandwidth."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(1)
    names = [f"block_{i // 100:03d}/layer_{i % 100:02d}/w" for i in range(count)]
    arrays = [tf.constant(rng.standard_normal((4, 8), dtype=np.float32)) for _ in names]
    save(prefix, names, arrays)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--gib", type=int, default=1)
    args = p.parse_args()
    target = os.path.join(args.dir, f"big{args.gib}g", "model.ckpt-1000")
    if not os.path.exists(target + ".index"):
        big(target, args.gib)
    small = os.path.join(args.dir, "small", "model.ckpt-1")
    if not os.path.exists(small + ".index"):
        many_small(small)


if __name__ == "__main__":
    main()
