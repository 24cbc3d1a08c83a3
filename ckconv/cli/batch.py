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

FORMAT_NAMES = ("tf", "safetensors", "torch", "hdf5")


def batch_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ckconv batch",
        description="Convert every src,dst row of a CSV manifest (or JSON line of a .jsonl "
                    "manifest); outputs that exist already are skipped unless --force.")
    p.add_argument("manifest", help="CSV rows src,dst[,options] or JSONL {\"src\", \"dst\", "
                                    "\"options\"}")
    add_batch_options(p)
    p.add_argument("--from", dest="src_format", choices=FORMAT_NAMES, help="input format")
    p.add_argument("--to", dest="dst_format", choices=FORMAT_NAMES,
                   help="output format of rows whose destination's extension does not say")
    p.add_argument("--skip-unsupported", action="store_true",
                   help="leave out tensors the output format cannot hold (with a note)")
    p.add_argument("--max-shard-size", metavar="SIZE", help="shard outputs (e.g. 2GB)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line or notes")
    from .remote import add_help

    add_help(p)
    return p


def add_batch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                   help="run N conversions at a time (threads; default 1)")
    p.add_argument("--force", action="store_true",
                   help="convert even when the output exists already")


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


def many_sources(parser: argparse.ArgumentParser, args: argparse.Namespace,
                 extra: list[str]) -> argparse.Namespace:
    """``ckconv A B C OUT/``: argparse saw A and B as SRC and DST and left the rest over.

    Options this mode adds (--jobs, --force) are taken from the leftovers; anything else
    that looks like an option is the usual usage error.
    """
    extra_parser = argparse.ArgumentParser(add_help=False)
    add_batch_options(extra_parser)
    known, rest = extra_parser.parse_known_args(extra)
    unknown = [a for a in rest if a.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    paths = [args.src] + ([args.dst] if args.dst else []) + rest
    args.sources, args.target = paths[:-1], paths[-1]
    args.jobs = known.jobs
    args.force = getattr(args, "force", False) or known.force
    return args


def run_many(args: argparse.Namespace) -> int:
    """Several sources into one directory (names from the sources, see plan_many)."""
    from ..batch import plan_many
    from ..errors import UsageError

    if getattr(args, "dry_run", False):
        raise UsageError("--dry-run takes one source")
    items = plan_many(args.sources, args.target, args.dst_format)
    options: dict[str, Any] = {}
    if args.src_format:
        options["src_format"] = args.src_format
    if args.skip_unsupported:
        options["skip_unsupported"] = True
    if args.max_shard_size:
        options["max_shard_size"] = args.max_shard_size
    if args.h5_layout:
        options["h5_layout"] = args.h5_layout
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
