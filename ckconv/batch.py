"""Many conversions at once: manifests, output names, and ``convert_many`` on any executor.

``convert_many(pairs, executor)`` submits one :func:`convert_one` call per pair to a
``concurrent.futures.Executor``: a thread pool here, a Dask cluster
(``client.get_executor()``) or a Ray pool elsewhere. Each call returns a :class:`Result`
(ok, skipped, or the error message); nothing is scheduled by ckconv itself. An output that
exists already is skipped unless ``force``: outputs are written atomically, so one that
exists is complete, and re-running a batch redoes only what failed.
"""

from __future__ import annotations

import csv
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from .errors import CkconvError, UsageError

Pair = Union[tuple[str, str], tuple[str, str, Mapping[str, Any]], "Item"]


@dataclass
class Item:
    """One conversion of a batch: source, destination and its own options."""

    src: str
    dst: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    """What became of one item: ``ok`` (converted or skipped) or ``error`` (one line)."""

    src: str
    dst: str
    ok: bool
    skipped: bool = False
    error: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def convert_one(src: str, dst: str, options: Optional[Mapping[str, Any]] = None,
                force: bool = False) -> Result:
    """Convert one pair, turning any ckconv error into a failed :class:`Result`.

    A module-level function of plain arguments, so process- and cluster-based executors
    can pickle it.
    """
    from . import api

    start = time.monotonic()
    options = dict(options or {})
    try:
        if isinstance(options.get("max_shard_size"), str):  # "2GB" from a manifest
            from .sizes import parse_size

            options["max_shard_size"] = parse_size(options["max_shard_size"])
        if not force and finished(dst, options):
            return Result(src, dst, ok=True, skipped=True)
        notes = api.convert(src, dst, **options)
    except CkconvError as exc:
        return Result(src, dst, ok=False, error=str(exc), seconds=time.monotonic() - start)
    except (OSError, ValueError, RuntimeError) as exc:  # a bug or an environment failure
        return Result(src, dst, ok=False, error=f"{type(exc).__name__}: {exc}",
                      seconds=time.monotonic() - start)
    return Result(src, dst, ok=True, notes=notes, seconds=time.monotonic() - start)


def convert_many(pairs: Iterable[Pair], executor: Optional[Executor] = None, *,
                 force: bool = False, jobs: int = 1,
                 on_result: Optional[Callable[[Result], None]] = None,
                 **options: Any) -> list[Result]:
    """Convert every (src, dst[, options]) pair; returns a :class:`Result` per pair, in order.

    Args:
        executor: where the conversions run (any ``concurrent.futures.Executor``); None
            runs them on ``jobs`` threads of this process.
        force: convert even when the output exists already (else it is skipped).
        on_result: called with each result as it completes (progress display).
        options: :func:`ckconv.convert` options for every pair (``storage_options``,
            ``max_shard_size`` (bytes or "2GB"), ``dst_format``, ``preset``...); a pair's
            own options win.
    """
    items = [_item(p) for p in pairs]
    own = executor is None
    pool = ThreadPoolExecutor(max_workers=max(1, jobs)) if own else executor
    try:
        futures = [pool.submit(convert_one, it.src, it.dst, {**options, **it.options}, force)
                   for it in items]
        results: list[Optional[Result]] = [None] * len(items)
        order = {id(f): i for i, f in enumerate(futures)}
        for f in _completed(futures):
            i = order[id(f)]
            try:
                results[i] = f.result()
            except Exception as exc:  # the executor itself failed (worker lost, pickling)
                results[i] = Result(items[i].src, items[i].dst, ok=False,
                                    error=f"{type(exc).__name__}: {exc}")
            if on_result is not None:
                on_result(results[i])  # type: ignore[arg-type]
    finally:
        if own:
            pool.shutdown(wait=True, cancel_futures=True)  # type: ignore[union-attr]
    return results  # type: ignore[return-value]


def _completed(futures: list[Any]) -> Iterable[Any]:
    if all(isinstance(f, Future) for f in futures):
        return as_completed(futures)
    return futures  # an executor with its own future type: in submission order


def _item(pair: Pair) -> Item:
    if isinstance(pair, Item):
        return pair
    if len(pair) == 2:
        return Item(str(pair[0]), str(pair[1]))
    if len(pair) == 3:
        return Item(str(pair[0]), str(pair[1]), dict(pair[2] or {}))  # type: ignore[misc]
    raise UsageError(f"convert_many: expected (src, dst) or (src, dst, options), got {pair!r}")


def finished(dst: str, options: Mapping[str, Any]) -> bool:
    """Whether ``dst`` holds a complete output (atomic writes: one that exists is whole)."""
    from . import remote

    candidates = [dst, dst + ".index", dst + ".index.json"]
    if remote.is_url(dst):
        from .remote.dest import exists

        if dst.endswith("/"):
            return False
        return exists(dst, options.get("storage_options"))
    if dst.endswith(("/", os.sep)) or os.path.isdir(dst):
        return False  # a directory destination: its file name depends on the format
    if any(os.path.isfile(c) for c in candidates[1:]):
        return True
    return os.path.isfile(dst)


# -- manifests ---------------------------------------------------------------------------

