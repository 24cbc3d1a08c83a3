"""The generic HDF5 layout: one dataset per tensor, its path being the tensor's name.

Written files carry the root attribute ``ckconv_layout = "generic"`` (which switches on the
escape rule of :mod:`.names` when reading), the map's metadata as string root attributes,
and creation order tracking so tensors read back in the order they were written. Names that
share one tensor object (tied weights) become HDF5 hard links to one dataset.

Any other HDF5 file reads with this layout too (Keras 3 ``.weights.h5`` included): every
dataset is a tensor named by its path, in the file's link order; datasets of types ckconv
cannot represent are left out with a note.
"""

from __future__ import annotations

from typing import Any, Optional

from ...errors import UnsupportedError
from ...tensormap import TensorMap
from ..places import PLACES, Place, Places
from .names import decode_path, plan_paths
from .safety import MAX_LINKS, list_links, root_group
from .storage import ATTR_DTYPE, H5File, H5Tensor, RawWrites, can_store, dtype_of, write_dataset

LAYOUT_ATTR = "ckconv_layout"
GENERIC = "generic"
_RESERVED_ATTRS = {LAYOUT_ATTR, ATTR_DTYPE}


def _string_attrs(attrs: Any) -> dict[str, str]:
    out = {}
    for k, v in attrs.items():
        if k in _RESERVED_ATTRS:
            continue
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        if isinstance(v, str):
            out[k] = v
    return out


def _walk(gid: Any, prefix: str, visit: Any, notes: list[str], seen: set[int]) -> None:
    """Visit every dataset link of group ``gid`` in link order (aliases included, unlike
    h5py's visititems), with h5py's low-level calls rather than its Group objects, which
    look each name up twice: listing a file of thousands of datasets is markedly faster
    this way (with safety.scan's walk done likewise; docs/performance.md).

    Hard links can make a group its own descendant: each group is entered once.
    """
    from h5py import h5d, h5g, h5l, h5o

    addr = h5o.get_info(gid).addr
    if addr in seen:
        notes.append(f"skipped {prefix or '/'}: a link back to a group already read")
        return
    seen.add(addr)
    for raw_name, kind in list_links(gid, MAX_LINKS):
        path = f"{prefix}/{raw_name.decode()}" if prefix else raw_name.decode()
        if kind == h5l.TYPE_EXTERNAL:  # refused by safety.scan before any reader runs
            notes.append(f"left out {path}: external link")
            continue
        try:
            oid = h5o.open(gid, raw_name)  # follows soft links
        except KeyError:
            notes.append(f"left out {path}: dangling link")
            continue
        if isinstance(oid, h5g.GroupID):
            _walk(oid, path, visit, notes, seen)
        elif isinstance(oid, h5d.DatasetID):
            visit(path, oid)


def read_generic(handle: Any, path: str) -> TensorMap:
    import h5py

    escaped = handle.attrs.get(LAYOUT_ATTR) in (GENERIC, GENERIC.encode())
    tmap = TensorMap(metadata=_string_attrs(handle.attrs), source=path, format="hdf5")
    file = H5File(handle)
    # Keyed by address, not by h5py object: holding every dataset open would keep its
    # libhdf5 state alive (17 KB each, 350 MB for a 20,000-tensor file).
    by_object: dict[int, H5Tensor] = {}
    skipped: list[str] = []
    notes: list[str] = []
    written: list[tuple[int, str, H5Tensor]] = []

    def visit(h5path: str, dsid: Any) -> None:
        name = decode_path(h5path) if escaped else h5path
        key = h5py.h5o.get_info(dsid).addr
        if key in by_object:  # a hard link to a dataset already seen: tied
            tmap[name] = by_object[key]
            return
        ds = h5py.Dataset(dsid)
        dt = dtype_of(ds)
        if dt is None or ds.shape is None:
            skipped.append(f"{h5path} ({ds.dtype})")
            return
        t = H5Tensor(file, h5path, dt, tuple(ds.shape), ds)
        by_object[key] = t
        tmap[name] = t
        written.append((key, name, t))

    _walk(root_group(handle), "", visit, notes, set())
    tmap.extras[PLACES] = Places("the order the HDF5 file's datasets were written in",
                                 lambda: write_order(written))
    if skipped:
        notes.append(f"left out {len(skipped)} dataset(s) of types ckconv cannot represent: "
                     f"{', '.join(skipped[:5])}")
    if not escaped and "layers" in handle and isinstance(handle["layers"], h5py.Group):
        notes.insert(0, "Keras 3 weights file: tensors are named by their HDF5 paths "
                        "(layers/<layer>/vars/<index>)")
    tmap.notes.extend(notes)
    tmap.source_files.append(path)
    return tmap


