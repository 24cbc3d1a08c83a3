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
from collections import deque
from collections.abc import Callable, Sequence
from typing import BinaryIO, Optional

from . import checksums
from ..records import field, record
from .checksums import CRC32, CRC32C, combine

#: Output bytes per block: blocks of two threads (and their sources) stay in the CPU's
#: caches, and a tensor of a few MiB still splits between the threads.
BLOCK = 1 << 20

#: Below this, a plan runs on the calling thread: starting a thread costs more.
PARALLEL = 2 << 20


@record
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


def offsets_of(sizes: Sequence[int]) -> list[int]:
    """Where each of consecutive pieces of the given sizes begins."""
    out, pos = [], 0
    for s in sizes:
        out.append(pos)
        pos += s
    return out


def fill(plan: BlockPlan, target: memoryview) -> None:
    """Compute every block of ``plan`` into ``target`` (``plan.nbytes`` writable bytes)."""
    offsets = offsets_of(plan.sizes)
    target = target.cast("B") if target.format != "B" or target.ndim != 1 else target
    try:
        _run(plan, lambda i, _: plan.fill(i, target[offsets[i]:offsets[i] + plan.sizes[i]]),
             buffers=False)
        plan.finish()
    finally:
        plan.close()


@record
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
    offsets = offsets_of(plan.sizes)
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
    return _joined(plan, sums, crc32c, crc32)


def _joined(plan: BlockPlan, sums: Sequence[tuple[int, int]], crc32c: bool,
            crc32: bool) -> Written:
    """The plan's checksums, joined from its blocks' (CRC-32C, CRC-32) pairs."""
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


class Pending:
    """A plan handed to a :class:`BlockWriter`: its checksums once every block is written."""

    def __init__(self, plan: BlockPlan, base: int, crc32c: bool, crc32: bool):
        self.plan = plan
        self.base = base
        self.offsets = offsets_of(plan.sizes)
        self.want_crc32c = crc32c
        self.want_crc32 = crc32
        self.sums: list[tuple[int, int]] = [(0, 0)] * len(plan.sizes)
        # jobs left: every block, plus the source check when the plan has one
        self.left = len(plan.sizes) + (plan.check is not None)
        self.error: Optional[BaseException] = None
        self.written: Optional[Written] = None
        self.done = threading.Event()

    def result(self) -> Written:
        """Wait for the plan; its checksums, or the error that stopped it."""
        self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.written is not None
        return self.written


