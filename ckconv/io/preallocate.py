"""Allocating an output's disk blocks before its bytes are copied in (Linux ``fallocate``).

Writing into blocks allocated in one call is faster than having the file system allocate
them page by page as the copy goes (the kernel copy itself is quicker, and the later
write-back is no slower; docs/performance.md has the measurements). A full disk or quota
then also shows at once, before the tensor's bytes are copied.

The system call is reached through ctypes, not ``os.posix_fallocate``: where a file system
cannot allocate (NFSv3, older ZFS, some FUSE mounts), glibc's posix_fallocate falls back
to writing a zero into every block, which would double the writes. The raw call just
fails there, and the copy goes ahead as it would have anyway.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any, Optional

#: fallocate(2) mode: allocate without changing the file's size, so a file being appended
#: to still grows only as bytes are written.
_KEEP_SIZE = 0x01

#: The file system says the space is not there: the writes would fail the same way later.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)})

_UNRESOLVED: Any = object()
_call: Any = _UNRESOLVED  # the C function, or None where there is none


def _resolve() -> Optional[Any]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
    except ImportError:  # a Python built without _ctypes
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    # fallocate64 takes 64-bit offsets everywhere; plain fallocate only on 64-bit systems.
    func = getattr(libc, "fallocate64", None)
    if func is None and ctypes.sizeof(ctypes.c_void_p) == 8:
        func = getattr(libc, "fallocate", None)
    if func is None:
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    func.restype = ctypes.c_int
    return func


def reserve(fd: int, offset: int, length: int) -> bool:
    """Allocate the blocks of bytes ``offset`` to ``offset + length`` of ``fd``, keeping the
    file's size. Returns whether they were allocated: elsewhere than Linux, or where the file
    system cannot, nothing happens.

    Raises:
        OSError: ENOSPC, EDQUOT or EFBIG: the file system has no room for these bytes.
    """
    global _call
    if length <= 0:
        return False
    if _call is _UNRESOLVED:
        _call = _resolve()
    if _call is None:
        return False
    if _call(fd, _KEEP_SIZE, offset, length) == 0:
        return True
    import ctypes

    code = ctypes.get_errno()
    if code in _NO_ROOM:
        raise OSError(code, os.strerror(code))
    return False  # EOPNOTSUPP, ENOSYS, EINVAL, EBADF (a pipe), EPERM (append-only)...
