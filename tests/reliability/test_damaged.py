"""Damaged or hostile inputs: one ``error:`` line, exit status 1, nothing written.

Each case runs the real command line (``ckconv SRC DST``) and checks the output directory
stays empty: no destination, no temporary file.
"""

from __future__ import annotations

import os
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from ckconv import load
from ckconv.cli import main
from ckconv.formats.tf import protos
from ckconv.formats.tf.table import Table
from ckconv.formats.tf.table_writer import TableWriter
from tests.helpers import fixture_prefix

ROOT = Path(__file__).resolve().parents[2]


def _copy(name: str, dst: Path) -> str:
    src = fixture_prefix(name)
    base = os.path.basename(src)
    dst.mkdir(parents=True, exist_ok=True)
    for f in os.listdir(os.path.dirname(src)):
        if f.startswith(base + ".") or f == "checkpoint":
            shutil.copy(os.path.join(os.path.dirname(src), f), dst / f)
    return str(dst / base)


def _rewrite_header(prefix: str, num_shards: int) -> None:
    items = list(Table.open(prefix + ".index").items())
    header = protos.BundleHeaderProto()
    header.ParseFromString(items[0][1])
    header.num_shards = num_shards
    items[0] = (b"", header.SerializeToString())
    with open(prefix + ".index", "wb") as f:
        table = TableWriter(f)
        for key, value in items:
            table.add(key, value)
        table.finish()