class BlockWriter:
    """The block plans of many tensors of one output file, written by two threads that
    go from one tensor's blocks to the next without waiting for each other.

    :func:`write_blocks` runs one tensor at a time: the calling thread waits for its last
    block, and the next tensor starts from scratch (a mapping, a thread). A writer that
    knows every tensor's place in its file before the bytes exist (safetensors' header,
    TF's index written last) instead hands plans over with :meth:`submit` and goes on with
    the next tensor (kernel copies, small tensors) while two long-lived threads compute,
    checksum and ``pwrite`` the blocks of every plan in turn. At most ``in_flight_bytes``
    of plans are outstanding (each may hold a mapping of its source), so memory stays
    bounded. Leaving the ``with`` block waits for everything and raises the first error.
    """

    def __init__(self, fd: int, *, threads: int = 2, in_flight_bytes: int = 64 << 20):
        self.fd = fd
        self.limit = in_flight_bytes
        self.cond = threading.Condition()
        self.jobs: deque[tuple[Pending, int]] = deque()  # (plan, block, or -1: its check)
        self.outstanding: list[Pending] = []
        self.error: Optional[BaseException] = None
        self.closing = False
        self.progress_bytes = 0
        self._own = [bytearray()]  # the submitting thread's block buffer, when it helps
        self.threads = [threading.Thread(target=self._work, name=f"ckconv-writer-{k}",
                                         daemon=True) for k in range(threads)]
        for t in self.threads:
            t.start()

    def __enter__(self) -> "BlockWriter":
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        if kind is None:
            self.close()
        else:  # the writer failed: drop what is queued, let its error through
            self.abort()

    def abort(self) -> None:
        """Stop: queued blocks are dropped, running ones finish, every plan is closed."""
        with self.cond:
            self.jobs.clear()
            self.closing = True
            self.cond.notify_all()
        for t in self.threads:
            t.join()
        self._drop_outstanding()

    def submit(self, plan: BlockPlan, base: int, *, crc32c: bool = False,
               crc32: bool = False) -> Pending:
        """Queue ``plan`` to be written at ``base``; returns at once (or once older plans
        have made room)."""
        pending = Pending(plan, base, crc32c, crc32)
        with self.cond:
            while self.outstanding and self.error is None and \
                    sum(p.plan.nbytes for p in self.outstanding) + plan.nbytes > self.limit:
                self._help_or_wait()
            if self.error is not None:
                plan.close()
                raise self.error
            self.outstanding.append(pending)
            if plan.check is not None:
                self.jobs.append((pending, -1))  # first: verify the source beside its blocks
            self.jobs.extend((pending, i) for i in range(len(plan.sizes)))
            self.cond.notify_all()
        if pending.left == 0:  # nothing to compute (not made by the transforms, but cheap)
            self._complete(pending)
        return pending

    def take_progress(self) -> int:
        """Bytes written since the last call (for a progress bar on the calling thread)."""
        with self.cond:
            done, self.progress_bytes = self.progress_bytes, 0
        return done

    def close(self) -> None:
        """Wait for every plan, stop the threads, raise the first error."""
        with self.cond:
            while self.outstanding and self.error is None:
                self._help_or_wait()
            self.closing = True
            self.cond.notify_all()
        for t in self.threads:
            t.join()
        self._drop_outstanding()
        if self.error is not None:
            raise self.error

    def _drop_outstanding(self) -> None:
        """After an error: the plans nobody finished still drop their sources (the threads
        have stopped), and whoever waits for one learns why it stopped."""
        for pending in self.outstanding:
            pending.plan.close()
            pending.error = pending.error or self.error or RuntimeError("the writer stopped")
            pending.done.set()
        self.outstanding.clear()

    def _help_or_wait(self) -> None:
        """On the submitting thread, lock held: rather than wait idle, compute a block."""
        if not self.jobs:
            self.cond.wait()
            return
        job = self.jobs.popleft()
        self.cond.release()
        try:
            self._run_job(*job, self._own)
        finally:
            self.cond.acquire()

    def _work(self) -> None:
        buffers = [bytearray()]
        while True:
            with self.cond:
                while not self.jobs and not self.closing and self.error is None:
                    self.cond.wait()
                if not self.jobs or self.error is not None:
                    return
                pending, i = self.jobs.popleft()
            self._run_job(pending, i, buffers)

    def _run_job(self, pending: Pending, i: int, buffers: list[bytearray]) -> None:
        """Run one job; ``buffers[0]`` is the calling thread's block buffer."""
        try:
            if pending.error is None:
                if i < 0:
                    pending.plan.check()  # type: ignore[misc]
                else:
                    size = pending.plan.sizes[i]
                    if len(buffers[0]) < size:
                        buffers[0] = bytearray(max(size, BLOCK))
                    with memoryview(buffers[0]) as scratch:
                        self._write(pending, i, scratch[:size])
        except BaseException as exc:  # handed to the thread that waits
            pending.error = pending.error or exc
        with self.cond:
            if i >= 0:
                self.progress_bytes += pending.plan.sizes[i]
            pending.left -= 1
            last = pending.left == 0
        if last:
            self._complete(pending)

    def _write(self, pending: Pending, i: int, view: memoryview) -> None:
        pending.plan.fill(i, view)
        pending.sums[i] = (checksums.crc32c(view) if pending.want_crc32c else 0,
                           checksums.crc32(view) if pending.want_crc32 else 0)
        pos = pending.base + pending.offsets[i]
        while view:
            n = os.pwrite(self.fd, view, pos)
            view, pos = view[n:], pos + n

    def _complete(self, pending: Pending) -> None:
        """Every job of ``pending`` ran: verify, drop the source, join the checksums."""
        plan = pending.plan
        try:
            if pending.error is None:
                plan.finish()
        except BaseException as exc:
            pending.error = exc
        finally:
            plan.close()
        if pending.error is None:
            pending.written = _joined(plan, pending.sums, pending.want_crc32c, pending.want_crc32)
        with self.cond:
            if pending.error is not None and self.error is None:
                self.error = pending.error
            self.outstanding.remove(pending)
            pending.done.set()
            self.cond.notify_all()
