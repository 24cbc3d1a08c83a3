"""Fuzz targets: one per parser of untrusted bytes, each ``run(data: bytes, work: Path)``.

Raw byte mutation of a checksummed file mostly tests the checksum. So besides the raw
targets, the structure-aware ones rebuild what they mutate with valid checksums, letting
the mutation reach the parser behind the CRC:

- ``sstable_block``: one block of a real index replaced, trailer CRC recomputed.
- ``bundle_index``:  the index's (key, value) entries mutated, then written as a valid
  table: reaches BundleHeaderProto/BundleEntryProto parsing, shapes, shards, slices.
- ``bundle_data``:   the data shard mutated, entry CRCs (and string length checksums)
  recomputed: reaches string/variant decoding, sizes, offsets.

A target's input format is documented on it; its seeds come from the real TF-made files
under ``tests/fixtures`` (and the torch/HDF5/safetensors ones when present). Every target
reads every tensor it can, checks that what it gets has the advertised shape and dtype,
and swallows nothing but ``CkconvError``.
"""

from __future__ import annotations

import functools
import os
import re
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ckconv import api, formats
from ckconv.io.atomic import TEMP_MARKER
from ckconv.errors import CkconvError
from ckconv.formats.tf import bundle, entries, protos, slices, state, varint
from ckconv.formats.tf.crc import crc32c, mask
from ckconv.formats.tf.table import Table
from ckconv.formats.tf.table_writer import BlockBuilder, TableWriter, encode_handle
from ckconv.cli.inspect import render_json, render_table
from ckconv.tensormap import TensorMap

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
EXAMPLES = ROOT / "examples" / "seed"
_MAGIC = bytes.fromhex("57fb808b247547db")
_STRING, _VARIANT = 7, 21


@dataclass
class Target:
    name: str
    run: Callable[[bytes, Path], None]
    seeds: Callable[[], list[bytes]]
    doc: str = ""
    available: Callable[[], bool] = field(default=lambda: True)


# --------------------------------------------------------------------------------------
# Seeds: the real TF checkpoints


@dataclass
class SeedCheckpoint:
    prefix: Path
    index: bytes
    items: list[tuple[bytes, bytes]]
    num_shards: int
    data_files: list[Path]
    data_blocks: list[bytes]
    index_keys: list[bytes]
    index_block: bytes


@functools.lru_cache(maxsize=None)
def tf_seeds() -> tuple[SeedCheckpoint, ...]:
    out = []
    indexes = sorted((FIXTURES / "tf").glob("*/*.index")) + sorted(EXAMPLES.glob("*/*.index"))
    for index in indexes:
        prefix = index.with_suffix("")
        raw = index.read_bytes()
        table = Table(str(index), raw)
        items = list(table.items())
        header = protos.BundleHeaderProto()
        header.ParseFromString(items[0][1])
        n = header.num_shards
        blocks, keys, index_block = _split_table(table)
        out.append(SeedCheckpoint(prefix, raw, items, n,
                                  [Path(bundle.data_path(str(prefix), i, n)) for i in range(n)],
                                  blocks, keys, index_block))
    return tuple(out)


def _split_table(table: Table) -> tuple[list[bytes], list[bytes], bytes]:
    off, size = table._footer_handles()
    index = table.read_block(off, size, "index")
    blocks, keys = [], []
    for key, handle in table._entries(index, "index"):
        o, p = varint.decode(handle, 0, len(handle))
        s, _ = varint.decode(handle, p, len(handle))
        blocks.append(table.read_block(o, s, "data"))
        keys.append(key)
    return blocks, keys, index


def _trailer(contents: bytes, block_type: int) -> bytes:
    t = bytes([block_type & 0xFF])
    return t + struct.pack("<I", mask(crc32c(t, crc32c(contents))))


