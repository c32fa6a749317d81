"""tfjs graph model -> frozen GraphDef -> OpenVINO, on a tiny model.json written here: the fused
convolutions split, fp16 weights expanded, int64 and scalar constants kept as declared."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from tensorboardX.proto import graph_pb2

from people_counter.errors import ModelError
from people_counter.prepare.tfjs_graph import frozen_graph_def
from people_counter.vision.detector import ov

RNG = np.random.default_rng(7)
X_SHAPE = (1, 5, 5, 2)
CONV_FILTER = RNG.normal(0, 1, (3, 3, 2, 3)).astype(np.float32)
CONV_BIAS = np.array([0.5, -1.0, 2.0], np.float32)
DEPTHWISE_FILTER = np.array([2.0, -1.5, 3.0], np.float32).reshape(1, 1, 3, 1)
DEPTHWISE_BIAS = np.array([1.0, 0.0, -0.5], np.float32)
LEAKY_ALPHA = 0.1


def _text(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _floats() -> dict[str, Any]:
    return {"T": {"type": "DT_FLOAT"}}


def _const(name: str, dtype: str, shape: tuple[int, ...]) -> dict[str, Any]:
    dims = {"dim": [{"size": str(size)} for size in shape]} if shape else {}
    return {
        "name": name,
        "op": "Const",
        "attr": {"dtype": {"type": dtype}, "value": {"tensor": {"dtype": dtype, "tensorShape": dims}}},
    }


def _fused(name: str, op: str, inputs: list[str], fused_ops: list[str]) -> dict[str, Any]:
    attr = _floats() | {
        "strides": {"list": {"i": ["1", "1", "1", "1"]}},
        "padding": {"s": _text("VALID")},
        "data_format": {"s": _text("NHWC")},
        "dilations": {"list": {"i": ["1", "1", "1", "1"]}},
        "fused_ops": {"list": {"s": [_text(f) for f in fused_ops]}},
        "num_args": {"i": "1"},
        "leakyrelu_alpha": {"f": LEAKY_ALPHA},
    }
    return {"name": name, "op": op, "input": inputs, "attr": attr}


def write_tiny_model(directory: Path, conv_fused_ops: tuple[str, ...] = ("BiasAdd", "LeakyRelu")) -> Path:
    """x [1,5,5,2] -> 3x3 conv + bias + LeakyRelu -> depthwise 1x1 + bias + Relu6 ->
    concat with itself on axis -1 (a scalar) -> reshape to an int64 shape [1,54].

    The weights are split over two files, mid-weight, as the tfjs converter shards them."""
    nodes = [
        {
            "name": "x",
            "op": "Placeholder",
            "attr": {"dtype": {"type": "DT_FLOAT"}, "shape": {"shape": {"dim": [{"size": str(d)} for d in X_SHAPE]}}},
        },
        _const("conv/filter", "DT_FLOAT", CONV_FILTER.shape),
        _const("conv/bias", "DT_FLOAT", CONV_BIAS.shape),
        _fused("conv", "_FusedConv2D", ["x", "conv/filter", "conv/bias"], list(conv_fused_ops)),
        _const("dw/filter", "DT_FLOAT", DEPTHWISE_FILTER.shape),
        _const("dw/bias", "DT_FLOAT", DEPTHWISE_BIAS.shape),
        _fused("dw", "FusedDepthwiseConv2dNative", ["conv", "dw/filter", "dw/bias"], ["BiasAdd", "Relu6"]),
        _const("concat/axis", "DT_INT32", ()),
        {
            "name": "concat",
            "op": "ConcatV2",
            "input": ["dw", "dw", "concat/axis"],
            "attr": _floats() | {"N": {"i": "2"}, "Tidx": {"type": "DT_INT32"}},
        },
        _const("flat/shape", "DT_INT64", (2,)),
        {
            "name": "flat",
            "op": "Reshape",
            "input": ["concat", "flat/shape"],
            "attr": _floats() | {"Tshape": {"type": "DT_INT64"}},
        },
        {"name": "Identity", "op": "Identity", "input": ["flat"], "attr": _floats()},
    ]
    fp16 = {"dtype": "float16", "original_dtype": "float32"}
    weights: list[tuple[dict[str, Any], npt.NDArray[Any]]] = [
        (
            {"name": "conv/filter", "shape": list(CONV_FILTER.shape), "dtype": "float32", "quantization": fp16},
            CONV_FILTER.astype(np.float16),
        ),
        ({"name": "conv/bias", "shape": [3], "dtype": "float32"}, CONV_BIAS),
        (
            {"name": "dw/filter", "shape": [1, 1, 3, 1], "dtype": "float32", "quantization": fp16},
            DEPTHWISE_FILTER.astype(np.float16),
        ),
        ({"name": "dw/bias", "shape": [3], "dtype": "float32"}, DEPTHWISE_BIAS),
        ({"name": "concat/axis", "shape": [], "dtype": "int32"}, np.array(-1, np.int32)),
        ({"name": "flat/shape", "shape": [2], "dtype": "int32"}, np.array([1, 54], np.int32)),
    ]
    data = b"".join(array.tobytes() for _, array in weights)
    (directory / "group1-shard1of2.bin").write_bytes(data[:37])
    (directory / "group1-shard2of2.bin").write_bytes(data[37:])
    model = {
        "format": "graph-model",
        "modelTopology": {"node": nodes, "library": {}, "versions": {"producer": 1}},
        "weightsManifest": [
            {"paths": ["group1-shard1of2.bin", "group1-shard2of2.bin"], "weights": [entry for entry, _ in weights]}
        ],
    }
    model_json = directory / "model.json"
    model_json.write_text(json.dumps(model))
    return model_json


def reference(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The tiny model in numpy, with the fp16-rounded weights the model file holds."""
    windows = np.lib.stride_tricks.sliding_window_view(x[0], (3, 3), axis=(0, 1))  # [3,3,C,kh,kw]
    conv = np.einsum("hwcij,ijco->hwo", windows, CONV_FILTER.astype(np.float16).astype(np.float32)) + CONV_BIAS
    leaky = np.where(conv > 0, conv, LEAKY_ALPHA * conv)
    depthwise = leaky * DEPTHWISE_FILTER.astype(np.float16).astype(np.float32).reshape(3) + DEPTHWISE_BIAS
    relu6 = np.clip(depthwise, 0.0, 6.0)
    return np.concatenate([relu6, relu6], axis=-1).reshape(1, 54)


