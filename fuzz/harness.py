"""Run one fuzz case under the rules every parser must keep.

1. Only :class:`ckconv.CkconvError` may escape (anything else is a bug: a crash the user
   would see as a traceback, or an AssertionError from a target's consistency check).
2. No case may take longer than :data:`TIME_LIMIT` seconds (a SIGALRM interrupts it).
3. No case may allocate more than :func:`memory_limit` bytes: the inputs are a few KB, so a
   bigger peak means some size field was trusted before being checked against the file.
   Three nets: every case's peak-RSS growth (native code included); a cap on the address
   space (Linux), so even an untouched multi-GB allocation fails; and, on every
   ``trace_every``-th case (tracemalloc costs 3-4x), Python/numpy allocations exactly.
"""

from __future__ import annotations

import faulthandler
import os
import resource
import signal
import sys
import time
import traceback
import tracemalloc
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ckconv.errors import CkconvError

TIME_LIMIT = 2.0
#: Allowance on top of the input size; real parsing of the fixtures peaks below 2 MB.
MEMORY_BASE = 64 << 20
MEMORY_PER_INPUT_BYTE = 64
RSS_LIMIT = 256 << 20
#: Address space the whole campaign may add: a bigger allocation, even one never touched,
#: fails with MemoryError, which is reported like any other escape.
ADDRESS_SPACE_LIMIT = 4 << 30
#: Seconds after which a case stuck where the alarm cannot reach it ends the process.
WATCHDOG = 60
FINDINGS = Path(__file__).resolve().parent / "findings"


class CaseTimeout(BaseException):
    """Raised by the alarm; a BaseException so that ``except Exception`` cannot swallow it."""


@dataclass
class Finding(Exception):
    kind: str  # "escape", "hang" or "memory"
    target: str
    detail: str
    data: bytes

    def __str__(self) -> str:
        head = self.data[:64].hex()
        return (f"[{self.kind}] fuzz target {self.target!r} on a {len(self.data)}-byte input "
                f"(starts {head}):\n{self.detail}")


def memory_limit(data: bytes) -> int:
    return MEMORY_BASE + MEMORY_PER_INPUT_BYTE * len(data)


def _max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _on_alarm(signum: int, frame: object) -> None:
    raise CaseTimeout()