def build_table(blocks: list[tuple[bytes, int]], index_keys: list[bytes],
                index_block: Optional[tuple[bytes, int]] = None) -> bytes:
    """An SSTable from given data blocks (contents, type), every trailer CRC valid."""
    out = bytearray()
    handles = []
    for contents, btype in blocks:
        handles.append(encode_handle(len(out), len(contents)))
        out += contents + _trailer(contents, btype)
    meta = BlockBuilder(16).finish()
    meta_handle = encode_handle(len(out), len(meta))
    out += meta + _trailer(meta, 0)
    if index_block is None:
        builder = BlockBuilder(1)
        for key, handle in zip(index_keys, handles):
            builder.add(key, handle)
        index_block = (builder.finish(), 0)
    index_handle = encode_handle(len(out), len(index_block[0]))
    out += index_block[0] + _trailer(*index_block)
    return bytes(out + (meta_handle + index_handle).ljust(40, b"\0") + _MAGIC)


def pack_items(items: list[tuple[bytes, bytes]]) -> bytes:
    out = bytearray()
    for key, value in items:
        out += varint.encode(len(key)) + key + varint.encode(len(value)) + value
    return bytes(out)


def unpack_items(data: bytes) -> list[tuple[bytes, bytes]]:
    """Inverse of :func:`pack_items`, lenient: stops at the first malformed item."""
    items = []
    pos = 0
    try:
        while pos < len(data):
            n, pos = varint.decode(data, pos, len(data))
            key, pos = data[pos:pos + n], pos + n
            n, pos = varint.decode(data, pos, len(data))
            value, pos = data[pos:pos + n], pos + n
            items.append((key, value))
    except CkconvError:
        pass
    return items


def write_index(path: Path, items: list[tuple[bytes, bytes]]) -> None:
    unique: dict[bytes, bytes] = {}
    for key, value in items:
        unique.setdefault(key, value)
    with open(path, "wb") as f:
        table = TableWriter(f)
        for key in sorted(unique):
            table.add(key, unique[key])
        table.finish()


def _seed_dir(work: Path, i: int, seed: SeedCheckpoint) -> Path:
    """A scratch directory with prefix ``p`` whose data files are the seed's (symlinked)."""
    d = work / f"seed{i}"
    if not d.is_dir():
        d.mkdir(parents=True)
        for k, src in enumerate(seed.data_files):
            os.symlink(src, bundle.data_path(str(d / "p"), k, seed.num_shards))
    return d


# --------------------------------------------------------------------------------------
# Reading everything a map offers


def quiet(fn: Callable[[], object]) -> None:
    """Run ``fn``; a CkconvError is an accepted outcome (the next step still runs)."""
    try:
        fn()
    except CkconvError:
        pass


def consume(tmap: TensorMap) -> None:
    """Everything a user could do with a loaded map, checking shapes and sizes on the way."""
    render_table(tmap)
    render_json(tmap)
    for name, t in list(tmap.items()):
        quiet(lambda: _check_values(name, t))
        if not t.dtype.is_variable_length and t.dtype.itemsize:
            quiet(lambda: _check_stream(name, t))


def _check_values(name: str, t) -> None:
    arr = t.numpy()
    assert isinstance(arr, np.ndarray), name
    assert tuple(arr.shape) == tuple(t.shape), (name, arr.shape, t.shape)
    if t.dtype.numpy is not None and t.dtype.itemsize:
        assert arr.dtype == t.dtype.numpy, (name, arr.dtype, t.dtype)


def _check_stream(name: str, t) -> None:
    total = sum(memoryview(c).nbytes for c in t.iter_bytes(4096))
    assert total == t.nbytes, (name, total, t.nbytes)


def save_and_check(tmap: TensorMap, work: Path) -> None:
    """Converting a damaged map fails cleanly: an error and no file, or a complete file."""
    out = work / "out"
    out.mkdir(exist_ok=True)
    for f in out.iterdir():
        f.unlink()
    quiet(lambda: api.save(tmap, str(out / "m.safetensors"), skip_unsupported=True))
    leftovers = [f.name for f in out.iterdir() if TEMP_MARKER in f.name]
    assert not leftovers, leftovers


