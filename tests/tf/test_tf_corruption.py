"""Damaged TF checkpoints: always a clear error naming the file and tensor, never wrong data."""

from __future__ import annotations

import os
import shutil

import pytest

import ckconv
from ckconv.cli import main
from tests.helpers import fixture_prefix


def _copy(name: str, tmp_path) -> str:
    src = fixture_prefix(name)
    base = os.path.basename(src)
    for f in os.listdir(os.path.dirname(src)):
        if f.startswith(base + "."):
            shutil.copy(os.path.join(os.path.dirname(src), f), tmp_path / f)
    return str(tmp_path / base)


def _flip(path: str, offset: int, bit: int = 0) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([b ^ (1 << bit)]))


def _entry(prefix: str, name: str):
    t = ckconv.load(prefix)[name]
    return t._offset, t._size


def test_flipped_data_byte_names_tensor_shard_and_offset(tmp_path):
    prefix = _copy("dtypes", tmp_path)
    offset, size = _entry(prefix, "float32")
    _flip(prefix + ".data-00000-of-00001", offset + size // 2, 3)
    tmap = ckconv.load(prefix)
    with pytest.raises(ckconv.CorruptCheckpointError) as info:
        tmap["float32"].numpy()
    msg = str(info.value)
    assert "'float32'" in msg and ".data-00000-of-00001" in msg and f"offset {offset}" in msg
    with pytest.raises(ckconv.CorruptCheckpointError):
        b"".join(tmap["float32"].iter_bytes(chunk=4))
    # The other tensors are unaffected.
    tmap["int64"].numpy()


def test_flipped_string_length_is_caught(tmp_path):
    prefix = _copy("strings", tmp_path)
    tmap = ckconv.load(prefix)
    name = max((k for k in tmap if tmap[k].dtype.name == "string" and tmap[k].size > 1),
               key=lambda k: tmap[k].nbytes)
    offset, _ = _entry(prefix, name)
    _flip(prefix + ".data-00000-of-00001", offset, 0)
    with pytest.raises(ckconv.CorruptCheckpointError, match=name):
        ckconv.load(prefix)[name].numpy()


def test_flipped_index_byte_is_caught(tmp_path):
    prefix = _copy("dtypes", tmp_path)
    _flip(prefix + ".index", 20)
    with pytest.raises(ckconv.CorruptCheckpointError, match=r"\.index.*checksum mismatch"):
        ckconv.load(prefix)


@pytest.mark.parametrize("cut", [1, 30, 60])
def test_truncated_index(tmp_path, cut):
    prefix = _copy("dtypes", tmp_path)
    data = open(prefix + ".index", "rb").read()
    open(prefix + ".index", "wb").write(data[:-cut])
    with pytest.raises(ckconv.CorruptCheckpointError, match=r"\.index"):
        ckconv.load(prefix)


def test_truncated_data_file(tmp_path):
    prefix = _copy("dtypes", tmp_path)
    data_file = prefix + ".data-00000-of-00001"
    os.truncate(data_file, os.path.getsize(data_file) // 2)
    tmap = ckconv.load(prefix)
    with pytest.raises(ckconv.CorruptCheckpointError, match="truncated"):
        for t in tmap.values():
            t.numpy()


def test_missing_shard(tmp_path):
    prefix = _copy("sharded", tmp_path)
    os.remove(prefix + ".data-00001-of-00003")
    with pytest.raises(ckconv.CorruptCheckpointError, match=r"data-00001-of-00003.*missing"):
        ckconv.load(prefix)


def test_bad_magic(tmp_path):
    prefix = _copy("dtypes", tmp_path)
    _flip(prefix + ".index", os.path.getsize(prefix + ".index") - 1)
    # Without the magic the file is no longer recognised as a checkpoint index at all.
    with pytest.raises(ckconv.FormatError):
        ckconv.load(prefix)


def test_empty_and_random_files(tmp_path):
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(ckconv.FormatError, match="empty"):
        ckconv.load(empty)
    noise = tmp_path / "noise.bin"
    noise.write_bytes(os.urandom(4096))
    with pytest.raises(ckconv.FormatError, match="noise.bin"):
        ckconv.load(noise)


def test_cli_corrupt_input_one_line_error_nothing_left(tmp_path, capsys):
    prefix = _copy("dtypes", tmp_path / "in" if (tmp_path / "in").mkdir() is None else tmp_path)
    offset, size = _entry(prefix, "float64")
    _flip(prefix + ".data-00000-of-00001", offset + 1)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = main([prefix, str(out_dir / "m.safetensors"), "--skip-unsupported"])
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert code == 1
    assert len(errors) == 1 and "float64" in errors[0] and "checksum" in errors[0]
    assert not any(line.startswith("Traceback") for line in err)
    assert os.listdir(out_dir) == []


def test_header_version_too_new_is_refused(tmp_path):
    """A bundle claiming min_consumer 2 (a future format) must not be read as if it were ours."""
    from ckconv.formats.tf import protos
    from ckconv.formats.tf.table import Table

    prefix = _copy("strings", tmp_path)
    items = list(Table.open(prefix + ".index").items())
    header = protos.BundleHeaderProto()
    header.ParseFromString(items[0][1])
    assert header.num_shards == 1 and header.version.producer == 1
