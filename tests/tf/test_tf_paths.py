"""Every way users name a TF checkpoint, and the errors when they name none."""

from __future__ import annotations

import os
import shutil

import pytest

import ckconv
from ckconv.formats.tf.paths import resolve_prefix
from tests.helpers import FIXTURES, SEED, fixture_prefix


def _names(path) -> list[str]:
    return sorted(ckconv.load(path))


@pytest.mark.parametrize("suffix", ["", ".index", ".data-00000-of-00001"])
def test_prefix_index_and_data_paths(suffix):
    prefix = fixture_prefix("dtypes")
    assert resolve_prefix(prefix + suffix) == prefix
    assert len(ckconv.load(prefix + suffix)) > 20


def test_directory_with_state_file_uses_latest():
    directory = FIXTURES / "tf1_saver"
    assert resolve_prefix(str(directory)) == str(directory / "model.ckpt-3")


def test_copied_directory_falls_back_beside_state_file():
    """The seed checkpoints' state files hold absolute paths of a machine that is gone."""
    state = (SEED / "my_model" / "checkpoint").read_text()
    assert '"/' in state, "seed state file should record an absolute path"
    prefix = resolve_prefix(str(SEED / "my_model"))
    assert prefix == str(SEED / "my_model" / "test_save-1000")
    assert _names(SEED / "my_model") == ["w1", "w2"]


def test_directory_with_single_checkpoint_and_no_state(tmp_path):
    src = fixture_prefix("strings")
    for f in os.listdir(os.path.dirname(src)):
        if f.startswith(os.path.basename(src) + "."):
            shutil.copy(os.path.join(os.path.dirname(src), f), tmp_path)
    assert resolve_prefix(str(tmp_path)) == str(tmp_path / os.path.basename(src))


def test_directory_with_several_checkpoints_and_no_state(tmp_path):
    d = FIXTURES / "tf1_saver"
    for f in os.listdir(d):
        if f != "checkpoint":
            shutil.copy(d / f, tmp_path)
    with pytest.raises(ckconv.FormatError, match="model.ckpt-2, model.ckpt-3"):
        ckconv.load(tmp_path)


def test_missing_path_lists_checkpoints_nearby():
    missing = FIXTURES / "tf1_saver" / "model.ckpt-9"
    with pytest.raises(ckconv.FormatError) as info:
        ckconv.load(missing)
    msg = str(info.value)
    assert str(missing) in msg and "model.ckpt-3" in msg and "model.ckpt-2" in msg


def test_state_file_pointing_to_missing_prefix(tmp_path):
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "gone-7"\n')
    with pytest.raises(ckconv.FormatError, match="gone-7"):
        ckconv.load(tmp_path)


def test_empty_directory(tmp_path):
    with pytest.raises(ckconv.FormatError, match=str(tmp_path)):
        ckconv.load(tmp_path)


def test_temp_debris_is_ignored(tmp_path):
    src = fixture_prefix("strings")
    base = os.path.basename(src)
    for f in os.listdir(os.path.dirname(src)):
        if f.startswith(base + "."):
            shutil.copy(os.path.join(os.path.dirname(src), f), tmp_path)
    (tmp_path / f"{base}.index.tempstate123").write_bytes(b"junk")
    assert resolve_prefix(str(tmp_path)) == str(tmp_path / base)
