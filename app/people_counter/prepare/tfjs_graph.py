"""A TensorFlow.js graph model (model.json and its weight files) as a frozen TF GraphDef.

OpenVINO reads frozen TensorFlow graphs but not TensorFlow.js models. A tfjs graph model
is a GraphDef in protobuf-JSON form (`modelTopology`) whose constants are kept apart, in
the binary files that `weightsManifest` describes. Joining them again takes three
adjustments (DESIGN.md, "Loading them in OpenVINO"):

- fp16-quantised weights are expanded to fp32, and every constant gets the dtype its node
  declares (tfjs stores int64 constants as int32);
- every constant gets exactly the shape the manifest gives, so a scalar stays a scalar:
  OpenVINO misreads a concat axis of shape [1];
- the fused ops tfjs writes (_FusedConv2D, FusedDepthwiseConv2dNative) are split into the
  convolution, a BiasAdd and the activation, since OpenVINO has no rule for them.

The GraphDef classes are tensorboardX's copy of TensorFlow's protos (the `prepare` extra):
their field numbers are TensorFlow's, so the bytes are a TensorFlow GraphDef, without
TensorFlow installed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf import json_format
from tensorboardX.proto import graph_pb2, node_def_pb2, tensor_shape_pb2, types_pb2

from people_counter.errors import ModelError

# The dtypes of the weight files, and of the fp16 quantisation the tfjs converter offers.
_STORED_DTYPES: dict[str, type[np.generic]] = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
_QUANTISED_DTYPES: dict[str, type[np.generic]] = {"float16": np.float16}
_CONSTANT_DTYPES: dict[int, type[np.generic]] = {
    types_pb2.DT_FLOAT: np.float32,
    types_pb2.DT_INT32: np.int32,
    types_pb2.DT_INT64: np.int64,
    types_pb2.DT_BOOL: np.bool_,
}
_FUSED_CONVOLUTIONS = {"_FusedConv2D": "Conv2D", "FusedDepthwiseConv2dNative": "DepthwiseConv2dNative"}
_CONVOLUTION_ATTRS = ("T", "strides", "padding", "explicit_paddings", "data_format", "dilations")
_ACTIVATIONS = frozenset({"Relu", "Relu6", "Elu", "Selu", "LeakyRelu", "Sigmoid", "Tanh"})

WeightArrays = dict[str, npt.NDArray[Any]]


def frozen_graph_def(model_json: Path) -> bytes:
    """The serialised frozen GraphDef of the tfjs graph model `model_json` (weights beside it)."""
    try:
        spec = json.loads(model_json.read_text(encoding="utf-8"))
        topology, manifest = spec["modelTopology"], spec["weightsManifest"]
        graph = _parse_topology(topology)
        _fill_constants(graph, _read_weights(manifest, model_json.parent))
        return _split_fused_convolutions(graph).SerializeToString()
    except ModelError as error:
        raise ModelError(f"{model_json}: {error}") from None
    except (OSError, ValueError, KeyError, TypeError, json_format.ParseError) as error:
        raise ModelError(f"{model_json}: not a readable TensorFlow.js graph model ({error})") from None


def _parse_topology(topology: dict[str, Any]) -> graph_pb2.GraphDef:
    topology = dict(topology)
    # tensorboardX's GraphDef has no function library; graph models of plain ops leave it empty.
    if topology.pop("library", None):
        raise ModelError("graphs with functions (a non-empty library) are not supported")
    return json_format.ParseDict(topology, graph_pb2.GraphDef())


def _read_weights(manifest: list[dict[str, Any]], directory: Path) -> WeightArrays:
    """Each group's weights lie one after another across the group's files, in order."""
    weights: WeightArrays = {}
    for group in manifest:
        data = b"".join((directory / name).read_bytes() for name in group["paths"])
        offset = 0
        for entry in group["weights"]:
            weights[entry["name"]], offset = _take_weight(entry, data, offset)
        if offset != len(data):
            raise ModelError(f"the manifest describes {offset} bytes of weights, the files hold {len(data)}")
    return weights


def _take_weight(entry: dict[str, Any], data: bytes, offset: int) -> tuple[npt.NDArray[Any], int]:
    quantisation = entry.get("quantization")
    stored = _QUANTISED_DTYPES.get(quantisation["dtype"]) if quantisation else _STORED_DTYPES.get(entry["dtype"])
    if stored is None:
        raise ModelError(f"{entry['name']}: unsupported weight dtype or quantisation {quantisation or entry['dtype']}")
    shape = [int(size) for size in entry["shape"]]
    size = math.prod(shape) * np.dtype(stored).itemsize
    if offset + size > len(data):
        raise ModelError(f"{entry['name']}: the weight files end before this weight")
    array = np.frombuffer(data, dtype=stored, count=math.prod(shape), offset=offset).reshape(shape)
    return (array.astype(np.float32) if quantisation else array), offset + size


def _fill_constants(graph: graph_pb2.GraphDef, weights: WeightArrays) -> None:
    for node in graph.node:
        if node.op != "Const" or node.name not in weights:
            continue
        tensor = node.attr["value"].tensor
        dtype = _CONSTANT_DTYPES.get(tensor.dtype)
        if dtype is None:
            raise ModelError(f"{node.name}: unsupported constant dtype {types_pb2.DataType.Name(tensor.dtype)}")
        array = weights[node.name].astype(dtype)
        tensor.tensor_shape.Clear()
        tensor.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape)
        tensor.tensor_content = array.tobytes()


def _split_fused_convolutions(graph: graph_pb2.GraphDef) -> graph_pb2.GraphDef:
    split = graph_pb2.GraphDef()
    split.versions.CopyFrom(graph.versions)
    for node in graph.node:
        base = _FUSED_CONVOLUTIONS.get(node.op)
        split.node.extend(_split_fused(node, base) if base else [node])
    return split


def _split_fused(node: node_def_pb2.NodeDef, base: str) -> list[node_def_pb2.NodeDef]:
    """Convolution -> BiasAdd [-> activation]; the last one keeps the fused node's name,
    so that the nodes reading it are unchanged."""
    fused = [op.decode() for op in node.attr["fused_ops"].list.s]
    activation = fused[1] if len(fused) == 2 else None
    supported = fused[:1] == ["BiasAdd"] and len(fused) <= 2 and (activation is None or activation in _ACTIVATIONS)
    if not supported or node.attr["num_args"].i != 1:
        raise ModelError(f"{node.name}: {node.op} with fused ops {fused} is not supported")
    data_inputs = [name for name in node.input if not name.startswith("^")]
    control_inputs = [name for name in node.input if name.startswith("^")]
    x, weights, bias = data_inputs
    convolution = node_def_pb2.NodeDef(name=f"{node.name}/{base}", op=base, input=[x, weights, *control_inputs])
    bias_add = node_def_pb2.NodeDef(
        name=node.name if activation is None else f"{node.name}/BiasAdd", op="BiasAdd", input=[convolution.name, bias]
    )
    for key in _CONVOLUTION_ATTRS:
        if key in node.attr:
            convolution.attr[key].CopyFrom(node.attr[key])
    for key in ("T", "data_format"):
        if key in node.attr:
            bias_add.attr[key].CopyFrom(node.attr[key])
    if activation is None:
        return [convolution, bias_add]
    activated = node_def_pb2.NodeDef(name=node.name, op=activation, input=[bias_add.name])
    activated.attr["T"].CopyFrom(node.attr["T"])
    if activation == "LeakyRelu":
        activated.attr["alpha"].f = node.attr["leakyrelu_alpha"].f
    return [convolution, bias_add, activated]
