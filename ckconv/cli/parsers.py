"""The argument parsers of every ``ckconv`` command, built from the registry and presets.

Only argparse, the format registry and the preset listing are imported here, so that
``ckconv --help`` answers at once. Options may stand anywhere among the positionals
(``ckconv run --step 300 out.safetensors``): the commands parse intermixed arguments.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn, Optional

from ..formats import NAMES as FORMAT_NAMES

PROG = "ckconv"

DESCRIPTION = """\
Convert deep-learning checkpoints between formats, bit-exact, without TensorFlow.

  ckconv SRC DST           convert (input format sniffed from content,
                           output format from DST's extension or --to)
  ckconv inspect SRC       list tensors: name, dtype, shape, bytes
  ckconv diff A B          compare two checkpoints (any formats), exit 0 if equal
  ckconv completion SHELL  print a bash, zsh or fish completion script
  ckconv SRC... DIR/ --to FMT      several sources into a directory
  ckconv batch MANIFEST    convert every src,dst row (CSV/JSONL), --jobs N

  SRC and DST may be s3://, gs://, hf://, http(s):// (read) or memory:// URLs
  (pip install 'ckconv[remote]'; --storage-option KEY=VALUE for endpoints, tokens)

  ckconv SRC DST --preset bert     rename/re-lay-out with rules (--rules FILE, --dry-run)

Exit status: 0 done, 1 failed, 2 usage error, 130 interrupted, 143 terminated.
"""

COMMANDS = ("inspect", "diff", "batch", "completion", "convert")
#: Positionals declared optional (so that an unknown option is reported first) but required.
REQUIRED = ("src",)


class UsageExit(Exception):
    """A usage error found while parsing: one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageExit(f"{message} (see '{self.prog} --help')")


class _Ordered(argparse.Action):
    """Collect --rules and --preset into one list, keeping their command-line order."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        items = list(getattr(namespace, self.dest) or [])
        items.append((self.const, values))
        setattr(namespace, self.dest, items)


def _preset_names() -> list[str]:
    from ..converters.shipped import preset_names

    return preset_names()


def add_rule_options(p: argparse.ArgumentParser, *, side: str = "") -> None:
    """--rules/--preset/--reverse/--include/--exclude/--dtype/--keep-optimizer/--[no-]strict."""
    on = f" to {side}" if side else ""
    g = p.add_argument_group("name mapping")
    g.add_argument("--rules", dest="rule_sources", action=_Ordered, const="file", metavar="FILE",
                   default=[], help=f"apply a rules file (TOML/YAML){on} (repeatable)")
    presets = _preset_names()
    g.add_argument("--preset", dest="rule_sources", action=_Ordered, const="preset",
                   metavar="NAME", help=f"apply a shipped preset{on}: {', '.join(presets)} "
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
                   "--include/--exclude only the first half is checked). Applies to the "
                   "--rules files, or to the presets when no --rules is given")
    g.add_argument("--param", dest="params", action="append", default=[], metavar="NAME=N",
                   help="a size rules refer to by name, e.g. --param num_heads=8 to turn "
                   "torch attention weights back into Keras' [d, heads, head_dim]")


def _source_options(p: argparse.ArgumentParser) -> None:
    # TF-specific selection of what to read; "DIR@1000" in SRC is the same as --step 1000.
    p.add_argument("--from", dest="src_format", choices=FORMAT_NAMES, help="input format")
    p.add_argument("--step", type=int, metavar="N",
                   help="TF: the checkpoint of global step N in SRC's directory (or SRC@N)")
    p.add_argument("--collection", metavar="NAME", action="append", default=[],
                   help="TF1: keep only the tensors of graph collection NAME, from the "
                        "checkpoint's .meta file (repeatable; e.g. trainable_variables)")
    p.add_argument("--dequantize", action="store_true",
                   help="PyTorch: quantized tensors as float32 values (docs/pytorch-quantized.md)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar, notes or summary; errors only")
    from .remote import add_help  # --storage-option: taken out of argv by main()

    add_help(p)


def convert_parser() -> Parser:
    from .. import __version__

    p = Parser(prog=PROG, description=DESCRIPTION,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", nargs="?", help="input checkpoint (file, TF prefix, or directory)")
    p.add_argument("dst", nargs="?", help="output path; its extension picks the format")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--to", dest="dst_format", choices=FORMAT_NAMES, help="output format")
    p.add_argument("-f", "--force", action="store_true",
                   help="replace an existing output (refused otherwise)")
    p.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                   help="with several sources (SRC... DIR/): N conversions at a time")
    p.add_argument("--skip-unsupported", action="store_true",
                   help="leave out tensors the output format cannot hold (with a note)")
    p.add_argument("--max-shard-size", metavar="SIZE",
                   help="split the output into shards of at most SIZE (e.g. 2GB)")
    p.add_argument("--h5-layout", choices=("generic", "keras"),
                   help="HDF5 output: one dataset per tensor name (generic, the default) or a "
                        "Keras legacy weights file for tf_keras load_weights (keras; the default "
                        "when the input is one)")
    p.add_argument("--update-state", action="store_true",
                   help="TF output: record it as the latest checkpoint in an existing "
                        "'checkpoint' state file (left unchanged otherwise)")
    _source_options(p)
    p.add_argument("--config", metavar="CONFIG.json",
                   help="the model's config.json, for presets that depend on the model "
                        "(hf-tf2: default config.json beside the weights)")
    add_rule_options(p)
    p.add_argument("--like", metavar="TEMPLATE",
                   help="write SRC's values with the names, order, dtypes, shapes and format "
                        "structure of TEMPLATE, a checkpoint the target model saved")
    p.add_argument("--dry-run", action="store_true",
                   help="print old name -> new name, shape and transform per tensor (with "
                        "--like: every pairing); write nothing")
    _common(p)
    return p


def inspect_parser() -> Parser:
    p = Parser(prog=f"{PROG} inspect",
               description="List a checkpoint's tensors without reading data.")
    p.add_argument("src", help="checkpoint (file, TF prefix, or directory)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--values", metavar="NAME", action="append", default=[],
                   help="also print the values of tensor NAME (repeatable)")
    p.add_argument("--max-values", type=int, default=1000, metavar="N",
                   help="print at most N values of each tensor (default 1000; 0: all)")
    _source_options(p)
    _common(p)
    return p


def diff_parser() -> Parser:
    p = Parser(
        prog=f"{PROG} diff",
        description="Compare two checkpoints in any formats: names only in A or B, dtype and "
                    "shape mismatches, max absolute/relative differences. Exit status 0 when "
                    "equal within --atol/--rtol (default: exact), 1 when different. Weights "
                    "only: structure entries (TF2's object graph) are compared with "
                    "--structure. Rules, presets and --dtype apply to A (a dtype mismatch is a "
                    "difference: --dtype bf16 casts A's floats first); --include/--exclude "
                    "select the names of both.")
    p.add_argument("a", help="checkpoint A (rules and presets apply to A)")
    p.add_argument("b", help="checkpoint B")
    p.add_argument("--from-a", choices=FORMAT_NAMES, help="format of A")
    p.add_argument("--from-b", choices=FORMAT_NAMES, help="format of B")
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0)")
    p.add_argument("--rtol", type=float, default=0.0,
                   help="relative tolerance, of |B| (default 0)")
    p.add_argument("--structure", action="store_true",
                   help="also compare structure entries such as _CHECKPOINTABLE_OBJECT_GRAPH")
    p.add_argument("--summary", action="store_true", help="print only the summary line")
    add_rule_options(p, side="A")
    _common(p)
    return p


def completion_parser() -> Parser:
    p = Parser(prog=f"{PROG} completion",
               description="Print a shell completion script, e.g. "
                           "'ckconv completion bash > /etc/bash_completion.d/ckconv', "
                           "'ckconv completion zsh > ~/.zfunc/_ckconv' or "
                           "'ckconv completion fish > ~/.config/fish/completions/ckconv.fish'.")
    p.add_argument("shell", choices=("bash", "zsh", "fish"))
    return p


def batch_parser() -> argparse.ArgumentParser:
    p = Parser(
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


PARSERS = {"convert": convert_parser, "inspect": inspect_parser, "diff": diff_parser,
           "batch": batch_parser, "completion": completion_parser}


def parse(argv: list[str]) -> tuple[str, argparse.Namespace]:
    """The command and its arguments; options may come anywhere."""
    command = argv[0] if argv and argv[0] in COMMANDS else "convert"
    rest = argv[1:] if argv and argv[0] in COMMANDS else argv
    parser = PARSERS[command]()
    args, unknown = parser.parse_known_intermixed_args(rest)
    options = [a for a in unknown if a.startswith("-")]
    if options or (unknown and command != "convert"):
        # Before any missing positional: a typo in an option is the likelier cause.
        parser.error(f"unrecognized arguments: {' '.join(options or unknown)}")
    if unknown:  # ckconv A B C OUT/: several sources into one directory (cli/batch.py)
        paths = [args.src, args.dst, *unknown]
        args.sources, args.target = paths[:-1], paths[-1]
        return "many", args
    missing = [a.dest for a in parser._actions
               if not a.option_strings and a.nargs == "?" and a.dest in REQUIRED
               and getattr(args, a.dest) is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    return command, args


def option_strings(parser: argparse.ArgumentParser) -> list[tuple[list[str], Optional[list[str]], bool]]:
    """(flags, choices, takes a value) of every option, for completion scripts."""
    out = []
    for action in parser._actions:  # argparse has no public listing of its actions
        if action.option_strings:
            choices = [str(c) for c in action.choices] if action.choices else None
            out.append((list(action.option_strings), choices, action.nargs != 0))
    return out
