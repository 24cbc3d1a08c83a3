"""Computed tensors (transposes, casts, splits) produced in blocks, on two threads.

A tensor whose bytes must be computed rather than copied describes itself as a
:class:`BlockPlan`: its C-order bytes cut into consecutive blocks, each of which can be
computed on its own into a given buffer. Two threads then take blocks in turn:

* :func:`write_blocks` (writers): each thread computes a block into its own buffer, which
  stays in the CPU cache, checksums it there, and writes it with ``os.pwrite`` at the
  block's place in the file. No block is copied again, and no order between the threads
  is needed: every block knows its offset.
* :func:`fill` (``Tensor.numpy()``, ``Tensor.torch()``): each thread computes its blocks
  straight into the final array's memory.

numpy releases the GIL in its copy and arithmetic loops, and the CRC functions and
``pwrite`` release it too, so both cores work. Memory is a block per thread, plus whatever
source the plan holds (a mapping of the source tensor for a transpose).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Optional

from . import checksums
from .checksums import CRC32, CRC32C, combine

#: Output bytes per block: blocks of two threads (and their sources) stay in the CPU's
#: caches, and a tensor of a few MiB still splits between the threads.
BLOCK = 1 << 20

#: Below this, a plan runs on the calling thread: starting a thread costs more.
PARALLEL = 2 << 20


@dataclass
class BlockPlan:
    """A tensor's bytes as consecutive blocks computed on demand.

    ``fill(i, view)`` writes block ``i`` (``sizes[i]`` bytes) into ``view``; it is called
    from two threads at once for different blocks. ``check()`` may run at any time, beside
    the blocks (verifying a mapped source's checksum: the helper thread does it first);
    ``finish()`` runs once after every block was computed (verifying a checksum gathered
    block by block); ``close()`` always runs at the end (to drop a mapping), also after an
    error.
    """

    sizes: Sequence[int]
    fill: Callable[[int, memoryview], None]
    finish: Callable[[], None] = lambda: None
    close: Callable[[], None] = lambda: None
    check: Optional[Callable[[], None]] = None
    nbytes: int = field(init=False)

    def __post_init__(self) -> None:
        self.nbytes = sum(self.sizes)


_pool: list[bytearray] = []
_pool_lock = threading.Lock()


def borrow(nbytes: int) -> bytearray:
    """A buffer of at least ``nbytes`` from a small pool: block buffers are reused from
    tensor to tensor instead of being allocated (and faulted in) again for each."""
    with _pool_lock:
        for i, buf in enumerate(_pool):
            if len(buf) >= nbytes:
                return _pool.pop(i)
    return bytearray(max(nbytes, BLOCK))


def give_back(buf: bytearray) -> None:
    with _pool_lock:
        if len(_pool) < 8:  # two threads, each with a block and a source buffer or two
            _pool.append(buf)


def even_blocks(nbytes: int, unit: int, block: int = BLOCK) -> list[int]:
    """Sizes of blocks of about ``block`` bytes covering ``nbytes``, each a multiple of
    ``unit`` (a row of the output) except that a row larger than a block is one block."""
    if nbytes == 0:
        return []
    per = max(unit, block - block % unit) if unit else block
    return [min(per, nbytes - start) for start in range(0, nbytes, per)]


class _Work:
    """Hands out block indexes to the threads and collects their results and errors."""

    def __init__(self, count: int):
        self.count = count
        self.next = 0
        self.lock = threading.Lock()
        self.error: Optional[BaseException] = None
        self.done_bytes = 0

    def take(self) -> Optional[int]:
        with self.lock:
            if self.next >= self.count or self.error is not None:
                return None
            i = self.next
            self.next += 1
            return i

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            if self.error is None:
                self.error = exc


def _run(plan: BlockPlan, job: Callable[[int, memoryview], None], buffers: bool,
         progress: Optional[Callable[[int], None]] = None) -> None:
    """Run ``job(i, scratch)`` for every block on two threads (one for small plans)."""
    work = _Work(len(plan.sizes))
    largest = max(plan.sizes, default=0)

    reported = 0

    def report() -> None:  # on the calling thread only: progress callbacks print
        nonlocal reported
        if progress:
            done = work.done_bytes
            if done > reported:
                progress(done - reported)
                reported = done

    def worker(main: bool) -> None:
        buf = borrow(largest) if buffers else bytearray()
        try:
            if not main and plan.check is not None:
                plan.check()
            with memoryview(buf) as scratch:
                while (i := work.take()) is not None:
                    job(i, scratch)
                    with work.lock:
                        work.done_bytes += plan.sizes[i]
                    if main:
                        report()
        except BaseException as exc:  # handed to the calling thread
            work.fail(exc)
        if buffers:
            give_back(buf)

    helper = None
    if plan.nbytes >= PARALLEL and len(plan.sizes) > 1:
        helper = threading.Thread(target=worker, args=(False,), name="ckconv-block", daemon=True)
        helper.start()
    worker(True)
    if helper is not None:
        helper.join()
    elif plan.check is not None and work.error is None:
        try:
            plan.check()
        except BaseException as exc:
            work.fail(exc)
    if work.error is None:
        report()
    if work.error is not None:
        raise work.error


def _offsets(sizes: Sequence[int]) -> list[int]:
    out, pos = [], 0
    for s in sizes:
        out.append(pos)
        pos += s
    return out


def fill(plan: BlockPlan, target: memoryview) -> None:
    """Compute every block of ``plan`` into ``target`` (``plan.nbytes`` writable bytes)."""
    offsets = _offsets(plan.sizes)
    target = target.cast("B") if target.format != "B" or target.ndim != 1 else target
    try:
        _run(plan, lambda i, _: plan.fill(i, target[offsets[i]:offsets[i] + plan.sizes[i]]),
             buffers=False)
        plan.finish()
    finally:
        plan.close()


@dataclass
class Written:
    """Bytes written by :func:`write_blocks` and the checksums asked for."""

    nbytes: int = 0
    crc32c: int = 0
    crc32: int = 0


def write_blocks(plan: BlockPlan, out: BinaryIO, *, crc32c: bool = False, crc32: bool = False,
                 progress: Optional[Callable[[int], None]] = None) -> Written:
    """Append ``plan``'s bytes to ``out`` at its position, computing and writing on two
    threads; ``out`` must have a file descriptor. Returns the checksums asked for."""
    out.flush()
    fd = out.fileno()
    base = out.tell()
    offsets = _offsets(plan.sizes)
    sums: list[tuple[int, int]] = [(0, 0)] * len(plan.sizes)

    def job(i: int, scratch: memoryview) -> None:
        view = scratch[:plan.sizes[i]]
        plan.fill(i, view)
        sums[i] = (checksums.crc32c(view) if crc32c else 0,
                   checksums.crc32(view) if crc32 else 0)
        pos = base + offsets[i]
        while view:
            n = os.pwrite(fd, view, pos)
            view, pos = view[n:], pos + n

    try:
        _run(plan, job, buffers=True, progress=progress)
        plan.finish()
    finally:
        plan.close()
    out.seek(base + plan.nbytes)
    result = Written(plan.nbytes)
    for (c, z), size in zip(sums, plan.sizes):
        if crc32c:
            result.crc32c = combine(result.crc32c, c, size, CRC32C)
        if crc32:
            result.crc32 = combine(result.crc32, z, size, CRC32)
    return result


def crc32c_parallel(view: memoryview) -> int:
    """CRC-32C of ``view``, its halves computed on two threads and joined."""
    if len(view) < PARALLEL:
        return checksums.crc32c(view)
    half = len(view) // 2
    result: list = [None]

    def back() -> None:
        try:
            result[0] = checksums.crc32c(view[half:])
        except BaseException as exc:  # handed to the calling thread
            result[0] = exc

    helper = threading.Thread(target=back, name="ckconv-crc", daemon=True)
    helper.start()
    front = checksums.crc32c(view[:half])
    helper.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return combine(front, result[0], len(view) - half, CRC32C)
