"""Writing PyTorch state dicts: a plain ``dict`` of tensors, in ``torch.save``'s zip format.

``torch.load(path, weights_only=True)`` (and ``mmap=True``) returns exactly that dict. Names
that hold the same tensor object in the map (tied weights) are saved as one tensor, so they
share one storage in the file, as in the model they came from. The file is written by
:mod:`.torchzip_writer` without torch: tensor bytes stream from the source file to the
output (file to file in the kernel where possible), so memory stays flat whatever the size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

from ...tensormap import TensorMap
from .. import sharding
from ..outputs import leave_out
from . import torchzip_writer

Progress = Optional[Callable[[int], None]]
DEFAULT_NAME = "pytorch_model.bin"
# Metadata keys every writer adds or that only describe the file they came from.
_ROUTINE_METADATA = {"format", "source_format"}


def _drop_unsupported(tmap: TensorMap, path: str, skip: bool, notes: list[str]) -> TensorMap:
    bad = [n for n, t in tmap.items() if not torchzip_writer.can_hold(t.dtype)]
    return leave_out(tmap, bad, path, "PyTorch cannot hold", skip, notes)


def _units(tmap: TensorMap) -> list[tuple[list[str], int]]:
    """Groups of names sharing one tensor object (kept in one shard), with their size."""
    groups: dict[int, tuple[list[str], int]] = {}
    for name, t in tmap.items():
        if id(t) in groups:
            groups[id(t)][0].append(name)
        else:
            groups[id(t)] = ([name], t.nbytes)
    return list(groups.values())


def write(tmap: TensorMap, path: str, *, skip_unsupported: bool = False,
          progress: Progress = None, max_shard_size: "int | str | None" = None,
          **options: Any) -> list[str]:
    notes: list[str] = []
    base = sharding.output_base(path, DEFAULT_NAME)
    tmap = _drop_unsupported(tmap, base, skip_unsupported, notes)
    dropped = sorted(k for k in tmap.metadata if k not in _ROUTINE_METADATA)
    if dropped:
        notes.append(f"metadata not kept (a PyTorch state dict holds tensors only): "
                     f"{', '.join(dropped[:10])}")
    units = _units(tmap)
    tied = sum(len(names) - 1 for names, _ in units)
    if tied:
        notes.append(f"{tied} tied name(s) share storage with another tensor, as in the input")

    def write_one(names: list[str], tmp: str, final: str) -> None:
        with open(tmp, "wb") as f:
            torchzip_writer.write_state_dict(f, [(n, tmap[n]) for n in names], display=final,
                                             progress=progress)

    return notes + sharding.write_sharded(tmap, path, DEFAULT_NAME, max_shard_size, write_one,
                                          units)
