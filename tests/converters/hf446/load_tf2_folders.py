"""Run with transformers 4.46 + TensorFlow: load folders that ckconv wrote with
``--preset hf-tf2 --reverse`` into the TF class that made the original, and compare every
weight with the original model's (saved by make_tf2_models as tf_weights.npz).

    python -m tests.converters.hf446.load_tf2_folders MADE_DIR NAME=FOLDER ...

Prints one JSON object: name -> {"differ": [...], "missing": [...], "loaded": N}.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def check(made: Path, name: str, folder: str) -> dict:
    import numpy as np
    import transformers

    info = json.loads((made / name / "oracle.json").read_text())
    saved = np.load(made / name / "tf_weights.npz")
    original = {n: saved[f"w{i}"] for i, n in enumerate(info["tf_weight_names"])}
    model = getattr(transformers, info["tf_class"]).from_pretrained(folder)
    got = {w.name: w.numpy() for w in model.weights}
    differ = sorted(n for n in original if n in got and (
        got[n].shape != original[n].shape or got[n].tobytes() != original[n].tobytes()))
    return {"differ": differ, "missing": sorted(set(original) - set(got)), "loaded": len(got)}


def main(argv: list[str]) -> int:
    import transformers

    transformers.logging.set_verbosity_error()
    made = Path(argv[0])
    result = {}
    for item in argv[1:]:
        name, _, folder = item.partition("=")
        result[name] = check(made, name, folder)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
