"""Moving tensor bytes from a file region to a writer with as few copies as possible.

Two paths, chosen per tensor by :func:`copy_tensor`:

* The tensor's bytes lie unchanged in a file (:class:`FileRegion`): the kernel copies them
  file to file (``copy_file_range``) without passing through Python, while a second thread
  reads the same page-cache pages to compute the checksums the source must match and the
  target must record. The two run on two cores, so a conversion costs about what ``cp``
  costs. When source and destination sit at different places within a page, the kernel
  would copy piece by piece; a small cache-resident buffer is faster then.
* Anything else (a transform applied, an in-memory array, a byte-swapped source): the
  tensor's :meth:`~ckconv.tensormap.Tensor.iter_bytes` chunks are checksummed and written.

Before a large tensor is copied, its blocks in the output are allocated in one call
(:mod:`ckconv.io.preallocate`): faster than allocating as the copy goes, and a full disk shows
before the copy.

:func:`iter_region` maps regions in windows, each unmapped before the next: mapped pages
count toward resident memory, so peak memory stays at one window whatever the size.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, BinaryIO, Optional

from ..errors import CorruptCheckpointError
from ..records import record
from . import checksums
from .checksums import CRC32, CRC32C, combine
from .preallocate import reserve

if TYPE_CHECKING:
    from ..tensor import Tensor
    from .blocks import BlockWriter, Pending

#: Bytes mapped (or copied by one kernel call) at a time. Large enough to make per-window
#: costs vanish, small enough that resident memory stays far below the 256 MiB budget.
WINDOW = 32 << 20

#: Bytes checksummed per step of copy_tensor's two checksumming threads: small enough that a
#: tensor of a few dozen MiB still splits between them, large enough to keep the per-step
#: costs (a mapping, a CRC combine) negligible.
PIECE = 4 << 20

#: Writers place each large tensor at the offset its source has, modulo a power of two up to
#: this (:func:`placement_pad`). ext4 caches a file in folios of up to 2 MiB, each at a
#: multiple of its size; a copy between offsets that agree only modulo a small power of two
#: must build the destination from small folios, and gets slower the smaller the power of
#: two (docs/performance.md).
PLACEMENT = 2 << 20


def placement_pad(source: int, target: int, budget: int) -> Optional[int]:
    """Bytes to leave before data written at ``target`` so that it lies where its source
    (at ``source``) does, modulo the largest power of two up to PLACEMENT whose padding
    costs at most ``budget`` bytes. None when not even a page fits the budget: below a page
    placement gains nothing, and the writer keeps its usual layout."""
    modulus = PLACEMENT
    while modulus >= _PAGE:
        pad = (source - target) % modulus
        if pad <= budget:
            return pad
        modulus //= 2
    return None


def padding_budget(nbytes: int) -> int:
    """The padding worth spending to place ``nbytes`` of copied data: a sixteenth of it."""
    return nbytes // 16


#: Regions up to this size are read with one pread: mapping costs more than copying them.
SMALL = 1 << 20

_PAGE = mmap.PAGESIZE
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


class SourceFile:
    """A read-only descriptor of an input file, opened on first use, shared by its tensors
    and closed with them. ``size`` is the size seen when the file was first examined: the
    bounds every region of the file was checked against."""

    def __init__(self, path: str, size: int):
        self.path = path
        self.size = size
        self._fd: Optional[int] = None

    def fd(self) -> int:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            except OSError as exc:  # e.g. deleted between load() and the first read
                raise CorruptCheckpointError(f"{self.path}: cannot open ({exc.strerror})") from None
        return self._fd

    def read_into(self, offset: int, buf: memoryview) -> None:
        """Fill ``buf`` from ``offset``; a file shorter than promised is an error."""
        fd = self.fd()
        done = 0
        while done < len(buf):
            n = os.preadv(fd, [buf[done:]], offset + done)
            if n <= 0:
                raise CorruptCheckpointError(
                    f"{self.path}: file ended early (wanted {len(buf)} bytes at offset {offset}; "
                    f"was it truncated after it was opened?)")
            done += n

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def __del__(self) -> None:
        self.close()


@record(frozen=True)
class FileRegion:
    """Where a tensor's exact C-order little-endian bytes lie in a file.

    ``check`` receives the CRC-32C of the bytes and raises if the source's stored checksum
    disagrees (TF bundles); ``corrupt`` builds the error for a file that ends early. The
    reader that hands out a region has already checked that it lies inside the file.
    """

    fd: int
    offset: int
    size: int
    check: Optional[Callable[[int], None]] = None
    corrupt: Optional[Callable[[str], Exception]] = None


@record
class Copied:
    """What :func:`copy_tensor` wrote: byte count and the checksums asked for."""

    nbytes: int = 0
    crc32c: int = 0
    crc32: int = 0
    #: the bytes are still being computed (``copy_tensor(blocks=...)``): checksums from here
    pending: "Optional[Pending]" = None


Progress = Optional[Callable[[int], None]]


def copy_tensor(tensor: "Tensor", out: BinaryIO, *, crc32c: bool = False, crc32: bool = False,
                progress: Progress = None, blocks: "Optional[BlockWriter]" = None,
                reserved: bool = False) -> Copied:
    """Append ``tensor``'s raw bytes to ``out`` at its current position.

    ``crc32c`` / ``crc32`` ask for the CRC-32C (TF bundles) / zlib CRC-32 (zip members) of
    the bytes written. A source checksum is always verified; if it fails, the exception is
    raised after the bytes were written, which is harmless because every writer writes to
    a temporary file that is removed on error.

    With ``blocks`` (a :class:`~ckconv.io.blocks.BlockWriter` on ``out``), a computed
    tensor is handed to its threads and the call returns at once, ``out`` positioned after
    the tensor's place; the bytes and checksums are there once ``blocks`` is closed (the
    checksums in the returned :attr:`Copied.pending`).

    ``reserved``: the writer allocated the tensor's place already (:func:`reserve_rest`).
    """
    if tensor.nbytes > SMALL and not reserved:
        reserve_rest(out, tensor.nbytes)
    region = tensor.file_region()
    if region is None:
        plan = tensor.block_plan() if tensor.nbytes > SMALL else None
        if plan is not None and blocks is not None:
            base = out.tell()
            pending = blocks.submit(plan, base, crc32c=crc32c, crc32=crc32)
            out.seek(base + plan.nbytes)
            if progress:
                progress(blocks.take_progress())
            return Copied(plan.nbytes, pending=pending)
        if plan is not None and _has_fd(out):
            from .blocks import write_blocks

            done = write_blocks(plan, out, crc32c=crc32c, crc32=crc32, progress=progress)
            return Copied(done.nbytes, done.crc32c, done.crc32)
    if region is None or region.size <= SMALL:
        return _copy_chunks(tensor.iter_bytes(), out, crc32c, crc32, progress)
    out.flush()
    summer = _Checksummer(region, want_crc32c=crc32c or region.check is not None, want_crc32=crc32)
    summer.start()
    try:
        _kernel_copy(region, out.fileno(), progress)
    except BaseException:
        summer.abandon()
        raise
    sums = summer.finish()
    if region.check is not None:
        region.check(sums.crc32c)
    return Copied(region.size, sums.crc32c, sums.crc32)


def _has_fd(out: BinaryIO) -> bool:
    try:
        out.fileno()
        return True
    except (AttributeError, OSError, ValueError):  # not a file of its own (BytesIO...)
        return False


def reserve_rest(out: BinaryIO, nbytes: int) -> None:
    """Have the file system allocate the next ``nbytes`` of ``out`` before they are written
    (see :mod:`ckconv.io.preallocate`): one tensor's, or the whole rest of a file whose
    size the writer knows; a full disk is reported here, before the copy."""
    try:
        fd, position = out.fileno(), out.tell()
    except (AttributeError, OSError, ValueError):  # not a file of its own (BytesIO...)
        return
    reserve(fd, position, nbytes)


def _copy_chunks(chunks: Iterable[memoryview], out: BinaryIO, want_crc32c: bool, want_crc32: bool,
                 progress: Progress) -> Copied:
    result = Copied()
    crc_c = checksums.crc32c if want_crc32c else None
    for chunk in chunks:
        out.write(chunk)
        result.nbytes += len(chunk)
        if crc_c is not None:
            result.crc32c = crc_c(chunk, result.crc32c)
        if want_crc32:
            result.crc32 = checksums.crc32(chunk, result.crc32)
        if progress:
            progress(len(chunk))
    return result


class _Checksummer:
    """The checksums of a region, computed beside the kernel copy.

    A helper thread checksums the region's pieces from the front while the main thread
    waits in the copy system call (both CRC functions release the GIL). When the copy is
    done, the main thread takes pieces from the back, so both cores checksum until the two
    meet; the partial CRCs are then joined (:func:`ckconv.io.checksums.combine`).
    Computing both a source CRC-32C and a zip CRC-32 costs more than the copy, so the
    second pair of hands matters.
    """

    def __init__(self, region: FileRegion, want_crc32c: bool, want_crc32: bool):
        self.region = region
        self.want_crc32c = want_crc32c
        self.want_crc32 = want_crc32
        self.windows = [(start, min(PIECE, region.size - start))
                        for start in range(0, region.size, PIECE)]
        self.order = list(range(len(self.windows)))
        self.front = 0                        # next place in `order` for the helper thread
        self.back = len(self.order)           # places from here on belong to the main thread
        # Sums of runs of consecutive pieces, by first piece: [sums, bytes]. The helper
        # extends its current run while the pieces follow each other; the main thread's
        # pieces are runs of one.
        self.runs: dict[int, list] = {}
        self.lock = threading.Lock()
        self.error: Optional[BaseException] = None
        self.helping = False                  # the helper has taken this job up
        self.done = threading.Event()         # ... and put it down again

    def start(self) -> None:
        if self.want_crc32c or self.want_crc32:
            # A thread per tensor, not one long-lived helper: handing jobs to a waiting
            # thread made both threads checksum markedly slower, and whole conversions with
            # them (docs/performance.md), for a reason not pinned down.
            threading.Thread(target=self._run_front, name="ckconv-checksum", daemon=True).start()
        else:
            self.done.set()

    def abandon(self) -> None:
        """The copy failed, or the main thread is done: let the helper stop after its current
        piece, or not start at all if it has not yet taken the job up."""
        with self.lock:
            self.back = self.front
            if not self.helping:
                self.helping = True  # too late now: _run_front returns at once
                self.done.set()
        self.done.wait()

    def finish(self) -> Copied:
        if not (self.want_crc32c or self.want_crc32):
            return Copied(self.region.size)
        try:
            while True:
                with self.lock:
                    if self.back <= self.front:
                        break
                    self.back -= 1
                    i = self.order[self.back]
                self.runs[i] = [self._sums(i, Copied()), self.windows[i][1]]
        except (EOFError, OSError, ValueError) as exc:
            self.abandon()
            raise _truncated(self.region, str(exc)) from None
        self.abandon()
        if self.error is not None:
            raise self.error
        from .checksums import CRC32, CRC32C, combine

        total = Copied()
        for first in sorted(self.runs):  # in file order
            part, length = self.runs[first]
            total.crc32c = combine(total.crc32c, part.crc32c, length, CRC32C)
            total.crc32 = combine(total.crc32, part.crc32, length, CRC32)
        return total

    def _run_front(self) -> None:
        with self.lock:
            if self.helping:
                return
            self.helping = True
        run: Optional[list] = None
        after = -1  # the piece that would extend the current run
        try:
            while True:
                with self.lock:
                    if self.front >= self.back:
                        return
                    i = self.order[self.front]
                    self.front += 1
                if run is None or i != after:
                    run = self.runs[i] = [Copied(), 0]
                self._sums(i, run[0])
                run[1] += self.windows[i][1]
                after = i + 1
        except (EOFError, OSError, ValueError) as exc:
            self.error = _truncated(self.region, str(exc))
        except BaseException as exc:  # handed to the main thread
            self.error = exc
        finally:
            self.done.set()

    def _sums(self, i: int, into: Copied) -> Copied:
        """Checksum piece ``i``, continuing the sums in ``into``.

        Read with pread into a buffer that stays in the CPU cache rather than mapped: no page
        tables to build and tear down (faster per conversion; docs/performance.md), and a
        file that shrinks meanwhile gives a short read, not a SIGBUS.
        """
        start, length = self.windows[i]
        buf = _thread_buffer()
        crc_c = checksums.crc32c if self.want_crc32c else None
        pos, end = self.region.offset + start, self.region.offset + start + length
        while pos < end:
            n = os.preadv(self.region.fd, [buf[:min(len(buf), end - pos)]], pos)
            if n == 0:
                raise EOFError(f"{end - pos} bytes missing at offset {pos}")
            view = buf[:n]
            if crc_c is not None:
                into.crc32c = crc_c(view, into.crc32c)
            if self.want_crc32:
                into.crc32 = checksums.crc32(view, into.crc32)
            pos += n
        return into


_local = threading.local()


def _thread_buffer() -> memoryview:
    """A cache-sized buffer per thread (each checksumming thread reads into its own)."""
    buf = getattr(_local, "buffer", None)
    if buf is None:
        buf = _local.buffer = memoryview(bytearray(_BUFFER))
    return buf


def _truncated(region: FileRegion, detail: str) -> Exception:
    what = f"data file is truncated ({detail})"
    return region.corrupt(what) if region.corrupt else EOFError(what)


# errno values meaning "this kernel or file-system pair cannot do that copy": fall back.
_UNSUPPORTED = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF,
                getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


def _kernel_copy(region: FileRegion, dst: int, progress: Progress) -> None:
    """Copy the region to ``dst``'s current position, in WINDOW-sized calls.

    The kernel copies page-cache pages whole only when source and destination offsets
    share their position within a page; otherwise it splices piece by piece, which is
    slower than copying through a small buffer. So a misaligned region goes through a
    buffer that stays in the CPU cache.

    A region that starts inside a folio (``torch.save`` aligns storages to 64 bytes only)
    is copied in steps, to the source's next 64 KiB boundary, then to its next PLACEMENT
    boundary, so that the long calls start on one: faster than going straight to a
    PLACEMENT boundary, and than one call for the whole region (docs/performance.md).
    """
    aligned = (region.offset - os.lseek(dst, 0, os.SEEK_CUR)) % _PAGE == 0
    methods = [m for m, name in ((_copy_file_range, "copy_file_range"), (_sendfile, "sendfile"))
               if aligned and hasattr(os, name)] + [_buffered_copy]
    done = 0
    while done < region.size:
        pos = region.offset + done
        count = min((-pos) % _STEP or (-pos) % PLACEMENT or WINDOW, region.size - done)
        try:
            n = methods[0](region.fd, dst, region.offset + done, count)
        except OSError as exc:
            # A failed call copied nothing: retry the same bytes with the next method.
            if exc.errno not in _UNSUPPORTED or len(methods) == 1:
                raise
            methods.pop(0)
            continue
        if n == 0:
            raise _truncated(region, f"{region.size - done} bytes missing at offset "
                                     f"{region.offset + done}")
        done += n
        if progress:
            progress(n)


#: The first boundary a copy of a region that starts inside a folio steps to (see _kernel_copy).
_STEP = 64 << 10

#: Buffer of the user-space copy: fits the CPU's L2 cache, so each byte is read from and
#: written to the page cache once while the buffer itself stays hot (smaller and larger
#: buffers were slower; docs/performance.md).
_BUFFER = 256 << 10


def _buffered_copy(src: int, dst: int, offset: int, count: int) -> int:
    """pread/write through a small buffer; returns the bytes copied (fewer only at EOF)."""
    buf = memoryview(bytearray(min(_BUFFER, count)))
    done = 0
    while done < count:
        n = os.preadv(src, [buf[:min(len(buf), count - done)]], offset + done)
        if n == 0:
            break
        view = buf[:n]
        while view:
            view = view[os.write(dst, view):]
        done += n
    return done


def _copy_file_range(src: int, dst: int, offset: int, count: int) -> int:
    return os.copy_file_range(src, dst, count, offset)


def _sendfile(src: int, dst: int, offset: int, count: int) -> int:
    return os.sendfile(dst, src, offset, count)