# --------------------------------------------------------------------------------------
# TF targets


def run_sstable_file(data: bytes, work: Path) -> None:
    """Input: a whole ``.index`` file. Parses every block and entry."""
    for _ in Table("fuzz.index", data).items():
        pass


def seeds_sstable_file() -> list[bytes]:
    return [s.index for s in tf_seeds()]


def run_sstable_block(data: bytes, work: Path) -> None:
    """Input: [seed][block][flags] + block contents; the block's trailer CRC is made valid.

    block selects a data block or (the last number) the index block. flags: bit 0 marks the
    block Snappy-compressed without compressing it, bit 1 compresses it for real, bit 2
    stores the type byte ``flags >> 3``.
    """
    if len(data) < 3:
        return
    seeds = tf_seeds()
    seed = seeds[data[0] % len(seeds)]
    which = data[1] % (len(seed.data_blocks) + 1)
    flags, payload = data[2], data[3:]
    btype = 0
    if flags & 2:
        import cramjam

        payload, btype = bytes(cramjam.snappy.compress_raw(payload)), 1
    elif flags & 1:
        btype = 1
    elif flags & 4:
        btype = flags >> 3
    blocks = [(b, 0) for b in seed.data_blocks]
    if which < len(blocks):
        blocks[which] = (payload, btype)
        raw = build_table(blocks, seed.index_keys)
    else:
        raw = build_table(blocks, seed.index_keys, (payload, btype))
    for _ in Table("fuzz.index", raw).items():
        pass


def seeds_sstable_block() -> list[bytes]:
    out = []
    for i, s in enumerate(tf_seeds()):
        for b, contents in enumerate(s.data_blocks):
            out.append(bytes([i, b, 0]) + contents)
            out.append(bytes([i, b, 2]) + contents)
        out.append(bytes([i, len(s.data_blocks), 0]) + s.index_block)
    return out


def run_bundle_index(data: bytes, work: Path) -> None:
    """Input: [seed] + the index entries as (varint len, key, varint len, value)*.

    The entries are written as a valid table next to the seed's real data files, then the
    checkpoint is loaded, every tensor read, and a conversion attempted.
    """
    if not data:
        return
    seeds = tf_seeds()
    i = data[0] % len(seeds)
    d = _seed_dir(work, i, seeds[i])
    write_index(d / "p.index", unpack_items(data[1:]))
    tmap = bundle.read_bundle(str(d / "p"))
    consume(tmap)
    save_and_check(tmap, work)


def seeds_bundle_index() -> list[bytes]:
    return [bytes([i]) + pack_items(s.items) for i, s in enumerate(tf_seeds())]


def _single_shard() -> list[SeedCheckpoint]:
    return [s for s in tf_seeds() if s.num_shards == 1]


def fix_checksums(items: list[tuple[bytes, bytes]], blob: bytearray) -> list[tuple[bytes, bytes]]:
    """Recompute each entry's CRC (and a string tensor's length checksum) over ``blob``."""
    out = []
    for key, value in items:
        entry = protos.BundleEntryProto()
        try:
            entry.ParseFromString(value)
        except Exception:
            out.append((key, value))
            continue
        lo, hi = entry.offset, entry.offset + entry.size
        if key == b"" or entry.slices or entry.shard_id != 0 or not 0 <= lo <= hi <= len(blob):
            out.append((key, value))
            continue
        if entry.dtype == _STRING:
            crc = _fix_string(blob, lo, hi, int(np.prod([d.size for d in entry.shape.dim],
                                                         dtype=object)))
        elif entry.dtype == _VARIANT:
            out.append((key, value))
            continue
        else:
            crc = crc32c(bytes(blob[lo:hi]))
        entry.crc32c = mask(crc)
        out.append((key, entry.SerializeToString()))
    return out