def test_openvino_runs_the_converted_graph_like_the_reference(tmp_path: Path) -> None:
    pb = tmp_path / "frozen.pb"
    pb.write_bytes(frozen_graph_def(write_tiny_model(tmp_path)))
    compiled = ov.Core().compile_model(ov.convert_model(str(pb)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    x = RNG.normal(0, 3, X_SHAPE).astype(np.float32)
    expected = reference(x)
    assert 0 < np.mean(expected == 6.0) < 1 and 0 < np.mean(expected == 0.0) < 1  # both clips are exercised
    np.testing.assert_allclose(compiled(x)[0], expected, rtol=1e-5, atol=1e-5)


def test_fused_ops_are_split_and_constants_take_their_declared_form(tmp_path: Path) -> None:
    graph = graph_pb2.GraphDef.FromString(frozen_graph_def(write_tiny_model(tmp_path)))
    nodes = {node.name: node for node in graph.node}
    ops = [node.op for node in graph.node if node.op != "Const"]
    assert ops == [
        "Placeholder",
        "Conv2D",
        "BiasAdd",
        "LeakyRelu",
        "DepthwiseConv2dNative",
        "BiasAdd",
        "Relu6",
        "ConcatV2",
        "Reshape",
        "Identity",
    ]
    # The activation keeps the fused node's name, so that its readers need no change.
    assert nodes["conv"].op == "LeakyRelu" and list(nodes["conv"].input) == ["conv/BiasAdd"]
    assert nodes["conv"].attr["alpha"].f == pytest.approx(LEAKY_ALPHA)
    assert "fused_ops" not in nodes["conv/Conv2D"].attr
    axis = nodes["concat/axis"].attr["value"].tensor
    assert len(axis.tensor_shape.dim) == 0 and np.frombuffer(axis.tensor_content, np.int32).tolist() == [-1]
    shape = nodes["flat/shape"].attr["value"].tensor
    assert np.frombuffer(shape.tensor_content, np.int64).tolist() == [1, 54]
    conv_filter = nodes["conv/filter"].attr["value"].tensor
    assert np.frombuffer(conv_filter.tensor_content, np.float32).size == CONV_FILTER.size


def test_unsupported_fused_ops_and_missing_weights_are_one_line_errors(tmp_path: Path) -> None:
    model_json = write_tiny_model(tmp_path, conv_fused_ops=("FusedBatchNorm", "Relu"))
    with pytest.raises(ModelError, match=r"conv: _FusedConv2D with fused ops \['FusedBatchNorm', 'Relu'\]"):
        frozen_graph_def(model_json)
    model_json = write_tiny_model(tmp_path)
    (tmp_path / "group1-shard2of2.bin").unlink()
    with pytest.raises(ModelError) as caught:
        frozen_graph_def(model_json)
    assert "model.json: not a readable TensorFlow.js graph model" in str(caught.value)
    assert "\n" not in str(caught.value)