def write_order(datasets: list[tuple[int, str, Any]]) -> list[tuple[Any, Place]]:
    """Places from file addresses. HDF5 lists links alphabetically (Keras 3 ``dense_10``
    before ``dense_2``) unless told to track their order, but a writer that never deletes
    lays objects out one after another, so addresses keep the order they were written in.

    Keras 3 writes a layer's parts in attribute-name order (``backward_layer`` before
    ``forward_layer``, ``key_dense`` before ``query_dense``), not in the order of
    ``layer.weights``; the parts whose order Keras fixes are put back in it.
    """
    first: dict[tuple[str, ...], int] = {}
    for addr, name, _ in sorted(datasets, key=lambda d: d[0]):
        parts = tuple(name.split("/"))
        for i in range(1, len(parts)):
            first.setdefault(parts[:i], addr)

    def key(item: tuple[int, str, Any]) -> tuple:
        addr, name, _ = item
        parts = tuple(name.split("/"))
        return tuple((_PART_RANK.get(parts[i - 1], len(_PART_RANK)), first[parts[:i]])
                     for i in range(1, len(parts))) + ((0, addr),)

    out = []
    layers: dict[str, int] = {}
    for rank, (_, name, t) in enumerate(sorted(datasets, key=key)):
        parts = name.split("/")[:-1]
        if parts and parts[-1] == "vars":
            parts.pop()
        layer = _top_layer(parts)
        out.append((t, Place((layers.setdefault(layer, len(layers)), rank), layer, True, name)))
    return out


# Parts of a Keras 3 layer in the order layer.weights lists them.
_PART_RANK = {name: i for i, name in enumerate((
    "forward_layer", "backward_layer", "query_dense", "_query_dense", "key_dense",
    "_key_dense", "value_dense", "_value_dense", "output_dense", "_output_dense"))}


def _top_layer(parts: list[str]) -> str:
    """Keras 3 paths: ``layers/<name>`` is layer ``<name>`` (``layers/inner/layers/dense``
    belongs to ``inner``); other files: the dataset's group."""
    if len(parts) >= 2 and parts[0] in ("layers", "_layers"):
        return parts[1]
    return "/".join(parts) or "/"


def _ensure_group(root: Any, parts: list[str]) -> Any:
    group = root
    for part in parts:
        nxt = group.get(part)
        group = nxt if nxt is not None else group.create_group(part, track_order=True)
    return group


def write_generic(tmap: TensorMap, handle: Any, progress: Any = None,
                  raw: Optional[RawWrites] = None) -> list[str]:
    notes: list[str] = []
    handle.attrs[LAYOUT_ATTR] = GENERIC
    for k, v in tmap.metadata.items():
        if k not in _RESERVED_ATTRS:
            handle.attrs[str(k)] = str(v)
    bad = [n for n, t in tmap.items() if not can_store(t.dtype)]
    if bad:
        raise UnsupportedError(f"HDF5 cannot hold {', '.join(f'{n} ({tmap[n].dtype})' for n in bad[:5])}")
    paths = plan_paths(tmap.keys())
    written: dict[int, str] = {}
    for name, t in tmap.items():
        h5path = paths[name]
        parts = h5path.split("/")
        parent = _ensure_group(handle, parts[:-1])
        if id(t) in written:
            parent[parts[-1]] = handle[written[id(t)]]  # hard link: storage stays shared
            continue
        write_dataset(parent, parts[-1], t, progress, raw)
        written[id(t)] = h5path
    escaped = sum(1 for n, p in paths.items() if p != n)
    if escaped:
        notes.append(f"{escaped} name(s) stored with the HDF5 escape rule (e.g. "
                     f"{next(n for n, p in paths.items() if p != n)!r} -> "
                     f"{next(p for n, p in paths.items() if p != n)!r}); ckconv reads them back "
                     "under their original names")
    tied = len(tmap) - len(written)
    if tied:
        notes.append(f"{tied} tied name(s) written as HDF5 hard links to one dataset")
    return notes
