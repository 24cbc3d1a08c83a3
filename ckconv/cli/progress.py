"""A progress bar on stderr that costs nothing when it is not shown.

It appears only on a terminal and only once a conversion has run for a second; updates
redraw at most ten times a second, so per-chunk calls are one clock read.
"""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


class ProgressBar:
    def __init__(self, total: int, enabled: bool = True, stream: Optional[TextIO] = None,
                 delay: float = 1.0):
        self.total = max(total, 1)
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.done = 0
        self._start = time.monotonic()
        self._next_draw = self._start + delay
        self._drawn = False

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now >= self._next_draw:
            self._next_draw = now + 0.1
            self._draw(now)

    def _draw(self, now: float) -> None:
        frac = min(self.done / self.total, 1.0)
        width = 30
        filled = int(frac * width)
        rate = self.done / max(now - self._start, 1e-9) / 2**20
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {frac:6.1%} "
                          f"{self.done / 2**20:,.0f}/{self.total / 2**20:,.0f} MiB {rate:,.0f} MiB/s")
        self.stream.flush()
        self._drawn = True

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
