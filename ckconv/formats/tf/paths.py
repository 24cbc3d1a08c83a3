"""Turning whatever path a user gives into a checkpoint prefix.

Accepted: a prefix (``model.ckpt-1000``), ``prefix.index``, ``prefix.data-00000-of-00001``,
a directory with a ``checkpoint`` state file, or a directory holding exactly one checkpoint.
When nothing matches, the error lists the checkpoints that do exist nearby.
"""

from __future__ import annotations

import os
import re
from typing import Optional

from ...io.atomic import TEMP_MARKER
from ...errors import FormatError, UsageError

#: TensorMap.extras key of the TF1 ``.meta`` file that goes with a checkpoint.
META_PATH_KEY = "tf.meta_path"

_DATA_SUFFIX = re.compile(r"^(.*)\.data-\d{5,}-of-\d{5,}$")


def list_prefixes(directory: str) -> list[str]:
    """Checkpoint prefixes in a directory (debris of interrupted saves left out)."""
    found = []
    for name in os.listdir(directory):
        if not name.endswith(".index") or ".tempstate" in name or TEMP_MARKER in name:
            continue
        found.append(os.path.join(directory, name[: -len(".index")]))
    return sorted(found, key=_natural_key)


def _natural_key(path: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path)]


def resolve_prefix(path: str, step: Optional[int] = None) -> Optional[str]:
    """The prefix ``path`` designates, or None if it designates no V2 checkpoint.

    ``step`` (or a ``DIR@STEP`` / ``SAVE_PATH@STEP`` suffix) picks a checkpoint by global
    step (history.select_step), which raises instead of returning None when there is none.
    """
    from .history import select_step, split_step

    path, at_step = split_step(path)
    if at_step is not None and step is not None and at_step != step:
        raise UsageError(f"{path}@{at_step}: conflicts with --step {step}")
    step = at_step if step is None else step
    if step is not None:
        return select_step(path, step)
    if path.endswith(".index") and os.path.isfile(path):
        return path[: -len(".index")]
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
        names = ", ".join(os.path.basename(p) for p in prefixes)
        raise FormatError(f"{directory}: holds {len(prefixes)} checkpoints and no 'checkpoint' "
                          f"state file to pick one; name one of: {names} (or pick one by "
                          "global step with --step N or DIR@N)")
    return None


def _from_state(directory: str, recorded: str, state_path: str) -> str:
    candidate = recorded if os.path.isabs(recorded) else os.path.join(directory, recorded)
    if os.path.isfile(candidate + ".index"):
        return candidate
    # A copied run directory keeps the absolute paths of the machine that trained it:
    # look for the same checkpoint beside the state file.
    beside = os.path.join(directory, os.path.basename(recorded.replace("\\", "/")))
    if os.path.isfile(beside + ".index"):
        return beside
    nearby = ", ".join(os.path.basename(p) for p in list_prefixes(directory)) or "none"
    raise FormatError(f"{state_path}: names checkpoint {recorded!r}, which does not exist "
                      f"(checkpoints in {directory}: {nearby})")


def missing_message(path: str) -> str:
    """Explain that ``path`` is not a checkpoint and list what exists nearby."""
    directory = path if os.path.isdir(path) else (os.path.dirname(path) or ".")
    nearby = list_prefixes(directory) if os.path.isdir(directory) else []
    if os.path.isdir(path):
        what = "directory holds no TF checkpoint"
    elif os.path.exists(path):
        what = "not a TF checkpoint"
    else:
        what = "no such checkpoint"
    if nearby:
        return f"{path}: {what}; checkpoints nearby: " + ", ".join(nearby)
    return f"{path}: {what}"


def meta_path_for(prefix: str) -> str:
    """``meta_graph_filename``: the prefix (without a V1 shard suffix) plus ``.meta``."""
    return re.sub(r"-[\d?]+-of-\d+$", "", prefix) + ".meta"
