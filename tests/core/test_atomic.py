"""Atomic output: temporary names, rename at the end, clean-up on errors and signals.

The subprocess tests convert a generated ~40 MB checkpoint and interrupt ``ckconv`` while it
writes: SIGKILL (nothing can be cleaned up, the destination must still be absent or
complete and valid), Ctrl-C (exit 130) and SIGTERM (exit 143), which must leave nothing.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import ckconv
from ckconv.io import atomic
from ckconv.io.atomic import TEMP_MARKER, AtomicFiles

ROOT = Path(__file__).resolve().parents[2]


def _temps(directory: Path) -> list[str]:
    return sorted(f.name for f in directory.iterdir() if TEMP_MARKER in f.name)


# ---------------------------------------------------------------------------------------
# In-process behaviour


def test_failure_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with AtomicFiles() as files:
            Path(files.path(str(tmp_path / "a.bin"))).write_bytes(b"x")
            Path(files.path(str(tmp_path / "b.bin"))).write_bytes(b"y")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_commit_renames_in_order(tmp_path: Path) -> None:
    with AtomicFiles() as files:
        for name in ("a", "b"):
            Path(files.path(str(tmp_path / name))).write_text(name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_interrupted_commit_never_pairs_old_index_with_new_data(tmp_path: Path, monkeypatch) -> None:
    """Overwriting a TF checkpoint: a stop between the data rename and the index rename
    must not leave the old index describing the new data."""
    prefix = str(tmp_path / "model.ckpt")
    ckconv.save({"w": np.arange(1000, dtype=np.float32)}, prefix)
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if str(dst).endswith(".index"):
            raise KeyboardInterrupt  # as if killed right before the index is renamed
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        ckconv.save({"w": np.arange(1000, dtype=np.float32) * 2}, prefix)
    monkeypatch.setattr(os, "replace", real_replace)
    assert any(c.endswith(".data-00000-of-00001") for c in calls)
    assert not os.path.exists(prefix + ".index")  # no checkpoint rather than a wrong one
    assert _temps(tmp_path) == []


def test_stale_temp_files_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = _dead_pid()
    host = atomic._HOST
    stale = tmp_path / f".m.safetensors{TEMP_MARKER}{dead}-{host}-00000000"
    live = tmp_path / f".m.safetensors{TEMP_MARKER}{os.getppid()}-{host}-00000000"
    other_host = tmp_path / f".m.safetensors{TEMP_MARKER}{dead}-zzzzzz-00000000"
    other_name = tmp_path / f".n.safetensors{TEMP_MARKER}{dead}-{host}-00000000"
    for f in (stale, live, other_host, other_name):
        f.write_bytes(b"partial")
    ckconv.save({"w": np.zeros(3, np.float32)}, tmp_path / "m.safetensors")
    left = set(_temps(tmp_path))
    assert stale.name not in left
    assert {live.name, other_host.name, other_name.name} <= left


def test_readers_ignore_temp_files(tmp_path: Path) -> None:
    ckconv.save({"w": np.ones(4, np.float32)}, tmp_path / "model.ckpt")
    (tmp_path / f".model.ckpt.index{TEMP_MARKER}1-abcdef-00000000").write_bytes(b"junk")
    (tmp_path / "checkpoint").unlink()
    assert list(ckconv.load(tmp_path)) == ["w"]  # the only checkpoint of the directory


def test_signals_are_held_back_during_commit() -> None:
    got = []
    with pytest.raises(KeyboardInterrupt):
        with atomic.signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
            got.append("critical section finished")
    assert got == ["critical section finished"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------------------------------
# Real processes, real signals

N_TENSORS = 10
ELEMENTS = 1 << 20  # 4 MiB of float32 each: 40 MiB in all


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1234)
    return {f"layer{i}/kernel": rng.standard_normal(ELEMENTS, dtype=np.float32)
            for i in range(N_TENSORS)}


@pytest.fixture(scope="module")
def big_source(tmp_path_factory) -> tuple[str, dict[str, np.ndarray]]:
    arrays = _arrays()
    prefix = str(tmp_path_factory.mktemp("src") / "model.ckpt")
    ckconv.save(arrays, prefix)  # ckconv's own TF writer: no TensorFlow needed
    return prefix, arrays


def _start(src: str, dst: str, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "ckconv", src, dst, "-q", "--force", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)


def _wait_for_temp(proc: subprocess.Popen, directory: Path, timeout: float = 60) -> bool:
    """Poll until the conversion has a temporary file open (it is writing)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if _temps(directory):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.0005)
    return False


