"""Checks that make an HDF5 file safe to read, run before any tensor is listed.

HDF5 can make a small file reach outside itself or claim far more data than it holds:

- external links and external raw-data storage read other files (``/etc/...``) and
  virtual datasets assemble data from other files: all refused, never followed;
- a dataset's shape can claim terabytes that are not stored (unwritten chunks read back as
  the fill value), so a 2 KB file would make a conversion write terabytes: a dataset must
  not claim more than its stored bytes can hold (at most :data:`MAX_RATIO` times them when
  compressed; deflate cannot exceed 1032:1) plus :data:`SLACK`.

h5py raises OSError, RuntimeError, KeyError, ValueError... for damaged files:
:func:`h5_errors` turns them into CorruptCheckpointError naming the file.

libhdf5 itself trusts one size field: reading a variable-length string, it allocates the
length the element claims (up to 4 GiB) before finding that the heap holds less. Fuzzing
found 21 KB files that made it take 1.8 GB. When a file holds variable-length data (or
attributes, which may be), :func:`probe_variable_length` has a forked child read all of it
under an address-space cap first; libhdf5 parses the same bytes the same way, so what the
child read within the cap the reader reads within it too, and a claim beyond it is refused
as a damaged file. The cap applies to the child only: nothing process-wide is changed.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, Optional

from ...errors import CkconvError, CorruptCheckpointError, UnsupportedError

MAX_RATIO = 1100
SLACK = 1 << 20
MAX_LINKS = 1_000_000  # a hostile file must not keep the scan busy forever


@contextlib.contextmanager
def h5_errors(path: str, what: str = "") -> Iterator[None]:
    """Translate the HDF5 library's exceptions for a damaged file into ckconv's."""
    try:
        yield
    except CkconvError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError,
            OverflowError, UnicodeDecodeError, AttributeError, MemoryError) as exc:
        where = f" ({what})" if what else ""
        raise CorruptCheckpointError(f"{path}: damaged HDF5 file{where}: "
                                     f"{type(exc).__name__}: {exc}") from None


#: Seconds the variable-length probe may take before the file is refused.
PROBE_SECONDS = 120


def probe_variable_length(path: str, handle: Any, size: int) -> None:
    """Read every variable-length attribute and dataset of ``path`` in a forked child whose
    address space is capped at 256 MiB + 16 x the file; CorruptCheckpointError if the child
    fails (libhdf5 reports a refused allocation like any other damage), crashes or hangs.
    A sound file reads within the cap. The child reads through ``handle`` (the open h5py
    file it inherits, which may be a member of an archive of ``size`` bytes). Elsewhere
    than Linux this is skipped: the file is then read unguarded."""
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return
    cap = (256 << 20) + 16 * size
    import warnings

    read_end, write_end = os.pipe()
    with warnings.catch_warnings():  # fork beside other threads: the child only reads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: read, report on the pipe, never return
        try:
            os.close(read_end)
            os.write(write_end, _probe_child(handle, cap).encode("utf-8", "replace")[:4000])
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        report = _read_report(read_end, pid)
    finally:
        os.close(read_end)
    if report:
        raise CorruptCheckpointError(f"{path}: damaged HDF5 file: {report}")


def _read_report(fd: int, pid: int) -> str:
    """The child's report ("" when all was read); waits at most PROBE_SECONDS."""
    import select

    chunks: list[bytes] = []
    deadline = time.monotonic() + PROBE_SECONDS
    while True:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return "reading its variable-length data did not finish"
        data = os.read(fd, 4096)
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
        return "reading its variable-length data crashed the HDF5 library"
    return b"".join(chunks).decode("utf-8", "replace")


