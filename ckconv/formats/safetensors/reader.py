"""Lazy reading of safetensors files and Hugging Face sharded safetensors checkpoints.

Only headers are read up front. A tensor's bytes are fetched with ``os.preadv`` at its offset
when asked for, and streamed in mapped windows by :meth:`SafetensorsTensor.iter_bytes`, so a file
larger than memory converts with flat memory. The safetensors Python package is not used
for reading: its numpy backend cannot return bfloat16 or float8 arrays.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Optional

from ...errors import CorruptCheckpointError
from ...io.streaming import WINDOW, FileRegion, SourceFile, iter_region
from ...tensor import Tensor
from ...tensormap import TensorMap
from .. import sharding
from .header import TIED_KEY, Entry, Header, read_header

if TYPE_CHECKING:  # numpy is imported when values are asked for, not to stream bytes
    import numpy as np


class SafetensorsTensor(Tensor):
    def __init__(self, file: SourceFile, entry: Entry):
        super().__init__(entry.dtype, entry.shape)
        self._file = file
        self._begin = entry.begin
        self._size = entry.end - entry.begin

    def _load(self) -> "np.ndarray":
        import numpy as np

        buf = bytearray(self._size)  # writable, so torch.from_numpy needs no copy or warning
        self._file.read_into(self._begin, memoryview(buf))
        return np.frombuffer(buf, dtype=self.dtype.numpy).reshape(self.shape)

    def iter_bytes(self, chunk: int = WINDOW) -> Iterator[memoryview]:
        """Stream the bytes; each view is valid only until the next one is requested."""
        if self._size == 0:
            return
        try:  # the header check proved the region lies inside the file
            yield from iter_region(self._file.fd(), self._begin, self._size, chunk)
        except EOFError as exc:
            raise self._shrank(str(exc)) from None

    def file_region(self) -> Optional[FileRegion]:
        if self._size == 0:
            return None
        # the header check proved the region lies inside the file
        return FileRegion(self._file.fd(), self._begin, self._size, corrupt=self._shrank)

    def _shrank(self, detail: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(f"{self._file.path}: file shrank after it was opened ({detail})")

    def describe(self) -> str:
        return f"{self._file.path} [{self._begin}:{self._begin + self._size}]"

    def stored_extents(self) -> list[tuple[str, int]]:
        return [(self._file.path, self._begin + self._size)]


def _tensors(header: Header) -> dict[str, SafetensorsTensor]:
    file = SourceFile(header.path, header.file_size)
    return {e.name: SafetensorsTensor(file, e) for e in header.entries}


def _apply_tied(tmap: TensorMap, metadata: dict[str, str], path: str) -> None:
    """Restore names ckconv de-duplicated when it wrote the file (they share one tensor)."""
    raw = metadata.pop(TIED_KEY, None)
    if raw is None:
        return
    try:
        tied = json.loads(raw)
        assert isinstance(tied, dict)
    except (ValueError, AssertionError):
        tmap.notes.append(f"{path}: ignored malformed {TIED_KEY} metadata")
        return
    restored = []
    for alias, kept in tied.items():
        if isinstance(alias, str) and kept in tmap and alias not in tmap:
            tmap[alias] = tmap[kept]
            restored.append(alias)
    tmap.extras[sharding.DERIVED_NAMES] = set(restored)
    if restored:
        tmap.notes.append(f"restored {len(restored)} tied name(s) sharing data with another "
                          f"tensor: {', '.join(restored[:5])}" + (" ..." if len(restored) > 5 else ""))


def read_file(path: str) -> TensorMap:
    header = read_header(path)
    metadata = dict(header.metadata)
    tmap = TensorMap(_tensors(header), source=path, format="safetensors")
    _apply_tied(tmap, metadata, path)
    tmap.metadata = metadata
    tmap.source_files.append(path)
    return tmap