def _check_destination(dst: Path, fmt: str, arrays: dict[str, np.ndarray]) -> str:
    """'absent' or 'complete'; fails if something under the destination name is invalid."""
    visible = dst if fmt == "safetensors" else Path(str(dst) + ".index")
    if not visible.exists():
        return "absent"
    loaded = ckconv.load(str(dst))
    assert list(loaded) == list(arrays)
    for name, arr in arrays.items():
        assert np.array_equal(loaded[name].numpy(), arr), name
    return "complete"


@pytest.mark.parametrize("fmt", ["safetensors", "tf"])
def test_sigkill_never_leaves_a_partial_destination(tmp_path: Path, big_source, fmt: str) -> None:
    src, arrays = big_source
    out = tmp_path / "out"
    out.mkdir()
    dst = out / ("model.safetensors" if fmt == "safetensors" else "model.ckpt")
    extra = ["--max-shard-size", "15MB"] if fmt == "tf" else []  # several data files
    start = time.monotonic()
    proc = _start(src, str(dst), *extra)
    assert proc.wait(120) == 0, proc.stderr.read().decode()
    duration = time.monotonic() - start
    assert _check_destination(dst, fmt, arrays) == "complete"
    for f in list(out.iterdir()):
        f.unlink()

    rng = random.Random(os.environ.get("CKCONV_KILL_SEED", 42))
    outcomes = []
    killed: set[int] = set()
    for i in range(8):
        proc = _start(src, str(dst), *extra)
        if i % 2 == 0:  # uniformly over the whole run, start-up included
            time.sleep(rng.uniform(0, duration))
        else:  # concentrated on the writing phase
            _wait_for_temp(proc, out)
            time.sleep(rng.uniform(0, 0.3))
        proc.kill()
        proc.wait()
        killed.add(proc.pid)
        outcome = _check_destination(dst, fmt, arrays)
        outcomes.append(outcome if proc.returncode == -signal.SIGKILL else "finished")
        # SIGKILL cannot clean up: only temporary files of killed processes may remain
        # (a run killed before it started writing has not yet removed its predecessor's).
        for name in _temps(out):
            assert int(name.split(TEMP_MARKER)[1].split("-")[0]) in killed, name
        for name in os.listdir(out):
            assert TEMP_MARKER in name or name == "checkpoint" or name.startswith("model."), name
    # The next conversion removes the dead process's temporary files and succeeds.
    proc = _start(src, str(dst), *extra)
    assert proc.wait(120) == 0
    assert _temps(out) == []
    assert _check_destination(dst, fmt, arrays) == "complete"
    print("outcomes:", outcomes)
    assert "absent" in outcomes or "complete" in outcomes, outcomes


@pytest.mark.parametrize("sig,code,word", [(signal.SIGINT, 130, "interrupted"),
                                           (signal.SIGTERM, 143, "terminated")])
@pytest.mark.parametrize("fmt", ["safetensors", "tf"])
def test_signal_stops_cleanly(tmp_path: Path, big_source, sig: int, code: int, word: str,
                              fmt: str) -> None:
    src, _ = big_source
    out = tmp_path / "out"
    out.mkdir()
    dst = out / ("model.safetensors" if fmt == "safetensors" else "model.ckpt")
    for attempt in range(5):  # a fast machine may finish before the signal lands; retry
        proc = _start(src, str(dst))
        if _wait_for_temp(proc, out):
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            for f in list(out.iterdir()):
                f.unlink()
            continue
        lines = err.decode().strip().splitlines()
        assert proc.returncode == code, err.decode()
        assert len(lines) == 1 and lines[0].startswith("error:") and word in lines[0], lines
        assert list(out.iterdir()) == []  # no destination, no temporary file
        return
    pytest.skip("the conversion always finished before the signal arrived")
