"""The command line and API as a new user meets them: each point of the front-door issue,
run as a subprocess where exit codes and stderr are what is promised."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ckconv
from tests.helpers import FIXTURES, ROOT, SEED, fixture_prefix, live_module


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "ckconv", *args], capture_output=True,
                          text=True, cwd=cwd, env=env)


def _training_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURES / "tf1_saver", run_dir)
    return run_dir


# 1. Options anywhere ---------------------------------------------------------------------

@pytest.mark.parametrize("middle", [["--step", "2"], ["--dtype", "fp16"], ["-q"]])
def test_options_between_src_and_dst(tmp_path: Path, middle: list[str]) -> None:
    src = str(FIXTURES / "tf1_saver")
    res = run(src, *middle, str(tmp_path / "out.safetensors"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out.safetensors").is_file()


# 2. diff compares weights; ckconv.diff takes paths -----------------------------------------

def test_diff_after_a_tf2_conversion_is_equal(tmp_path: Path) -> None:
    src = fixture_prefix("keras3_ckpt")
    out = tmp_path / "out.safetensors"
    res = run(src, str(out))
    assert res.returncode == 0 and "_CHECKPOINTABLE_OBJECT_GRAPH" in res.stderr
    res = run("diff", src, str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().splitlines()[-1].startswith("EQUAL")
    assert "not compared (structure, not weights): _CHECKPOINTABLE_OBJECT_GRAPH" in res.stdout
    assert run("diff", src, str(out), "--structure").returncode == 1
    report = ckconv.diff(src, out)
    assert report and report.equal and str(report).splitlines()[-1].startswith("EQUAL")
    assert not ckconv.diff(src, out, structure=True)


# 3. Overwrites and the state file -----------------------------------------------------------

def test_existing_output_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "out.safetensors"
    assert run(str(SEED / "my_model"), str(out)).returncode == 0
    before = out.read_bytes()
    res = run(str(SEED / "my_model"), str(out), "--dtype", "fp16")
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "already exists" in res.stderr and "--force" in res.stderr
    assert out.read_bytes() == before
    assert run(str(SEED / "my_model"), str(out), "--dtype", "fp16", "--force").returncode == 0
    assert out.read_bytes() != before
    with pytest.raises(ckconv.OutputExistsError, match="overwrite=True"):
        ckconv.save(ckconv.load(out), out, overwrite=False)


def test_a_training_runs_state_file_is_never_repointed_silently(tmp_path: Path) -> None:
    run_dir = _training_run(tmp_path)
    state = run_dir / "checkpoint"
    before = state.read_text()
    res = run(str(run_dir), str(run_dir / "model.ckpt-600"), "--dtype", "fp16")
    assert res.returncode == 0, res.stderr
    assert state.read_text() == before
    assert "left" in res.stderr and "--update-state" in res.stderr
    res = run(str(run_dir / "model.ckpt-600"), str(run_dir / "model.ckpt-700"), "--update-state")
    assert res.returncode == 0, res.stderr
    assert "model.ckpt-700" in state.read_text().splitlines()[0]


# 4. --version, the summary line, -q --------------------------------------------------------

def test_version_and_summary(tmp_path: Path) -> None:
    res = run("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"ckconv {ckconv.__version__}"
    res = run(str(FIXTURES / "bert_tiny" / "bert_model.ckpt"), str(tmp_path / "m.safetensors"),
              "--preset", "bert")
    assert res.returncode == 0, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"wrote {tmp_path / 'm.safetensors'}: ")
    n = len(ckconv.load(tmp_path / "m.safetensors"))
    assert f": {n} tensors, " in last and "left out" in last and "--dry-run lists them" in last
    quiet = run(str(FIXTURES / "bert_tiny" / "bert_model.ckpt"), str(tmp_path / "q.safetensors"),
                "--preset", "bert", "-q")
    assert quiet.returncode == 0 and quiet.stderr == ""


# 5. Errors: one line, the user's paths, the documented exit code ----------------------------

@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("unshare") is None,
                    reason="root ignores directory permissions")
def test_read_only_output_directory(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("this user can write to read-only directories (root)")
        for dst in ("x.safetensors", "x.h5", "x.ckpt", "x.pt"):
            res = run(str(SEED / "my_model"), str(ro / dst))
            assert res.returncode == 1, res.stderr
            assert res.stderr.count("\n") == 1 and str(ro / dst) in res.stderr
            assert "ckconv-tmp" not in res.stderr and "Permission denied" in res.stderr
    finally:
        ro.chmod(stat.S_IRWXU)


def test_write_errors_name_the_users_path_not_the_temporary_file(tmp_path: Path) -> None:
    """The same as above for root, who ignores permissions: a file where a directory must be."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    for dst in ("x.safetensors", "x.h5", "x.ckpt", "x.pt"):
        res = run(str(SEED / "my_model"), str(blocker / "sub" / dst))
        assert res.returncode == 1, res.stderr
        assert res.stderr.count("\n") == 1 and "ckconv-tmp" not in res.stderr, res.stderr


