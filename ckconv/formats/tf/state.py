"""The ``checkpoint`` state file: a text-format CheckpointState naming the kept checkpoints."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Optional

from ...io.atomic import AtomicFiles
from ...errors import CorruptCheckpointError

STATE_FILENAME = "checkpoint"


@dataclass
class State:
    """A parsed state file. Paths are as recorded (relative ones are relative to the directory)."""

    path: str
    latest: str
    all_paths: list[str] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)
    last_preserved_timestamp: float = 0.0


def read_state(directory: str) -> Optional[State]:
    """Parse ``<directory>/checkpoint``; None when there is none."""
    path = os.path.join(directory, STATE_FILENAME)
    if not os.path.isfile(path):
        return None
    from google.protobuf import text_format  # only when there is a state file to parse

    from .protos import CheckpointState

    try:
        with open(path, "rb") as f:
            raw = f.read(1 << 20)  # a state file is a few lines; refuse to slurp a huge file
        msg = CheckpointState()
        text_format.Parse(raw.decode("utf-8"), msg)
    except (UnicodeDecodeError, text_format.ParseError) as exc:
        raise CorruptCheckpointError(f"{path}: not a valid checkpoint state file ({exc})") from None
    if not msg.model_checkpoint_path:
        raise CorruptCheckpointError(f"{path}: state file has an empty model_checkpoint_path")
    return State(path=path, latest=msg.model_checkpoint_path,
                 all_paths=list(msg.all_model_checkpoint_paths),
                 timestamps=list(msg.all_model_checkpoint_timestamps),
                 last_preserved_timestamp=msg.last_preserved_timestamp)


def record_latest(prefix: str, update: "bool | None" = None) -> list[str]:
    """Record a newly written checkpoint in its directory's state file, as asked; notes.

    ``update`` None: only where the directory has no state file, or it already names
    ``prefix`` as the latest (a fresh output directory behaves as TF's savers make it). A
    state file that names other checkpoints belongs to a training run: it is left as it
    was, with a note, unless ``update`` is True.
    """
    directory = os.path.dirname(os.path.abspath(prefix))
    state_path = os.path.join(directory, STATE_FILENAME)
    if update is False:
        return []
    if update is None and os.path.exists(state_path):
        try:
            old = read_state(directory)
        except CorruptCheckpointError:
            old = None
        rel = os.path.relpath(os.path.abspath(prefix), directory)
        if old is None or old.latest not in (rel, os.path.abspath(prefix)):
            latest = os.path.basename(old.latest) if old else "unreadable"
            return [f"left {state_path} as it was (its latest checkpoint is {latest}); "
                    f"update_state=True (--update-state) records this one as the latest"]
    update_state(prefix)
    return [f"recorded {os.path.basename(prefix)} as the latest checkpoint in {state_path}"] \
        if update else []


def update_state(prefix: str) -> None:
    """Record ``prefix`` as the newest checkpoint of its directory, as TF's savers do.

    The path is stored relative to the directory (so the directory can be copied), a previous
    occurrence of it is removed, earlier entries are kept in order. Timestamps are kept in
    step only if the existing file already has them.
    """
    directory = os.path.dirname(os.path.abspath(prefix))
    try:
        old = read_state(directory)
    except CorruptCheckpointError:
        old = None  # TF ignores an unreadable state file too; we replace it
    rel = os.path.relpath(os.path.abspath(prefix), directory)
    paths = list(old.all_paths) if old else []
    stamps = list(old.timestamps) if old and len(old.timestamps) == len(old.all_paths) else []
    if rel in paths:
        i = paths.index(rel)
        del paths[i]
        if stamps:
            del stamps[i]
    # TF always keeps the newest path as the last element.
    paths.append(rel)
    if stamps:
        stamps.append(time.time())
    last = old.last_preserved_timestamp if old else 0.0
    text = state_text(rel, paths, stamps, last)
    with AtomicFiles() as files:
        with open(files.path(os.path.join(directory, STATE_FILENAME)), "w", encoding="utf-8") as f:
            f.write(text)


def state_text(latest: str, all_paths: list[str], timestamps: list[float],
               last_preserved_timestamp: float = 0.0) -> str:
    """The CheckpointState in protobuf text format, as protobuf >= 4's text_format writes it.

    Written by hand because importing protobuf is a large part of a short conversion's
    start-up (docs/performance.md), and writing a few lines of text needs none of it.
    Field names are CheckpointState's; defaults are left out, as protobuf does.
    """
    lines = [f"model_checkpoint_path: {_quote(latest)}"]
    lines += [f"all_model_checkpoint_paths: {_quote(p)}" for p in all_paths]
    lines += [f"all_model_checkpoint_timestamps: {t!r}" for t in timestamps]
    if last_preserved_timestamp:
        lines.append(f"last_preserved_timestamp: {last_preserved_timestamp!r}")
    return "".join(line + "\n" for line in lines)


# Text-format string escaping, as protobuf's Python text_format writes string fields: the C
# escapes, octal for other control characters, Unicode as is (written as UTF-8). Bytes of a
# file name that are not UTF-8 (surrogate-escaped by Python) become octal escapes.
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "'": "\\'", "\\": "\\\\"}


def _quote(text: str) -> str:
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0x20 <= code < 0x7F or (code >= 0x80 and not 0xD800 <= code < 0xE000):
            out.append(ch)
        else:  # controls, and the surrogates standing for undecodable bytes
            out.extend(f"\\{byte:03o}" for byte in ch.encode("utf-8", "surrogateescape"
                                                                if 0xDC80 <= code <= 0xDCFF
                                                                else "surrogatepass"))
    return '"' + "".join(out) + '"'
