"""One test per bug the fuzzers found, so none comes back.

Inputs kept as files (``tests/fixtures/fuzz/<target>-<what>``) are replayed through the
same harness as the campaign; the others are rebuilt here from the real fixtures.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

import ckconv
from ckconv import formats
from ckconv.formats.tf import protos, slices
from ckconv.formats.tf.crc import crc32c, mask
from ckconv.formats.tf.table_writer import TableWriter
from tests.helpers import fixture_prefix

ROOT = Path(__file__).resolve().parents[2]
from fuzz import harness, targets  # noqa: E402

SAVED = ROOT / "tests" / "fixtures" / "fuzz"


@pytest.mark.parametrize("path", sorted(SAVED.iterdir()) if SAVED.is_dir() else [],
                         ids=lambda p: p.name)
def test_saved_finding_replays_cleanly(path: Path, tmp_path: Path) -> None:
    target = targets.TARGETS[path.name.split("-")[0]]
    if not target.available():
        pytest.skip(f"{target.name} reader not in this build")
    with harness.Runner(target, tmp_path) as runner:
        runner.run(path.read_bytes())


def _bundle(tmp_path: Path, entries: dict[bytes, bytes], data: bytes, shards: int = 1) -> str:
    prefix = str(tmp_path / "m")
    header = protos.BundleHeaderProto(num_shards=shards)
    header.version.producer = 1
    with open(prefix + ".index", "wb") as f:
        table = TableWriter(f)
        table.add(b"", header.SerializeToString())
        for key in sorted(entries):
            table.add(key, entries[key])
        table.finish()
    Path(prefix + ".data-00000-of-00001").write_bytes(data)
    return prefix


def _entry(dtype: int, shape: list[int], offset: int, size: int, crc: int = 0, **kw) -> protos.BundleEntryProto:
    e = protos.BundleEntryProto(dtype=dtype, offset=offset, size=size, crc32c=mask(crc), **kw)
    e.shape.SetInParent()
    for d in shape:
        e.shape.dim.add(size=d)
    return e


def test_string_length_varint_beyond_64_bits(tmp_path: Path) -> None:
    """Was: struct.error packing the length for the length checksum."""
    data = b"\xff" * 9 + b"\x7f" + b"\0\0\0\0abc"
    prefix = _bundle(tmp_path, {b"s": _entry(7, [1], 0, len(data), crc32c(data)).SerializeToString()}, data)
    with pytest.raises(ckconv.CorruptCheckpointError, match="'s'"):
        ckconv.load(prefix)["s"].numpy()


def test_variant_shape_must_fit_its_bytes(tmp_path: Path) -> None:
    """Was: np.empty(2**40, object) before reading a single byte."""
    prefix = _bundle(tmp_path, {b"v": _entry(21, [2**40], 0, 10).SerializeToString()}, b"\0" * 10)
    with pytest.raises(ckconv.CorruptCheckpointError, match="variant tensor 'v' is too small"):
        ckconv.load(prefix)


def test_huge_partitioned_tensor_checks_its_slices_before_allocating(tmp_path: Path) -> None:
    """Was: np.empty of the full (absurd) shape before a slice was found missing from the file."""
    n = 2**33
    full = _entry(1, [n], 0, 0)
    full.slices.add().extent.add(start=0, length=n)
    part = _entry(1, [n], 0, 4 * n)
    key = slices.encode_slice_key(b"w", [(0, n)])
    prefix = _bundle(tmp_path, {b"w": full.SerializeToString(), key: part.SerializeToString()}, b"")
    t = ckconv.load(prefix)["w"]
    tracemalloc.start()
    try:
        with pytest.raises(ckconv.CorruptCheckpointError, match="truncated"):
            t.numpy()
        assert tracemalloc.get_traced_memory()[1] < 64 << 20
    finally:
        tracemalloc.stop()


def test_header_with_two_billion_shards_fails_at_once(tmp_path: Path) -> None:
    """Was: two billion data file names built before looking for the first."""
    prefix = _bundle(tmp_path, {}, b"", shards=2**31 - 1)
    with pytest.raises(ckconv.CorruptCheckpointError, match="2147483647 shards"):
        ckconv.load(prefix)


def test_non_utf8_tf_name_to_safetensors(tmp_path: Path) -> None:
    """Was: UnicodeEncodeError from json.dumps(...).encode() in the safetensors writer."""
    data = np.float32(1).tobytes()
    entry = _entry(1, [], 0, 4, crc32c(data)).SerializeToString()
    prefix = _bundle(tmp_path, {b"bad\xffname": entry}, data)
    tmap = ckconv.load(prefix)
    with pytest.raises(ckconv.UnsupportedError, match="not valid UTF-8"):
        ckconv.save(tmap, tmp_path / "out.safetensors")
    assert not any(".ckconv-tmp-" in f for f in os.listdir(tmp_path))


def _zip_with(tmp_path: Path, patch: str) -> Path:
    """A small zip archive whose central directory is damaged the way fuzzing found."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    raw = bytearray(buf.getvalue())
    cd = raw.rindex(b"PK\x01\x02")
    if patch == "utf8-name":  # flag bit 11 (UTF-8 names) with a name that is not UTF-8
        struct.pack_into("<H", raw, cd + 8, 0x800)
        raw[cd + 46] = 0xFF
    elif patch == "version":  # "version needed to extract" 12.8
        struct.pack_into("<H", raw, cd + 6, 128)
    path = tmp_path / f"{patch}.pt"
    path.write_bytes(raw)
    return path


