"""Fuzz targets for ckconv's Snappy decoder and the TF V1 checkpoint reader.

- ``snappy``: raw Snappy blocks. ckconv's decoder must either refuse a block with its own
  error or return exactly what cramjam's decoder (an independent implementation) returns.
- ``v1_entries``: the (key, value) entries of a real V1 checkpoint mutated, then written as
  a valid table (block CRCs right), so the mutation reaches the SavedTensorSlices header,
  slice keys and TensorProto values; the checkpoint is loaded, every tensor read, and a
  conversion attempted.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from ckconv import api
from ckconv.formats.tf import snappy
from ckconv.formats.tf.table import Table

from .targets import FIXTURES, consume, pack_items, save_and_check, tf_seeds, unpack_items, write_index

LEGACY = FIXTURES / "tf_legacy"
# (fixture, the file the mutated entries replace, the argument given to ckconv)
_V1 = [("v1_dtypes", "ckpt", "ckpt"), ("v1_saver", "model.ckpt-7", "model.ckpt-7"),
       ("snappy_v1", "model.ckpt", "model.ckpt"),
       ("v1_sharded", "model.ckpt-5-00000-of-00002", "model.ckpt-5")]


def run_snappy(data: bytes, work: Path) -> None:
    """Input: one raw Snappy block (length preamble + elements)."""
    try:
        out = snappy.decompress(data, 22 * len(data) + 64)
    except snappy.SnappyError:
        return
    try:
        import cramjam
    except ImportError:
        return
    theirs = bytes(cramjam.snappy.decompress_raw(data))
    assert out == theirs, (len(out), len(theirs))


@functools.lru_cache(maxsize=None)
def _snappy_seeds() -> tuple[bytes, ...]:
    out = []
    for table_file in (LEGACY / "snappy_v1" / "model.ckpt", LEGACY / "snappy_v2" / "ckpt.index"):
        if not table_file.is_file():
            continue
        raw = table_file.read_bytes()
        for _sep, off, size in Table.open(str(table_file)).data_blocks():
            if raw[off + size] == 1:
                out.append(raw[off:off + size])
    try:
        import cramjam

        for s in tf_seeds():
            for block in s.data_blocks[:2] + [s.index_block]:
                out.append(bytes(cramjam.snappy.compress_raw(block)))
    except ImportError:
        pass
    return tuple(out)


def seeds_snappy() -> list[bytes]:
    return list(_snappy_seeds())


@functools.lru_cache(maxsize=None)
def _v1_items() -> tuple[tuple[str, str, str, tuple[tuple[bytes, bytes], ...]], ...]:
    out = []
    for fixture, victim, arg in _V1:
        path = LEGACY / fixture / victim
        if path.is_file():
            items = tuple((k, bytes(v)) for k, v in Table.open(str(path)).items())
            out.append((fixture, victim, arg, items))
    return tuple(out)


def _v1_dir(work: Path, i: int, fixture: str, victim: str) -> Path:
    """A scratch copy of the fixture whose other files (shards, .meta) are symlinks."""
    d = work / f"v1_{i}"
    if not d.is_dir():
        d.mkdir(parents=True)
        for f in (LEGACY / fixture).iterdir():
            if f.name not in (victim, "manifest.json", "checkpoint"):
                os.symlink(f, d / f.name)
    return d


def run_v1_entries(data: bytes, work: Path) -> None:
    """Input: [seed] + the V1 file's entries as (varint len, key, varint len, value)*."""
    seeds = _v1_items()
    if not data or not seeds:
        return
    i = data[0] % len(seeds)
    fixture, victim, arg, _ = seeds[i]
    d = _v1_dir(work, i, fixture, victim)
    target = d / victim
    target.unlink(missing_ok=True)  # a new inode: an earlier map may still read the old one
    write_index(target, unpack_items(data[1:]))
    tmap = api.load(str(d / arg))
    consume(tmap)
    save_and_check(tmap, work)


def seeds_v1_entries() -> list[bytes]:
    return [bytes([i]) + pack_items(list(items)) for i, (*_, items) in enumerate(_v1_items())]
