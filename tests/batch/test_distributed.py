"""convert_many on a real dask.distributed cluster (LocalCluster on loopback)."""

from __future__ import annotations

import pytest

import ckconv
from tests.batch.common import KINDS, check_output, copy_fixture
from tests.helpers import live_module

pytestmark = pytest.mark.live

TARGETS = (".safetensors", ".pt", ".h5", ".ckpt")


def test_twenty_checkpoints_on_a_dask_cluster(tmp_path):
    distributed = live_module("distributed")
    pairs, kinds = [], []
    for i in range(20):
        kind = KINDS[i % len(KINDS)]
        src = copy_fixture(kind, tmp_path / "in" / f"run{i:02d}")
        pairs.append((src, str(tmp_path / "out" / f"run{i:02d}{TARGETS[i % len(TARGETS)]}")))
        kinds.append(kind)
    # Two workers in this process, talking TCP on loopback (the dashboard too).
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  protocol="tcp://", host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0") as cluster, \
            distributed.Client(cluster) as client:
        results = ckconv.convert_many(pairs, executor=client.get_executor(),
                                      skip_unsupported=True)
        workers = set(client.run(lambda: 1))  # the conversions had two workers to run on
    assert len(workers) == 2
    assert [r.error for r in results if not r.ok] == []
    assert [r.dst for r in results] == [dst for _, dst in pairs]
    for (_, dst), kind in zip(pairs, kinds):
        check_output(dst, kind)
