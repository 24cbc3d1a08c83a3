"""Output blocks allocated before a large tensor is copied (ckconv.io.preallocate): the
allocation is real, never reaches past what is written, and a full disk is one clear error
with nothing left behind."""

from __future__ import annotations

import ctypes
import errno
import os
import sys

import numpy as np
import pytest

import ckconv
from ckconv.io import preallocate, streaming
from ckconv.errors import CkconvError

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fallocate(2) is Linux's")

MIB = 1 << 20
TARGETS = ["out.safetensors", "out.pt", "out.h5", "out/model.ckpt-2"]


@pytest.fixture
def big_ckpt(tmp_path):
    rng = np.random.default_rng(11)
    arrays = {"a": rng.standard_normal(3 * MIB // 4 + 5).astype(np.float32),
              "b": rng.integers(-9, 9, size=(700, 1000)).astype(np.int64),
              "small": np.arange(6, dtype=np.float32)}
    prefix = str(tmp_path / "src" / "model.ckpt-1")
    ckconv.save(arrays, prefix)
    return prefix, arrays


def _written(target_path):
    """The file holding the tensor bytes (a TF target is a prefix)."""
    if target_path.endswith("model.ckpt-2"):
        return target_path + ".data-00000-of-00001"
    return target_path


@linux_only
def test_reserve_allocates_blocks_and_keeps_the_size(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    fd = os.open(path, os.O_RDWR)
    try:
        before = os.fstat(fd).st_blocks
        assert preallocate.reserve(fd, 1, 8 * MIB) is True  # ext4, xfs, btrfs, tmpfs all can
        st = os.fstat(fd)
        assert st.st_size == 1
        assert (st.st_blocks - before) * 512 >= 8 * MIB
    finally:
        os.close(fd)


@linux_only
def test_reserving_more_than_the_disk_holds_is_an_error(tmp_path):
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        with pytest.raises(OSError) as info:
            preallocate.reserve(fd, 0, 1 << 62)  # 4 EiB: no file system here has room
        assert info.value.errno in (errno.ENOSPC, errno.EFBIG)
        assert os.fstat(fd).st_size == 0
    finally:
        os.close(fd)


def test_reserve_is_a_no_op_where_allocation_is_not_supported(tmp_path, monkeypatch):
    def unsupported(fd, mode, offset, length):
        ctypes.set_errno(errno.EOPNOTSUPP)
        return -1

    monkeypatch.setattr(preallocate, "_call", unsupported)
    with open(tmp_path / "f", "wb") as f:
        assert preallocate.reserve(f.fileno(), 0, MIB) is False
    assert preallocate.reserve(-1, 0, 0) is False  # nothing to allocate: no call at all


@pytest.mark.parametrize("target", TARGETS)
def test_each_large_tensor_is_allocated_exactly_where_it_is_written(big_ckpt, tmp_path,
                                                                   monkeypatch, target):
    """The ranges asked for are exactly the large tensors' bytes in the output (safetensors:
    its whole data region; nothing allocated past the end of the file), and the output
    reads back the same."""
    prefix, arrays = big_ckpt
    asked = []
    real = streaming.reserve

    def record(fd, offset, length):
        asked.append((offset, length))
        return real(fd, offset, length)

    monkeypatch.setattr(streaming, "reserve", record)
    out = str(tmp_path / target)
    ckconv.convert(prefix, out)
    data = open(_written(out), "rb").read()
    big = {n: a for n, a in arrays.items() if a.nbytes > streaming.SMALL}
    if target.endswith(".safetensors"):
        # the header fixes the whole data region: allocated in one call, exactly to the end
        total = sum(a.nbytes for a in arrays.values())
        assert asked == [(len(data) - total, total)]
        asked = []
    else:
        assert sorted(length for _, length in asked) == sorted(a.nbytes for a in big.values())
    for offset, length in asked:
        assert offset + length <= len(data)
        assert any(data[offset:offset + length] == a.tobytes() for a in big.values())
    back = ckconv.load(out)
    for name, arr in arrays.items():
        np.testing.assert_array_equal(back[name].numpy(), arr)


@linux_only
@pytest.mark.parametrize("target", TARGETS)
def test_no_block_is_left_allocated_past_the_end(big_ckpt, tmp_path, target):
    prefix, _ = big_ckpt
    out = str(tmp_path / target)
    ckconv.convert(prefix, out)
    st = os.stat(_written(out))
    assert st.st_blocks * 512 <= st.st_size + 64 * 1024  # file-system slack, not MiBs


@pytest.mark.parametrize("target", TARGETS)
def test_a_full_disk_is_one_clear_error_and_leaves_nothing(big_ckpt, tmp_path, monkeypatch,
                                                           target):
    prefix, _ = big_ckpt

    def full(fd, mode, offset, length):
        ctypes.set_errno(errno.ENOSPC)
        return -1

    monkeypatch.setattr(preallocate, "_call", full)
    out = tmp_path / "dst" / target
    with pytest.raises(CkconvError, match=r"No space left on device") as info:
        ckconv.convert(prefix, str(out))
    assert "\n" not in str(info.value)
    assert os.path.basename(target) in str(info.value)  # names the output
    left = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "dst") for f in fs]
    assert left == []
