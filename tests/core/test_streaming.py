"""The file-to-file copy path (streaming.copy_tensor): exact bytes, checksums, fallbacks,
and damage caught even though the bytes never pass through Python."""

from __future__ import annotations

import errno
import os
import zlib

import numpy as np
import pytest

import ckconv
from ckconv.io import streaming
from ckconv.errors import CorruptCheckpointError
from ckconv.io.checksums import crc32c

BIG = (3 << 20) // 4 + 5  # float32 elements: over 3 MiB, above streaming.SMALL, odd length


@pytest.fixture
def big_ckpt(tmp_path):
    rng = np.random.default_rng(7)
    arrays = {"a": rng.standard_normal(BIG).astype(np.float32),
              "b": rng.integers(-9, 9, size=(1000, 700)).astype(np.int64),
              "small": np.arange(6, dtype=np.float32)}
    prefix = str(tmp_path / "src" / "model.ckpt-1")
    ckconv.save(arrays, prefix)
    return prefix, arrays


def _copy(tensor, tmp_path, head=b"head", **kw):
    out = tmp_path / "copy.bin"
    with open(out, "wb") as f:
        f.write(head)  # the copy lands at the file's current position, after this
        copied = streaming.copy_tensor(tensor, f, **kw)
    return out.read_bytes()[len(head):], copied


@pytest.mark.parametrize("head, method", [(b"", "_copy_file_range"), (b"head", "_buffered_copy")])
def test_region_copy_is_exact_and_checksummed(big_ckpt, tmp_path, monkeypatch, head, method):
    """Tensor "a" starts the data file: with nothing before it in the output, source and
    destination share their place in a page and the kernel copies; 4 bytes later they do
    not, and the bytes go through the cache-sized buffer."""
    used = []
    real = getattr(streaming, method)

    def spy(*args):
        used.append(method)
        return real(*args)

    monkeypatch.setattr(streaming, method, spy)
    prefix, arrays = big_ckpt
    t = ckconv.load(prefix)["a"]
    assert t.file_region() is not None and t.file_region().offset == 0
    ticks = []
    data, copied = _copy(t, tmp_path, head, crc32c=True, crc32=True, progress=ticks.append)
    assert used
    raw = arrays["a"].tobytes()
    assert data == raw
    assert copied.nbytes == len(raw) == sum(ticks)
    assert copied.crc32c == crc32c(raw)
    assert copied.crc32 == zlib.crc32(raw)


def test_chunk_path_gives_the_same_checksums(big_ckpt, tmp_path):
    prefix, arrays = big_ckpt
    t = ckconv.load(prefix)["b"]
    in_memory = ckconv.tensor.ArrayTensor(arrays["b"])  # no file region: chunk path
    assert in_memory.file_region() is None
    a, ca = _copy(t, tmp_path, crc32c=True, crc32=True)
    b, cb = _copy(in_memory, tmp_path, crc32c=True, crc32=True)
    assert a == b and (ca.nbytes, ca.crc32c, ca.crc32) == (cb.nbytes, cb.crc32c, cb.crc32)


@pytest.mark.parametrize("broken", [["_copy_file_range"], ["_copy_file_range", "_sendfile"]])
def test_unsupported_kernel_copies_fall_back(big_ckpt, tmp_path, monkeypatch, broken):
    def refuse(*args):
        raise OSError(errno.EXDEV, "cross-device")

    for name in broken:
        monkeypatch.setattr(streaming, name, refuse)
    prefix, arrays = big_ckpt
    data, copied = _copy(ckconv.load(prefix)["a"], tmp_path, b"", crc32c=True)  # aligned
    assert data == arrays["a"].tobytes() and copied.crc32c == crc32c(data)


def test_other_copy_errors_propagate(big_ckpt, tmp_path, monkeypatch):
    def fail(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(streaming, "_copy_file_range", fail)
    prefix, _ = big_ckpt
    with pytest.raises(OSError, match="No space"):
        _copy(ckconv.load(prefix)["a"], tmp_path, b"")  # aligned: the kernel copy is tried


@pytest.mark.parametrize("target", ["out.safetensors", "out/model.ckpt-2"])
def test_flipped_byte_in_a_big_tensor_fails_the_conversion(big_ckpt, tmp_path, target):
    prefix, _ = big_ckpt
    t = ckconv.load(prefix)["a"]
    data_file = prefix + ".data-00000-of-00001"
    with open(data_file, "r+b") as f:  # flip a bit in the middle of the kernel-copied region
        f.seek(t._offset + t._size // 2)
        b = f.read(1)[0]
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b ^ 0x10]))
    dst = tmp_path / target
    with pytest.raises(CorruptCheckpointError, match=r"tensor 'a'.*checksum mismatch"):
        ckconv.convert(prefix, str(dst))
    leftovers = [f for f in os.listdir(dst.parent) if not f.startswith("src")] if dst.parent.exists() else []
    assert leftovers == []  # nothing half-written


