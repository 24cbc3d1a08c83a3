"""The command-line side of rules, presets and ``ckconv diff``.

cli.py only adds these options and calls these functions, so its own edits stay small.
Importing this module costs argparse only; the library is imported when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Optional


class _Ordered(argparse.Action):
    """Collect --rules and --preset into one list, keeping their command-line order."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        items = list(getattr(namespace, self.dest) or [])
        items.append((self.const, values))
        setattr(namespace, self.dest, items)


def add_rule_options(p: argparse.ArgumentParser, *, side: str = "") -> None:
    """--rules/--preset/--reverse/--include/--exclude/--dtype/--keep-optimizer/--[no-]strict."""
    on = f" to {side}" if side else ""
    g = p.add_argument_group("name mapping")
    g.add_argument("--rules", dest="rule_sources", action=_Ordered, const="file", metavar="FILE",
                   default=[], help=f"apply a rules file (TOML/YAML){on} (repeatable)")
    g.add_argument("--preset", dest="rule_sources", action=_Ordered, const="preset",
                   metavar="NAME", help=f"apply a shipped preset{on}: tf2, keras-to-torch, "
                   "torch-to-keras, bert, hf-to-bert; hf-tf2 (a transformers TF folder); TF1 research "
                   "checkpoints -> transformers: albert, bigbird, electra, electra-generator, gpt2, "
                   "mobilebert, mobilenet_v1, mobilenet_v2, mobilenet_v2-ema, t5, tapas, xlnet "
                   "(repeatable, applied in order)")
    g.add_argument("--reverse", action="store_true",
                   help="run the rules/presets backwards (e.g. --preset bert --reverse)")
    g.add_argument("--include", action="append", default=[], metavar="REGEX",
                   help="keep only tensors whose source name matches REGEX (repeatable)")
    g.add_argument("--exclude", action="append", default=[], metavar="REGEX",
                   help="leave out tensors whose source name matches REGEX (repeatable)")
    g.add_argument("--dtype", metavar="TYPE",
                   help="cast floating-point tensors to bf16, fp16, fp32 or fp64")
    g.add_argument("--keep-optimizer", action="store_true",
                   help="keep optimizer state that presets drop (tf2: slots as <var>/<slot>)")
    g.add_argument("--strict", dest="strict", action=argparse.BooleanOptionalAction,
                   default=None, help="every tensor must match a rule and every rule a "
                   "tensor (default: on for presets, as the file says for --rules; with "
                   "--include/--exclude only the first half is checked)")


def rules_from_args(args: argparse.Namespace) -> Any:
    """The Rules the options ask for, or None."""
    if not (args.rule_sources or args.include or args.exclude or args.dtype or args.reverse):
        return None  # a plain conversion: skip importing the rule engine (and numpy)
    from ..converters.catalog import build, load

    user = None
    if args.rule_sources:
        # Keep the command-line order across --rules and --preset.
        config = None
        if getattr(args, "config", None):  # presets that need the model's config.json
            from ..hub import read_config

            config = read_config(args.config)
        from ..converters.hf.configured import preset as configured

        parts = [load(v, strict=args.strict) if kind == "file"
                 else load(configured(v, config), strict=args.strict)
                 for kind, v in args.rule_sources]
        user = parts[0]
        for p in parts[1:]:
            user = user + p
    flags = ["keep-optimizer"] if args.keep_optimizer else []
    return build(user, reverse=args.reverse, include=args.include, exclude=args.exclude,
                 dtype=args.dtype, flags=flags)


def map_from_args(args: argparse.Namespace, tmap: Any) -> Any:
    rules = rules_from_args(args)
    return tmap if rules is None else tmap.map(rules)


def render_dry_run(tmap: Any) -> str:
    """One line per source tensor: old -> new, dtype, shape change, transforms, rule."""
    from ..converters.engine import report

    records = report(tmap)
    if not records:  # no rules: every tensor is written as is
        return "\n".join(f"{n} -> {n}  {t.dtype} {list(t.shape)}" for n, t in tmap.items()) \
            + f"\n{len(tmap)} tensor(s) would be written unchanged"
    lines = []
    written = dropped = 0
    for r in records:
        src = " + ".join(r.sources)
        rule = f"  ({', '.join(r.rules)})" if r.rules else ""
        if r.target is None:
            dropped += 1
            lines.append(f"{src} -> (dropped)  {r.dtype} {list(r.source_shapes[0])}{rule}")
            continue
        written += 1
        before = " + ".join(str(list(s)) for s in r.source_shapes)
        shape = before if before == str(list(r.shape)) else f"{before} -> {list(r.shape)}"
        steps = f"  {', '.join(r.steps)}" if r.steps else ""
        lines.append(f"{src} -> {r.target}  {r.dtype} {shape}{steps}{rule}")
    lines.append(f"{written} tensor(s) would be written, {dropped} dropped")
    return "\n".join(lines)


def diff_parser(formats: Any) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ckconv diff",
        description="Compare two checkpoints in any formats: names only in A or B, dtype and "
                    "shape mismatches, max absolute/relative differences. Exit status 0 when "
                    "equal within --atol/--rtol (default: exact), 1 when different. Rules, "
                    "presets and --dtype apply to A (a dtype mismatch is a difference: "
                    "--dtype bf16 casts A's floats first); --include/--exclude select the "
                    "names of both.")
    p.add_argument("a", help="checkpoint A (rules and presets apply to A)")
    p.add_argument("b", help="checkpoint B")
    p.add_argument("--from-a", choices=formats, help="format of A")
    p.add_argument("--from-b", choices=formats, help="format of B")
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0)")
    p.add_argument("--rtol", type=float, default=0.0,
                   help="relative tolerance, of |B| (default 0)")
    p.add_argument("--summary", action="store_true", help="print only the summary line")
    add_rule_options(p, side="A")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("-q", "--quiet", action="store_true", help="no notes")
    return p


def run_diff(args: argparse.Namespace) -> int:
    from .. import api
    from ..errors import UsageError
    from ..converters.catalog import filter_rules
    from ..converters.diff import diff, render

    if args.atol < 0 or args.rtol < 0:
        raise UsageError("--atol and --rtol must not be negative")
    a = map_from_args(args, api.load(args.a, args.from_a))
    b = api.load(args.b, args.from_b)
    only = filter_rules(args.include, args.exclude)
    if only is not None:
        b = b.map(only)
    report = diff(a, b, atol=args.atol, rtol=args.rtol)
    print(render(report, verbose=not args.summary))
    if not args.quiet:
        for n in list(a.notes) + list(b.notes):
            print(f"note: {n}", file=sys.stderr)
    return 0 if report.equal else 1


def check_dry_run(args: argparse.Namespace) -> Optional[str]:
    """The usage problem with DST, if any (DST may be left out with --dry-run only)."""
    if args.dst is None and not args.dry_run:
        return "the following arguments are required: dst (or use --dry-run)"
    return None
