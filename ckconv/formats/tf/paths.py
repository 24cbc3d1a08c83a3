"""Checkpoint file names: from whatever path a user gives to a prefix, and steps in names.

Accepted: a prefix (``model.ckpt-1000``), ``prefix.index``, ``prefix.data-00000-of-00001``,
``prefix.meta``, a directory with a ``checkpoint`` state file, or a directory holding exactly
one checkpoint. When nothing matches, the error names the nearest checkpoints that exist.
Steps are parsed here and nowhere else: ``model.ckpt-1000`` (TF's ``"%s-%d" % (save_path,
step)``) and ``DIR@1000`` (ckconv's way to ask for one).
"""

from __future__ import annotations

import os
import re
from typing import Optional

from ...io.atomic import TEMP_MARKER
from ...errors import FormatError, listing

#: TensorMap.extras key of the TF1 ``.meta`` file that goes with a checkpoint.
META_PATH_KEY = "tf.meta_path"

_DATA_SUFFIX = re.compile(r"^(.*)\.data-\d{5,}-of-\d{5,}$")
_STEP_IN_NAME = re.compile(r"-(\d+)$")
_AT_STEP = re.compile(r"^(.+)@(\d+)$")


def split_step(path: str) -> tuple[str, Optional[int]]:
    """``run@1000`` -> (``run``, 1000); a path that exists as spelled is never split."""
    if os.path.exists(path) or os.path.isfile(path + ".index"):
        return path, None
    m = _AT_STEP.match(path)
    if m is None:
        return path, None
    return m.group(1), int(m.group(2))


def step_from_name(prefix: str) -> Optional[int]:
    """The step a checkpoint's name carries (``model.ckpt-1000`` -> 1000), or None."""
    m = _STEP_IN_NAME.search(os.path.basename(prefix))
    return int(m.group(1)) if m else None


def locate(directory: str, recorded: str) -> Optional[str]:
    """Where a path a state file records is on disk: as recorded, else beside the state
    file (a copied run directory keeps the absolute paths of the machine that trained it)."""
    candidate = recorded if os.path.isabs(recorded) else os.path.join(directory, recorded)
    if os.path.isfile(candidate + ".index"):
        return candidate
    beside = os.path.join(directory, os.path.basename(recorded.replace("\\", "/")))
    if os.path.isfile(beside + ".index"):
        return beside
    return None


def list_prefixes(directory: str) -> list[str]:
    """Checkpoint prefixes in a directory (debris of interrupted saves left out)."""
    found = []
    for name in os.listdir(directory):
        if not name.endswith(".index") or ".tempstate" in name or TEMP_MARKER in name:
            continue
        found.append(os.path.join(directory, name[: -len(".index")]))
    return sorted(found, key=natural_key)


def natural_key(path: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path)]


def resolve_prefix(path: str) -> Optional[str]:
    """The prefix ``path`` designates, or None if it designates no V2 checkpoint.

    (A step, ``DIR@STEP`` or ``step=``, is resolved by :func:`.history.resolve`.)
    """
    if path.endswith(".index") and os.path.isfile(path):
        return path[: -len(".index")]
    if path.endswith(".meta") and os.path.isfile(path[: -len(".meta")] + ".index"):
        return path[: -len(".meta")]
    m = _DATA_SUFFIX.match(path)
    if m and os.path.isfile(path) and os.path.isfile(m.group(1) + ".index"):
        return m.group(1)
    if os.path.isfile(path + ".index"):
        return path
    if os.path.isdir(path):
        return _from_directory(path)
    return None


def _from_directory(directory: str) -> Optional[str]:
    from .state import read_state  # imports protobuf: only for directories

    state = read_state(directory)
    if state is not None:
        return _from_state(directory, state.latest, state.path)
    prefixes = list_prefixes(directory)
    if len(prefixes) == 1:
        return prefixes[0]
    if not prefixes:
        from .saved_model import variables_prefix

        return variables_prefix(directory)  # a SavedModel: its weights are in variables/
    if len(prefixes) > 1:
        names = listing(os.path.basename(p) for p in prefixes)
        raise FormatError(f"{directory}: holds {len(prefixes)} checkpoints and no 'checkpoint' "
                          f"state file to pick one; name one of: {names}",
                          api_hint="or pick one by global step with step=N or DIR@N",
                          cli_hint="or pick one by global step with --step N or DIR@N")
    return None


def _from_state(directory: str, recorded: str, state_path: str) -> str:
    found = locate(directory, recorded)
    if found is not None:
        return found
    nearby = ", ".join(os.path.basename(p) for p in list_prefixes(directory)) or "none"
    raise FormatError(f"{state_path}: names checkpoint {recorded!r}, which does not exist "
                      f"(checkpoints in {directory}: {nearby})")


def missing_message(path: str) -> str:
    """Explain that ``path`` is not a checkpoint and name the nearest ones that exist."""
    directory = path if os.path.isdir(path) else (os.path.dirname(path) or ".")
    nearby = list_prefixes(directory) if os.path.isdir(directory) else []
    if os.path.isdir(path):
        what = "directory holds no TF checkpoint"
    elif os.path.exists(path):
        what = "not a TF checkpoint"
    else:
        what = "no such checkpoint"
    if not nearby:
        return f"{path}: {what}"
    import difflib

    names = [os.path.basename(p) for p in nearby]
    close = difflib.get_close_matches(os.path.basename(path), names, n=3, cutoff=0.5)
    if close:
        return f"{path}: {what}; did you mean {listing(os.path.join(directory, c) for c in close)}?"
    return f"{path}: {what}; checkpoints nearby: {listing(nearby)}"


def meta_path_for(prefix: str) -> str:
    """``meta_graph_filename``: the prefix (without a V1 shard suffix) plus ``.meta``."""
    return re.sub(r"-[\d?]+-of-\d+$", "", prefix) + ".meta"
