"""Every single-bit flip in a real TF checkpoint is caught, naming the tensor or block and file.

Systematic, not sampled: each bit of the data files of the ``dtypes`` and ``strings``
fixtures (tensor bytes, string lengths, string length checksums) and each bit of their
``.index`` files (data blocks, metaindex, index block, trailers, footer) is flipped in turn.
CRC-32C detects every single-bit error, so the only flips allowed through are those in the
footer's padding, which no reader looks at; for those the loaded values must be unchanged.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import ckconv
from tests.helpers import fixture_prefix
from ckconv.formats.tf.table import FOOTER_SIZE


def _copy(name: str, tmp_path: Path) -> str:
    src = fixture_prefix(name)
    base = os.path.basename(src)
    for f in os.listdir(os.path.dirname(src)):
        if f.startswith(base + "."):
            shutil.copy(os.path.join(os.path.dirname(src), f), tmp_path / f)
    return str(tmp_path / base)


def _flip(fd: int, offset: int, bit: int) -> None:
    b = os.pread(fd, 1, offset)[0]
    os.pwrite(fd, bytes([b ^ (1 << bit)]), offset)


def _read_all(tmap) -> dict[str, np.ndarray]:
    return {name: t.numpy() for name, t in tmap.items()}


@pytest.mark.parametrize("fixture", ["dtypes", "strings"])
def test_every_bit_of_every_tensor(tmp_path: Path, fixture: str) -> None:
    prefix = _copy(fixture, tmp_path)
    data_file = prefix + ".data-00000-of-00001"
    tmap = ckconv.load(prefix)
    owner: dict[int, str] = {}
    for name, t in tmap.items():
        for off in range(t._offset, t._offset + t._size):
            owner[off] = name
    size = os.path.getsize(data_file)
    assert sorted(owner) == list(range(size))  # every byte belongs to a tensor: no gaps
    flips = 0
    fd = os.open(data_file, os.O_RDWR)
    try:
        for offset in range(size):
            name = owner[offset]
            t = tmap[name]
            for bit in range(8):
                _flip(fd, offset, bit)
                with pytest.raises(ckconv.CorruptCheckpointError) as info:
                    t.numpy()
                msg = str(info.value)
                assert repr(name) in msg and data_file in msg, msg
                if not t.dtype.is_variable_length:  # the streaming path used by conversions
                    with pytest.raises(ckconv.CorruptCheckpointError, match="checksum"):
                        for _ in t.iter_bytes():
                            pass
                _flip(fd, offset, bit)
                flips += 1
    finally:
        os.close(fd)
    assert flips == 8 * size
    _read_all(tmap)  # restored: everything reads again


@pytest.mark.parametrize("fixture", ["dtypes", "strings"])
def test_every_bit_of_the_index(tmp_path: Path, fixture: str) -> None:
    prefix = _copy(fixture, tmp_path)
    index_file = prefix + ".index"
    good = Path(index_file).read_bytes()
    expected = _read_all(ckconv.load(prefix))
    handles_end, handles = _footer_handles(good)
    caught = ignored = 0
    for offset in range(len(good)):
        for bit in range(8):
            bad = bytearray(good)
            bad[offset] ^= 1 << bit
            Path(index_file).write_bytes(bad)
            try:
                values = _read_all(ckconv.load(prefix))
            except ckconv.FormatError as exc:
                assert index_file in str(exc), str(exc)
                caught += 1
                continue
            # Only the footer's padding is read by nobody (TF ignores it too); and setting
            # the continuation bit of the last handle byte just adds a zero byte from the
            # padding to the varint: the same handles, the same file as far as readers go.
            in_padding = handles_end <= offset < len(good) - 8
            assert in_padding or _footer_handles(bytes(bad))[1] == handles, (offset, bit)
            assert values.keys() == expected.keys()
            for k in values:
                assert _same(values[k], expected[k]), k
            ignored += 1
    assert caught + ignored == 8 * len(good)
    assert ignored <= 8 * (len(good) - 8 - handles_end) + 1
    Path(index_file).write_bytes(good)


def test_index_errors_name_the_block(tmp_path: Path) -> None:
    prefix = _copy("dtypes", tmp_path)
    index_file = prefix + ".index"
    good = Path(index_file).read_bytes()
    for offset, what in [(10, "data block"), (len(good) - FOOTER_SIZE - 6, "index block")]:
        bad = bytearray(good)
        bad[offset] ^= 4
        Path(index_file).write_bytes(bad)
        with pytest.raises(ckconv.CorruptCheckpointError, match=f"checksum mismatch in {what} at offset"):
            ckconv.load(prefix)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype == object:
        return a.tolist() == b.tolist()
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()  # NaN-safe


def _footer_handles(index: bytes) -> tuple[int, list[int]]:
    """(offset just past the footer's two block handles, the four numbers they hold)."""
    pos = len(index) - FOOTER_SIZE
    values = []
    for _ in range(4):  # metaindex offset/size, index offset/size
        value, shift = 0, 0
        while index[pos] & 0x80:
            value |= (index[pos] & 0x7F) << shift
            shift += 7
            pos += 1
        values.append(value | index[pos] << shift)
        pos += 1
    return pos, values