def _fix_string(blob: bytearray, lo: int, hi: int, n: int) -> int:
    """The writer's checksums (docs/formats.md §5.4) for whatever lengths the bytes now hold."""
    pos, crc = lo, 0
    try:
        for _ in range(min(n, hi - lo)):
            length, pos = varint.decode(blob, pos, hi)
            crc = crc32c(struct.pack("<I" if length <= 0xFFFFFFFF else "<Q", length), crc)
    except CkconvError:
        return crc32c(bytes(blob[lo:hi]))
    if pos + 4 > hi:
        return crc32c(bytes(blob[lo:hi]))
    blob[pos:pos + 4] = struct.pack("<I", mask(crc))
    crc = crc32c(bytes(blob[pos:pos + 4]), crc)
    return crc32c(bytes(blob[pos + 4:hi]), crc)


def run_bundle_data(data: bytes, work: Path) -> None:
    """Input: [seed][flags] + a data shard. Unless flags bit 0 is set, the index's CRCs
    (and string length checksums) are recomputed to match, so decoding itself is tested."""
    if len(data) < 2:
        return
    seeds = _single_shard()
    i = data[0] % len(seeds)
    blob = bytearray(data[2:])
    items = seeds[i].items if data[1] & 1 else fix_checksums(seeds[i].items, blob)
    d = work / f"data{i}"
    d.mkdir(exist_ok=True)
    (d / "p.data-00000-of-00001").write_bytes(blob)
    write_index(d / "p.index", items)
    tmap = bundle.read_bundle(str(d / "p"))
    consume(tmap)
    save_and_check(tmap, work)


def seeds_bundle_data() -> list[bytes]:
    return [bytes([i, 0]) + s.data_files[0].read_bytes() for i, s in enumerate(_single_shard())]


def run_string_tensor(data: bytes, work: Path) -> None:
    """Input: [n: u16 LE][flags] + one string tensor's payload, decoded as ``string[n]``.

    Checksums are made valid unless flags bit 0 is set; bit 1 reads it as big-endian.
    """
    if len(data) < 3:
        return
    n = struct.unpack_from("<H", data)[0]
    flags = data[2]
    blob = bytearray(data[3:])
    crc = crc32c(bytes(blob)) if flags & 1 else _fix_string(blob, 0, len(blob), n)
    prefix = str(work / "s")
    with open(bundle.data_path(prefix, 0, 1), "wb") as f:
        f.write(blob)
    entry = protos.BundleEntryProto(dtype=_STRING, size=len(blob), crc32c=mask(crc))
    entry.shape.dim.add(size=n)
    shards = bundle._Shards(prefix, 1)
    try:
        t = bundle._plain_tensor("s", entries.decode_entry(entry.SerializeToString()), shards,
                                 bool(flags & 2), prefix + ".index")
        _check_values("s", t)
    finally:
        shards.close()


def seeds_string_tensor() -> list[bytes]:
    out = []
    for s in _single_shard():
        blob = s.data_files[0].read_bytes()
        for key, value in s.items[1:]:
            e = protos.BundleEntryProto()
            e.ParseFromString(value)
            n = int(np.prod([d.size for d in e.shape.dim], dtype=object))
            if e.dtype == _STRING and not e.slices and n < 65536:
                out.append(struct.pack("<H", n) + b"\0" + blob[e.offset:e.offset + e.size])
    return out


def run_slice_key(data: bytes, work: Path) -> None:
    """Input: a slice key (OrderedCode). A decoded key must re-encode to a key that decodes
    to the same thing."""
    name, extents = slices.decode_slice_key(data)
    again = slices.decode_slice_key(slices.encode_slice_key(name, extents))
    assert again == (name, extents), (again, name, extents)


def seeds_slice_key() -> list[bytes]:
    out = [k for s in tf_seeds() for k, _ in s.items if k[:1] == b"\x00"]
    for extents in ([(0, -1)], [(-5, 3), (1 << 40, -1)], [(7, 1 << 62), (0, 0), (-1, -1)]):
        out.append(slices.encode_slice_key(b"a\x00b\xffc", extents))
    return out


