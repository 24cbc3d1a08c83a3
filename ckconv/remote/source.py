"""A remote checkpoint mirrored into a local directory, fetched only as far as needed.

:func:`stage` lists the remote directory that holds the checkpoint and creates every file in
it locally as a sparse placeholder of the same size (no disk used, no bytes fetched). Then
it fetches what a reader needs to *list* the tensors: small metadata files whole (the TF
``checkpoint`` state, ``.index`` tables, ``.meta`` graphs, JSON shard indexes), and of each
weight file its header only (a safetensors header; a zip's directory and pickle). The normal
local reader then opens the mirror. :meth:`Staged.fetch_files` fills in the rest of the files
a map reads from before any tensor byte is read. Files whose layout ckconv cannot bound
(HDF5, legacy pickles) are fetched whole up front.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Optional

from ..errors import CkconvError, RemoteError
from .fetch import fetch_into
from .fs import filesystem, translate

#: Files fetched whole when they are part of a staged checkpoint (all small).
_WHOLE = re.compile(r"(^checkpoint$|\.index$|\.meta$|\.json$)")
#: Files whose header is fetched (their content decides what they are).
_WEIGHTS = re.compile(r"\.(safetensors|pt|pth|bin|ckpt|h5|hdf5|keras)$", re.IGNORECASE)
#: The first request for a weight file: tells its format by its magic bytes, and holds the
#: header of a small safetensors file.
HEAD = 4 << 10
#: How much of a zip's end is fetched to find its directory, tried in turn.
ZIP_TAILS = (16 << 10, 1 << 20, 16 << 20)
_STEP = re.compile(r"@(\d+)$")
#: Never mirror a listing larger than this (a bucket root by mistake).
MAX_LISTING = 100_000


def temp_root() -> str:
    return os.environ.get("CKCONV_TMPDIR") or tempfile.gettempdir()


class Staged:
    """The local mirror of one remote checkpoint; :meth:`close` removes it."""

    def __init__(self, url: str, fs: Any, remote_dir: str, directory: str, local: str):
        self.url = url
        self.fs = fs
        self.remote_dir = remote_dir
        self.directory = directory
        #: the local path that stands for ``url`` (same relative name, same @step)
        self.local = local
        #: local path -> (remote path, size, fetched [start, end) ranges)
        self.files: dict[str, tuple[str, int, list[tuple[int, int]]]] = {}
        #: the mirrored files that belong to the checkpoint (headers fetched at staging)
        self.relevant: list[str] = []
        #: mirrored files with only their first bytes fetched that a reader may need whole
        self.unbounded: list[str] = []
        self._lock = threading.Lock()

    # -- names -------------------------------------------------------------------------
    def url_of(self, local: str) -> str:
        rel = os.path.relpath(os.path.abspath(local), self.directory)
        return self.remote_url + "/" + rel.replace(os.sep, "/")

    @property
    def remote_url(self) -> str:
        """The URL of the mirrored directory (no trailing slash)."""
        return self.remote_dir.rstrip("/")

    def to_urls(self, text: str) -> str:
        """Replace mirror paths in a message with the URLs they stand for."""
        return text.replace(self.directory, self.remote_url)

    # -- fetching ------------------------------------------------------------------------
    def fetch(self, local: str, start: int, end: int) -> None:
        """Make bytes ``[start, end)`` of the mirrored file real (only the missing parts)."""
        remote, size, have = self.files[local]
        end = min(end, size)
        for lo, hi in _gaps(have, start, end):
            fd = os.open(local, os.O_WRONLY)
            try:
                fetch_into(self.fs, remote, self.url_of(local), fd, lo, hi)
            finally:
                os.close(fd)
            with self._lock:
                have.append((lo, hi))

    def fetch_whole(self, local: str) -> None:
        self.fetch(local, 0, self.files[local][1])

    def fetch_files(self, paths: Iterable[str]) -> None:
        """Fetch in full every mirrored file among ``paths`` (a map's source_files)."""
        for p in paths:
            p = os.path.abspath(p)
            if p in self.files:
                self.fetch_whole(p)

    def read(self, local: str, start: int, end: int) -> bytes:
        self.fetch(local, start, end)
        with open(local, "rb") as f:
            f.seek(start)
            return f.read(end - start)

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _gaps(have: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    gaps = []
    pos = start
    for lo, hi in sorted(have):
        if hi <= pos:
            continue
        if lo >= end:
            break
        if lo > pos:
            gaps.append((pos, lo))
        pos = max(pos, hi)
    if pos < end:
        gaps.append((pos, end))
    return gaps


def stage(url: str, storage_options: Optional[Mapping[str, Any]] = None) -> Staged:
    """Mirror the remote checkpoint ``url`` (file, TF prefix, directory, ``DIR@STEP``)."""
    m = _STEP.search(url)
    step = m.group(0) if m and not _is_hub_revision(url, m.start()) else ""
    base = url[: len(url) - len(step)] if step else url
    fs, path = filesystem(base, storage_options)
    path = path.rstrip("/")
    kind = _kind(fs, path, base)
    remote_dir = path if kind == "directory" else _parent(path)
    name = "" if kind == "directory" else path[len(remote_dir):].lstrip("/")
    directory = tempfile.mkdtemp(prefix="ckconv-remote-", dir=temp_root())
    local = (os.path.join(directory, name) if name else directory) + step
    staged = Staged(base, fs, _with_protocol(base, remote_dir), directory, local)
    try:
        try:
            listing = _listing(fs, remote_dir, base)
        except RemoteError:
            if kind != "file":
                raise
            # A file whose directory cannot be listed (an http:// server without an index
            # page, a bucket that grants reads but not listings): mirror the file alone.
            listing = {name: (path, _size(fs, path, base))}
        for entry_name, (remote, size) in listing.items():
            lp = os.path.join(directory, entry_name)
            with open(lp, "wb") as f:
                f.truncate(size)  # sparse: takes no disk until fetched
            staged.files[lp] = (remote, size, [])
        staged.relevant = _relevant(staged, name)
        for lp in staged.relevant:
            # In a directory, a file without a bounded header (HDF5) is fetched whole only
            # if the reader turns out to need it (Staged.unbounded, see remote/api.py): a
            # Hub repository holds tf_model.h5 beside the model.safetensors ckconv reads.
            if not _prefetch(staged, lp, whole_if_unbounded=bool(name)):
                staged.unbounded.append(lp)
    except BaseException:
        staged.close()
        raise
    return staged


def _is_hub_revision(url: str, at: int) -> bool:
    """``hf://user/repo@123`` names a revision of the repository, not a TF step."""
    if not url.lower().startswith("hf://"):
        return False
    parts = url[len("hf://"):at].split("/")
    if parts and parts[0] in ("datasets", "spaces"):
        parts = parts[1:]
    return len(parts) <= 2


def _size(fs: Any, path: str, url: str) -> int:
    try:
        return int(fs.size(path))
    except Exception as exc:
        raise translate(exc, url, "asking its size") from None


def _with_protocol(url: str, remote_dir: str) -> str:
    if "://" in remote_dir:  # http(s) file systems keep whole URLs as paths
        return remote_dir
    proto = url.split("://", 1)[0]
    return f"{proto}://{remote_dir.lstrip('/') if proto == 'memory' else remote_dir}"


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _kind(fs: Any, path: str, url: str) -> str:
    """"file", "directory" or "prefix" (a TF prefix or Saver path: no object of that name)."""
    try:
        # One info() request (HEAD on http://: isfile there is a GET of the whole file,
        # isdir a download of the page to look for links).
        info = fs.info(path)
    except FileNotFoundError:
        return "prefix"
    except Exception as exc:  # a driver's own error type (network, auth)
        raise translate(exc, url, "looking it up") from None
    if info.get("type") == "directory":
        return "directory"
    if info.get("type") == "file":
        return "file"
    return "prefix"


def _listing(fs: Any, remote_dir: str, url: str) -> dict[str, tuple[str, int]]:
    try:
        fs.invalidate_cache(remote_dir)  # s3fs/gcsfs cache listings: another writer may have run
        entries = fs.ls(remote_dir, detail=True)
    except FileNotFoundError as exc:
        raise translate(exc, url, "listing its directory") from None
    except Exception as exc:
        raise translate(exc, url, "listing its directory") from None
    if len(entries) > MAX_LISTING:
        raise RemoteError(f"{url}: its directory lists more than {MAX_LISTING} objects; give "
                          "the checkpoint's own directory")
    found = {}
    for e in entries:
        if e.get("type") != "file":
            continue
        remote = e["name"]
        base = remote.rstrip("/").rsplit("/", 1)[-1]
        if base and base != "." and "/" not in base:
            size = e.get("size")
            if size is None:  # http(s) listings are links without sizes: ask each file
                size = _size(fs, remote, url)
            found[base] = (remote, int(size))
    return found


def _relevant(staged: Staged, name: str) -> list[str]:
    """The mirrored files a reader of ``name`` ("" = the directory) may open."""
    out = []
    if name.endswith(".json"):
        name = ""  # a shard index: its shards are weight files beside it
    for lp in staged.files:
        base = os.path.basename(lp)
        if name:
            stem = name[: -len(".index")] if name.endswith(".index") else name
            stem = re.sub(r"\.data-\d+-of-\d+$", "", stem)
            if not (base == name or base.startswith(stem + ".") or base == "checkpoint"
                    or base.endswith(".json")):
                continue
        elif not (_WHOLE.search(base) or _WEIGHTS.search(base) or ".data-" in base):
            continue
        out.append(lp)
    return out


def _prefetch(staged: Staged, lp: str, whole_if_unbounded: bool = True) -> bool:
    """Fetch what a reader of ``lp`` needs to list its tensors; False if that is the whole
    file and ``whole_if_unbounded`` is off (only its first bytes were fetched)."""
    base = os.path.basename(lp)
    size = staged.files[lp][1]
    if ".data-" in base and not base.endswith(".json"):
        return True  # TF data files: nothing read until a tensor is
    if _WHOLE.search(base):
        staged.fetch_whole(lp)
        return True
    head = staged.read(lp, 0, min(size, HEAD))
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors: u64 header length, then JSON
        n = int.from_bytes(head[:8], "little")
        if 8 + n <= size:
            staged.fetch(lp, 0, 8 + n)
            return True
    if head.startswith(b"PK\x03\x04"):
        try:
            _prefetch_zip(staged, lp, size)
            return True
        except CkconvError:
            pass  # not a zip ckconv can bound: fetch it whole
    if head.startswith(b"\x89HDF") or head.startswith(b"PK") or head[:1] == b"\x80":
        if not whole_if_unbounded:
            return False
        staged.fetch_whole(lp)
    return True


def _prefetch_zip(staged: Staged, lp: str, size: int) -> None:
    """A torch zip: its directory (at the end) and every member that is not a storage."""
    from ..formats.pytorch import zip_archive

    fd = os.open(lp, os.O_RDONLY)
    try:
        for tail in ZIP_TAILS:
            staged.fetch(lp, max(0, size - tail), size)
            try:
                directory = zip_archive.read_directory(fd, lp)
                break
            except CkconvError:
                continue  # the directory is larger than this tail (or damaged)
        else:
            staged.fetch(lp, 0, size)
            return
        staged.fetch(lp, directory.data_limit, size)
        for m in directory.members.values():
            # The local header (30 bytes, the name, an extra field that torch uses to align
            # data to 64 bytes): the reader checks it for every member it will read. The
            # data of the members that are not tensor storages (data.pkl, version...) too.
            storage = "/data/" in m.name and not m.name.endswith("/data.pkl")
            end = m.header_offset + 30 + len(m.name) + 256 + (0 if storage else m.size)
            staged.fetch(lp, m.header_offset, min(directory.data_limit, end))
    finally:
        os.close(fd)
