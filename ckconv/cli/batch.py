"""``ckconv batch MANIFEST`` and ``ckconv SRC... DIR/``: many conversions, one summary.

Each item's error is one line; the summary counts converted, skipped and failed items and
the exit status is 1 if any failed. A progress line over the items shows on a terminal.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any, Optional, TextIO


def run_batch(args: argparse.Namespace) -> int:
    from ..batch import read_manifest

    items = read_manifest(args.manifest)
    options: dict[str, Any] = {}
    for key in ("src_format", "dst_format", "max_shard_size"):
        if getattr(args, key, None):
            options[key] = getattr(args, key)
    if args.skip_unsupported:
        options["skip_unsupported"] = True
    return run_items(args, items, options)


def run_many(args: argparse.Namespace) -> int:
    """Several sources into one directory (names from the sources, see plan_many)."""
    from ..batch import plan_many
    from ..errors import UsageError

    if getattr(args, "dry_run", False):
        raise UsageError("--dry-run takes one source")
    from .convert import write_options

    items = plan_many(args.sources, args.target, args.dst_format)
    options = write_options(args)
    options.pop("overwrite")  # convert_many skips finished outputs unless --force
    if args.src_format:
        options["src_format"] = args.src_format
    if args.step is not None:
        options["step"] = args.step
    if args.collection:
        options["collections"] = args.collection
    from .rule_options import rules_from_args

    rules = rules_from_args(args)
    if rules is not None:
        options["rules"] = rules
    return run_items(args, items, options)


def run_items(args: argparse.Namespace, items: list, options: dict[str, Any]) -> int:
    from ..batch import Result, convert_many

    line = ItemProgress(len(items), enabled=not args.quiet)
    counts = {"converted": 0, "skipped": 0, "failed": 0}
    failures: list[Result] = []

    def report(result: Result) -> None:
        key = "skipped" if result.skipped else "converted" if result.ok else "failed"
        counts[key] += 1
        if not result.ok:
            failures.append(result)
            line.clear()
            print(f"error: {result.src} -> {result.dst}: {result.error}", file=sys.stderr)
        elif result.notes and not args.quiet and args.debug:
            for n in result.notes:
                print(f"note: {result.src}: {n}", file=sys.stderr)
        line.update(counts)

    convert_many(items, jobs=max(1, args.jobs), force=args.force, on_result=report, **options)
    line.close()
    if not args.quiet or failures:
        print(f"{len(items)} item(s): {counts['converted']} converted, {counts['skipped']} "
              f"skipped (output exists; --force redoes them), {counts['failed']} failed",
              file=sys.stderr)
    return 1 if failures else 0


class ItemProgress:
    """``[####......] 7/20  (1 failed)`` on a terminal, redrawn as items finish."""

    def __init__(self, total: int, enabled: bool = True, stream: Optional[TextIO] = None):
        self.total = max(total, 1)
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.start = time.monotonic()
        self.lock = threading.Lock()
        self.drawn = False

    def update(self, counts: dict[str, int]) -> None:
        if not self.enabled:
            return
        with self.lock:
            done = sum(counts.values())
            filled = int(30 * done / self.total)
            failed = f"  ({counts['failed']} failed)" if counts["failed"] else ""
            self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} "
                              f"{time.monotonic() - self.start:,.0f} s{failed}")
            self.stream.flush()
            self.drawn = True

    def clear(self) -> None:
        if self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
