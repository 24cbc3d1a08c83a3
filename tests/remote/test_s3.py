"""Remote paths against a real S3 server (moto, on 127.0.0.1) through s3fs.

Values are checked against what TensorFlow itself returned when the fixtures were made.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import ckconv
from ckconv.cli.main import main
from tests.helpers import FIXTURES, assert_bit_exact, expected_array, manifest, live_module
from tests.remote.servers import DroppingProxy, moto_s3, moto_s3_with_auth, options

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def s3():
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture
def bucket(s3, request):
    """A fresh bucket per test; yields (s3fs file system, bucket name, storage options)."""
    s3fs = live_module("s3fs")
    opts = options(s3)
    fs = s3fs.S3FileSystem(**opts)
    import re

    name = "t-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:50].strip("-")
    fs.mkdir(name)
    yield fs, name, opts


def upload_fixture(fs, bucket: str, fixture: str, under: str) -> None:
    directory = FIXTURES / fixture
    for f in os.listdir(directory):
        if f != "manifest.json":
            fs.put_file(str(directory / f), f"{bucket}/{under}/{f}")


def check_against_tf(tmap, fixture: str, skip_strings: bool = False) -> None:
    entries = manifest(fixture)["tensors"]
    expected = {n: e for n, e in entries.items() if not (skip_strings and e["dtype"] == "string")}
    assert sorted(tmap) == sorted(expected)
    for name, entry in expected.items():
        assert_bit_exact(tmap[name].numpy(), expected_array(entry), name)


def test_tf_to_sharded_safetensors_and_back(bucket):
    fs, b, opts = bucket
    upload_fixture(fs, b, "sharded", "run")  # 3 data shards + checkpoint state + .meta
    notes = ckconv.convert(f"s3://{b}/run", f"s3://{b}/st/model.safetensors",
                           storage_options=opts, max_shard_size=40, skip_unsupported=True)
    assert any("uploaded" in n for n in notes)
    listed = sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{b}/st", refresh=True))
    assert "model.safetensors.index.json" in listed
    assert sum(p.endswith(".safetensors") for p in listed) >= 2  # really sharded
    check_against_tf(ckconv.load(f"s3://{b}/st/model.safetensors.index.json",
                                 storage_options=opts), "sharded", skip_strings=True)
    # ... and back to a TF checkpoint in the bucket, read again from there
    ckconv.convert(f"s3://{b}/st/", f"s3://{b}/back/model.ckpt-7", storage_options=opts)
    back = sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{b}/back", refresh=True))
    assert back == ["checkpoint", "model.ckpt-7.data-00000-of-00001", "model.ckpt-7.index"]
    check_against_tf(ckconv.load(f"s3://{b}/back", storage_options=opts), "sharded",
                     skip_strings=True)


def test_cli_with_endpoint_from_environment(bucket, monkeypatch, tmp_path, capsys):
    fs, b, opts = bucket
    upload_fixture(fs, b, "tf1_saver", "run")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", opts["endpoint_url"])  # the standard variable
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", opts["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", opts["secret"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    prefix = manifest("tf1_saver")["prefix"]
    assert main([f"s3://{b}/run/{prefix}", f"s3://{b}/out/w.pt", "-q",
                 "--storage-option", "skip_instance_cache=true"]) == 0
    fs.get_file(f"{b}/out/w.pt", str(tmp_path / "w.pt"))
    check_against_tf(ckconv.load(str(tmp_path / "w.pt")), "tf1_saver")
    # local -> remote -> local with the TF2 fixture and a step selection
    assert main([f"s3://{b}/out/w.pt", str(tmp_path / "back.safetensors"), "-q"]) == 0
    check_against_tf(ckconv.load(str(tmp_path / "back.safetensors")), "tf1_saver")


def make_big(path: str, fmt: str, mib: int = 50) -> dict:
    rng = np.random.default_rng(0)
    arrays = {f"layer{i}/kernel": rng.standard_normal((mib * 2**20 // 4 // 10,), np.float32)
              for i in range(10)}
    ckconv.save(arrays, path, fmt)
    return arrays


@pytest.mark.parametrize("fmt,name", [("tf", "model.ckpt-100"), ("safetensors", "m.safetensors"),
                                      ("torch", "m.pt")])
def test_inspect_fetches_only_the_index(bucket, tmp_path, capsys, fmt, name):
    fs, b, opts = bucket
    make_big(str(tmp_path / name), fmt)
    for f in os.listdir(tmp_path):
        fs.put_file(str(tmp_path / f), f"{b}/big/{f}")
    total = sum(fs.size(p) for p in fs.ls(f"{b}/big"))
    assert total > 50 * 10**6
    from ckconv.remote.fetch import FETCHED

    before = FETCHED.bytes
    code = main(["inspect", f"s3://{b}/big/{name}", "--debug",
                 f"--storage-option=endpoint_url={opts['endpoint_url']}",
                 f"--storage-option=key={opts['key']}", f"--storage-option=secret={opts['secret']}"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "layer9/kernel" in out and f"s3://{b}/big" in out.replace("s3://" + b, "s3://" + b)
    assert "ckconv-remote-" not in out  # mirror paths are shown as the URLs they stand for
    fetched = FETCHED.bytes - before
    assert "debug: fetched" in err
    assert fetched < 80_000, fetched  # the index / header / zip directory, not the data


@pytest.mark.parametrize("mib", [4, 40])  # ranged reads of blocks / streamed spans
def test_connection_dropped_mid_transfer_is_retried(s3, bucket, tmp_path, mib):
    fs, b, opts = bucket
    arrays = make_big(str(tmp_path / "m.safetensors"), "safetensors", mib=mib)
    fs.put_file(str(tmp_path / "m.safetensors"), f"{b}/m.safetensors")
    port = int(s3.rsplit(":", 1)[1])
    proxy = DroppingProxy(port, drops=2, after=1_000_000)
    from ckconv.remote.fetch import FETCHED

    try:
        via = dict(opts, endpoint_url=proxy.endpoint)
        ckconv.convert(f"s3://{b}/m.safetensors", f"s3://{b}/out/m.ckpt", storage_options=via)
    finally:
        proxy.close()
    assert proxy.dropped == 2
    assert proxy.connections >= 3  # the cut transfers were made again
    back = ckconv.load(f"s3://{b}/out/m.ckpt", storage_options=opts)
    for k, v in arrays.items():
        assert back[k].numpy().tobytes() == v.tobytes()


def test_missing_key_one_line_exit_1_nothing_written(bucket, capsys):
    fs, b, opts = bucket
    so = [f"--storage-option=endpoint_url={opts['endpoint_url']}",
          f"--storage-option=key={opts['key']}", f"--storage-option=secret={opts['secret']}"]
    code = main([f"s3://{b}/nope/model.safetensors", f"s3://{b}/out/x.safetensors", *so])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: "), err
    assert f"s3://{b}/nope" in err
    assert not fs.exists(f"{b}/out/x.safetensors")


def test_failed_conversion_leaves_no_object(bucket, capsys):
    fs, b, opts = bucket
    upload_fixture(fs, b, "strings", "run")  # string tensors: safetensors cannot hold them
    code = main([f"s3://{b}/run", f"s3://{b}/out/x.safetensors",
                 f"--storage-option=endpoint_url={opts['endpoint_url']}",
                 f"--storage-option=key={opts['key']}", f"--storage-option=secret={opts['secret']}"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "cannot hold" in err, err
    assert "ckconv-upload-" not in err and "ckconv-remote-" not in err
    assert fs.ls(b, refresh=True) == [f"{b}/run"]


def test_access_denied_one_line_exit_1(tmp_path, capsys):
    with moto_s3_with_auth() as (endpoint, key, secret):
        s3fs = live_module("s3fs")
        good = options(endpoint, key, secret)
        fs = s3fs.S3FileSystem(**good)
        fs.mkdir("private")
        fs.put_file(str(FIXTURES / "tf1_saver" / "checkpoint"), "private/run/checkpoint")
        code = main(["inspect", "s3://private/run",
                     f"--storage-option=endpoint_url={endpoint}",
                     "--storage-option=key=WRONGKEY", "--storage-option=secret=nope"])
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and "access denied" in err, err
        # a conversion with bad credentials writes nothing either
        prefix = manifest("tf1_saver")["prefix"]
        code = main([str(FIXTURES / "tf1_saver" / prefix), "s3://private/out/x.safetensors",
                     f"--storage-option=endpoint_url={endpoint}",
                     "--storage-option=key=WRONGKEY", "--storage-option=secret=nope"])
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and "access denied" in err, err
        assert not fs.exists("private/out/x.safetensors")