def _fails_cleanly(capsys, tmp_path: Path, src: str, *must_mention: str,
                   dst: str = "out.safetensors") -> str:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    code = main([src, str(out / dst)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    for word in must_mention:
        assert word in err[0], (word, err[0])
    assert list(out.iterdir()) == [], "something was written"
    return err[0]


# ---------------------------------------------------------------------------------------
# TF checkpoints


@pytest.mark.parametrize("keep", [0, 20, 47, 600])
def test_truncated_index(capsys, tmp_path: Path, keep: int) -> None:
    prefix = _copy("dtypes", tmp_path / "in")
    data = Path(prefix + ".index").read_bytes()
    Path(prefix + ".index").write_bytes(data[:keep])
    _fails_cleanly(capsys, tmp_path, prefix, ".index")


def test_truncated_data(capsys, tmp_path: Path) -> None:
    prefix = _copy("dtypes", tmp_path / "in")
    data_file = prefix + ".data-00000-of-00001"
    os.truncate(data_file, os.path.getsize(data_file) // 2)
    msg = _fails_cleanly(capsys, tmp_path, prefix, data_file, "truncated", dst="out.ckpt")
    assert "tensor '" in msg


def test_missing_shard(capsys, tmp_path: Path) -> None:
    prefix = _copy("sharded", tmp_path / "in")
    os.remove(prefix + ".data-00001-of-00003")
    _fails_cleanly(capsys, tmp_path, prefix, "data-00001-of-00003", "missing", "3 shards",
                   "present: model.ckpt-7.data-00000-of-00003, model.ckpt-7.data-00002-of-00003")


@pytest.mark.parametrize("claimed", [2, 4])
def test_shard_count_disagrees_with_files(capsys, tmp_path: Path, claimed: int) -> None:
    prefix = _copy("sharded", tmp_path / "in")
    _rewrite_header(prefix, claimed)  # the files on disk are -of-00003
    _fails_cleanly(capsys, tmp_path, prefix, f"{claimed} shards",
                   "present: model.ckpt-7.data-00000-of-00003, model.ckpt-7.data-00001-of-00003, "
                   "model.ckpt-7.data-00002-of-00003")


def test_absurd_shard_count_fails_fast(capsys, tmp_path: Path) -> None:
    prefix = _copy("dtypes", tmp_path / "in")
    _rewrite_header(prefix, 2**31 - 1)
    _fails_cleanly(capsys, tmp_path, prefix, "2147483647 shards")


def test_state_file_names_missing_prefix(capsys, tmp_path: Path) -> None:
    prefix = _copy("sharded", tmp_path / "run")
    Path(tmp_path / "run" / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-99"\n')
    _fails_cleanly(capsys, tmp_path, str(tmp_path / "run"), "model.ckpt-99",
                   os.path.basename(prefix))


def test_damaged_state_file(capsys, tmp_path: Path) -> None:
    _copy("sharded", tmp_path / "run")
    Path(tmp_path / "run" / "checkpoint").write_bytes(b"model_checkpoint_path: \xff\xfe{{{")
    _fails_cleanly(capsys, tmp_path, str(tmp_path / "run"), "checkpoint")


# ---------------------------------------------------------------------------------------
# Not checkpoints at all


def test_empty_file(capsys, tmp_path: Path) -> None:
    (tmp_path / "empty.ckpt").write_bytes(b"")
    _fails_cleanly(capsys, tmp_path, str(tmp_path / "empty.ckpt"), "empty.ckpt", "empty")


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes(capsys, tmp_path: Path, seed: int) -> None:
    noise = tmp_path / "noise.ckpt"
    noise.write_bytes(np.random.default_rng(seed).bytes(4096))
    _fails_cleanly(capsys, tmp_path, str(noise), "noise.ckpt")


def test_directory_without_checkpoint(capsys, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    _fails_cleanly(capsys, tmp_path, str(run), str(run))
    (run / "notes.txt").write_text("no weights here\n")
    _fails_cleanly(capsys, tmp_path, str(run), str(run))


def test_missing_path(capsys, tmp_path: Path) -> None:
    _fails_cleanly(capsys, tmp_path, str(tmp_path / "nope.ckpt"), "nope.ckpt")


# ---------------------------------------------------------------------------------------
# safetensors


@pytest.mark.parametrize("claimed", [1000, 2**40, 2**64 - 1])
def test_safetensors_header_larger_than_file(capsys, tmp_path: Path, claimed: int) -> None:
    f = tmp_path / "big_header.safetensors"
    f.write_bytes(struct.pack("<Q", claimed) + b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}')
    msg = _fails_cleanly(capsys, tmp_path, str(f), "big_header.safetensors", dst="out.ckpt")
    assert "header" in msg


def test_safetensors_data_shorter_than_header_says(capsys, tmp_path: Path) -> None:
    import ckconv

    f = tmp_path / "short.safetensors"
    ckconv.save({"w": np.arange(1000, dtype=np.float32)}, f)
    os.truncate(f, os.path.getsize(f) - 100)
    _fails_cleanly(capsys, tmp_path, str(f), "short.safetensors", dst="out.ckpt")


# ---------------------------------------------------------------------------------------
# HDF5


def test_hdf5_external_link(capsys, tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "target.h5", "w") as f:
        f["secret"] = np.arange(5, dtype=np.float32)
    with h5py.File(tmp_path / "links.h5", "w") as f:
        f["w"] = np.ones(2, np.float32)
        f["ext"] = h5py.ExternalLink("target.h5", "/secret")
    _fails_cleanly(capsys, tmp_path, str(tmp_path / "links.h5"), "links.h5", "external link")


def test_hdf5_external_storage(capsys, tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    (tmp_path / "raw.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    with h5py.File(tmp_path / "ext.h5", "w") as f:
        f.create_dataset("w", shape=(4,), dtype="f4", external=[(str(tmp_path / "raw.bin"), 0, 16)])
    _fails_cleanly(capsys, tmp_path, str(tmp_path / "ext.h5"), "ext.h5", "external file")


def test_hdf5_keras_layer_linking_outside(capsys, tmp_path: Path) -> None:
    """The Keras reader follows weight_names; a name that is an external link is refused too."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "target.h5", "w") as f:
        f["secret"] = np.arange(5, dtype=np.float32)
    with h5py.File(tmp_path / "keras.h5", "w") as f:
        f.attrs["layer_names"] = [b"dense"]
        g = f.create_group("dense")
        g.attrs["weight_names"] = [b"dense/kernel:0"]
        g["dense/kernel:0"] = h5py.ExternalLink("target.h5", "/secret")
    _fails_cleanly(capsys, tmp_path, str(tmp_path / "keras.h5"), "keras.h5", "external link")


def test_hdf5_virtual_dataset(capsys, tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "source.h5", "w") as f:
        f["x"] = np.arange(4, dtype=np.float32)
    layout = h5py.VirtualLayout(shape=(4,), dtype="f4")
    layout[:] = h5py.VirtualSource(str(tmp_path / "source.h5"), "x", shape=(4,))
    with h5py.File(tmp_path / "vds.h5", "w") as f:
        f.create_virtual_dataset("v", layout)
    _fails_cleanly(capsys, tmp_path, str(tmp_path / "vds.h5"), "vds.h5", "/v", "virtual dataset")


def test_hdf5_chunks_larger_than_the_shape(capsys, tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "chunky.h5", "w") as f:
        f.create_dataset("c", shape=(2,), maxshape=(None,), chunks=(1 << 20,), dtype="f4")
    _fails_cleanly(capsys, tmp_path, str(tmp_path / "chunky.h5"), "chunky.h5", "/c",
                   "larger than its shape")


def test_hdf5_more_links_than_the_scan_allows(capsys, tmp_path: Path, monkeypatch) -> None:
    h5py = pytest.importorskip("h5py")
    from ckconv.formats.hdf5 import safety

    with h5py.File(tmp_path / "many.h5", "w") as f:
        g = f.create_group("g")
        for i in range(12):
            g[f"d{i}"] = [i]
    monkeypatch.setattr(safety, "MAX_LINKS", 10)
    _fails_cleanly(capsys, tmp_path, str(tmp_path / "many.h5"), "many.h5", "more than 10 HDF5 links")


def test_hdf5_hard_link_cycles_soft_and_dangling_links_are_walked_safely(tmp_path: Path) -> None:
    """A group linked into itself is entered once; a soft link reads as an alias of its
    target, a dangling one is left out with a note (h5py reads the same file alike)."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "loops.h5", "w") as f:
        g = f.create_group("g")
        g["w"] = np.arange(3, dtype=np.float32)
        g["back"] = f["g"]  # hard link: g/back is g itself
        f["alias"] = h5py.SoftLink("/g/w")
        f["nowhere"] = h5py.SoftLink("/missing")
    tmap = load(tmp_path / "loops.h5")
    with h5py.File(tmp_path / "loops.h5", "r") as f:
        assert tmap["g/w"].numpy().tolist() == f["g/w"][()].tolist()
        assert tmap["alias"].numpy().tolist() == f["alias"][()].tolist()
    assert sorted(tmap) == ["alias", "g/w"]
    assert any("dangling" in n for n in tmap.notes)
    assert any("already read" in n for n in tmap.notes)


@pytest.mark.parametrize("links", [3, 40])  # compact and dense link storage
def test_hdf5_group_tracking_creation_order_without_an_index_lists_as_h5py_does(
        tmp_path: Path, links: int) -> None:
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "order.h5", "w") as f:
        gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
        gcpl.set_link_creation_order(h5py.h5p.CRT_ORDER_TRACKED)  # tracked, not indexed
        h5py.h5g.create(f.id, b"g", gcpl=gcpl)
        for i in reversed(range(links)):
            f["g"][f"n{i:02d}"] = np.array([i], np.int16)
    with h5py.File(tmp_path / "order.h5", "r") as f:
        expected = [f"g/{k}" for k in f["g"].keys()]
    assert expected[0] == f"g/n{links - 1:02d}"  # creation order, not by name
    assert list(load(tmp_path / "order.h5")) == expected


@pytest.mark.parametrize("shape", [(2**40,), (2**20, 2**20), (2**62,)])
def test_hdf5_absurd_shape(capsys, tmp_path: Path, shape: tuple[int, ...]) -> None:
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "absurd.h5", "w") as f:
        f["ok"] = np.arange(3, dtype=np.float32)
        # Nothing written: HDF5 would hand back terabytes of fill value from a 2 KB file.
        f.create_dataset("big", shape=shape, dtype="f4", chunks=(1,) * len(shape))
    _fails_cleanly(capsys, tmp_path, str(tmp_path / "absurd.h5"), "absurd.h5", "absurd shape")


def test_hdf5_garbage_after_signature(capsys, tmp_path: Path) -> None:
    f = tmp_path / "broken.h5"
    f.write_bytes(b"\x89HDF\r\n\x1a\n" + np.random.default_rng(0).bytes(2000))
    _fails_cleanly(capsys, tmp_path, str(f), "broken.h5")


# ---------------------------------------------------------------------------------------
# PyTorch pickles that would run code


class _Payload:
    """Unpickling this creates ``marker``; ckconv must refuse before anything runs."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_files(tmp_path: Path, marker: Path) -> dict[str, Callable[[Path], None]]:
    def zip_pt(path: Path) -> None:
        import torch

        torch.save({"w": torch.zeros(2), "evil": _Payload(marker)}, path)

    def legacy_pt(path: Path) -> None:
        import torch

        torch.save({"w": torch.zeros(2), "evil": _Payload(marker)}, path,
                   _use_new_zipfile_serialization=False)

    def plain_pickle(path: Path) -> None:
        with open(path, "wb") as f:
            pickle.dump({"evil": _Payload(marker)}, f, protocol=2)

    return {"zip.pt": zip_pt, "legacy.pt": legacy_pt, "plain.pkl.bin": plain_pickle}


@pytest.mark.parametrize("kind", ["zip.pt", "legacy.pt", "plain.pkl.bin"])
def test_pickle_that_would_run_code(capsys, tmp_path: Path, kind: str) -> None:
    pytest.importorskip("torch")
    marker = tmp_path / "PWNED"
    path = tmp_path / kind
    _evil_files(tmp_path, marker)[kind](path)
    assert not marker.exists()
    _fails_cleanly(capsys, tmp_path, str(path), kind)
    assert not marker.exists(), "the pickle's code ran"
    # ...and the payload is real: an unsafe load would have created the file.
    if kind == "plain.pkl.bin":
        with open(path, "rb") as f:
            pickle.load(f)
        assert marker.exists()


# ---------------------------------------------------------------------------------------
# The real process: exit status 1 and a single line


def test_real_process_exit_status(tmp_path: Path) -> None:
    noise = tmp_path / "noise.bin"
    noise.write_bytes(os.urandom(1000))
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-m", "ckconv", str(noise), str(out / "x.safetensors")],
                          capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert list(out.iterdir()) == []