def _cap_address_space(extra: int) -> Optional[tuple[int, int]]:
    """Lower the soft RLIMIT_AS to the current size + ``extra``; return the old limits."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * resource.getpagesize()
        old = resource.getrlimit(resource.RLIMIT_AS)
        cap = used + extra
        if old[0] != resource.RLIM_INFINITY and old[0] <= cap:
            return None
        if old[1] != resource.RLIM_INFINITY and old[1] < cap:
            return None
        resource.setrlimit(resource.RLIMIT_AS, (cap, old[1]))
        return old
    except (OSError, ValueError):
        return None


class Runner:
    """Runs cases of one target in a scratch directory, counting them."""

    def __init__(self, target: "object", work: Path, time_limit: float = TIME_LIMIT,
                 check_memory: bool = True, trace_every: int = 1):
        self.target = target
        self.work = work
        self.time_limit = time_limit
        self.check_memory = check_memory
        self.trace_every = max(1, trace_every)
        self.count = 0
        self.slowest = 0.0
        work.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> "Runner":
        name = self.target.name  # type: ignore[attr-defined]
        # A case stuck in C code (libhdf5 has infinite loops) never sees the alarm; the
        # watchdog thread of faulthandler does, and ends the process after WATCHDOG seconds,
        # leaving the input in <target>-<pid>-running, the stacks in <target>-<pid>-watchdog.txt.
        FINDINGS.mkdir(parents=True, exist_ok=True)
        self._running = FINDINGS / f"{name}-{os.getpid()}-running"  # pid: concurrent sessions
        self._watchdog_log = open(FINDINGS / f"{name}-{os.getpid()}-watchdog.txt", "w")
        self._armed_at = -1e9
        self._warm_up()
        self._old_handler = signal.signal(signal.SIGALRM, _on_alarm)
        self._old_as = _cap_address_space(ADDRESS_SPACE_LIMIT) if self.check_memory else None
        return self

    def __exit__(self, *exc: object) -> None:
        faulthandler.cancel_dump_traceback_later()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._old_handler)
        if self._old_as is not None:
            resource.setrlimit(resource.RLIMIT_AS, self._old_as)
        self._watchdog_log.close()
        for f in (self._running, Path(self._watchdog_log.name)):
            f.unlink(missing_ok=True)

    def _warm_up(self) -> None:
        # First calls import torch/h5py/protobuf lazily, which takes seconds: not a hang, and
        # an import cut short by the alarm would break every later case. So run a few seeds
        # untimed first (their verdicts come later, from the timed runs).
        for data in self.target.seeds()[:3]:  # type: ignore[attr-defined]
            self._arm_watchdog(data)
            try:
                self.target.run(data, self.work)  # type: ignore[attr-defined]
            except Exception:
                pass

    def _arm_watchdog(self, data: bytes) -> None:
        self._running.write_bytes(data)
        # Re-armed at most once a second, not per case: re-arming 50,000 times a second
        # crashed CPython 3.11's watchdog thread. A stuck case is still ended after
        # WATCHDOG - 1 to WATCHDOG seconds.
        now = time.monotonic()
        if now - self._armed_at >= 1.0:
            faulthandler.dump_traceback_later(WATCHDOG, exit=True, file=self._watchdog_log)
            self._armed_at = now

    def run(self, data: bytes) -> None:
        """Run one case; raise :class:`Finding` if it broke a rule."""
        name = self.target.name  # type: ignore[attr-defined]
        self.count += 1
        self._arm_watchdog(data)
        tracing = (self.check_memory and self.count % self.trace_every == 0
                   and not tracemalloc.is_tracing())
        if self.check_memory:
            rss_before = _max_rss()
        if tracing:
            tracemalloc.start(1)
        problem: Optional[tuple[str, str]] = None
        start = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, self.time_limit)
        try:
            with warnings.catch_warnings():  # libraries warn about odd inputs; not a finding
                warnings.simplefilter("ignore")
                self.target.run(data, self.work)  # type: ignore[attr-defined]
        except CkconvError:
            pass
        except CaseTimeout:
            problem = ("hang", f"still running after {self.time_limit} s:\n"
                       + "".join(traceback.format_exc(limit=-8)))
        except KeyboardInterrupt:
            raise
        except BaseException:
            problem = ("escape", traceback.format_exc())
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        elapsed = time.perf_counter() - start
        self.slowest = max(self.slowest, elapsed)
        if problem is None and elapsed > self.time_limit:  # blocked in C, where the alarm waits
            problem = ("hang", f"took {elapsed:.2f} s")
        peak = 0
        if tracing:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        if problem is None and self.check_memory:
            grown = _max_rss() - rss_before
            if peak > memory_limit(data) or grown > RSS_LIMIT:
                problem = ("memory", f"allocated {peak / 2**20:.1f} MiB (traced), peak RSS grew "
                           f"{grown / 2**20:.1f} MiB, for a {len(data)}-byte input")
        if problem is not None:
            raise Finding(problem[0], name, problem[1], data)


def report(finding: Finding, out_dir: Optional[Path] = None) -> Path:
    """Save a finding's input (to reproduce with ``python -m fuzz.run --replay FILE``)."""
    out = out_dir or FINDINGS
    out.mkdir(parents=True, exist_ok=True)
    import hashlib

    path = out / f"{finding.target}-{finding.kind}-{hashlib.sha1(finding.data).hexdigest()[:12]}"
    path.write_bytes(finding.data)
    path.with_suffix(".txt").write_text(str(finding))
    print(f"finding saved: {path}", file=sys.stderr)
    return path
