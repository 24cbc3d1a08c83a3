"""TF1 ``.meta`` files (MetaGraphDef): collections, their variables, the SaverDef, op counts.

A ``tf.compat.v1.train.Saver`` writes ``<prefix>.meta`` beside each checkpoint. It holds the
whole graph, but what a converter needs from it is small: which checkpoint tensors belong
to which collection (``trainable_variables``, ``global_step``, custom ones, ...), the
Saver's settings, and how big the graph is. Everything is parsed with the private protobuf
pool of :mod:`.protos`, so TensorFlow is never imported.

Collection contents (docs/formats.md §8.2):

* the variable collections store serialized ``VariableDef`` records in ``bytes_list``;
  the checkpoint key is ``variable_name`` without ``:0``, or ``save_slice_info_def.full_name``
  for a partition of a partitioned variable;
* any other collection of graph objects (a custom ``tf.add_to_collection("mine", var)``,
  ``train_op``, ``summaries``) stores graph names in ``node_list``: tensor names such as
  ``w1:0`` or op names such as ``train_op``. A name designates a checkpoint tensor when it is
  one of the variables above (so partitions map to their full variable) or, after dropping
  ``:<n>``, a key of the checkpoint.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from google.protobuf import text_format
from google.protobuf.message import DecodeError

from ...errors import CorruptCheckpointError, UsageError
from . import protos
from .paths import META_PATH_KEY, meta_path_for

#: Collections whose entries TF serializes as VariableDef (its registered proto functions).
VARIABLE_COLLECTIONS = frozenset({
    "variables", "trainable_variables", "local_variables", "model_variables",
    "moving_average_variables", "metric_variables", "global_step",
})
#: tf.GraphKeys.GLOBAL_VARIABLES is stored under the key "variables"; users know it as
#: "global_variables" (the name of tf.compat.v1.global_variables()), so that is shown.
ALIASES = {"global_variables": "variables"}
_DISPLAY = {v: k for k, v in ALIASES.items()}
_OUTPUT_INDEX = re.compile(r":\d+$")
_MAX_META_BYTES = 2 << 30  # protobuf refuses messages over 2 GiB anyway

_CACHE_KEY = "tf.meta"


def display_name(key: str) -> str:
    """The name shown for a collection key (``variables`` -> ``global_variables``)."""
    return _DISPLAY.get(key, key)


def strip_output_index(name: str) -> str:
    """``w1:0`` -> ``w1``; names without an output index are returned unchanged."""
    return _OUTPUT_INDEX.sub("", name)


@dataclass
class Variable:
    """One VariableDef record."""

    name: str                    # graph tensor name, e.g. "dense/kernel/part_1:0"
    key: str                     # checkpoint key, e.g. "dense/kernel"
    is_resource: bool = False
    trainable: Optional[bool] = None  # None: an older .meta without the field
    partition: Optional[dict[str, list[int]]] = None  # full_shape, var_offset, var_shape


@dataclass
class Collection:
    """One entry of MetaGraphDef.collection_def."""

    key: str                     # as stored ("variables")
    kind: str                    # node_list, bytes_list, int64_list, float_list, any_list, ""
    size: int                    # number of entries as stored
    variables: list[Variable] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    #: Checkpoint keys the entries may designate, in order (see the module docstring).
    candidates: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return display_name(self.key)


@dataclass
class MetaGraph:
    """What ckconv reads from a ``.meta`` file."""

    path: str
    op_count: int
    op_types: Counter
    collections: dict[str, Collection]   # by stored key, in file order
    saver: dict[str, Any]
    tensorflow_version: str = ""
    tags: list[str] = field(default_factory=list)
    text_format: bool = False

    def collection(self, name: str) -> Collection:
        """Look a collection up by stored key or shown name; UsageError lists the known ones."""
        key = name if name in self.collections else ALIASES.get(name, name)
        if key not in self.collections:
            known = ", ".join(sorted(c.name for c in self.collections.values())) or "none"
            raise UsageError(f"{self.path}: the graph has no collection {name!r} "
                             f"(collections: {known})")
        return self.collections[key]

    def keys_of(self, names: Iterable[str], available: Iterable[str]) -> list[str]:
        """Checkpoint keys (among ``available``, in its order) in any of the collections."""
        wanted: set[str] = set()
        for name in names:
            wanted.update(self.collection(name).candidates)
        return [k for k in available if k in wanted]

    def membership(self, available: Iterable[str]) -> dict[str, list[str]]:
        """For each key of ``available``: the shown names of the collections holding it."""
        out: dict[str, list[str]] = {k: [] for k in available}
        for coll in sorted(self.collections.values(), key=lambda c: c.name):
            for key in dict.fromkeys(coll.candidates):
                if key in out:
                    out[key].append(coll.name)
        return out

    def summary(self, available: Iterable[str] = ()) -> dict[str, Any]:
        """A JSON-able description (collections with their sizes and checkpoint members)."""
        avail = list(available)
        colls = {}
        for coll in sorted(self.collections.values(), key=lambda c: c.name):
            entry: dict[str, Any] = {"key": coll.key, "kind": coll.kind, "size": coll.size}
            if avail:
                entry["tensors"] = self.keys_of([coll.key], avail)
            colls[coll.name] = entry
        return {"path": self.path, "ops": self.op_count, "op_types": dict(self.op_types),
                "tensorflow_version": self.tensorflow_version, "saver": self.saver,
                "collections": colls}


def read_meta_graph(path: str) -> MetaGraph:
    """Parse a binary or text ``.meta`` file."""
    try:
        size = os.path.getsize(path)
        if size > _MAX_META_BYTES:
            raise CorruptCheckpointError(f"{path}: {size} bytes, larger than any MetaGraphDef")
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    msg, is_text = _parse(raw, path)
    return _convert(msg, path, is_text)


def _looks_like_text(raw: bytes) -> bool:
    # A binary MetaGraphDef starts with field tags and length varints (control bytes);
    # a text one is printable UTF-8.
    head = raw[:4096].decode("utf-8", "ignore")  # "ignore": the cut may split a character
    return bool(head.strip()) and all(c.isprintable() or c in "\t\n\r" for c in head)


def _parse(raw: bytes, path: str) -> tuple[Any, bool]:
    # Like TF's read_meta_graph_file, accept both encodings; the content decides which is
    # tried first, because a partial schema could "parse" text as binary by accident.
    order = [True, False] if _looks_like_text(raw) else [False, True]
    errors = []
    for as_text in order:
        msg = protos.MetaGraphDef()
        try:
            if as_text:
                text_format.Parse(raw.decode("utf-8"), msg, allow_unknown_field=True,
                                  allow_unknown_extension=True)
            else:
                msg.ParseFromString(raw)
            return msg, as_text
        except (DecodeError, text_format.ParseError, UnicodeDecodeError, ValueError) as exc:
            errors.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    raise CorruptCheckpointError(f"{path}: not a MetaGraphDef, binary or text ({'; '.join(errors)})")


def _convert(msg: Any, path: str, is_text: bool) -> MetaGraph:
    ops = Counter(node.op for node in msg.graph_def.node)
    collections: dict[str, Collection] = {}
    for entry in msg.collection_def:
        collections[entry.key] = _collection(entry.key, entry.value, path)
    # Tensor name -> checkpoint key of every variable any collection describes, so a
    # node_list entry naming a partition ("emb/part_0:0") maps to its full variable.
    by_name: dict[str, str] = {}
    for coll in collections.values():
        for var in coll.variables:
            by_name.setdefault(var.name, var.key)
    for coll in collections.values():
        if coll.kind == "node_list":
            coll.candidates = [by_name.get(n) or by_name.get(n + ":0") or strip_output_index(n)
                               for n in coll.nodes]
    s = msg.saver_def
    saver: dict[str, Any] = {}
    if msg.HasField("saver_def"):
        version = {0: "LEGACY", 1: "V1", 2: "V2"}.get(s.version, str(s.version))
        saver = {"version": version, "max_to_keep": s.max_to_keep, "sharded": s.sharded,
                 "keep_checkpoint_every_n_hours": s.keep_checkpoint_every_n_hours,
                 "filename_tensor_name": s.filename_tensor_name,
                 "save_tensor_name": s.save_tensor_name,
                 "restore_op_name": s.restore_op_name}
    info = msg.meta_info_def
    return MetaGraph(path=path, op_count=len(msg.graph_def.node), op_types=ops,
                     collections=collections, saver=saver,
                     tensorflow_version=info.tensorflow_version, tags=list(info.tags),
                     text_format=is_text)


def _collection(key: str, value: Any, path: str) -> Collection:
    kind = value.WhichOneof("kind") or ""
    entries = list(getattr(value, kind).value) if kind else []
    coll = Collection(key=key, kind=kind, size=len(entries))
    if kind == "bytes_list" and key in VARIABLE_COLLECTIONS:
        for raw in entries:
            var = _variable(raw, key, path)
            coll.variables.append(var)
            coll.candidates.append(var.key)
    elif kind == "node_list":
        coll.nodes = [str(n) for n in entries]
    return coll


def _variable(raw: bytes, key: str, path: str) -> Variable:
    vd = protos.VariableDef()
    try:
        vd.ParseFromString(raw)
    except DecodeError:
        raise CorruptCheckpointError(f"{path}: collection {key!r} holds an entry that is not "
                                     "a VariableDef") from None
    if not vd.variable_name:
        raise CorruptCheckpointError(f"{path}: collection {key!r} holds a VariableDef without "
                                     "a variable_name")
    var = Variable(name=vd.variable_name, key=strip_output_index(vd.variable_name),
                   is_resource=vd.is_resource)
    if vd.HasField("save_slice_info_def") and vd.save_slice_info_def.full_name:
        info = vd.save_slice_info_def
        var.key = info.full_name
        var.partition = {"full_shape": list(info.full_shape), "var_offset": list(info.var_offset),
                         "var_shape": list(info.var_shape)}
    # proto3 cannot tell "false" from "absent": trust only a true flag; membership in
    # trainable_variables is the authority anyway (older .meta files lack the field).
    var.trainable = True if vd.trainable else None
    return var


def meta_for(tmap: Any) -> Optional[MetaGraph]:
    """The parsed ``.meta`` of the checkpoint a TensorMap was read from (cached), or None."""
    extras = getattr(tmap, "extras", {})
    cached = extras.get(_CACHE_KEY)
    if cached is not None:
        return cached
    path = extras.get(META_PATH_KEY)
    if not path or not os.path.isfile(path):
        return None
    graph = read_meta_graph(path)
    extras[_CACHE_KEY] = graph
    return graph


def require_meta(tmap: Any, what: str = "selecting by collection") -> MetaGraph:
    """Like :func:`meta_for`, but a checkpoint without ``.meta`` is a UsageError."""
    graph = meta_for(tmap)
    if graph is None:
        src = getattr(tmap, "source", "") or "the input"
        expected = getattr(tmap, "extras", {}).get(META_PATH_KEY)
        where = f" (looked for {expected})" if expected else ""
        if "_CHECKPOINTABLE_OBJECT_GRAPH" in tmap:
            where = (" (it is a TF2 object-based checkpoint, written by tf.train.Checkpoint "
                     "or Keras: TF2 has no graph collections)")
        raise UsageError(f"{src}: {what} needs the TF1 graph file <prefix>.meta written by "
                         f"tf.compat.v1.train.Saver, and this checkpoint has none{where}")
    return graph


def copy_meta(tmap: Any, prefix: str) -> list[str]:
    """Copy the source's ``.meta`` beside a TF checkpoint written from ``tmap``, when it fits.

    The graph's Saver restores every variable by name, dtype and shape, so the copy is made
    only if the written tensors have exactly the names, dtypes and shapes of the checkpoint
    the ``.meta`` came with (values may differ: that is what ``assign`` is for). The bytes
    are copied unchanged. Returns notes for the user.
    """
    src = getattr(tmap, "extras", {}).get(META_PATH_KEY)
    if not src or not os.path.isfile(src):
        return []
    dst = meta_path_for(prefix)
    if os.path.realpath(src) == os.path.realpath(dst):
        return []
    from ...io.atomic import AtomicFiles
    from ...errors import CkconvError
    from . import v1
    from .bundle import read_bundle

    try:
        v1_files = v1.resolve(src[: -len(".meta")])  # a V1 checkpoint's graph works for V2
        original = v1.read(v1_files) if v1_files else read_bundle(src[: -len(".meta")])
    except CkconvError:
        return [f"did not copy {src}: its checkpoint could not be read to compare tensors"]
    have = {n: (t.dtype.name, t.shape) for n, t in tmap.items()}
    want = {n: (t.dtype.name, t.shape) for n, t in original.items()}
    if have != want:
        changed = sorted(set(have) ^ set(want)) + sorted(
            n for n in set(have) & set(want) if have[n] != want[n])
        shown = ", ".join(changed[:3]) + (", ..." if len(changed) > 3 else "")
        return [f"did not copy the graph {os.path.basename(src)}: the tensors no longer match "
                f"the variables it restores ({shown})"]
    try:
        with AtomicFiles() as files, open(src, "rb") as fin, open(files.path(dst), "wb") as fout:
            while True:
                block = fin.read(1 << 20)
                if not block:
                    break
                fout.write(block)
    except OSError as exc:
        raise UsageError(f"copying {src} to {dst} failed: {exc}") from None
    return [f"copied the graph {os.path.basename(src)} to {dst}"]
