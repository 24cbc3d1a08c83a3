"""Command line: ``ckconv SRC DST``, ``ckconv inspect SRC``.

Only argparse is imported at start-up so ``ckconv --help`` answers instantly; the library
is imported when a command runs. Errors become one ``error: ...`` line on stderr with
exit status 1 (2 for usage errors, 130 for Ctrl-C, 143 for SIGTERM); ``--debug`` shows the
traceback. Interrupted or failed conversions leave no temporary file (see atomic.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Iterator, Optional, Sequence

FORMAT_NAMES = ("tf", "safetensors", "torch", "hdf5")  # kept in step with ckconv.formats._TABLE by a test

DESCRIPTION = """\
Convert deep-learning checkpoints between formats, bit-exact, without TensorFlow.

  ckconv SRC DST           convert (input format sniffed from content,
                           output format from DST's extension or --to)
  ckconv inspect SRC       list tensors: name, dtype, shape, bytes
  ckconv diff A B          compare two checkpoints (any formats), exit 0 if equal

  ckconv SRC DST --preset bert     rename/re-lay-out with rules (--rules FILE, --dry-run)
"""


def _convert_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ckconv", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="input checkpoint (file, TF prefix, or directory)")
    p.add_argument("dst", nargs="?", help="output path; its extension picks the format")
    p.add_argument("--from", dest="src_format", choices=FORMAT_NAMES, help="input format")
    p.add_argument("--to", dest="dst_format", choices=FORMAT_NAMES, help="output format")
    p.add_argument("--skip-unsupported", action="store_true",
                   help="leave out tensors the output format cannot hold (with a note)")
    p.add_argument("--max-shard-size", metavar="SIZE",
                   help="split the output into shards of at most SIZE (e.g. 2GB)")
    p.add_argument("--h5-layout", choices=("generic", "keras"),
                   help="HDF5 output: one dataset per tensor name (generic, the default) or a "
                        "Keras legacy weights file for tf_keras load_weights (keras; the default "
                        "when the input is one)")
    _source_options(p)
    from .rule_options import add_rule_options

    add_rule_options(p)
    p.add_argument("--dry-run", action="store_true",
                   help="print old name -> new name, shape and transform per tensor; write nothing")
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
    _source_options(p)
    _common(p)
    return p


def _source_options(p: argparse.ArgumentParser) -> None:
    # TF-specific selection of what to read; "DIR@1000" in SRC is the same as --step 1000.
    p.add_argument("--step", type=int, metavar="N",
                   help="TF: the checkpoint of global step N in SRC's directory (or SRC@N)")
    p.add_argument("--collection", metavar="NAME", action="append", default=[],
                   help="TF1: keep only the tensors of graph collection NAME, from the "
                        "checkpoint's .meta file (repeatable; e.g. trainable_variables)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes")


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "inspect":
        args = _inspect_parser().parse_args(argv[1:])
        run = _run_inspect
    elif argv and argv[0] == "diff":
        from .rule_options import diff_parser, run_diff

        args = diff_parser(FORMAT_NAMES).parse_args(argv[1:])
        run = run_diff
    else:
        if argv and argv[0] == "convert":
            argv = argv[1:]
        args = _convert_parser().parse_args(argv)
        run = _run_convert
    from ..errors import CkconvError, UsageError

    try:
        with _termination_raises():
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
    except Terminated as exc:
        print(f"error: terminated by {exc.name}", file=sys.stderr)
        return 128 + exc.signum  # the shell's convention: 143 for SIGTERM, 129 for SIGHUP
    except BrokenPipeError:
        return 1


class Terminated(BaseException):
    """SIGTERM/SIGHUP, raised like KeyboardInterrupt so temporary files get removed."""

    def __init__(self, signum: int):
        import signal

        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


@contextlib.contextmanager
def _termination_raises() -> Iterator[None]:
    # By default SIGTERM kills at once, leaving temporary files; turn it into an exception
    # (only where nobody else handles it, and only for the duration of the command).
    import signal
    import threading

    installed = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            sig = getattr(signal, name, None)
            if sig is not None and signal.getsignal(sig) == signal.SIG_DFL:
                installed[sig] = signal.signal(sig, _raise_terminated)
    try:
        yield
    finally:
        for sig, old in installed.items():
            signal.signal(sig, old)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


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
    from .. import api
    from .progress import ProgressBar
    from ..sizes import parse_size

    options = {}
    if args.skip_unsupported:
        options["skip_unsupported"] = True
    if args.max_shard_size:
        options["max_shard_size"] = parse_size(args.max_shard_size)
    if args.h5_layout:
        options["h5_layout"] = args.h5_layout
    from .rule_options import check_dry_run, map_from_args, render_dry_run
    from ..errors import UsageError

    if check_dry_run(args):
        raise UsageError(check_dry_run(args))
    tmap = api.load(args.src, args.src_format, step=args.step, collections=args.collection)
    tmap = map_from_args(args, tmap)
    if args.dry_run:
        print(render_dry_run(tmap))
        _note(args, tmap.notes)
        return 0
    _note(args, tmap.notes)
    with ProgressBar(total=tmap.nbytes, enabled=not args.quiet) as bar:
        notes = api.save(tmap, args.dst, args.dst_format, progress=bar.update, **options)
    _note(args, notes)
    return 0


def _run_inspect(args: argparse.Namespace) -> int:
    from .. import api
    from ..formats.tf import inspect as tfi
    from .inspect import render_json, render_table, render_values

    history = tfi.history_for(args.src, args.src_format)  # a TF run directory: its checkpoints
    if history and args.step is None and "@" not in args.src and tfi.ambiguous(history):
        why = ("no 'checkpoint' state file marks the latest checkpoint; inspect one with "
               "--step N, DIR@N or its prefix")
        if args.json:
            print(json.dumps({"source": args.src, "history": tfi.history_json(history),
                              "tensors": None, "notes": [why]}, indent=2))
        else:
            print(tfi.render_history(history, args.src))
            _note(args, [why])
        return 0
    tmap = api.load(args.src, args.src_format, step=args.step, collections=args.collection)
    from ..io.extents import check_extents

    check_extents(tmap)  # inspect reads no tensor bytes: a stat per file finds a cut-off one
    graph = tfi.meta_info(tmap)
    if args.json:
        extra: dict = {}
        per_tensor = None
        if history:
            extra["history"] = tfi.history_json(history, tmap.source)
        if graph is not None:
            extra["meta"] = graph.summary(tmap)
            per_tensor = {n: {"collections": c} for n, c in graph.membership(tmap).items()}
        print(render_json(tmap, args.values, extra, per_tensor))
    else:
        if history:
            print(tfi.render_history(history, args.src, tmap.source) + "\n")
        print(render_table(tmap, tfi.collections_column(tmap, graph) if graph else None))
        if graph is not None:
            print(tfi.render_meta(tmap, graph))
        for name in args.values:
            print(render_values(tmap, name))
        _note(args, tmap.notes)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
