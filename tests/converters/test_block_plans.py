"""Transforms computed in blocks on two threads (ckconv/io/blocks.py, converters/tensors.py).

Each transform is checked against numpy doing the same thing to the original array, for
tensors large enough to be cut into many blocks shared by two threads, read from files
whose checksums must still be verified, and written to formats that checksum what they
write (TF: CRC-32C, PyTorch zips: CRC-32, both re-checked by reading the output back).
"""

from __future__ import annotations

import io
import zipfile
import zlib

import numpy as np
import pytest

import ckconv
from ckconv.errors import CorruptCheckpointError
from ckconv.io import checksums
from ckconv.io.blocks import BlockPlan, BlockWriter, even_blocks, fill, write_blocks
from ckconv.io.streaming import copy_tensor
from ckconv.tensor import ArrayTensor
from ckconv.tensormap import TensorMap

RNG = np.random.default_rng(3)
#: Larger than a few blocks, with rows that do not divide a block evenly.
BIG = RNG.standard_normal((1000, 1500)).astype(np.float32)
CUBE = RNG.standard_normal((24, 300, 250)).astype(np.float32)

RULES = """
[[rule]]
match = '^big$'
rename = 'big_t'
transpose = true

[[rule]]
match = '^cube$'
rename = 'cube_\\g<part>'
split = { axis = 1, parts = ["a", "b"], sizes = [100, 200] }
permute = [2, 0, 1]

[[rule]]
match = '^(?P<part>x|y)$'
rename = 'xy'
merge = { axis = 1, parts = ["x", "y"] }

[[rule]]
match = '^half$'
rename = 'half'
cast = "bf16"
"""


def _expected() -> dict[str, np.ndarray]:
    import ml_dtypes

    a, b = np.split(CUBE, [100], axis=1)
    return {"big_t": BIG.T, "cube_a": a.transpose(2, 0, 1), "cube_b": b.transpose(2, 0, 1),
            "xy": np.concatenate([BIG, BIG[:, :700]], axis=1),
            "half": BIG.astype(ml_dtypes.bfloat16)}


def _source(tmp_path) -> str:
    prefix = str(tmp_path / "src" / "model.ckpt")
    ckconv.save({"big": BIG, "cube": CUBE, "x": BIG, "y": BIG[:, :700].copy(), "half": BIG},
                prefix)
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    return prefix


@pytest.mark.parametrize("out", ["model.ckpt", "model.safetensors", "model.pt", "model.h5"])
def test_transforms_from_a_tf_file_to_every_format(tmp_path, out, kernels):
    prefix = _source(tmp_path)
    dst = str(tmp_path / "out" / out)
    ckconv.convert(prefix, dst, rules=str(tmp_path / "rules.toml"))
    if out.endswith(".pt"):  # the zip's CRC-32 of every member was computed by the blocks
        with zipfile.ZipFile(dst) as z:
            assert z.testzip() is None
    got = ckconv.load(dst)  # TF: each tensor's CRC-32C is verified on reading
    expected = _expected()
    assert sorted(got) == sorted(expected)
    for name, arr in expected.items():
        value = got[name].numpy()
        assert value.dtype == arr.dtype and value.shape == arr.shape, name
        assert value.tobytes() == np.ascontiguousarray(arr).tobytes(), name


def test_numpy_and_torch_compute_the_same_blocks(tmp_path, kernels):
    torch = pytest.importorskip("torch")
    prefix = _source(tmp_path)
    mapped = ckconv.load(prefix).map(ckconv.rules.load(str(tmp_path / "rules.toml")))
    tensors = mapped.torch()
    for name, arr in _expected().items():
        want = np.ascontiguousarray(arr)
        assert mapped[name].numpy().tobytes() == want.tobytes(), name
        t = tensors[name]
        assert t.is_contiguous() and tuple(t.shape) == want.shape
        raw = t.view(torch.int16 if t.element_size() == 2 else torch.int32).numpy()
        assert raw.tobytes() == want.tobytes(), name


