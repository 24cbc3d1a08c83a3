"""The protobuf messages of TF checkpoints, defined at run time in a private pool.

Generated ``_pb2`` modules pin the protobuf runtime they were generated for and register
their descriptors in the default pool, where they would clash with TensorFlow's own copies
when both are imported. Building the descriptors here, in a pool of our own, works with
every protobuf release from 3.20 on and never touches TensorFlow's registrations.

Field numbers follow TensorFlow's .proto files (docs/formats.md §4, §6-§9); only the fields
ckconv reads or writes are declared: unknown fields are kept by protobuf and ignored.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_TYPES = {
    "int32": _F.TYPE_INT32, "int64": _F.TYPE_INT64, "bool": _F.TYPE_BOOL,
    "string": _F.TYPE_STRING, "bytes": _F.TYPE_BYTES, "fixed32": _F.TYPE_FIXED32,
    "double": _F.TYPE_DOUBLE, "float": _F.TYPE_FLOAT,
}

# message name -> list of (field name, number, type, repeated?, oneof index or None)
# A type that is not a scalar names another message (or enum, prefixed "enum:").
_MESSAGES: dict[str, list[tuple]] = {
    "VersionDef": [("producer", 1, "int32", False), ("min_consumer", 2, "int32", False),
                   ("bad_consumers", 3, "int32", True)],
    "BundleHeaderProto": [("num_shards", 1, "int32", False),
                          ("endianness", 2, "enum:Endianness", False),
                          ("version", 3, "VersionDef", False)],
    "TensorShapeProto.Dim": [("size", 1, "int64", False), ("name", 2, "string", False)],
    "TensorShapeProto": [("dim", 2, "TensorShapeProto.Dim", True), ("unknown_rank", 3, "bool", False)],
    "TensorSliceProto.Extent": [("start", 1, "int64", False), ("length", 2, "int64", False, 0)],
    "TensorSliceProto": [("extent", 1, "TensorSliceProto.Extent", True)],
    "BundleEntryProto": [("dtype", 1, "enum:DataType", False), ("shape", 2, "TensorShapeProto", False),
                         ("shard_id", 3, "int32", False), ("offset", 4, "int64", False),
                         ("size", 5, "int64", False), ("crc32c", 6, "fixed32", False),
                         ("slices", 7, "TensorSliceProto", True)],
    "CheckpointState": [("model_checkpoint_path", 1, "string", False),
                        ("all_model_checkpoint_paths", 2, "string", True),
                        ("all_model_checkpoint_timestamps", 3, "double", True),
                        ("last_preserved_timestamp", 4, "double", False)],
    # TF2 object graph (trackable_object_graph.proto)
    "BoolValue": [("value", 1, "bool", False)],
    "TrackableObjectGraph.TrackableObject.ObjectReference": [
        ("node_id", 1, "int32", False), ("local_name", 2, "string", False)],
    "TrackableObjectGraph.TrackableObject.SerializedTensor": [
        ("name", 1, "string", False), ("full_name", 2, "string", False),
        ("checkpoint_key", 3, "string", False)],
    "TrackableObjectGraph.TrackableObject.SlotVariableReference": [
        ("original_variable_node_id", 1, "int32", False), ("slot_name", 2, "string", False),
        ("slot_variable_node_id", 3, "int32", False)],
    "RegisteredSaver": [("name", 1, "string", False), ("object_name", 2, "string", False)],
    "TrackableObjectGraph.TrackableObject": [
        ("children", 1, "TrackableObjectGraph.TrackableObject.ObjectReference", True),
        ("attributes", 2, "TrackableObjectGraph.TrackableObject.SerializedTensor", True),
        ("slot_variables", 3, "TrackableObjectGraph.TrackableObject.SlotVariableReference", True),
        ("registered_saver", 4, "RegisteredSaver", False),
        ("has_checkpoint_values", 5, "BoolValue", False)],
    "TrackableObjectGraph": [("nodes", 1, "TrackableObjectGraph.TrackableObject", True)],
    # TF1 .meta files (meta_graph.proto, saver.proto, variable.proto): only what meta.py reads.
    # The graph is reduced to node names and op types; attrs, functions etc. stay unknown fields.
    "NodeDef": [("name", 1, "string", False), ("op", 2, "string", False)],
    "GraphDef": [("node", 1, "NodeDef", True)],
    "MetaGraphDef.MetaInfoDef": [("meta_graph_version", 1, "string", False),
                                 ("tags", 4, "string", True),
                                 ("tensorflow_version", 5, "string", False),
                                 ("tensorflow_git_version", 6, "string", False)],
    "SaverDef": [("filename_tensor_name", 1, "string", False),
                 ("save_tensor_name", 2, "string", False),
                 ("restore_op_name", 3, "string", False), ("max_to_keep", 4, "int32", False),
                 ("sharded", 5, "bool", False),
                 ("keep_checkpoint_every_n_hours", 6, "float", False),
                 ("version", 7, "enum:CheckpointFormatVersion", False)],
    "CollectionDef.NodeList": [("value", 1, "string", True)],
    "CollectionDef.BytesList": [("value", 1, "bytes", True)],
    "CollectionDef.Int64List": [("value", 1, "int64", True)],
    "CollectionDef.FloatList": [("value", 1, "float", True)],
    "CollectionDef.AnyList.Any": [("type_url", 1, "string", False), ("value", 2, "bytes", False)],
    "CollectionDef.AnyList": [("value", 1, "CollectionDef.AnyList.Any", True)],
    "CollectionDef": [("node_list", 1, "CollectionDef.NodeList", False, 0),
                      ("bytes_list", 2, "CollectionDef.BytesList", False, 0),
                      ("int64_list", 3, "CollectionDef.Int64List", False, 0),
                      ("float_list", 4, "CollectionDef.FloatList", False, 0),
                      ("any_list", 5, "CollectionDef.AnyList", False, 0)],
    # map<string, CollectionDef> is on the wire (and in text format) a repeated key/value
    # message; declaring it as such avoids map-entry options in the hand-built descriptor.
    "MetaGraphDef.CollectionDefEntry": [("key", 1, "string", False),
                                        ("value", 2, "CollectionDef", False)],
    "MetaGraphDef": [("meta_info_def", 1, "MetaGraphDef.MetaInfoDef", False),
                     ("graph_def", 2, "GraphDef", False), ("saver_def", 3, "SaverDef", False),
                     ("collection_def", 4, "MetaGraphDef.CollectionDefEntry", True)],
    "SaveSliceInfoDef": [("full_name", 1, "string", False), ("full_shape", 2, "int64", True),
                         ("var_offset", 3, "int64", True), ("var_shape", 4, "int64", True)],
    "VariableDef": [("variable_name", 1, "string", False),
                    ("initializer_name", 2, "string", False),
                    ("snapshot_name", 3, "string", False),
                    ("save_slice_info_def", 4, "SaveSliceInfoDef", False),
                    ("is_resource", 5, "bool", False), ("trainable", 7, "bool", False)],
}
_ONEOFS = {"TensorSliceProto.Extent": ["has_length"], "CollectionDef": ["kind"]}

_ENUMS = {
    "Endianness": [("LITTLE", 0), ("BIG", 1)],
    # Open enum: proto3 keeps unknown numbers, so only a placeholder value is needed.
    "DataType": [("DT_INVALID", 0)],
    # Named in full: a text-format .meta spells the value out ("version: V2").
    "CheckpointFormatVersion": [("LEGACY", 0), ("V1", 1), ("V2", 2)],
}

_PACKAGE = "ckconv.tf"


def _build_pool() -> descriptor_pool.DescriptorPool:
    fdp = descriptor_pb2.FileDescriptorProto(name="ckconv/tf_checkpoint.proto", package=_PACKAGE,
                                             syntax="proto3")
    for ename, values in _ENUMS.items():
        enum = fdp.enum_type.add(name=ename)
        for vname, number in values:
            enum.value.add(name=vname, number=number)

    made: dict[str, Any] = {}

    def message(path: str):
        if path in made:
            return made[path]
        parent, _, leaf = path.rpartition(".")
        container = message(parent).nested_type if parent else fdp.message_type
        msg = container.add(name=leaf)
        made[path] = msg
        return msg

    for path, fields in _MESSAGES.items():
        msg = message(path)
        for oneof in _ONEOFS.get(path, []):
            msg.oneof_decl.add(name=oneof)
        for spec in fields:
            fname, number, ftype, repeated = spec[:4]
            field = msg.field.add(name=fname, number=number,
                                  label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
            if len(spec) > 4:
                field.oneof_index = spec[4]
            if ftype in _TYPES:
                field.type = _TYPES[ftype]
            elif ftype.startswith("enum:"):
                field.type = _F.TYPE_ENUM
                field.type_name = f".{_PACKAGE}.{ftype[5:]}"
            else:
                field.type = _F.TYPE_MESSAGE
                field.type_name = f".{_PACKAGE}.{ftype}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return pool


def _message_class(pool: descriptor_pool.DescriptorPool, full_name: str) -> type:
    desc = pool.FindMessageTypeByName(f"{_PACKAGE}.{full_name}")
    get = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.21
    if get is not None:
        return get(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)  # protobuf 3.20


_POOL = _build_pool()

VersionDef = _message_class(_POOL, "VersionDef")
BundleHeaderProto = _message_class(_POOL, "BundleHeaderProto")
BundleEntryProto = _message_class(_POOL, "BundleEntryProto")
TensorShapeProto = _message_class(_POOL, "TensorShapeProto")
TensorSliceProto = _message_class(_POOL, "TensorSliceProto")
CheckpointState = _message_class(_POOL, "CheckpointState")
TrackableObjectGraph = _message_class(_POOL, "TrackableObjectGraph")
MetaGraphDef = _message_class(_POOL, "MetaGraphDef")
VariableDef = _message_class(_POOL, "VariableDef")

LITTLE = 0
BIG = 1
