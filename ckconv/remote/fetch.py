"""Ranged downloads into local files: several requests in flight, bounded memory, retries.

A range is split into blocks; a few worker threads each fetch one block with a ranged
request and write it at its offset in the local file (``os.pwrite``), so at most
``workers x BLOCK`` bytes are in memory whatever the file size. A block whose transfer fails
(connection dropped, timeout, 5xx) is requested again, from its start, after a pause that
doubles each time; a missing object or a refusal is not retried.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Optional

from .fs import translate

#: Bytes per ranged request: large enough that per-request latency stays small against the
#: transfer, small enough that WORKERS of them in memory stay far below the memory budget.
BLOCK = 16 << 20
WORKERS = 4
ATTEMPTS = 5
FIRST_PAUSE = 0.2


@dataclass
class Counter:
    """Bytes and requests fetched by this process (``--debug`` reports them)."""

    bytes: int = 0
    requests: int = 0
    retries: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, nbytes: int) -> None:
        with self._lock:
            self.bytes += nbytes
            self.requests += 1


FETCHED = Counter()

Progress = Optional[Callable[[int], None]]


def read_range(fs: Any, path: str, url: str, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of the remote file, retried on transient failures."""
    pause = FIRST_PAUSE
    for attempt in range(ATTEMPTS):
        try:
            data = fs.cat_file(path, start=start, end=end)
        except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
            raise translate(exc, url, f"reading bytes {start}-{end}") from None
        except Exception as exc:  # fsspec drivers raise their own transport errors
            if _refusal(exc) or attempt == ATTEMPTS - 1:
                raise translate(exc, url, f"reading bytes {start}-{end}") from None
            FETCHED.retries += 1
            time.sleep(pause)
            pause *= 2
            continue
        if len(data) != end - start:
            if attempt == ATTEMPTS - 1:
                raise translate(EOFError(f"got {len(data)} of {end - start} bytes"), url,
                                f"reading bytes {start}-{end}")
            FETCHED.retries += 1
            continue
        FETCHED.add(len(data))
        return data
    raise AssertionError("unreachable")


def _refusal(exc: BaseException) -> bool:
    from .fs import _status

    status = _status(exc)
    return status is not None and 400 <= status < 500 and status not in (408, 429)


def fetch_into(fs: Any, path: str, url: str, fd: int, start: int, end: int,
               progress: Progress = None, workers: int = WORKERS) -> None:
    """Write bytes ``[start, end)`` of the remote file at the same offsets of local ``fd``."""
    if end <= start:
        return
    blocks = [(s, min(s + BLOCK, end)) for s in range(start, end, BLOCK)]

    def one(block: tuple[int, int]) -> None:
        data = read_range(fs, path, url, *block)
        view = memoryview(data)
        offset = block[0]
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n
        if progress:
            progress(len(data))

    if len(blocks) == 1:
        one(blocks[0])
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(blocks)),
                            thread_name_prefix="ckconv-fetch") as pool:
        futures = [pool.submit(one, b) for b in blocks]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for f in pending:
            f.cancel()
        for f in futures:
            if f.done() and not f.cancelled() and f.exception() is not None:
                raise f.exception()  # type: ignore[misc]
