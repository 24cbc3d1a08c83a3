"""Command line: ``ckconv SRC DST``, ``ckconv inspect SRC``.

Only argparse is imported at start-up so ``ckconv --help`` answers instantly; the library
is imported when a command runs. Errors become one ``error: ...`` line on stderr with
exit status 1 (2 for usage errors, 130 for Ctrl-C); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

FORMAT_NAMES = ("tf", "safetensors")  # kept in step with ckconv.formats._TABLE by a test

DESCRIPTION = """\
Convert deep-learning checkpoints between formats, bit-exact, without TensorFlow.

  ckconv SRC DST           convert (input format sniffed from content,
                           output format from DST's extension or --to)
  ckconv inspect SRC       list tensors: name, dtype, shape, bytes
"""


def _convert_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ckconv", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="input checkpoint (file, TF prefix, or directory)")
    p.add_argument("dst", help="output path; its extension picks the format")
    p.add_argument("--from", dest="src_format", choices=FORMAT_NAMES, help="input format")
    p.add_argument("--to", dest="dst_format", choices=FORMAT_NAMES, help="output format")
    p.add_argument("--skip-unsupported", action="store_true",
                   help="leave out tensors the output format cannot hold (with a note)")
    p.add_argument("--max-shard-size", metavar="SIZE",
                   help="split the output into shards of at most SIZE (e.g. 2GB)")
    _common(p)
    return p


def _inspect_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ckconv inspect",
                                description="List a checkpoint's tensors without reading data.")
    p.add_argument("src", help="checkpoint (file, TF prefix, or directory)")
    p.add_argument("--from", dest="src_format", choices=FORMAT_NAMES, help="input format")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--values", metavar="NAME", action="append", default=[],
                   help="also print the values of tensor NAME (repeatable)")
    _common(p)
    return p


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes")


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "inspect":
        args = _inspect_parser().parse_args(argv[1:])
        run = _run_inspect
    else:
        if argv and argv[0] == "convert":
            argv = argv[1:]
        args = _convert_parser().parse_args(argv)
        run = _run_convert
    from .errors import CkconvError, UsageError

    try:
        return run(args)
    except UsageError as exc:
        _fail(args, exc)
        return 2
    except CkconvError as exc:
        _fail(args, exc)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


def _fail(args: argparse.Namespace, exc: BaseException) -> None:
    if args.debug:
        import traceback

        traceback.print_exc()
    print(f"error: {exc}", file=sys.stderr)


def _note(args: argparse.Namespace, notes: Sequence[str]) -> None:
    if not args.quiet:
        for n in notes:
            print(f"note: {n}", file=sys.stderr)


def _run_convert(args: argparse.Namespace) -> int:
    from . import api
    from .progress import ProgressBar
    from .sizes import parse_size

    options = {}
    if args.skip_unsupported:
        options["skip_unsupported"] = True
    if args.max_shard_size:
        options["max_shard_size"] = parse_size(args.max_shard_size)
    tmap = api.load(args.src, args.src_format)
    _note(args, tmap.notes)
    with ProgressBar(total=tmap.nbytes, enabled=not args.quiet) as bar:
        notes = api.save(tmap, args.dst, args.dst_format, progress=bar.update, **options)
    _note(args, notes)
    return 0


def _run_inspect(args: argparse.Namespace) -> int:
    from . import api
    from .inspect import render_json, render_table, render_values

    tmap = api.load(args.src, args.src_format)
    if args.json:
        print(render_json(tmap, args.values))
    else:
        print(render_table(tmap))
        for name in args.values:
            print(render_values(tmap, name))
        _note(args, tmap.notes)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
