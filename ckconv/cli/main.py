"""Command line: ``ckconv SRC DST``, ``ckconv inspect SRC``, ``ckconv diff A B``.

Only argparse is imported at start-up so ``ckconv --help`` answers instantly; the library
is imported when a command runs. Errors become one ``error: ...`` line on stderr with
exit status 1 (2 for usage errors, 130 for Ctrl-C, 143 for SIGTERM); ``--debug`` shows the
traceback. Interrupted or failed conversions leave no temporary file (see ckconv/io/atomic.py).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Iterator, Optional, Sequence

from .parsers import FORMAT_NAMES, UsageExit, parse

__all__ = ["main", "FORMAT_NAMES"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    from .remote import session, split_storage_options

    argv, storage_options = split_storage_options(argv)  # any command (cli/remote.py)
    try:
        command, args = parse(argv)
    except UsageExit as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    from ..errors import CkconvError, UsageError

    try:
        with _termination_raises():
            return session(_RUN[command], storage_options)(args)
    except UsageError as exc:
        _fail(debug, exc)
        return 2
    except CkconvError as exc:
        _fail(debug, exc)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Terminated as exc:
        print(f"error: terminated by {exc.name}", file=sys.stderr)
        return 128 + exc.signum  # the shell's convention: 143 for SIGTERM, 129 for SIGHUP
    except BrokenPipeError:
        return 1


def _run_convert(args: argparse.Namespace) -> int:
    from .convert import run_convert

    return run_convert(args)


def _run_inspect(args: argparse.Namespace) -> int:
    from .inspect import run_inspect

    return run_inspect(args)


def _run_diff(args: argparse.Namespace) -> int:
    from .diff import run_diff

    return run_diff(args)


def _run_batch(args: argparse.Namespace) -> int:
    from .batch import run_batch

    return run_batch(args)


def _run_many(args: argparse.Namespace) -> int:
    from .batch import run_many

    return run_many(args)


def _run_completion(args: argparse.Namespace) -> int:
    from .completion import script

    print(script(args.shell))
    return 0


_RUN = {"convert": _run_convert, "inspect": _run_inspect, "diff": _run_diff,
        "batch": _run_batch, "many": _run_many, "completion": _run_completion}


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


def _fail(debug: bool, exc: BaseException) -> None:
    if debug:
        import traceback

        traceback.print_exc()
    message = getattr(exc, "cli_message", None) or str(exc)
    print(f"error: {' '.join(message.split())}", file=sys.stderr)  # one line, always


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
