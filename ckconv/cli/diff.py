"""``ckconv diff A B``: exit 0 when equal within the tolerances, 1 when different."""

from __future__ import annotations

import argparse

from ..errors import UsageError


def run_diff(args: argparse.Namespace) -> int:
    from .. import api
    from ..converters.catalog import filter_rules
    from ..converters.diff import diff, render
    from .convert import note
    from .rule_options import map_from_args

    if args.atol < 0 or args.rtol < 0:
        raise UsageError("--atol and --rtol must not be negative")
    a = map_from_args(args, api.load(args.a, args.from_a))
    b = api.load(args.b, args.from_b)
    only = filter_rules(args.include, args.exclude)
    if only is not None:
        b = b.map(only)
    report = diff(a, b, atol=args.atol, rtol=args.rtol, structure=args.structure)
    print(render(report, verbose=not args.summary))
    note(args, list(a.notes) + list(b.notes))
    return 0 if report.equal else 1
