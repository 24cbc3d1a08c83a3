"""All-or-nothing output: files are written under temporary names and renamed at the end.

A conversion that fails or is interrupted leaves neither the destination nor a temporary
file behind. For multi-file outputs (a TF bundle, a sharded safetensors model) the caller
registers files in commit order, e.g. data shards first and the index last, so that the
file that makes a checkpoint visible appears only after everything it points to.
"""

from __future__ import annotations

import os
import secrets
from types import TracebackType
from typing import Optional

TEMP_MARKER = ".ckconv-tmp-"


def temp_name(final: str) -> str:
    head, tail = os.path.split(os.path.abspath(final))
    return os.path.join(head, f".{tail}{TEMP_MARKER}{os.getpid()}-{secrets.token_hex(4)}")


class AtomicFiles:
    """Context manager handing out temporary paths and renaming them on success."""

    def __init__(self) -> None:
        self._pending: list[tuple[str, str]] = []

    def path(self, final: str) -> str:
        tmp = temp_name(final)
        self._pending.append((tmp, os.path.abspath(final)))
        return tmp

    def commit(self) -> None:
        for tmp, final in self._pending:
            os.replace(tmp, final)
        self._pending = []

    def abort(self) -> None:
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