def read_manifest(path: str) -> list[Item]:
    """Rows of ``src,dst[,options]`` (CSV) or JSON objects one per line (``.jsonl``).

    CSV: an optional header row ``src,dst,options``; ``#`` comments and blank lines are
    skipped; options are ``key=value`` pairs separated by spaces or ``;``
    (``dst_format=tf max_shard_size=2GB``). JSONL: ``{"src": ..., "dst": ..., "options":
    {...}}``; other keys are options too. Relative paths are relative to the current
    directory, as on the command line.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the manifest ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: the manifest is not UTF-8 text") from None
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")), "")
    if path.endswith((".jsonl", ".json")) or first.lstrip().startswith("{"):
        items = [_json_row(path, n, ln) for n, ln in enumerate(lines, 1)
                 if ln.strip() and not ln.lstrip().startswith("#")]
    else:
        items = _csv_rows(path, lines)
    if not items:
        raise UsageError(f"{path}: the manifest lists no conversions")
    return items


def _json_row(path: str, number: int, line: str) -> Item:
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise UsageError(f"{path}:{number}: not a JSON object ({exc})") from None
    if not isinstance(row, dict) or not isinstance(row.get("src"), str) \
            or not isinstance(row.get("dst"), str):
        raise UsageError(f'{path}:{number}: expected {{"src": "...", "dst": "...", '
                         '"options": {...}}')
    options = dict(row.pop("options", None) or {})
    src, dst = row.pop("src"), row.pop("dst")
    return Item(src, dst, {**row, **options})


def _csv_rows(path: str, lines: list[str]) -> list[Item]:
    items = []
    for number, row in enumerate(csv.reader(lines), 1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in row]
        if number == 1 and cells[:2] == ["src", "dst"]:
            continue
        if len(cells) < 2 or not cells[0] or not cells[1] or len(cells) > 3:
            raise UsageError(f"{path}:{number}: expected src,dst[,options], got {','.join(row)!r}")
        items.append(Item(cells[0], cells[1], parse_options(cells[2] if len(cells) == 3 else "",
                                                            f"{path}:{number}")))
    return items


_BOOL = {"true": True, "false": False, "yes": True, "no": False}


def parse_options(text: str, where: str) -> dict[str, Any]:
    """``"dst_format=tf max_shard_size=2GB skip_unsupported=true"`` -> options dict."""
    options: dict[str, Any] = {}
    for pair in re.split(r"[;\s]+", text.strip()):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"{where}: option {pair!r} is not key=value")
        options[key] = _BOOL.get(value.lower(), value)
    return options


# -- many sources into one directory -----------------------------------------------------

#: The extension each output format gets when a name is made from a source's name.
OUTPUT_EXTENSION = {"tf": ".ckpt", "safetensors": ".safetensors", "torch": ".pt", "hdf5": ".h5"}
_SOURCE_SUFFIX = re.compile(r"(\.index|\.data-\d+-of-\d+|\.index\.json|\.safetensors|\.pt|"
                            r"\.pth|\.bin|\.h5|\.hdf5|\.weights\.h5|\.ckpt)$", re.IGNORECASE)
_TF_STEP = re.compile(r"\.ckpt-\d+$")


def output_name(src: str, fmt: str) -> str:
    """The output file name for ``src``: its own name with the target's extension.

    ``run/model.ckpt-1000`` -> ``model.ckpt-1000`` (tf) or ``model-1000.safetensors``;
    ``a/w.safetensors`` -> ``w.pt``; a directory ``runs/exp1/`` -> ``exp1.safetensors``;
    ``DIR@500`` adds ``-500``.
    """
    step = ""
    m = re.search(r"@(\d+)$", src)
    if m:
        src, step = src[: m.start()], m.group(1)
    name = src.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or "checkpoint"
    for suffix in (".index.json", ".index"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    name = re.sub(r"\.data-\d+-of-\d+$", "", name)
    saver = _TF_STEP.search(name)
    if saver:  # model.ckpt-1000: keep the Saver's name for TF, model-1000 otherwise
        if fmt == "tf" and not step:
            return name
        stem = name[: saver.start()] + "-" + saver.group(0)[len(".ckpt-"):]
    else:
        stem = _SOURCE_SUFFIX.sub("", _SOURCE_SUFFIX.sub("", name)) or name
    if step:
        stem += f"-{step}"
    return stem + OUTPUT_EXTENSION[fmt]


def plan_many(sources: Sequence[str], target: str, fmt: Optional[str]) -> list[Item]:
    """Items converting each source into directory ``target`` (or the ``{name}`` template).

    ``target`` is a directory (``out/``, the format from ``fmt``) or a template holding
    ``{name}`` whose extension picks the format (``out/{name}.safetensors``).
    """
    from . import formats, remote

    items = []
    if "{name}" in target:
        template = target
        for src in sources:
            stem = output_name(src, "safetensors")[: -len(".safetensors")]
            items.append(Item(src, template.replace("{name}", stem)))
        if fmt is None:
            fmt = formats.for_output(template)
    else:
        if fmt is None:
            raise UsageError(f"{target}: several sources go into a directory: give the "
                             "output format with --to FORMAT (or a template such as "
                             "out/{name}.safetensors)")
        sep = "/" if remote.is_url(target) or "/" in target else os.sep
        directory = target if target.endswith(("/", os.sep)) else target + sep
        items = [Item(src, directory + output_name(src, fmt)) for src in sources]
    seen: dict[str, str] = {}
    for it in items:
        if it.dst in seen:
            raise UsageError(f"{seen[it.dst]} and {it.src} would both be written to {it.dst}; "
                             "convert them with a manifest (ckconv batch) to name the outputs")
        seen[it.dst] = it.src
    for it in items:
        it.options["dst_format"] = fmt
    return items
