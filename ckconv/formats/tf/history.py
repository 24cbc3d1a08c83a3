"""The checkpoints a training directory holds: state-file history, steps, sizes, times.

A TF1 ``Saver(max_to_keep=N)`` keeps the last N checkpoints and lists them, oldest first,
in the ``checkpoint`` state file (``all_model_checkpoint_paths``); ``CheckpointManager`` does
the same with timestamps. Checkpoints can also sit on disk without being listed (kept by
``keep_checkpoint_every_n_hours``, or left by an earlier run of a restarted job), and listed
ones can be gone. :func:`list_history` reports all of them; :func:`select_step` picks one by
its global step for ``--step N`` and ``DIR@N``.

Steps come from the file name (``model.ckpt-1000``, TF's ``"%s-%d" % (save_path, step)``);
for a checkpoint whose name has none, from its scalar ``global_step`` tensor. Times come
from the state file's timestamps when it has them, else from the ``.index`` file's mtime.
"""

from __future__ import annotations

import glob
import os
from typing import Any, Optional

from ...errors import CkconvError, FormatError, UsageError
from ...records import asdict, record
from .paths import (list_prefixes, locate, meta_path_for, natural_key, resolve_prefix,
                    split_step, step_from_name)

GLOBAL_STEP = "global_step"


@record
class Entry:
    """One checkpoint of a directory's history."""

    prefix: str                  # on disk if it exists, else the path the state file records
    step: Optional[int] = None
    step_source: str = ""        # "name", "global_step" or "" (unknown)
    size: Optional[int] = None   # bytes of .index + .data-* files
    time: Optional[float] = None  # Unix seconds
    time_source: str = ""        # "state" (state-file timestamp), "mtime" or ""
    listed: bool = False         # in all_model_checkpoint_paths (or model_checkpoint_path)
    latest: bool = False         # model_checkpoint_path
    exists: bool = True
    has_meta: bool = False
    recorded: str = ""           # the path as the state file spells it

    @property
    def name(self) -> str:
        return os.path.basename(self.prefix)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["name"] = self.name
        return doc


def resolve(path: str, step: Optional[int] = None) -> Optional[str]:
    """The prefix ``path`` designates (see :func:`.paths.resolve_prefix`), or None.

    ``step`` (or a ``DIR@STEP`` / ``SAVE_PATH@STEP`` suffix) picks a checkpoint by global
    step (:func:`select_step`), which raises instead of returning None when there is none.
    """
    path, at_step = split_step(path)
    if at_step is not None and step is not None and at_step != step:
        raise UsageError(f"{path}@{at_step}: conflicts with the step {step} asked for")
    step = at_step if step is None else step
    if step is not None:
        return select_step(path, step)
    return resolve_prefix(path)


def step_of(prefix: str) -> tuple[Optional[int], str]:
    """The global step of an existing checkpoint and where it came from."""
    step = step_from_name(prefix)
    if step is not None:
        return step, "name"
    step = _global_step_tensor(prefix)
    return (step, GLOBAL_STEP) if step is not None else (None, "")


def _global_step_tensor(prefix: str) -> Optional[int]:
    from .bundle import read_bundle

    try:
        tmap = read_bundle(prefix)
        t = tmap.get(GLOBAL_STEP)
        if t is None or t.size != 1 or t.dtype.numpy.kind not in "iu":
            return None
        return int(t.numpy().reshape(-1)[0])
    except CkconvError:
        return None  # a damaged checkpoint still gets listed; reading it will explain


def _files(prefix: str) -> list[str]:
    data = glob.glob(glob.escape(prefix) + ".data-*-of-*")
    return [prefix + ".index", *sorted(data)]


def list_history(directory: str) -> list[Entry]:
    """Every checkpoint the state file lists or the directory holds, in step/name order."""
    from .state import read_state  # imports protobuf: only for directories

    state = read_state(directory)
    entries: dict[str, Entry] = {}  # by real path, so a listed file is not shown twice
    if state is not None:
        recorded = list(state.all_paths)
        if state.latest not in recorded:
            recorded.append(state.latest)  # TF keeps it last; a hand-edited file may not
        stamps = state.timestamps if len(state.timestamps) == len(state.all_paths) else []
        latest_at = locate(directory, state.latest)
        for i, rec in enumerate(recorded):
            found = locate(directory, rec)
            e = Entry(prefix=found or rec, listed=True, exists=found is not None, recorded=rec)
            e.latest = rec == state.latest or (found is not None and found == latest_at)
            if i < len(stamps):
                e.time, e.time_source = stamps[i], "state"
            entries[os.path.realpath(e.prefix)] = e
    for prefix in list_prefixes(directory):
        entries.setdefault(os.path.realpath(prefix), Entry(prefix=prefix))
    for e in entries.values():
        _fill(e)
    return sorted(entries.values(), key=lambda e: natural_key(e.name))


def _fill(e: Entry) -> None:
    if not e.exists:
        e.step = step_from_name(e.prefix)
        e.step_source = "name" if e.step is not None else ""
        return
    e.step, e.step_source = step_of(e.prefix)
    files = _files(e.prefix)
    e.size = sum(os.path.getsize(f) for f in files if os.path.isfile(f))
    if e.time is None:
        e.time, e.time_source = os.path.getmtime(e.prefix + ".index"), "mtime"
    e.has_meta = os.path.isfile(meta_path_for(e.prefix))


def _steps_text(entries: list[Entry]) -> str:
    steps = sorted({e.step for e in entries if e.exists and e.step is not None})
    return ", ".join(map(str, steps)) or "none known"


def select_step(path: str, step: int) -> str:
    """The prefix of the checkpoint with global step ``step`` that ``path`` designates.

    ``path`` is a directory (any checkpoint in it, listed or not), a save path such as
    ``run/model.ckpt`` (then ``run/model.ckpt-<step>``), or a checkpoint, which must be
    that step.
    """
    if step < 0:
        raise UsageError(f"the step must be a non-negative integer, got {step}")
    if os.path.isdir(path):
        entries = list_history(path)
        hits = [e for e in entries if e.exists and e.step == step]
        if len(hits) == 1:
            return hits[0].prefix
        if len(hits) > 1:
            names = ", ".join(e.name for e in hits)
            raise UsageError(f"{path}: several checkpoints have step {step} ({names}); "
                             "name one of them")
        raise FormatError(f"{path}: no checkpoint with step {step} (steps present: "
                          f"{_steps_text(entries)})")
    for cand in (f"{path}-{step}", f"{path}-{step:08d}"):  # pad_step_number=True uses %08d
        if os.path.isfile(cand + ".index"):
            return cand
    found = resolve_prefix(path)
    directory = os.path.dirname(path) or "."
    if found is not None:
        have, _ = step_of(found)
        if have == step:
            return found
        raise UsageError(f"{found} is the checkpoint of step {have if have is not None else '?'}"
                         f", not {step}; give its directory or save path to pick by step")
    nearby = list_history(directory) if os.path.isdir(directory) else []
    raise FormatError(f"{path}: no checkpoint with step {step} (steps present in "
                      f"{directory}: {_steps_text(nearby)})")