def test_a_step_of_a_pytorch_file_is_a_usage_error_both_ways(tmp_path: Path) -> None:
    sd = tmp_path / "sd.pt"
    ckconv.save({"w": np.ones(2, np.float32)}, sd)
    a = run(str(sd), "--step", "3", str(tmp_path / "a.safetensors"))
    b = run(f"{sd}@3", str(tmp_path / "b.safetensors"))
    assert a.returncode == b.returncode == 2
    assert "a step selects among TF checkpoints" in a.stderr
    assert "a step selects among TF checkpoints" in b.stderr


def test_usage_errors_are_one_line() -> None:
    for args in (["--bogus"], [], ["diff", "a"], ["inspect"], ["x", "y", "--to", "nope"]):
        res = run(*args)
        assert res.returncode == 2, (args, res.stderr)
        assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: "), res.stderr


def test_long_lists_in_errors_are_cut_with_a_count(tmp_path: Path) -> None:
    names = {f"t{i}": np.zeros(1, np.float32) for i in range(300)}
    src = tmp_path / "many.safetensors"
    ckconv.save(names, src)
    res = run(str(src), str(tmp_path / "o.safetensors"), "--preset", "bert")
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and len(res.stderr) < 600, res.stderr
    assert "and 295 more" in res.stderr


# 6. The API --------------------------------------------------------------------------------

def test_library_errors_give_library_advice(tmp_path: Path) -> None:
    with pytest.raises(ckconv.UsageError) as info:
        ckconv.save({"w": np.ones(1)}, tmp_path / "x.weird")
    assert "--to" not in str(info.value) and "format=" in str(info.value)
    assert "--to FORMAT" in info.value.cli_message
    strings = {"s": np.array([b"a"], dtype=object)}
    with pytest.raises(ckconv.UnsupportedError) as info:
        ckconv.save(strings, tmp_path / "x.safetensors")
    assert "--skip" not in str(info.value) and "skip_unsupported=True" in str(info.value)


def test_dir_and_reprs() -> None:
    names = dir(ckconv)
    assert {"diff", "rules", "load", "save", "convert", "TensorMap"} <= set(names)
    report = ckconv.diff({"a": np.ones(1)}, {"a": np.ones(1)})
    assert str(report) == "EQUAL (exact): 1 tensor in both: 1 equal, 0 differ, 0 dtype " \
        "mismatches, 0 shape mismatches; 0 only in A, 0 only in B; max abs diff 0, max rel diff 0"
    assert "DiffReport(" not in str(report)


# 7. Footguns -------------------------------------------------------------------------------

def test_meta_file_as_source_and_typos_name_the_nearest_checkpoint(tmp_path: Path) -> None:
    meta = SEED / "my_model" / "test_save-1000.meta"
    res = run(str(meta), str(tmp_path / "o.safetensors"))
    assert res.returncode == 0, res.stderr
    res = run(str(SEED / "my_model" / "test_save-100"), str(tmp_path / "p.safetensors"))
    assert res.returncode == 1 and "did you mean" in res.stderr and "test_save-1000" in res.stderr


def test_failed_conversion_removes_directories_it_created(tmp_path: Path) -> None:
    strings = tmp_path / "s.ckpt"
    ckconv.save({"s": np.array([b"x"], dtype=object)}, strings)
    dst = tmp_path / "new" / "deeper" / "model.safetensors"
    res = run(str(strings), str(dst), "--max-shard-size", "1KB")
    assert res.returncode == 1
    assert not (tmp_path / "new").exists()