@pytest.mark.parametrize("patch", ["utf8-name", "version"])
def test_damaged_zip_directory(tmp_path: Path, patch: str) -> None:
    """Was: UnicodeDecodeError / NotImplementedError out of zipfile (sniffing and torch reader)."""
    path = _zip_with(tmp_path, patch)
    with pytest.raises(ckconv.FormatError):
        ckconv.load(path)
    if "torch" in formats.NAMES and _has_torch():
        with pytest.raises(ckconv.CkconvError):
            ckconv.load(path, "torch")


def test_zip64_locator_on_another_disk(tmp_path: Path) -> None:
    """Was: BadZipFile out of zipfile.is_zipfile (it only catches OSError)."""
    raw = bytearray(b"\x80\x02}q\x00." + b"\0" * 64)
    raw += struct.pack("<4sIQI", b"PK\x06\x07", 0, 0, 2)  # zip64 locator: 2 disks
    raw += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0, 0, 0, 0, 0)
    path = tmp_path / "disks.pt"
    path.write_bytes(raw)
    with pytest.raises(ckconv.FormatError):
        ckconv.load(path)
    if _has_torch():
        with pytest.raises(ckconv.CkconvError):
            ckconv.load(path, "torch")


def test_legacy_torch_pickle_length_claim_costs_no_memory(tmp_path: Path) -> None:
    """Was: a 2 GB buffer allocated for a string length in a 40-byte legacy .pt."""
    if not _has_torch():
        pytest.skip("torch not installed")
    legacy = (ROOT / "tests" / "fixtures" / "other" / "legacy.pt").read_bytes()
    magic_and_protocol = legacy[:21]  # the first two pickles: magic number, protocol 1001
    path = tmp_path / "claim.pt"
    # The third pickle (sys info) is a BINUNICODE string claiming 2 GB, followed by 3 bytes.
    path.write_bytes(magic_and_protocol + b"\x80\x02X" + struct.pack("<I", 0x7FFFFFF0) + b"abc.")
    tracemalloc.start()
    try:
        with pytest.raises(ckconv.CkconvError):
            ckconv.load(path, "torch")
        assert tracemalloc.get_traced_memory()[1] < 256 << 20
    finally:
        tracemalloc.stop()


def test_partitioned_fixture_still_reads(tmp_path: Path) -> None:
    """The slice checks added above do not get in the way of real partitioned variables."""
    src = fixture_prefix("partitioned")
    for f in os.listdir(os.path.dirname(src)):
        shutil.copy(os.path.join(os.path.dirname(src), f), tmp_path / f)
    tmap = ckconv.load(tmp_path / os.path.basename(src))
    assert tmap["emb"].numpy().shape == (10, 4)


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def test_torch_single_element_view_with_a_stride(tmp_path: Path) -> None:
    """Was: RuntimeError "stride(-1) must be 1 to view Float as Byte" for a legitimate tensor."""
    if not _has_torch():
        pytest.skip("torch not installed")
    import torch

    torch.save({"w": torch.arange(9.0)[::3][:1], "e": torch.as_strided(torch.zeros(9), (0,), (3,))},
               tmp_path / "s.pt")
    tmap = ckconv.load(tmp_path / "s.pt")
    assert tmap["w"].numpy().tolist() == [0.0] and tmap["e"].numpy().shape == (0,)
    ckconv.save(tmap, tmp_path / "s.safetensors")
    assert ckconv.load(tmp_path / "s.safetensors")["w"].numpy().tolist() == [0.0]


def test_slice_entries_of_no_partitioned_tensor_are_named(tmp_path: Path) -> None:
    """A slice entry whose tensor is stored whole: left out, and the note decodes its key."""
    data = np.float32([1, 2]).tobytes()
    whole = _entry(1, [2], 0, 8, crc32c(data)).SerializeToString()
    key = slices.encode_slice_key(b"w", [(0, 1)])
    prefix = _bundle(tmp_path, {b"w": whole, key: whole}, data)
    tmap = ckconv.load(prefix)
    assert list(tmap) == ["w"]
    assert any("left out 1 slice entry of no partitioned tensor: w[0,1]" in n
               for n in tmap.notes), tmap.notes
