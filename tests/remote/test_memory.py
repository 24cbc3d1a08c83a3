"""Remote paths through fsspec's in-memory file system: layout, atomicity, errors."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import ckconv
from ckconv.cli.main import main
from ckconv.remote.dest import Destination
from ckconv.remote.fs import parse_storage_options
from tests.helpers import FIXTURES, SEED, assert_bit_exact, expected_array, live_module, manifest

pytestmark = pytest.mark.live


@pytest.fixture
def memfs():
    fsspec = live_module("fsspec")
    fs = fsspec.filesystem("memory")
    root = f"/t{os.urandom(4).hex()}"
    yield fs, root
    fs.rm(root, recursive=True)


def put_dir(fs, directory, under: str) -> None:
    for f in os.listdir(directory):
        if os.path.isfile(os.path.join(directory, f)) and f != "manifest.json":
            fs.put_file(os.path.join(directory, f), f"{under}/{f}")


def test_tf_history_step_and_inspect(memfs, capsys):
    fs, root = memfs
    put_dir(fs, FIXTURES / "tf1_saver", f"{root}/run")
    assert main(["inspect", f"memory://{root}/run"]) == 0
    out = capsys.readouterr().out
    assert "dense/weights" in out and "ckconv-remote-" not in out
    step = int(manifest("tf1_saver")["prefix"].rsplit("-", 1)[1])
    assert main(["inspect", f"memory://{root}/run@{step}", "--json", "--values",
                 "global_step"]) == 0
    import json

    doc = json.loads(capsys.readouterr().out)
    assert doc["values"]["global_step"] == step
    tmap = ckconv.load(f"memory://{root}/run", step=step)
    for name, entry in manifest("tf1_saver")["tensors"].items():
        assert_bit_exact(tmap[name].numpy(), expected_array(entry), name)


def test_hdf5_and_torch_sources(memfs, tmp_path):
    fs, root = memfs
    for name in ("keras2_weights.h5", "torch_state_dict.pt"):
        fs.put_file(str(FIXTURES.parent / "other" / name), f"{root}/{name}")
        local = ckconv.load(str(FIXTURES.parent / "other" / name))
        remote = ckconv.load(f"memory://{root}/{name}")
        assert list(remote) == list(local)
        for k in local:
            assert remote[k].numpy().tobytes() == local[k].numpy().tobytes(), k


def test_failed_upload_leaves_nothing_and_old_index_goes_first(memfs, monkeypatch):
    fs, root = memfs
    arrays = {f"w{i}": np.full((1000,), i, np.float32) for i in range(4)}
    ckconv.save(arrays, f"memory://{root}/out/m.safetensors", max_shard_size=8000)
    before = sorted(fs.ls(f"{root}/out", detail=False))
    assert f"{root}/out/m.safetensors.index.json" in before

    put = Destination._put

    def fail_on_index(self, local, remote):
        if remote.endswith(".index.json"):
            raise ConnectionResetError("connection reset by peer")
        put(self, local, remote)

    monkeypatch.setattr(Destination, "_put", fail_on_index)
    with pytest.raises(ckconv.CkconvError, match="uploading failed .*connection reset"):
        ckconv.save({k: v + 1 for k, v in arrays.items()}, f"memory://{root}/out/m.safetensors",
                    max_shard_size=8000)
    # the new shards are gone again, and the old index was deleted before any shard was
    # replaced: no index points at data it does not describe
    assert fs.ls(f"{root}/out", detail=False) == []


def test_refuses_to_overwrite_its_input(memfs):
    fs, root = memfs
    ckconv.save({"a": np.arange(3)}, f"memory://{root}/x.safetensors")
    with pytest.raises(ckconv.UsageError, match="would overwrite the input"):
        ckconv.convert(f"memory://{root}/x.safetensors", f"memory://{root}/x.safetensors")


def test_http_is_read_only_and_unknown_schemes_are_refused(capsys):
    assert main([str(SEED / "my_model"), "https://example.invalid/x.safetensors"]) == 2
    assert "read-only" in capsys.readouterr().err
    assert main(["inspect", "ftpx://host/x"]) == 2
    assert "unsupported URL scheme" in capsys.readouterr().err


def test_missing_extra_names_the_pip_command(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fsspec", None)  # as if fsspec were not installed
    assert main(["inspect", "s3://bucket/model.safetensors"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'ckconv[remote]'" in err


def test_missing_driver_names_it(monkeypatch, capsys):
    live_module("fsspec")
    monkeypatch.setitem(sys.modules, "gcsfs", None)
    assert main(["inspect", "gs://bucket/model.safetensors"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gcsfs" in err and "pip install 'ckconv[remote]'" in err


def test_storage_option_values():
    assert parse_storage_options(["endpoint_url=http://h:9", "anon=true", "client_kwargs."
                                  "region_name=eu-west-1", "config_kwargs.retries={\"max_attempts\""
                                  ": 3}", "token=abc"]) == {
        "endpoint_url": "http://h:9", "anon": True, "token": "abc",
        "client_kwargs": {"region_name": "eu-west-1"},
        "config_kwargs": {"retries": {"max_attempts": 3}}}
    with pytest.raises(ckconv.UsageError, match="KEY=VALUE"):
        parse_storage_options(["novalue"])


def test_http_source_reads_ranges(tmp_path, capsys):
    live_module("aiohttp")
    from tests.remote.servers import http_server

    rng = np.random.default_rng(1)
    arrays = {f"t{i}": rng.standard_normal((250_000,), np.float32) for i in range(4)}
    ckconv.save(arrays, str(tmp_path / "srv" / "m.safetensors"))
    with http_server(str(tmp_path / "srv")) as (base, served):
        assert main(["inspect", f"{base}/m.safetensors"]) == 0
        assert "t3" in capsys.readouterr().out
        ranges = [r for path, r in served if path == "/m.safetensors"]
        assert ranges and all(r is not None and r[1] - r[0] < 8192 for r in ranges), served
        ckconv.convert(f"{base}/m.safetensors", str(tmp_path / "m.pt"))
    back = ckconv.load(str(tmp_path / "m.pt"))
    for k, v in arrays.items():
        assert back[k].numpy().tobytes() == v.tobytes()


def test_directory_fetches_only_the_file_the_reader_picks(memfs, capsys):
    """A Hub-style folder: model.safetensors beside a tf_model.h5 that is never fetched;
    the HDF5 file named itself is fetched whole (its metadata has no bounded header)."""
    fs, root = memfs
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    ckconv.save(arrays, f"memory://{root}/repo/model.safetensors")
    fs.put_file(str(FIXTURES.parent / "other" / "keras2_weights.h5"), f"{root}/repo/tf_model.h5")
    fs.put_file(str(FIXTURES.parent / "other" / "keras2_weights.h5"), f"{root}/h5only/w.h5")
    from ckconv.remote.fetch import FETCHED

    before = FETCHED.bytes
    got = ckconv.load(f"memory://{root}/repo/")
    assert list(got) == ["w"] and got["w"].numpy().tobytes() == arrays["w"].tobytes()
    h5_size = fs.size(f"{root}/repo/tf_model.h5")
    assert FETCHED.bytes - before < h5_size  # the .h5 was not fetched
    local = ckconv.load(str(FIXTURES.parent / "other" / "keras2_weights.h5"))
    remote = ckconv.load(f"memory://{root}/h5only/w.h5")
    assert list(remote) == list(local)
    assert main(["inspect", f"memory://{root}/h5only/w.h5"]) == 0
    assert list(local)[0] in capsys.readouterr().out


def test_diff_takes_urls(memfs, capsys):
    fs, root = memfs
    put_dir(fs, FIXTURES / "tf1_saver", f"{root}/run")
    ckconv.convert(f"memory://{root}/run", f"memory://{root}/o.pt")
    assert main(["diff", f"memory://{root}/run", f"memory://{root}/o.pt"]) == 0
