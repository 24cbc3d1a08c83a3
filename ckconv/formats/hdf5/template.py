"""Writing an HDF5 file laid out exactly like a template HDF5 file (``--like``).

Every group of the template is created again with its attributes (Keras' ``layer_names``,
``weight_names``, ``keras_version``, Keras 3's ``vars`` names), and every dataset at the
same path with its attributes, holding the tensor that :mod:`ckconv.converters.like` paired
with it. Attribute types are kept as stored (fixed or variable-length strings), since
Keras' loaders read them back as they wrote them.
"""

from __future__ import annotations

from typing import Any, Optional

from ...errors import MappingError
from ...tensormap import TensorMap
from .storage import RawWrites, write_dataset


def _copy_attrs(src: Any, dst: Any) -> None:
    import h5py

    for name in src.attrs:
        aid = h5py.h5a.open(src.id, name.encode("utf-8"))
        dst.attrs.create(name, src.attrs[name], dtype=aid.dtype)


def write_like_h5(tmap: TensorMap, handle: Any, template_handle: Any,
                  h5paths: dict[str, str], progress: Any = None,
                  raw: Optional[RawWrites] = None) -> list[str]:
    """Write ``tmap`` (named like the template) into ``handle`` with the template's layout.

    ``h5paths`` maps each tensor name to its dataset path in the template.
    """
    import h5py

    by_path = {h5paths[n].lstrip("/"): n for n in tmap if n in h5paths}
    _copy_attrs(template_handle, handle)
    count = 0
    skipped: list[str] = []

    def visit(path: str, obj: Any) -> None:
        nonlocal count
        if path == "optimizer_weights" or path.startswith("optimizer_weights/"):
            # A full-model file's optimizer state: the template's values, never the source's.
            if isinstance(obj, h5py.Dataset):
                skipped.append(path)
            return
        if isinstance(obj, h5py.Group):
            _copy_attrs(obj, handle.require_group(path))
            return
        name = by_path.get(path)
        if name is None:
            raise MappingError(f"{template_handle.filename}: dataset {path} of the template has "
                               "no tensor to write")
        parent, _, leaf = path.rpartition("/")
        group = handle.require_group(parent) if parent else handle
        ds = write_dataset(group, leaf, tmap[name], progress, raw)
        _copy_attrs(obj, ds)
        count += 1

    template_handle.visititems(visit)
    notes = [f"wrote {count} dataset(s) in the layout of the template"]
    if skipped:
        notes.append(f"left out the template's {len(skipped)} optimizer weight(s) "
                     "(optimizer_weights): Keras starts a fresh optimizer")
    return notes
