"""``ckconv SRC DST``: load, map, save, then one summary line on stderr."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from ..errors import UsageError, plural


def run_convert(args: argparse.Namespace) -> int:
    from .. import api
    from .progress import ProgressBar
    from .rule_options import map_from_args, render_dry_run

    from ..hub import wants_folder

    folder_preset = wants_folder(args.rule_sources or [])
    if folder_preset:  # a whole Hugging Face folder (hub.py): weights plus the other files
        return run_folder(args, folder_preset)
    if args.dst is None and not args.dry_run:
        raise UsageError("the following arguments are required: dst (or use --dry-run)")
    options = write_options(args)
    tmap = api.load(args.src, args.src_format, step=args.step, collections=args.collection,
                    dequantize=args.dequantize, skip_unsupported=args.skip_unsupported)
    tmap = map_from_args(args, tmap)
    if args.like:
        from ..converters.like import like, render_pairing

        tmap = like(tmap, args.like)
        if args.dst is not None:
            args.dst_format = api.format_like(args.dst, args.dst_format, tmap)
    if args.dry_run:
        print(render_pairing(tmap) if args.like else render_dry_run(tmap))
        note(args, tmap.notes)
        return 0
    note(args, tmap.notes)
    with ProgressBar(total=tmap.nbytes, enabled=not args.quiet) as bar:
        notes = api.save(tmap, args.dst, args.dst_format, progress=bar.update, **options)
    note(args, notes)
    if not args.quiet:
        print(summary(args.dst, tmap, notes), file=sys.stderr)
    return 0


def write_options(args: argparse.Namespace) -> dict[str, Any]:
    """What the command line asks of the writer (``ckconv.save``'s options)."""
    options: dict[str, Any] = {"overwrite": args.force}
    if args.skip_unsupported:
        options["skip_unsupported"] = True
    if args.max_shard_size:
        options["max_shard_size"] = args.max_shard_size
    if args.h5_layout:
        options["h5_layout"] = args.h5_layout
    if args.update_state:
        options["update_state"] = True
    return options


def run_folder(args: argparse.Namespace, preset: str) -> int:
    from .. import hub

    if args.dry_run or args.include or args.exclude or args.dtype or args.step is not None:
        raise UsageError(f"--preset {preset} converts a whole model: --dry-run, --include, "
                         "--exclude, --dtype and --step do not apply")
    if not args.dst:
        raise UsageError("the following arguments are required: dst (the output folder or file)")
    notes = hub.convert_folder(args.src, args.dst, preset=preset, reverse=args.reverse,
                               config=args.config, max_shard_size=args.max_shard_size)
    note(args, notes)
    if not args.quiet:
        print(f"wrote {args.dst}", file=sys.stderr)
    return 0


def note(args: argparse.Namespace, notes: Sequence[str]) -> None:
    if not args.quiet:
        for n in notes:
            print(f"note: {' '.join(n.split())}", file=sys.stderr)


def summary(dst: str, tmap: Any, notes: Sequence[str]) -> str:
    """``wrote out.safetensors: 199 tensors, 440 MB; left out 396 tensors by rules (...)``."""
    written = len(tmap)
    for n in notes:  # tensors a writer left out (structure, --skip-unsupported)
        if n.startswith("left out "):
            words = n.split()
            if len(words) > 2 and words[2].isdigit():
                written -= int(words[2])
            elif n.startswith("left out _"):
                written -= 1
    parts = [f"wrote {dst}: {plural(max(written, 0), 'tensor')}, {human_bytes(tmap.nbytes)}"]
    from ..converters.engine import REPORT_KEY

    dropped = [r for r in tmap.extras.get(REPORT_KEY, ()) if r.target is None]
    if dropped:
        flags = {r.kept_by for r in dropped}
        how = (f"--{flags.pop()} keeps them" if len(flags) == 1 and None not in flags
               else "--dry-run lists them")
        parts.append(f"left out {plural(len(dropped), 'tensor')} by the rules ({how})")
    return "; ".join(parts)


def human_bytes(n: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return plural(n, "byte")

