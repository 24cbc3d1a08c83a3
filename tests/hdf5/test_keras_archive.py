"""Keras 3 ``.keras`` archives against what Keras reported when it wrote the fixture
(tests/fixtures/make_keras_archive.py); loading the outputs in Keras is in
tests/converters/test_like_live.py."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import ckconv
from ckconv.errors import UnsupportedError
from ckconv.formats.places import model_order
from tests.helpers import ROOT

ARCHIVE = ROOT / "tests" / "fixtures" / "keras3" / "model.keras"
MANIFEST = json.loads((ARCHIVE.parent / "manifest.json").read_text())


def _hex(t) -> str:
    return np.ascontiguousarray(t.numpy()).tobytes().hex()


def test_archive_reads_as_keras_reported_in_model_order():
    tmap = ckconv.load(ARCHIVE)
    assert tmap.format == "keras"
    by_value = {_hex(t): n for n, t in tmap.items()}
    assert len(by_value) == len(tmap) == len(MANIFEST["weights"])
    names = [by_value[w["data"]] for w in MANIFEST["weights"]]  # each of Keras' weights is one tensor
    for w, name in zip(MANIFEST["weights"], names):
        assert list(tmap[name].shape) == w["shape"] and str(tmap[name].dtype) == w["dtype"]
    # The model's order (layer.weights, forward LSTM before backward), not the file's listing.
    assert model_order(tmap).names == names
    assert ("bidirectional", "Bidirectional") in tmap.extras["keras.layers"]
    assert tmap.metadata["keras_version"] == MANIFEST["made_by"].split()[1].rstrip(",")


def test_archive_written_like_a_template_keeps_every_other_member(tmp_path):
    src = ckconv.load(ARCHIVE)
    doubled = ckconv.TensorMap({n: t.numpy() * 2 for n, t in src.items()})
    out = tmp_path / "out.keras"
    ckconv.save(doubled.like(ARCHIVE), out)
    with zipfile.ZipFile(out) as a, zipfile.ZipFile(ARCHIVE) as b:
        assert a.namelist() == b.namelist()
        for name in b.namelist():
            if name != "model.weights.h5":
                assert a.read(name) == b.read(name), name
        assert all(i.compress_type == zipfile.ZIP_STORED for i in a.infolist())
    back = ckconv.load(out)
    assert list(back) == list(src)
    for name in src:
        np.testing.assert_array_equal(back[name].numpy(), src[name].numpy() * 2)


def test_compressed_weights_are_refused(tmp_path):
    path = tmp_path / "deflated.keras"
    with zipfile.ZipFile(ARCHIVE) as z, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for name in z.namelist():
            out.writestr(name, z.read(name))
    with pytest.raises(UnsupportedError, match="compressed inside the archive"):
        ckconv.load(path, "keras")


def test_damaged_global_heap_inside_the_archive_is_refused(tmp_path):
    """The HDF5 safety walk runs on the member, with its offsets: a heap collection
    claiming bytes past the member's end (still inside the zip) is refused."""
    import os

    from ckconv.errors import CorruptCheckpointError
    from ckconv.formats.hdf5.archive import _weights_window

    window = _weights_window(str(ARCHIVE))
    offset, size = window.region
    window.close()
    data = bytearray(ARCHIVE.read_bytes())
    member = bytes(data[offset:offset + size])
    at = member.find(b"GCOL")
    assert at > 0
    claim = size - at + 16  # ends 16 bytes past the member, inside the zip's directory
    assert offset + at + claim < len(data)
    data[offset + at + 8:offset + at + 16] = claim.to_bytes(8, "little")
    path = tmp_path / "damaged.keras"
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="global heap .* past the end of the file"):
        ckconv.load(path)
