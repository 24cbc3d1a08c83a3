"""The state file is written by hand (no protobuf import); protobuf's text format is the oracle."""

from __future__ import annotations

from google.protobuf import text_format
from hypothesis import given, settings
from hypothesis import strategies as st

from ckconv.formats.tf.protos import CheckpointState
from ckconv.formats.tf.state import read_state, state_text, update_state

paths = st.text(min_size=1, max_size=30)  # any Unicode: quotes, backslashes, controls, CJK
stamps = st.floats(min_value=0, max_value=4e9, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(latest=paths, others=st.lists(paths, max_size=4), with_stamps=st.booleans(),
       stamp=stamps, last=st.one_of(st.just(0.0), stamps))
def test_state_text_is_what_protobuf_writes_and_parses_back(latest, others, with_stamps, stamp, last):
    all_paths = others + [latest]
    timestamps = [stamp + i for i in range(len(all_paths))] if with_stamps else []
    ours = state_text(latest, all_paths, timestamps, last)

    msg = CheckpointState(model_checkpoint_path=latest, last_preserved_timestamp=last)
    msg.all_model_checkpoint_paths.extend(all_paths)
    msg.all_model_checkpoint_timestamps.extend(timestamps)
    assert text_format.Parse(ours, CheckpointState()) == msg
    if _WRITES_UNICODE or all(" " <= ch < "\x7f" for p in all_paths for ch in p):
        assert ours == text_format.MessageToString(msg)


# protobuf 3.x escapes non-ASCII as octal UTF-8 bytes; later versions write Unicode as is,
# as ckconv does. Both parse either way.
_WRITES_UNICODE = text_format.MessageToString(CheckpointState(model_checkpoint_path="é")) \
    == 'model_checkpoint_path: "é"\n'


def test_undecodable_file_name_bytes_are_written_as_octal(tmp_path):
    name = b"model\xff.ckpt".decode("utf-8", "surrogateescape")
    assert state_text(name, [name], []).startswith('model_checkpoint_path: "model\\377.ckpt"')


def test_update_state_keeps_history_and_moves_a_rewritten_path_last(tmp_path):
    for step in (1, 2, 1):
        update_state(str(tmp_path / f"model.ckpt-{step}"))
    state = read_state(str(tmp_path))
    assert state.latest == "model.ckpt-1"
    assert state.all_paths == ["model.ckpt-2", "model.ckpt-1"]
