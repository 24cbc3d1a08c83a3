"""The classic TF1 "save and restore" tutorial, finished in PyTorch, without TensorFlow.

The tutorial's second model (``examples/seed/my_second_model``) was saved by a
``tf.train.Saver``: a variable ``bias`` = 2.0, two placeholders ``w1`` and ``w2`` fed at run
time, and ``op_to_restore = (w1 + w2) * bias``. Its second half restores the graph, feeds
``{w1: 13, w2: 17}`` and gets 60; then adds ``tf.multiply(op_to_restore, 2)`` and gets 120.

Here the checkpoint becomes a PyTorch state dict and the same computations run in torch::

    python examples/seed_tutorial.py [OUTPUT_DIR]

The ``.pt`` file is written to OUTPUT_DIR (a temporary directory when omitted).

Needs torch (``pip install 'ckconv[torch]'``) for the computation; the conversion itself
needs only ``pip install .``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

import ckconv

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "seed" / "my_second_model"


def convert(out_dir: Path) -> Path:
    """TF1 checkpoint -> ``.pt``: the step picks the checkpoint, the collection the weights."""
    weights = ckconv.load(f"{SOURCE}@1000")  # = the latest; --step / DIR@STEP in the CLI
    # What the .meta graph says about each tensor, as in tf.get_collection(...):
    for name, colls in weights.collections.items():
        print(f"collection {name}: {', '.join(colls)}")
    out = out_dir / "my_second_model.pt"
    # Only the trainable variables: global_step is training bookkeeping, not a weight.
    notes = ckconv.convert(SOURCE, out, step=1000, collections="trainable_variables")
    for note in notes:
        print(f"note: {note}")
    return out


def op_to_restore(state: dict[str, torch.Tensor], w1: float, w2: float) -> torch.Tensor:
    """The tutorial's graph: ``w3 = w1 + w2``; ``op_to_restore = w3 * bias``."""
    w3 = torch.add(torch.tensor(w1), torch.tensor(w2))
    return torch.multiply(w3, state["bias"])


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(argv[0]) if argv else Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = convert(out_dir)
        state = torch.load(path, weights_only=True)  # a plain state dict: no pickled code
    print(f"restored {sorted(state)} from {path.name}: bias = {state['bias'].item()}")

    first = op_to_restore(state, 4.0, 8.0).item()      # the values the model was saved with
    fed = op_to_restore(state, 13.0, 17.0)             # feed_dict = {w1: 13.0, w2: 17.0}
    doubled = torch.multiply(fed, 2).item()            # add_on_op = tf.multiply(op, 2)
    print(f"op_to_restore(w1=4, w2=8)   = {first}")
    print(f"op_to_restore(w1=13, w2=17) = {fed.item()}")
    print(f"op_to_restore * 2           = {doubled}")
    assert sorted(state) == ["bias"], sorted(state)
    assert (first, fed.item(), doubled) == (24.0, 60.0, 120.0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