def test_inspect_values_are_capped(tmp_path: Path) -> None:
    big = tmp_path / "big.safetensors"
    ckconv.save({"w": np.arange(5000, dtype=np.float32)}, big)
    import json

    res = run("inspect", str(big), "--json", "--values", "w")
    doc = json.loads(res.stdout)
    assert len(doc["values"]["w"]) == 1000 and "--max-values 0" in doc["values_cut"]["w"]
    res = run("inspect", str(big), "--json", "--values", "w", "--max-values", "0")
    assert len(json.loads(res.stdout)["values"]["w"]) == 5000


# 8. Tensors straight into PyTorch ----------------------------------------------------------

def test_torch_state_dict_zero_copy_and_bit_exact(tmp_path: Path) -> None:
    torch = live_module("torch")
    from safetensors.torch import load_file

    src = tmp_path / "m.safetensors"
    rng = np.random.default_rng(0)
    ckconv.save({"w": rng.standard_normal((64, 32)).astype(np.float32),
                 "h": np.arange(6, dtype=np.float16)}, src)
    sd = ckconv.load(src).torch()
    want = load_file(str(src))
    for k in want:
        assert torch.equal(sd[k], want[k])
    sd["w"] += 1  # copy-on-write: the file is untouched
    assert torch.equal(load_file(str(src))["w"], want["w"])
    tf_sd = ckconv.load(fixture_prefix("tf1_saver")).torch()
    for k, t in ckconv.load(fixture_prefix("tf1_saver")).items():
        assert tf_sd[k].numpy().tobytes() == np.ascontiguousarray(t.numpy()).tobytes()


def test_torch_verifies_tf_checksums(tmp_path: Path) -> None:
    live_module("torch")
    prefix = str(tmp_path / "m.ckpt")
    ckconv.save({"w": np.arange(4096, dtype=np.float32)}, prefix)
    data = Path(prefix + ".data-00000-of-00001")
    raw = bytearray(data.read_bytes())
    raw[100] ^= 1
    data.write_bytes(bytes(raw))
    with pytest.raises(ckconv.CorruptCheckpointError, match="'w'"):
        ckconv.load(prefix)["w"].torch()


# 10. Shell completion ----------------------------------------------------------------------

def test_bash_completion_completes_options_formats_and_presets(tmp_path: Path) -> None:
    script = tmp_path / "c.bash"
    script.write_text(run("completion", "bash").stdout)

    def complete(*words: str) -> list[str]:
        line = " ".join(["ckconv", *words])
        code = (f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words)}; _ckconv; "
                "printf '%s\\n' \"${COMPREPLY[@]}\"")
        return subprocess.run(["bash", "-c", code], capture_output=True, text=True).stdout.split()

    assert "--max-shard-size" in complete("--max")
    from ckconv.formats import NAMES

    assert complete("x", "--to", "") == list(NAMES)
    assert "bert" in complete("x", "--preset", "b")
    assert "--json" in complete("inspect", "--j")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_are_valid(shell: str, tmp_path: Path) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    res = run("completion", shell)
    assert res.returncode == 0
    script = tmp_path / f"c.{shell}"
    script.write_text(res.stdout)
    check = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_keras_footguns_get_a_hint_or_an_error(tmp_path: Path) -> None:
    src = tmp_path / "t.safetensors"
    ckconv.save({"fc.weight": np.ones((3, 4), np.float32), "fc.bias": np.ones(3, np.float32)},
                src)
    res = run(str(src), str(tmp_path / "k.h5"), "--h5-layout", "keras")
    assert res.returncode == 0 and "each of the 2 tensors became a layer of its own" in res.stderr
    assert "--preset torch-to-keras" in res.stderr
    res = run(str(src), str(tmp_path / "m.weights.h5"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "Keras 3 variable paths" in res.stderr and "--like" in res.stderr
    assert not (tmp_path / "m.weights.h5").exists()
    keras3 = tmp_path / "k3.safetensors"
    ckconv.save({"layers/dense/vars/0": np.ones((4, 3), np.float32)}, keras3)
    assert run(str(keras3), str(tmp_path / "ok.weights.h5")).returncode == 0