@pytest.mark.parametrize("tensor", ["big", "half"])
def test_a_corrupt_source_is_caught_under_a_transform(tmp_path, tensor, kernels):
    prefix = _source(tmp_path)
    src = ckconv.load(prefix)[tensor]
    region = src.file_region()
    data = prefix + ".data-00000-of-00001"
    with open(data, "r+b") as f:  # flip one bit in the middle of the tensor
        f.seek(region.offset + region.size // 2)
        byte = f.read(1)[0]
        f.seek(-1, 1)
        f.write(bytes([byte ^ 1]))
    with pytest.raises(CorruptCheckpointError, match="checksum"):
        ckconv.convert(prefix, str(tmp_path / "out.safetensors"),
                       rules=str(tmp_path / "rules.toml"))
    mapped = ckconv.load(prefix).map(ckconv.rules.load(str(tmp_path / "rules.toml")))
    with pytest.raises(CorruptCheckpointError, match="checksum"):
        mapped["big_t" if tensor == "big" else "half"].numpy()


def _plan(data: bytes, sizes: list[int]) -> BlockPlan:
    starts = np.cumsum([0] + sizes[:-1]).tolist()

    def fill_block(i: int, view: memoryview) -> None:
        view[:] = data[starts[i]:starts[i] + sizes[i]]

    return BlockPlan(sizes, fill_block)


def test_write_blocks_checksums_and_progress(tmp_path):
    data = RNG.integers(0, 256, 9_000_017, dtype=np.uint8).tobytes()
    sizes = even_blocks(len(data), 7)
    assert sum(sizes) == len(data) and all(s % 7 == 0 for s in sizes[:-1])
    seen: list[int] = []
    with open(tmp_path / "out", "wb") as f:
        f.write(b"head")
        done = write_blocks(_plan(data, sizes), f, crc32c=True, crc32=True, progress=seen.append)
        f.write(b"tail")  # the file position follows the blocks
    assert (tmp_path / "out").read_bytes() == b"head" + data + b"tail"
    assert done.nbytes == len(data) == sum(seen)
    assert done.crc32c == checksums.crc32c(data) and done.crc32 == zlib.crc32(data)


@pytest.mark.parametrize("limit", [64 << 20, 1 << 20])  # many plans in flight, or one at a time
def test_block_writer_writes_many_plans_at_their_places(tmp_path, limit):
    parts = [RNG.integers(0, 256, n, dtype=np.uint8).tobytes()
             for n in (3_000_001, 17, 5_000_000, 2 << 20, 1)]
    closed: list[int] = []
    with open(tmp_path / "out", "wb") as f:
        f.write(b"head")
        f.flush()
        pos, pendings = 4, []
        with BlockWriter(f.fileno(), in_flight_bytes=limit) as writer:
            for k, data in enumerate(parts):
                plan = _plan(data, even_blocks(len(data), 1))
                plan.close = lambda k=k: closed.append(k)
                pendings.append(writer.submit(plan, pos, crc32c=True, crc32=k % 2 == 0))
                pos += len(data)
        seen = writer.take_progress()
    assert (tmp_path / "out").read_bytes() == b"head" + b"".join(parts)
    assert seen == sum(map(len, parts)) and sorted(closed) == list(range(len(parts)))
    for k, (pending, data) in enumerate(zip(pendings, parts)):
        done = pending.result()
        assert done.nbytes == len(data) and done.crc32c == checksums.crc32c(data)
        assert done.crc32 == (zlib.crc32(data) if k % 2 == 0 else 0)


@pytest.mark.parametrize("where", ["block", "check", "finish"])
def test_block_writer_raises_the_first_error_and_closes_every_plan(tmp_path, where):
    data = bytes(range(256)) * 20_000
    closed: list[int] = []

    def fail() -> None:
        raise CorruptCheckpointError(f"bad {where}")

    def broken_block(i: int, view: memoryview) -> None:
        if i == 2:
            fail()
        view[:] = bytes(len(view))

    with open(tmp_path / "out", "wb") as f:
        with pytest.raises(CorruptCheckpointError, match=f"bad {where}"):
            with BlockWriter(f.fileno(), in_flight_bytes=2 * len(data)) as writer:
                for k in range(6):
                    plan = _plan(data, even_blocks(len(data), 1))
                    if k == 1:
                        if where == "block":
                            plan.fill = broken_block
                        elif where == "check":
                            plan.check = fail
                        else:
                            plan.finish = fail
                    plan.close = lambda k=k: closed.append(k)
                    try:
                        writer.submit(plan, k * len(data))
                    except CorruptCheckpointError:  # raised by a later submit: stop there
                        break
    assert sorted(closed) == list(range(len(closed))) and 1 in closed


def test_block_writer_drops_its_queue_when_the_writer_fails(tmp_path):
    data = bytes(range(256)) * 40_000
    closed: list[int] = []
    with open(tmp_path / "out", "wb") as f:
        with pytest.raises(KeyError, match="the writer's own"):
            with BlockWriter(f.fileno()) as writer:
                plan = _plan(data, even_blocks(len(data), 1, block=4096))
                plan.close = lambda: closed.append(1)
                pending = writer.submit(plan, 0)
                raise KeyError("the writer's own")
    assert closed == [1]
    assert pending.done.is_set()  # finished, or stopped with a reason: nobody waits forever


def test_fill_and_errors_from_either_thread(tmp_path):
    data = bytes(range(256)) * 20_000
    target = bytearray(len(data))
    fill(_plan(data, even_blocks(len(data), 1)), memoryview(target))
    assert bytes(target) == data

    def broken(i: int, view: memoryview) -> None:
        if i == 3:
            raise ValueError("block 3")
        view[:] = bytes(len(view))

    closed = []
    plan = BlockPlan(even_blocks(len(data), 1), broken, close=lambda: closed.append(1))
    with pytest.raises(ValueError, match="block 3"):
        fill(plan, memoryview(target))
    assert closed == [1]


def test_copy_tensor_without_a_file_descriptor_streams(kernels):
    from ckconv.converters.tensors import PermutedTensor

    out = io.BytesIO()
    copied = copy_tensor(PermutedTensor(ArrayTensor(BIG), (1, 0)), out, crc32c=True)
    assert out.getvalue() == np.ascontiguousarray(BIG.T).tobytes()
    assert copied.crc32c == checksums.crc32c(out.getvalue())


def test_reshape_keeps_the_file_region(tmp_path):
    prefix = _source(tmp_path)
    mapped = TensorMap({"flat": ckconv.load(prefix)["big"]}).map(ckconv.rules.parse("""
        [[rule]]
        match = 'flat'
        reshape = [-1]
    """))
    assert mapped["flat"].file_region() is not None  # copied by the kernel, mapped by torch
    assert mapped["flat"].numpy().tobytes() == BIG.tobytes()


def test_what_has_no_plan_is_computed_as_before(kernels):
    from ckconv import dtypes
    from ckconv.converters.tensors import CastTensor, ConcatTensor, PermutedTensor, split

    words = np.array([[b"a", b"bc"], [b"d", b""]], dtype=object)
    s = ArrayTensor(words, dtypes.BY_NAME["string"])
    assert PermutedTensor(s, (1, 0)).numpy().tolist() == words.T.tolist()
    assert ConcatTensor([s, s], 1).numpy().tolist() == np.concatenate([words, words], 1).tolist()
    assert [p.numpy().tolist() for p in split(s, 0, [1, 1])] == [[[b"a", b"bc"]], [[b"d", b""]]]
    assert PermutedTensor(ArrayTensor(np.arange(3.0)), (0,)).numpy().tolist() == [0.0, 1.0, 2.0]
    half = CastTensor(ArrayTensor(np.float32(2.5)), dtypes.BY_NAME["bfloat16"]).numpy()
    assert half.shape == () and float(half) == 2.5
    empty = PermutedTensor(ArrayTensor(np.zeros((0, 3), np.float32)), (1, 0)).numpy()
    assert empty.shape == (3, 0)
