"""PyTorch files: safe loading, the flattening rule, tied tensors, writing plain state dicts."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import ckconv
from ckconv.cli import main
from ckconv.errors import CorruptCheckpointError, MissingDependencyError, UnsupportedError
from ckconv.formats.pytorch.flatten import flatten, notes_for
from tests.helpers import (expected_entries, live_torch, other, other_manifest, read_torch,
                             seen_by_ckconv)

# --------------------------------------------------------------------------- flattening rule


class Fake:
    """Stands in for a tensor, so the rule is tested without torch."""


def _is_fake(v):
    return isinstance(v, Fake)


def test_flatten_joins_nested_keys_with_dots():
    a, b, c = Fake(), Fake(), Fake()
    flat = flatten({"enc": {"layer": {"w": a}, 3: b}, "heads": [c], "lr": 0.1}, _is_fake)
    assert flat.tensors == [("enc.layer.w", a), ("enc.3", b), ("heads.0", c)]
    assert flat.others == [("lr", 0.1)]
    assert flat.unwrapped is None


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict", "model"])
def test_flatten_unwraps_one_known_key(key):
    w, m = Fake(), Fake()
    flat = flatten({"epoch": 2, key: {"w": w}, "optimizer": {"m": m}}, _is_fake)
    assert flat.unwrapped == key and flat.tensors == [("w", w)]
    assert [(k, n) for k, _, n in flat.outside] == [("epoch", 0), ("optimizer", 1)]
    note = notes_for(flat)[0]
    assert f"under {key!r} only" in note and "epoch=2" in note and "optimizer (1 tensor)" in note


def test_flatten_prefers_state_dict_and_ignores_non_dict_values():
    w = Fake()
    assert flatten({"model": {"x": Fake()}, "state_dict": {"w": w}}, _is_fake).tensors == [("w", w)]
    flat = flatten({"model": w}, _is_fake)  # a tensor named "model" is not a wrapper
    assert flat.unwrapped is None and flat.tensors == [("model", w)]


def test_flatten_bare_tensor_and_name_clash():
    t = Fake()
    assert flatten(t, _is_fake).tensors == [("tensor", t)]
    flat = flatten({"a.b": Fake(), "a": {"b": Fake()}}, _is_fake)
    assert [n for n, _ in flat.tensors] == ["a.b"] and flat.clashes == ["a.b"]
    assert "already taken" in notes_for(flat)[-1]


# --------------------------------------------------------------------------- reading fixtures

@pytest.mark.parametrize("name", ["torch_state_dict.pt", "lightning.ckpt", "nested.pth", "legacy.pt"])
def test_fixture_matches_torch_manifest(name):
    live_torch()
    entries = other_manifest(name)["tensors"]
    got = seen_by_ckconv(other(name))
    want = expected_entries(entries)
    assert list(got) == list(want)
    for k in want:
        assert got[k] == want[k], k


def test_state_dict_fixture_keeps_ties_and_strided_views():
    live_torch()
    tmap = ckconv.load(other("torch_state_dict.pt"))
    assert tmap.format == "torch"
    for group in other_manifest("torch_state_dict.pt")["tied"]:
        assert all(tmap[n] is tmap[group[0]] for n in group)
    # A transposed view of a shared storage is its own tensor with its own values.
    assert tmap["layer.0.weight_t"] is not tmap["layer.0.weight"]
    np.testing.assert_array_equal(tmap["layer.0.weight_t"].numpy(), tmap["layer.0.weight"].numpy().T)
    streamed = b"".join(bytes(c) for c in tmap["layer.0.weight_t"].iter_bytes(chunk=5))
    assert streamed == tmap["layer.0.weight_t"].numpy().tobytes()


def test_lightning_checkpoint_reports_what_it_leaves_out(capsys):
    live_torch()
    tmap = ckconv.load(other("lightning.ckpt"))
    assert list(tmap) == ["model.encoder.weight", "model.encoder.bias"]
    text = " ".join(tmap.notes)
    for word in ("'state_dict' only", "epoch=3", "global_step=30", "hyper_parameters=",
                 "optimizer_states (3 tensors)"):
        assert word in text, word
    assert tmap.extras["torch_non_tensors"]["epoch"] == 3
    assert main(["inspect", other("lightning.ckpt")]) == 0
    captured = capsys.readouterr()
    assert "model.encoder.weight" in captured.out and "epoch=3" in captured.err


def test_nested_file_follows_the_join_rule():
    live_torch()
    tmap = ckconv.load(other("nested.pth"))
    assert any("step=5" in n for n in tmap.notes)


def test_conversion_repeats_the_notes(tmp_path):
    live_torch()
    notes = ckconv.convert(other("lightning.ckpt"), tmp_path / "x.safetensors")
    assert any("epoch=3" in n for n in notes)


# --------------------------------------------------------------------------- never run code

def test_pickle_needing_code_is_refused_and_nothing_runs(tmp_path, monkeypatch, capsys):
    live_torch()
    payload = other_manifest("evil.pt")["payload_creates"]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsupportedError, match=r"run code.*io\.open.*nothing was executed"):
        ckconv.load(other("evil.pt"))
    assert main(["inspect", other("evil.pt")]) == 1
    assert "never runs pickled code" in capsys.readouterr().err
    assert main([other("evil.pt"), str(tmp_path / "out.safetensors")]) == 1
    assert os.listdir(tmp_path) == [], f"{payload} must never appear"


@pytest.mark.live
def test_evil_payload_is_real_when_loaded_unsafely(tmp_path):
    """Proves the previous test means something: an unsafe load does create the file."""
    live_torch()
    payload = other_manifest("evil.pt")["payload_creates"]
    code = f"import torch; torch.load({other('evil.pt')!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, capture_output=True)
    assert os.listdir(tmp_path) == [payload]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archive_is_refused(tmp_path):
    torch = live_torch()
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(UnsupportedError, match="TorchScript"):
        ckconv.load(path)


def test_damaged_zip_is_corrupt(tmp_path):
    live_torch()
    data = open(other("torch_state_dict.pt"), "rb").read()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(data[: len(data) // 2] + b"\0" * 64 + data[-200:])
    with pytest.raises((CorruptCheckpointError, ckconv.FormatError)):
        ckconv.load(bad).to_numpy()


# --------------------------------------------------------------------------- writing

@pytest.mark.live
def test_written_file_loads_as_plain_dict_with_ties(tmp_path):
    torch = live_torch()
    out = tmp_path / "out.pt"
    ckconv.convert(other("torch_state_dict.pt"), out)
    obj = torch.load(out, weights_only=True)
    assert type(obj) is dict and all(isinstance(v, torch.Tensor) for v in obj.values())
    assert obj["embed.weight"].untyped_storage().data_ptr() == \
        obj["lm_head.weight"].untyped_storage().data_ptr()
    want = expected_entries(other_manifest("torch_state_dict.pt")["tensors"])
    assert read_torch(str(out)) == want


@pytest.mark.live
@pytest.mark.parametrize("via", ["model.h5", "model.safetensors"])
def test_ties_survive_torch_through_format_and_back(tmp_path, via):
    torch = live_torch()
    mid, out = tmp_path / via, tmp_path / "back.pt"
    ckconv.convert(other("torch_state_dict.pt"), mid)
    ckconv.convert(mid, out)
    obj = torch.load(out, weights_only=True)
    assert obj["embed.weight"].untyped_storage().data_ptr() == \
        obj["lm_head.weight"].untyped_storage().data_ptr()


def test_unsupported_dtypes_named_and_skippable(tmp_path):
    live_torch()
    arrays = {"s": np.array([b"x"], dtype=object), "w": np.ones(2, np.float32)}
    with pytest.raises(UnsupportedError, match=r"s \(string\).*skip_unsupported=True"):
        ckconv.save(arrays, tmp_path / "x.pt")
    assert os.listdir(tmp_path) == []
    notes = ckconv.save(arrays, tmp_path / "x.pt", skip_unsupported=True)
    assert any("left out 1" in n for n in notes)
    assert list(ckconv.load(tmp_path / "x.pt")) == ["w"]


def test_metadata_is_dropped_with_a_note(tmp_path):
    live_torch()
    from ckconv.tensormap import TensorMap

    tmap = TensorMap({"w": np.ones(2, np.float32)}, metadata={"format": "pt", "license": "mit"})
    notes = ckconv.save(tmap, tmp_path / "x.bin")
    assert any("license" in n and "format" not in n for n in notes)


def test_missing_torch_gives_the_install_hint(tmp_path, monkeypatch):
    ckconv.save({"w": np.ones(2, np.float32)}, tmp_path / "x.safetensors")
    monkeypatch.setitem(sys.modules, "torch", None)  # "import torch" now raises ImportError
    # Writing (ckconv's own zip writer) needs no torch, nor does reading zip or legacy
    # files; what only torch can rebuild names the extra to install.
    ckconv.save({"w": np.ones(2, np.float32)}, tmp_path / "x.pt")
    assert list(ckconv.load(other("legacy.pt")))
    with pytest.raises(MissingDependencyError, match=r"pip install 'ckconv\[torch\]'"):
        from ckconv.formats.pytorch.reader import load_object

        load_object(other("legacy.pt"))
    assert list(ckconv.load(tmp_path / "x.safetensors")) == ["w"]  # other formats unaffected


def test_reading_safetensors_and_hdf5_never_imports_torch(tmp_path):
    code = (f"import sys, ckconv; ckconv.load({other('keras2_weights.h5')!r}).to_numpy(); "
            "import numpy as np; ckconv.save({'a': np.ones(2)}, sys.argv[1]); "
            "ckconv.load(sys.argv[1]).to_numpy(); sys.exit('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.safetensors")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