def _probe_child(handle: Any, cap: int) -> str:
    """"" when every variable-length value was read within the cap, else what failed."""
    import resource

    import h5py
    from h5py import h5a, h5d, h5g, h5o, h5t

    with open("/proc/self/statm") as f:
        used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = used + cap
    if (hard == resource.RLIM_INFINITY or hard >= limit) and (
            soft == resource.RLIM_INFINITY or soft > limit):
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))

    def variable(tid: Any) -> bool:
        cls = tid.get_class()
        if cls == h5t.STRING:
            return bool(tid.is_variable_str())
        return cls in (h5t.VLEN, h5t.COMPOUND, h5t.ARRAY)  # may nest variable-length members

    class Parent:  # what h5py's AttributeManager needs of an object: its id
        def __init__(self, oid: Any):
            self.id = oid

    def read_attrs(oid: Any) -> None:
        for i in range(h5o.get_info(oid).num_attrs):
            aid = h5a.open(oid, index=i)
            if variable(aid.get_type()):
                h5py.AttributeManager(Parent(oid))[aid.get_name()]

    try:
        seen: set[int] = set()

        def walk(gid: Any) -> None:
            for raw_name, kind in list_links(gid, MAX_LINKS):
                if kind != 0:  # hard links only (the scan refused the rest)
                    continue
                oid = h5o.open(gid, raw_name)
                addr = h5o.get_info(oid).addr
                if addr in seen:
                    continue
                seen.add(addr)
                read_attrs(oid)
                if isinstance(oid, h5g.GroupID):
                    walk(oid)
                elif isinstance(oid, h5d.DatasetID) and variable(oid.get_type()):
                    h5py.Dataset(oid)[()]

        root = root_group(handle)
        read_attrs(root)
        walk(root)
    except MemoryError:
        return "its variable-length data claims more memory than a file of its size can hold"
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        return f"{type(exc).__name__}: {exc}"
    return ""


def needs_probe(oid: Any) -> bool:
    """Whether an object may hold variable-length data: a variable-length dataset, or
    attributes (which are read later, by name)."""
    from h5py import h5d, h5o, h5t

    if h5o.get_info(oid).num_attrs:
        return True
    if isinstance(oid, h5d.DatasetID):
        tid = oid.get_type()
        cls = tid.get_class()
        return cls in (h5t.VLEN, h5t.COMPOUND, h5t.ARRAY) or (
            cls == h5t.STRING and bool(tid.is_variable_str()))
    return False


def scan(handle: Any, path: str, region: Optional[tuple[int, int]] = None) -> bool:
    """Refuse links and storage outside the file and datasets that claim unstored data;
    whether the file may hold variable-length data (see :func:`probe_variable_length`).

    ``region`` (offset, size): the HDF5 file is that part of ``path`` (a ``.keras``
    archive's stored member); addresses count from its start.

    Walks with h5py's low-level calls: links are listed with their types and objects opened
    by id, without h5py's Group and Dataset objects, which look every name up again and
    make the walk of a large file much slower (docs/performance.md).
    """
    from h5py import h5d, h5g, h5l, h5o

    raw_data: list[tuple[int, int]] = []  # contiguous datasets' bytes: no heap lives there
    seen: set[int] = set()
    probe = [False]
    budget = [MAX_LINKS]
    file_size = region[1] if region is not None else os.path.getsize(path)

    def walk(gid: Any, prefix: str) -> None:
        found = list_links(gid, budget[0])
        budget[0] -= len(found)
        if budget[0] < 0:
            raise UnsupportedError(f"{path}: more than {MAX_LINKS} HDF5 links")
        for raw_name, kind in found:
            name = f"{prefix}/{raw_name.decode('utf-8', 'backslashreplace')}"
            if kind == h5l.TYPE_EXTERNAL:
                target_file, target = gid.links.get_val(raw_name)
                raise UnsupportedError(
                    f"{path}: {name} is an external link to {os.fsdecode(target_file)}:"
                    f"{os.fsdecode(target)}; ckconv never follows links out of the file (copy "
                    "the data in, e.g. with h5copy)")
            if kind == h5l.TYPE_SOFT:
                continue  # points at a path of this file, which the walk reaches by itself
            if kind != h5l.TYPE_HARD:
                raise CorruptCheckpointError(f"{path}: damaged HDF5 file: {name} is a link of "
                                             f"unknown type {kind}")
            oid = _open_object(gid, raw_name, name, path)
            addr = h5o.get_info(oid).addr
            if addr in seen:  # hard links may form cycles
                continue
            seen.add(addr)
            probe[0] = probe[0] or needs_probe(oid)
            if isinstance(oid, h5g.GroupID):
                walk(oid, name)
            elif isinstance(oid, h5d.DatasetID):
                check_dataset(oid, name, path)
                offset = oid.get_offset()
                if offset is not None:
                    end = offset + oid.get_storage_size()
                    if end > file_size:  # ckconv maps these bytes itself: they must exist
                        raise CorruptCheckpointError(
                            f"{path}: dataset {name} stores its data at bytes {offset:,} to "
                            f"{end:,}, past the end of the file ({file_size:,} bytes)")
                    raw_data.append((offset, end))

    with h5_errors(path, "walking its groups"):
        root = root_group(handle)
        probe[0] = needs_probe(root)
        walk(root, "")
    check_global_heaps(path, raw_data, region)
    return probe[0]


