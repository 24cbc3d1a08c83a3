"""TensorFlow checkpoints: V2 bundles (``tf.train.Saver``, ``tf.train.Checkpoint``, Keras 2 TF
format), V1 ``SavedTensorSlices`` files (:mod:`.v1`) and SavedModel directories (their
``variables/`` checkpoint, :mod:`.saved_model`)."""

from __future__ import annotations

import os
from typing import Optional

from ...errors import CkconvError, FormatError
from ...groups import COLLECTIONS
from ...tensormap import TensorMap
from . import history, paths
from .paths import split_step
from ..outputs import leave_out
from .collections import GraphCollections

NAME = "tf"


def sniff(path: str) -> bool:
    try:
        prefix = history.resolve(path)
    except CkconvError:
        # A directory of several checkpoints, or DIR@STEP naming a missing step: ours, so
        # the user gets the TF reader's precise error.
        base, step = split_step(path)
        return os.path.isdir(base) or (step is not None and os.path.isdir(os.path.dirname(base) or "."))
    if prefix is not None:
        return True  # an existing <prefix>.index: damaged or not, the TF reader explains
    # A V1 checkpoint: a bare SSTable file, its shards, or the prefix they were saved under.
    from . import v1

    return v1.resolve(split_step(path)[0]) is not None


def read(path: str, *, step: Optional[int] = None, **options) -> TensorMap:
    """Read the checkpoint ``path`` designates; ``step`` picks one of a directory by global step."""
    from .bundle import read_bundle

    base, at = split_step(path)
    wanted = at if step is None else step
    # TF's order: a V2 checkpoint (<prefix>.index) first, then V1 files (whose module is
    # not even imported when the V2 index is there)
    v2 = path.endswith(".index") or os.path.isfile(path + ".index")
    v1_files = None
    if wanted is None and not v2:
        from . import v1

        v1_files = v1.resolve(path)
    prefix: Optional[str] = None
    if v1_files is None:
        try:
            prefix = history.resolve(path, step)
        except FormatError:
            from . import v1

            v1_files = v1.select_step(base, wanted) if wanted is not None else None
            if v1_files is None:
                if wanted is not None and v1.steps(base):
                    raise FormatError(f"{base}: no checkpoint with step {wanted} (V1 "
                                      f"checkpoint steps present: "
                                      f"{', '.join(map(str, v1.steps(base)))})") from None
                raise
    if v1_files is not None:
        tmap = v1.read(v1_files)
        prefix = tmap.source
    elif prefix is None:
        raise FormatError(paths.missing_message(path))
    else:
        tmap = read_bundle(prefix)
    from .saved_model import SAVED_MODEL_KEY, pb_for

    saved_model = pb_for(prefix)
    if saved_model is not None:  # object-graph names (--preset tf2) come from saved_model.pb
        tmap.extras[SAVED_MODEL_KEY] = saved_model
    # The TF1 graph (collections, Saver settings) is parsed only if someone asks (meta.meta_for).
    tmap.extras[paths.META_PATH_KEY] = paths.meta_path_for(prefix)
    tmap.extras[COLLECTIONS] = GraphCollections()
    from ..places import PLACES
    from .layers import places_for

    tmap.extras[PLACES] = places_for(tmap)  # model order, parsed only if someone asks
    return tmap


def output_prefix(path: str) -> str:
    return path[: -len(".index")] if path.endswith(".index") else path


def output_files(path: str) -> list[str]:
    """The file whose existence means a checkpoint is at ``path`` (its index)."""
    return [output_prefix(path) + ".index"]


def write(tmap: TensorMap, path: str, *, max_shard_size=None, progress=None,
          skip_unsupported: bool = False, update_state: Optional[bool] = None,
          **options) -> list[str]:
    from .bundle_writer import write_bundle

    notes: list[str] = []
    if skip_unsupported:  # without the option the writer names the first tensor it refuses
        bad = [n for n, t in tmap.items() if t.dtype.tf is None or t.dtype.name == "variant"]
        tmap = leave_out(tmap, bad, path, "TF cannot hold", True, notes)
    notes += write_bundle(tmap, output_prefix(path), max_shard_size=max_shard_size,
                          progress=progress, update_state=update_state)
    if not getattr(tmap, "extras", {}).get(paths.META_PATH_KEY):
        return notes  # no TF1 graph to carry over (and no protobuf to import: slow start-up)
    from .meta import copy_meta  # carried over when it still fits the tensors

    return notes + copy_meta(tmap, output_prefix(path))
