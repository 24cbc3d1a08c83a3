"""All-or-nothing output: files are written under temporary names and renamed at the end.

A conversion that fails or is interrupted leaves neither the destination nor a temporary
file behind. For multi-file outputs (a TF bundle, a sharded safetensors model) the caller
registers files in commit order, e.g. data shards first and the index last, so that the
file that makes a checkpoint visible appears only after everything it points to.

Killed processes: SIGKILL (or a power cut) cannot run any cleanup, so a temporary file may
survive it. Temporary names are ``.<name>.ckconv-tmp-<pid>-<host>-<random>``: hidden, never
taken for a checkpoint by any reader, and removed by the next save to the same name once
process <pid> of this host is gone. Renames hold Ctrl-C/SIGTERM back until they are done.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import zlib
from collections.abc import Iterator
from types import TracebackType
from typing import Optional

TEMP_MARKER = ".ckconv-tmp-"


def _hostname() -> str:
    # os.uname avoids importing socket (and hashlib below): start-up time counts.
    return os.uname().nodename if hasattr(os, "uname") else os.environ.get("COMPUTERNAME", "")


#: Tells this machine's temporary files from those of another host sharing the directory.
_HOST = f"{zlib.crc32(_hostname().encode()) & 0xFFFFFF:06x}"
_DEFERRED = tuple(getattr(signal, s) for s in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, s))


def temp_name(final: str) -> str:
    head, tail = os.path.split(os.path.abspath(final))
    return os.path.join(head, f".{tail}{TEMP_MARKER}{os.getpid()}-{_HOST}-{os.urandom(4).hex()}")


def remove_stale(final: str, listing: Optional[list[str]] = None) -> list[str]:
    """Delete temporary files for ``final`` left by ckconv processes of this host that died.

    ``listing`` is the directory's content if the caller has it. Returns the paths removed.
    Only POSIX can tell whether a process is alive.
    """
    if os.name != "posix":
        return []
    head, tail = os.path.split(os.path.abspath(final))
    start = f".{tail}{TEMP_MARKER}"
    removed = []
    try:
        names = os.listdir(head) if listing is None else listing
    except OSError:
        return []
    for name in names:
        if not name.startswith(start):
            continue
        pid, _, rest = name[len(start):].partition("-")
        if not pid.isdigit() or not rest.startswith(_HOST + "-") or _alive(int(pid)):
            continue
        try:
            os.unlink(os.path.join(head, name))
            removed.append(os.path.join(head, name))
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: existence check only (POSIX)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: exists, owned by someone else
        return True
    return True


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C/SIGTERM/SIGHUP back during a critical section, then deliver them.

    Python-level handlers are swapped (not the thread's signal mask), which works even when
    torch or numpy threads exist; off the main thread nothing can be swapped or delivered.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    saved = {}
    for sig in _DEFERRED:
        handler = signal.getsignal(sig)
        if handler is None:  # installed outside Python: leave it alone
            continue
        saved[sig] = handler
        signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        if caught:
            signal.raise_signal(caught[0])  # now the usual handler runs (KeyboardInterrupt...)


class AtomicFiles:
    """Context manager handing out temporary paths and renaming them on success."""

    def __init__(self) -> None:
        self._pending: list[tuple[str, str]] = []
        self._listings: dict[str, list[str]] = {}  # one listdir per directory, not per shard

    def path(self, final: str) -> str:
        head = os.path.dirname(os.path.abspath(final))
        if head not in self._listings:
            try:
                self._listings[head] = [n for n in os.listdir(head) if TEMP_MARKER in n]
            except OSError:
                self._listings[head] = []
        remove_stale(final, self._listings[head])
        tmp = temp_name(final)
        self._pending.append((tmp, os.path.abspath(final)))
        return tmp

    def commit(self) -> None:
        with signals_deferred():
            if len(self._pending) > 1:
                # The last file (the index) makes the set visible. An older copy of it must go
                # before any data file is replaced: killed between two renames, it would
                # describe data that is no longer there. Killed now, no checkpoint is visible.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._pending[-1][1])
            for tmp, final in self._pending:
                os.replace(tmp, final)
            self._pending = []

    def abort(self) -> None:
        with signals_deferred():  # a second Ctrl-C must not interrupt the cleanup
            for tmp, _ in self._pending:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
            self._pending = []

    def __enter__(self) -> "AtomicFiles":
        return self

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()