def run_state_file(data: bytes, work: Path) -> None:
    """Input: a ``checkpoint`` state file, beside a real checkpoint. Resolves it, loads what
    it names, then records a new checkpoint over it (which re-reads the damaged file)."""
    d = work / "state"
    if not d.is_dir():
        d.mkdir()
        src = EXAMPLES / "my_model"
        for f in src.glob("test_save-1000.*"):
            os.symlink(f, d / f.name)
    (d / state.STATE_FILENAME).write_bytes(data)
    quiet(lambda: consume(api.load(str(d))))
    state.update_state(str(d / "test_save-1000"))


def seeds_state_file() -> list[bytes]:
    files = sorted((FIXTURES / "tf").glob("*/checkpoint")) + sorted(EXAMPLES.glob("*/checkpoint"))
    out = [f.read_bytes() for f in files]
    out.append(b'model_checkpoint_path: "/abs/elsewhere/test_save-1000"\n'
               b'all_model_checkpoint_paths: "/abs/elsewhere/test_save-1000"\n'
               b"all_model_checkpoint_timestamps: 1700000000.5\n"
               b"last_preserved_timestamp: 1699999999.25\n")
    return out


# --------------------------------------------------------------------------------------
# Other formats


def _other_files(*suffixes: str) -> list[Path]:
    other = FIXTURES / "other"
    if not other.is_dir():
        return []
    return sorted(p for p in other.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
                  and p.stat().st_size <= 1 << 20)


@functools.lru_cache(maxsize=None)
def _written_safetensors() -> tuple[bytes, ...]:
    """safetensors files ckconv writes from the TF fixtures (until real ones exist)."""
    import tempfile

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, s in enumerate(tf_seeds()[:4]):
            path = os.path.join(tmp, f"{i}.safetensors")
            try:
                api.save(bundle.read_bundle(str(s.prefix)), path, skip_unsupported=True)
            except CkconvError:
                continue
            with open(path, "rb") as f:
                out.append(f.read())
        # And one by the reference implementation, with the dtypes it writes.
        from safetensors.numpy import save

        arrays = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(3, np.float16),
                  "i": np.array([1, -2], np.int64), "flag": np.array([True]), "empty": np.zeros((0, 2))}
        out.append(save(arrays, metadata={"format": "pt"}))
    return tuple(out)


def _run_file(data: bytes, work: Path, name: str, fmt: Optional[str]) -> None:
    path = work / name
    # A new file (new inode) each time: an earlier case's map may still hold the old one
    # open, and HDF5 would serve its cached metadata for the rewritten bytes.
    path.unlink(missing_ok=True)
    path.write_bytes(data)
    tmap = api.load(str(path), fmt)
    consume(tmap)
    save_and_check(tmap, work)


def run_safetensors(data: bytes, work: Path) -> None:
    """Input: a ``.safetensors`` file; sniffed, then read as safetensors."""
    quiet(lambda: _run_file(data, work, "x.safetensors", None))
    _run_file(data, work, "x.safetensors", "safetensors")


def seeds_safetensors() -> list[bytes]:
    return list(_written_safetensors()) + [p.read_bytes() for p in _other_files(".safetensors")]


def _has_format(name: str) -> Callable[[], bool]:
    return lambda: name in formats.NAMES


def run_hdf5(data: bytes, work: Path) -> None:
    """Input: an HDF5 file (Keras ``.h5`` / ``.weights.h5``)."""
    _run_file(data, work, "x.h5", "hdf5")


def seeds_hdf5() -> list[bytes]:
    return [p.read_bytes() for p in _other_files(".h5", ".hdf5", ".keras")]


def _torch_name() -> Optional[str]:
    return next((n for n in formats.NAMES if n in ("torch", "pytorch", "pt")), None)