def root_group(handle: Any) -> Any:
    """The root group's GroupID (an h5py File's own id is the file's, whose creation
    properties do not say whether the root tracks creation order)."""
    from h5py import h5o

    return h5o.open(handle.id, b"/")


def list_links(gid: Any, room: int) -> list[tuple[bytes, int]]:
    """(name, link type) of the links of group ``gid`` (a GroupID) in h5py's order:
    creation order where the group tracks it, else by name. Stops after ``room + 1``."""
    from h5py import h5, h5p

    found: list[tuple[bytes, int]] = []

    def add(name: bytes, info: Any) -> Optional[int]:
        found.append((name, info.type))
        return 1 if len(found) > room else None  # anything but None stops the iteration

    tracked = gid.get_create_plist().get_link_creation_order() & h5p.CRT_ORDER_TRACKED
    gid.links.iterate(add, info=True, idx_type=h5.INDEX_CRT_ORDER if tracked else h5.INDEX_NAME)
    return found


def _open_object(gid: Any, raw_name: bytes, name: str, path: str) -> Any:
    """The object a hard link names; libhdf5 refuses damaged ones (e.g. data past the end)
    with KeyError."""
    from h5py import h5o

    try:
        return h5o.open(gid, raw_name)
    except KeyError as exc:
        raise CorruptCheckpointError(f"{path}: damaged HDF5 file: {name} cannot be opened "
                                     f"({exc.args[0] if exc.args else exc})") from None


