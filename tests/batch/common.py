"""Sources for the batch tests: TF-made fixtures copied under new names, and the values
TensorFlow returned for them."""

from __future__ import annotations

import shutil
from pathlib import Path

import ckconv
from tests.helpers import FIXTURES, assert_bit_exact, expected_array, manifest

#: Fixtures of numeric tensors (plus strings that non-TF targets leave out).
KINDS = ("tf1_saver", "keras2_ckpt", "sharded")


def copy_fixture(kind: str, into: Path) -> str:
    """Copy fixture ``kind`` to directory ``into``; returns the copy's TF prefix."""
    shutil.copytree(FIXTURES / kind, into, ignore=shutil.ignore_patterns("manifest.json"))
    return str(into / manifest(kind)["prefix"])


def check_output(path: str, kind: str) -> None:
    """Every tensor TF saved is in the output, bit for bit (strings may have been left out
    by a target that cannot hold them), and nothing else."""
    entries = manifest(kind)["tensors"]
    got = ckconv.load(path)
    numeric = {n for n, e in entries.items() if e["dtype"] != "string"}
    assert numeric <= set(got) <= set(entries), path
    for name in got:
        entry = entries[name]
        assert_bit_exact(got[name].numpy(), expected_array(entry), f"{path}: {name}")
