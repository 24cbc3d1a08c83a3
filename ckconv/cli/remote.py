"""The command line's side of remote paths: --storage-option, inspect, the --debug report.

main.py calls :func:`split_storage_options` on the raw arguments (so the option works with
every subcommand) and wraps the command in :func:`session`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from collections.abc import Callable
from typing import Any

STORAGE_HELP = ("fsspec storage option for s3://, gs://, hf:// paths, e.g. "
                "endpoint_url=http://127.0.0.1:9000 or anon=true (repeatable)")


def split_storage_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """Take every ``--storage-option K=V`` (or ``--storage-option=K=V``) out of ``argv``."""
    rest: list[str] = []
    pairs: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i:]
            break
        if arg == "--storage-option" and i + 1 < len(argv):
            pairs.append(argv[i + 1])
            i += 2
            continue
        if arg.startswith("--storage-option="):
            pairs.append(arg[len("--storage-option="):])
        else:
            rest.append(arg)
        i += 1
    return rest, pairs


def add_help(p: argparse.ArgumentParser) -> None:
    """List --storage-option in a parser's help (main() has taken it out of argv already)."""
    p.add_argument("--storage-option", metavar="KEY=VALUE", action="append", default=[],
                   help=STORAGE_HELP)


def session(run: Callable[[argparse.Namespace], int],
            pairs: list[str]) -> Callable[[argparse.Namespace], int]:
    """``run`` with the storage options in force and, under --debug, the bytes fetched."""
    def wrapped(args: argparse.Namespace) -> int:
        # The remote modules only when asked for: a local conversion does without them.
        if pairs:
            from ..remote import fs

            fs.DEFAULT_OPTIONS.clear()
            fs.DEFAULT_OPTIONS.update(fs.parse_storage_options(pairs))
        try:
            return run(args)
        finally:
            if getattr(args, "debug", False):
                _report_fetched()
    return wrapped


def _report_fetched() -> None:
    from ..remote.fetch import FETCHED

    if FETCHED.requests:
        print(f"debug: fetched {FETCHED.bytes} bytes from remote storage in "
              f"{FETCHED.requests} request(s), {FETCHED.retries} retried", file=sys.stderr)


def run_inspect(args: argparse.Namespace, inspect: Callable[[argparse.Namespace], int]) -> int:
    """``ckconv inspect URL``: the listing from the index and headers alone.

    The source is mirrored with only its headers fetched (``--values`` fetches the files
    too); the local inspect runs on the mirror, and mirror paths in what it prints become
    the URLs they stand for.
    """
    from ..errors import CkconvError
    from ..remote.source import stage

    staged = stage(args.src)
    out = io.StringIO()
    try:
        if args.values:
            for path in staged.relevant:
                staged.fetch_whole(path)
        local = argparse.Namespace(**vars(args))
        local.src = staged.local
        try:
            try:
                with contextlib.redirect_stdout(out):
                    code = inspect(local)
            except CkconvError:
                if not staged.unbounded:
                    raise
                # it needed a file of which only the first bytes were fetched (HDF5)
                staged.fetch_files(staged.unbounded)
                staged.unbounded.clear()
                out.seek(0)
                out.truncate()
                with contextlib.redirect_stdout(out):
                    code = inspect(local)
        except CkconvError as exc:
            from ..remote.api import _relabel

            raise _relabel(exc, staged) from None
    finally:
        sys.stdout.write(staged.to_urls(out.getvalue()))
        staged.close()
    return code


def is_url(value: Any) -> bool:
    from ..remote import is_url as check

    return check(value)
