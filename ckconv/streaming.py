"""Moving tensor bytes from a file region to a writer with as few copies as possible.

A region is mapped in windows with mmap: the CRC is computed straight over the mapped page
cache and the writer copies from it once, instead of reading into a buffer first (one
copy saved per byte, about a third of the cost of a conversion). Each window is unmapped
before the next is mapped, because mapped pages count toward resident memory: peak memory
stays at one window whatever the checkpoint's size.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator

#: Bytes mapped at a time. Large enough to make per-window costs vanish, small enough that
#: resident memory stays far below the 256 MiB budget.
WINDOW = 32 << 20

#: Regions up to this size are read with one pread: mapping costs more than copying them.
SMALL = 1 << 20

_GRANULARITY = mmap.ALLOCATIONGRANULARITY
_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)  # prefault: no per-page faults


def iter_region(fd: int, offset: int, size: int, window: int = WINDOW) -> Iterator[memoryview]:
    """Yield ``size`` bytes starting at ``offset`` of ``fd`` as read-only views.

    Each view is valid only until the next one is requested. The caller must make sure the
    region lies inside the file (mapping past the end raises SIGBUS on access, not an error).
    """
    if size <= SMALL:
        data = os.pread(fd, size, offset)
        if len(data) != size:
            raise EOFError(f"file ends {size - len(data)} bytes early")
        yield memoryview(data)
        return
    end = offset + size
    pos = offset
    window = max(window - window % _GRANULARITY, _GRANULARITY)
    while pos < end:
        start = pos - pos % _GRANULARITY  # mmap offsets must be page-aligned
        length = min(end, start + window) - start
        mapped = mmap.mmap(fd, length, flags=_FLAGS, prot=mmap.PROT_READ, offset=start)
        view = memoryview(mapped)[pos - start:length]
        try:
            yield view
        finally:
            view.release()
            try:
                mapped.close()
            except BufferError:  # the consumer still holds a view: let GC unmap it
                pass
        pos = start + length
