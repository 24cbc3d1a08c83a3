"""The command-line side of rules and presets: the Rules the options ask for, ``--dry-run``.

The options themselves are declared in :mod:`.parsers`. Importing this module costs
argparse only; the rule engine is imported when a command runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import plural


def rules_from_args(args: argparse.Namespace) -> Any:
    """The Rules the options ask for, or None."""
    if not (args.rule_sources or args.include or args.exclude or args.dtype or args.reverse
            or args.params):
        return None  # a plain conversion: skip importing the rule engine (and numpy)
    from ..converters.catalog import build, load

    user = None
    if args.rule_sources:
        # Keep the command-line order across --rules and --preset. --[no-]strict is meant
        # for the user's own files: presets between them stay strict.
        files = any(kind == "file" for kind, _ in args.rule_sources)
        config = None
        if getattr(args, "config", None):  # presets that need the model's config.json
            from ..hub import read_config

            config = read_config(args.config)
        from ..converters.catalog import preset_rules

        parts = [load(v, strict=args.strict) if kind == "file"
                 else load(preset_rules(v, config), strict=None if files else args.strict)
                 for kind, v in args.rule_sources]
        user = parts[0]
        for p in parts[1:]:
            user = user + p
    flags = ["keep-optimizer"] if args.keep_optimizer else []
    return build(user, reverse=args.reverse, include=args.include, exclude=args.exclude,
                 dtype=args.dtype, flags=flags, params=parse_params(args.params))


def parse_params(items: list[str]) -> dict[str, int]:
    """``["num_heads=8"]`` -> ``{"num_heads": 8}`` (a UsageError names a bad one)."""
    from ..errors import UsageError

    out: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier() or not value.strip().isdigit() or int(value) <= 0:
            raise UsageError(f"--param {item!r}: expected NAME=N with a positive integer N, "
                             "e.g. --param num_heads=8")
        out[name] = int(value)
    return out


def map_from_args(args: argparse.Namespace, tmap: Any) -> Any:
    rules = rules_from_args(args)
    return tmap if rules is None else tmap.map(rules)


def render_dry_run(tmap: Any) -> str:
    """One line per source tensor: old -> new, dtype, shape change, transforms, rule."""
    from ..converters.engine import report

    records = report(tmap)
    if not records:  # no rules: every tensor is written as is
        return "\n".join(f"{n} -> {n}  {t.dtype} {list(t.shape)}" for n, t in tmap.items()) \
            + f"\n{plural(len(tmap), 'tensor')} would be written unchanged"
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
        if getattr(r, "created", False):  # a zero tensor a rule added
            src, before = "(new)", str(list(r.shape))
        else:
            before = " + ".join(str(list(s)) for s in r.source_shapes)
        shape = before if before == str(list(r.shape)) else f"{before} -> {list(r.shape)}"
        steps = f"  {', '.join(r.steps)}" if r.steps else ""
        lines.append(f"{src} -> {r.target}  {r.dtype} {shape}{steps}{rule}")
    lines.append(f"{plural(written, 'tensor')} would be written, {dropped} dropped")
    return "\n".join(lines)