def test_source_shrinking_mid_copy_is_a_clear_error(big_ckpt, tmp_path):
    prefix, _ = big_ckpt
    tmap = ckconv.load(prefix)
    t = tmap["a"]
    region = t.file_region()  # sizes were checked here; now the file loses its tail
    os.truncate(prefix + ".data-00000-of-00001", t._offset + t._size // 2)
    with pytest.raises(CorruptCheckpointError, match=r"tensor 'a'.*truncated"):
        with open(tmp_path / "x", "wb") as f:
            streaming._kernel_copy(region, f.fileno(), None)


def test_safetensors_source_copies_file_to_file(big_ckpt, tmp_path):
    prefix, arrays = big_ckpt
    st = str(tmp_path / "m.safetensors")
    ckconv.convert(prefix, st)
    t = ckconv.load(st)["a"]
    assert t.file_region() is not None
    back = str(tmp_path / "back" / "model.ckpt-3")
    ckconv.convert(st, back)  # the TF writer's CRC comes from the checksum thread
    again = ckconv.load(back)
    for name, arr in arrays.items():
        np.testing.assert_array_equal(again[name].numpy(), arr)  # verifies every stored CRC


@pytest.mark.parametrize("piece", [64 << 10, 1 << 20, 3 << 20])
def test_checksums_split_between_two_threads_join_exactly(big_ckpt, tmp_path, monkeypatch, piece):
    monkeypatch.setattr(streaming, "PIECE", piece)
    prefix, arrays = big_ckpt
    data, copied = _copy(ckconv.load(prefix)["a"], tmp_path, crc32c=True, crc32=True)
    raw = arrays["a"].tobytes()
    assert (copied.crc32c, copied.crc32) == (crc32c(raw), zlib.crc32(raw))


def test_main_thread_takes_pieces_when_the_helper_is_slow(big_ckpt, tmp_path, monkeypatch):
    """Hold the helper thread back: the main thread then checksums the pieces itself."""
    import threading

    monkeypatch.setattr(streaming, "PIECE", 64 << 10)
    gate = threading.Event()
    run_front, finish = streaming._Checksummer._run_front, streaming._Checksummer.finish
    taken_by_main = []

    def held_front(self):
        gate.wait(10)
        run_front(self)

    def finish_then_release(self):
        threading.Timer(0.2, gate.set).start()
        return finish(self)

    sums = streaming._Checksummer._sums

    def counted_sums(self, i, into):
        if threading.current_thread() is threading.main_thread():
            taken_by_main.append(i)
        return sums(self, i, into)

    monkeypatch.setattr(streaming._Checksummer, "_run_front", held_front)
    monkeypatch.setattr(streaming._Checksummer, "finish", finish_then_release)
    monkeypatch.setattr(streaming._Checksummer, "_sums", counted_sums)
    prefix, arrays = big_ckpt
    _, copied = _copy(ckconv.load(prefix)["a"], tmp_path, crc32c=True, crc32=True)
    raw = arrays["a"].tobytes()
    assert (copied.crc32c, copied.crc32) == (crc32c(raw), zlib.crc32(raw))
    assert len(taken_by_main) > 1


@pytest.mark.parametrize("helper_takes", [0, 1, 2, 6, 7, 8, 12, 13])
def test_pieces_split_anywhere_between_helper_and_main_join_exactly(big_ckpt, monkeypatch,
                                                                     helper_takes):
    """The helper starts halfway and wraps around; the main thread takes the rest from the
    other end. Wherever they meet, the runs join to the whole region's checksums."""
    monkeypatch.setattr(streaming, "PIECE", 256 << 10)
    prefix, arrays = big_ckpt
    region = ckconv.load(prefix)["a"].file_region()
    summer = streaming._Checksummer(region, want_crc32c=True, want_crc32=True)
    assert len(summer.windows) == 13 and summer.order[:2] == [0, 1]  # 3 MiB and 20 bytes
    summer.back = helper_takes
    summer._run_front()  # run here, synchronously: takes order[0:helper_takes]
    summer.back = len(summer.order)
    summer.helping, summer.error = True, None
    copied = summer.finish()
    raw = arrays["a"].tobytes()
    assert (copied.crc32c, copied.crc32) == (crc32c(raw), zlib.crc32(raw))


def _agreement(a: int, b: int) -> int:
    """The largest power of two (up to PLACEMENT) modulo which offsets a and b agree."""
    m = streaming.PLACEMENT
    while (a - b) % m:
        m //= 2
    return m


def test_placement_pad_takes_the_largest_modulus_the_budget_allows():
    mib = 1 << 20
    assert streaming.placement_pad(0, 100, budget=10 * mib) == 2 * mib - 100
    # 2 MiB, 1 MiB, 512 KiB and 256 KiB would each cost more than 200,000 bytes; 128 KiB fits
    assert streaming.placement_pad(0, 100, budget=200_000) == (128 << 10) - 100
    assert streaming.placement_pad(5 * mib + 64, 3 * mib, budget=64) == 64  # agree mod 2 MiB
    assert streaming.placement_pad(12_295, 0, budget=4096) == 7  # only a page is affordable
    assert streaming.placement_pad(4000, 0, budget=100) is None  # not even a page
    assert streaming.placement_pad(3 * mib, 3 * mib, budget=0) == 0
    assert streaming.padding_budget(32 * mib) == 2 * mib


def test_outputs_place_big_tensors_where_their_source_lies(big_ckpt, tmp_path):
    """safetensors pads its header and .pt its zip records so that large tensors keep their
    source's placement (streaming.placement_pad: whole-folio kernel copies); the real
    libraries still read the files exactly."""
    import struct
    import zipfile

    import safetensors.numpy

    prefix, arrays = big_ckpt
    src = ckconv.load(prefix)
    st = tmp_path / "m.safetensors"
    ckconv.convert(prefix, str(st))
    with open(st, "rb") as f:
        data_start = 8 + struct.unpack("<Q", f.read(8))[0]
    # "a" (first) lies at offset 0 of its source. The header's padding budget is a
    # sixteenth of the data (8.7 MB: 545 KB): the largest modulus whose padding fits is
    # 512 KiB.
    budget = sum(a.nbytes for a in arrays.values()) // 16
    assert 512 << 10 < budget < 1 << 20
    assert _agreement(data_start, src["a"].file_region().offset) >= 512 << 10
    assert data_start - 8 < budget + 8
    loaded = safetensors.numpy.load_file(str(st))
    for name, arr in arrays.items():
        np.testing.assert_array_equal(loaded[name], arr)

    pt = tmp_path / "m.pt"
    ckconv.convert(prefix, str(pt))
    with zipfile.ZipFile(pt) as z, open(pt, "rb") as f:
        assert z.testzip() is None
        for info in z.infolist():
            if "/data/" in info.filename:
                f.seek(info.header_offset + 26)
                name_len, extra_len = struct.unpack("<2H", f.read(4))
                data = info.header_offset + 30 + name_len + extra_len
                assert data % 64 == 0
                if info.filename.endswith("/data/0"):  # "a": its source is page-aligned
                    # an extra field pads at most 64 KiB: placement modulo 32 KiB or more
                    assert _agreement(data, src["a"].file_region().offset) >= 32 << 10
                # ("b" starts 20 bytes into a page, not on a 64-byte boundary: torch's
                # alignment wins, and its bytes go through the buffered copy)
    torch = pytest.importorskip("torch")
    back = torch.load(pt, weights_only=True, mmap=True)
    for name, arr in arrays.items():
        np.testing.assert_array_equal(back[name].numpy(), arr)


@pytest.mark.live
def test_tf_output_pads_zeros_so_big_tensors_keep_their_placement(tmp_path):
    """A safetensors file from the reference writer (8-byte header alignment) converted to TF:
    zeros before the large tensors give them their source's placement (modulo 64 KiB or
    more, as their padding budget allows), and TensorFlow itself reads the checkpoint (it
    goes by each entry's offset)."""
    import safetensors.numpy

    from tests.helpers import live_tf

    rng = np.random.default_rng(3)
    arrays = {"a_small": np.arange(5, dtype=np.int32),
              "b_big": rng.standard_normal((700, 600)).astype(np.float32),
              "c_big": rng.standard_normal((500, 700)).astype(np.float64)}
    st = str(tmp_path / "ref.safetensors")
    safetensors.numpy.save_file(arrays, st)
    src = ckconv.load(st)
    prefix = str(tmp_path / "out" / "model.ckpt-1")
    ckconv.convert(st, prefix)
    out = ckconv.load(prefix)
    for name in ("b_big", "c_big"):
        assert _agreement(out[name]._offset, src[name].file_region().offset) >= 64 << 10
    assert out["b_big"]._offset > arrays["a_small"].nbytes  # padding was needed and written
    tf = live_tf()
    reader = tf.train.load_checkpoint(prefix)
    for name, arr in arrays.items():
        np.testing.assert_array_equal(reader.get_tensor(name), arr)


def test_a_copy_from_inside_a_folio_steps_to_aligned_calls(tmp_path, monkeypatch):
    """torch.save aligns storages to 64 bytes: the first calls go to the source's next 64 KiB,
    then 2 MiB boundary, so that the long calls start on a folio (measured ~25% faster)."""
    src = tmp_path / "src.bin"
    with open(src, "wb") as f:
        f.write(bytes(range(256)) * (8 << 12))  # 8 MiB
    calls = []
    real = streaming._copy_file_range

    def recorded(s, d, offset, count):
        calls.append((offset, count))
        return real(s, d, offset, count)

    monkeypatch.setattr(streaming, "_copy_file_range", recorded)
    fd = os.open(src, os.O_RDONLY)
    try:
        region = streaming.FileRegion(fd, 100, 5 << 20)
        with open(tmp_path / "dst.bin", "wb") as out:
            out.write(b"x" * 100)  # same place within a page as the source: the kernel path
            out.flush()
            streaming._kernel_copy(region, out.fileno(), None)
    finally:
        os.close(fd)
    assert [offset for offset, _ in calls[:3]] == [100, 64 << 10, 2 << 20]
    assert (tmp_path / "dst.bin").read_bytes()[100:] == src.read_bytes()[100:100 + (5 << 20)]