def run_torch(data: bytes, work: Path) -> None:
    """Input: a PyTorch file (zip or legacy pickle); loaded without running its pickle code."""
    _run_file(data, work, "x.pt", _torch_name())


def _warm_imports() -> None:
    """Import torch and ml_dtypes before the timed cases: a first import inside a case can
    exceed its alarm on a busy machine (ml_dtypes took 1.9 s next to torch), and an import
    cut short leaves the module half-initialised for every later case."""
    for name in ("torch", "ml_dtypes"):
        try:
            __import__(name)
        except ImportError:
            pass


def seeds_torch() -> list[bytes]:
    # torch.load (ckconv's fallback) is part of this target.
    _warm_imports()
    pickles = FIXTURES / "pickles"  # training pickles, quantized and legacy files
    extra = sorted(pickles.iterdir()) if pickles.is_dir() else []
    return [p.read_bytes() for p in _other_files(".pt", ".pth", ".bin", ".ckpt") + extra
            if p.suffix in (".pt", ".pth", ".bin", ".ckpt")]


# --------------------------------------------------------------------------------------
# The placeholder unpickler: mutated pickles behind a valid zip archive


#: Storage records every fuzzed archive carries (the fixtures' pickles name keys "0"...),
#: large enough for every storage a seed describes.
_PICKLE_RECORDS = {str(i): bytes(range(256)) * 32 for i in range(32)}


def _torch_archive(pkl: bytes) -> bytes:
    """A torch.save zip archive holding ``pkl`` as data.pkl (CRCs valid, members stored)."""
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", b"little")
        for key, data in _PICKLE_RECORDS.items():
            z.writestr(f"archive/data/{key}", data)
    return out.getvalue()


_ABSENT = object()


def run_pickle(data: bytes, work: Path) -> None:
    """Input: a ``data.pkl`` pickle. Wrapped in a valid archive, so every mutation reaches the
    restricted / placeholder unpickler, numpy and quantized stand-ins and the module walk;
    the names a pickle gives are never imported (checked)."""
    before = set(sys.modules)
    saved = sys.modules.get("torch", _ABSENT)
    sys.modules["torch"] = None  # type: ignore[assignment]  # ckconv's reader, not torch's
    try:
        _run_file(_torch_archive(data), work, "x.pt", _torch_name())
    finally:
        if saved is _ABSENT:
            del sys.modules["torch"]
        else:
            sys.modules["torch"] = saved  # type: ignore[assignment]
    # Any module the pickle could name, imported while reading it, is a finding (ckconv's
    # own lazy imports are not named in pickles).
    named = set(re.findall(rb"[A-Za-z_][A-Za-z0-9_]*", data))
    imported = {m.split(".")[0].encode() for m in set(sys.modules) - before}
    assert not imported & named, f"reading a pickle imported {sorted(imported & named)[:5]}"


def _pickle_members(path: Path) -> list[bytes]:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return [z.read(n) for n in z.namelist() if n.endswith("data.pkl")]
    except (zipfile.BadZipFile, OSError):
        return []


def _synthetic_pickles() -> list[bytes]:
    """Placeholders (object, list and dict subclasses), numpy values and a dangerous name in
    every pickle protocol, made by the real pickler with a module that exists only here."""
    import pickle
    import types

    fake = types.ModuleType("fuzzmod")

    class Obj:
        pass

    class Lst(list):
        pass

    class Dct(dict):
        pass

    for cls in (Obj, Lst, Dct):
        cls.__module__, cls.__qualname__ = "fuzzmod", cls.__name__
        setattr(fake, cls.__name__, cls)
    sys.modules["fuzzmod"] = fake
    try:
        o = Obj()
        o.__dict__.update(lr=0.1, _parameters={}, _buffers={}, _modules={"c": Obj()})
        value = {"o": o, "l": Lst([1, 2]), "d": Dct(a=1), "cls": Obj,
                 "arr": np.arange(6, dtype=">i4").reshape(2, 3), "s": np.float64(0.5),
                 "f": np.asfortranarray(np.ones((2, 2)))}
        out = [pickle.dumps(value, protocol=p) for p in range(pickle.HIGHEST_PROTOCOL + 1)]
    finally:
        del sys.modules["fuzzmod"]
    out.append(b"\x80\x02}(X\x01\x00\x00\x00x(I1\nios\nsystem\nu.")  # INST os.system
    return out