def check_global_heaps(path: str, skip: list[tuple[int, int]],
                       region: Optional[tuple[int, int]] = None) -> None:
    """Walk every global heap collection the way libhdf5 will, before it does.

    libhdf5 1.14 loops forever on a collection whose object sizes make its cursor wrap
    around (found by fuzzing: a 17 KB file hung ckconv). Collections hold the bytes of
    variable-length strings, Keras' attributes among them. They are found by their
    signature outside the contiguous datasets' raw data; a match that is not followed by a
    plausible header (version 1, at least HDF5's minimum 4096 bytes) is not a collection.

    The file is read with pread in windows, never mapped whole: mapped pages count as
    resident memory, and mapping a 1 GiB checkpoint made every read peak at 1 GiB. The raw
    data ranges are not read at all, so a contiguous checkpoint costs a few metadata reads.
    ``region`` (offset, size) limits the walk to an HDF5 file stored inside ``path``.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        data = _FileBytes(fd, *(region or (0, None)))
        if data.size < 64:
            return
        width = _length_size(data)
        if width is None:
            return
        for pos in _signatures(data, b"GCOL", _merged(skip, data.size)):
            _check_collection(data, pos, width, path)
    finally:
        os.close(fd)


#: Bytes read at a time while looking for global heaps (one buffer, reused).
_SCAN_WINDOW = 4 << 20


class _FileBytes:
    """Random access to a file's bytes through one cached pread window."""

    def __init__(self, fd: int, origin: int = 0, size: Optional[int] = None):
        self.fd = fd
        self.origin = origin  # where the HDF5 file starts in fd (inside an archive)
        self.size = os.fstat(fd).st_size - origin if size is None else size
        self._base = 0
        self._buf = b""

    def pread(self, n: int, pos: int) -> bytes:
        """Up to ``n`` bytes at ``pos`` of the HDF5 file, never past its end."""
        return os.pread(self.fd, max(0, min(n, self.size - pos)), self.origin + pos)

    def get(self, pos: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``pos`` (fewer at the end of the file)."""
        n = max(0, min(n, self.size - pos))
        if pos < self._base or pos + n > self._base + len(self._buf):
            self._buf = self.pread(max(n, _SCAN_WINDOW), pos)
            self._base = pos
        return self._buf[pos - self._base:pos - self._base + n]


def _merged(ranges: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """Sorted, non-overlapping ranges clipped to the file (hostile files may overlap them)."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted((max(0, lo), min(hi, size)) for lo, hi in ranges):
        if lo >= hi:
            continue
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _signatures(data: _FileBytes, sig: bytes, skip: list[tuple[int, int]]) -> Iterator[int]:
    """Offsets of ``sig`` that start outside ``skip``, in file order.

    A match may run into a skipped range, so each gap is read ``len(sig) - 1`` bytes past
    its end; windows overlap by as much so no match is cut in two.
    """
    gaps, pos = [], 0
    for lo, hi in skip:
        gaps.append((pos, lo))
        pos = hi
    gaps.append((pos, data.size))
    tail = len(sig) - 1
    for lo, hi in gaps:
        for start in range(lo, hi, _SCAN_WINDOW):
            stop = min(start + _SCAN_WINDOW, hi)
            window = data.pread(stop - start + tail, start)
            at = window.find(sig)
            while at != -1 and start + at < stop:
                yield start + at
                at = window.find(sig, at + 1)


def _length_size(data: _FileBytes) -> Any:
    """The superblock's "size of lengths" (at 0, 512, 1024... after a user block)."""
    base = 0
    while base + 16 <= data.size:
        head = data.get(base, 16)
        if head[:8] == b"\x89HDF\r\n\x1a\n":
            version = head[8]
            width = head[14] if version < 2 else head[10]
            return width if width in (2, 4, 8) else None
        base = 512 if base == 0 else base * 2
    return None


def _check_collection(data: _FileBytes, start: int, width: int, path: str) -> None:
    header = 8 + width
    head = data.get(start, header)
    if len(head) < header or head[4] != 1 or head[5:8] != b"\0\0\0":
        return
    size = int.from_bytes(head[8:header], "little")
    if size < 4096:
        return  # libhdf5 never writes a smaller collection: these bytes are something else
    end = start + size
    if end > data.size:
        raise CorruptCheckpointError(f"{path}: global heap at offset {start} claims {size:,} "
                                     f"bytes, past the end of the file")
    obj_header = 8 + width
    p = start + header
    while p + obj_header <= end:
        obj = data.get(p, obj_header)
        index = int.from_bytes(obj[0:2], "little")
        length = int.from_bytes(obj[8:obj_header], "little")
        need = obj_header + (length + 7) // 8 * 8 if index else length
        if need <= 0 or p + need > end:
            raise CorruptCheckpointError(f"{path}: damaged global heap at offset {start} (object "
                                         f"{index} of {length:,} bytes at offset {p})")
        p += need


def check_dataset(dsid: Any, name: str, path: str) -> None:
    """Refuse a dataset (an h5py DatasetID) stored outside the file or claiming more data
    than it stores."""
    from h5py import h5d

    plist = dsid.get_create_plist()
    externals = plist.get_external_count()
    if externals > 0:
        files = ", ".join(os.fsdecode(plist.get_external(i)[0]) for i in range(externals))
        raise UnsupportedError(f"{path}: dataset {name} keeps its data in external file(s) "
                               f"{files[:200]}; ckconv reads only data stored inside the file")
    layout = plist.get_layout()
    if layout == h5d.VIRTUAL:
        raise UnsupportedError(f"{path}: dataset {name} is a virtual dataset (data mapped from "
                               "other files); ckconv reads only data stored inside the file")
    shape = dsid.shape
    if shape is None:
        return
    itemsize = dsid.get_type().get_size()
    claimed = math.prod(shape) * itemsize
    stored = dsid.get_storage_size()
    bound = stored * (MAX_RATIO if plist.get_nfilters() else 1) + SLACK
    if claimed > bound:
        raise CorruptCheckpointError(
            f"{path}: dataset {name} has an absurd shape {list(shape)} ({claimed:,} bytes) "
            f"for the {stored:,} bytes the file stores for it")
    chunks = plist.get_chunk() if layout == h5d.CHUNKED else None
    if chunks is not None and math.prod(chunks) * itemsize > max(claimed, SLACK):
        raise CorruptCheckpointError(f"{path}: dataset {name} has chunks {list(chunks)} "
                                     f"larger than its shape {list(shape)}")