@functools.lru_cache(maxsize=None)
def _pickle_seeds() -> tuple[bytes, ...]:
    files = _other_files(".pt", ".pth", ".bin", ".ckpt")
    pickles = FIXTURES / "pickles"
    if pickles.is_dir():
        files += sorted(p for p in pickles.iterdir() if p.suffix in (".pt", ".pth", ".ckpt"))
    return tuple(pkl for f in files for pkl in _pickle_members(f)) + tuple(_synthetic_pickles())


def seeds_pickle() -> list[bytes]:
    _warm_imports()
    return list(_pickle_seeds())


def run_any_file(data: bytes, work: Path) -> None:
    """Input: any file. Sniffed and loaded; then forced through every reader (``--from``)."""
    quiet(lambda: _run_file(data, work, "blob", None))
    for fmt in formats.NAMES:
        quiet(lambda: _run_file(data, work, "blob", fmt))


def seeds_any_file() -> list[bytes]:
    files = [p for p in sorted(FIXTURES.rglob("*")) if p.is_file() and p.suffix not in (".py", ".md")
             and p.stat().st_size <= 1 << 16]
    return [p.read_bytes() for p in files] + [b"", b"\x00" * 64]


TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("sstable_file", run_sstable_file, seeds_sstable_file, "SSTable footer, blocks, CRCs"),
    Target("sstable_block", run_sstable_block, seeds_sstable_block,
           "SSTable entries, restart arrays, varints, Snappy (behind valid CRCs)"),
    Target("bundle_index", run_bundle_index, seeds_bundle_index,
           "BundleHeaderProto, BundleEntryProto, shapes, shards, slices"),
    Target("bundle_data", run_bundle_data, seeds_bundle_data,
           "data shards: sizes, string/variant decoding (behind valid CRCs)"),
    Target("string_tensor", run_string_tensor, seeds_string_tensor, "string tensor payloads"),
    Target("slice_key", run_slice_key, seeds_slice_key, "OrderedCode slice keys"),
    Target("state_file", run_state_file, seeds_state_file, "the `checkpoint` text file"),
    Target("safetensors", run_safetensors, seeds_safetensors, "safetensors header and data"),
    Target("hdf5", run_hdf5, seeds_hdf5, "HDF5 (Keras) files", _has_format("hdf5")),
    Target("torch", run_torch, seeds_torch, "PyTorch zip/pickle files",
           lambda: _torch_name() is not None),
    Target("pickle", run_pickle, seeds_pickle,
           "data.pkl behind a valid archive: placeholder unpickler, numpy, quantized, modules",
           lambda: _torch_name() is not None),
    Target("any_file", run_any_file, seeds_any_file, "sniffing and every reader on any bytes"),
]}


def _register_legacy() -> None:
    from .targets_legacy import run_snappy, run_v1_entries, seeds_snappy, seeds_v1_entries

    for t in (Target("snappy", run_snappy, seeds_snappy,
                     "Snappy blocks, against cramjam's decoder"),
              Target("v1_entries", run_v1_entries, seeds_v1_entries,
                     "TF V1 checkpoints: SavedTensorSlices header, slices, TensorProto values")):
        TARGETS[t.name] = t


_register_legacy()


def available() -> list[Target]:
    return [t for t in TARGETS.values() if t.available() and t.seeds()]


def iter_seeds(target: Target) -> Iterator[bytes]:
    yield from target.seeds()
