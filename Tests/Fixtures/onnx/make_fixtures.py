#!/usr/bin/env python3
"""Makes the small ONNX graphs in this folder and their expected logits. Run by hand, never by the tests.

PyTorch is not installable on Basin's machines, so these graphs are written with onnx.helper in the forms
torch.onnx.export (legacy exporter, opset 17, eval mode, do_constant_folding=False) produces for the ops the
CNN fixtures (../cnn, exported by PyTorch itself) do not exercise:
  - exact GELU as the exporter decomposes it: Div(x, sqrt 2) -> Erf -> Add 1 -> Mul x -> Mul 0.5, constants
    as Constant nodes;
  - nn.Linear on an input that is not 2-D: Transpose(weight) -> MatMul -> Add(bias);
  - a constant-shape Reshape, Tanh, biased Conv, AveragePool, ReduceMean over H and W, MaxPool with stride 1
    and padding, Gemm with transB = 0 reading Transpose(weight), Identity on a computed value;
  - two graphs Basin must refuse: an unsupported op (Sin) and a Gemm whose weight is stored [in, out];
  - ReduceMean of a 5-D input [N, C, D, H, W]: over every axis after the channels (a global mean, supported)
    and over only two of them, given as [-2, -1] (refused: not a mean over all positions).
Logits are those of onnx.reference.ReferenceEvaluator (numpy; independent of Basin) on the first 32 rows of
digits-test, x reshaped to the graph input. Needs: pip install onnx numpy (onnx 1.23.2 was used).

Usage: python3 make_fixtures.py DIGITS_TEST.safetensors   (writes into this script's folder)
"""
import json
import os
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

HERE = os.path.dirname(os.path.abspath(__file__))
ROWS = 32


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dtypes = {"F32": np.float32, "I64": np.int64}
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, e2 = e["data_offsets"]
        out[name] = np.frombuffer(data[b:e2], dtype=dtypes[e["dtype"]]).reshape(e["shape"])
    return out


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        raw = np.ascontiguousarray(t, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


rng = np.random.default_rng(0)


def init(name, *shape, scale=None):
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    s = scale if scale is not None else 1 / np.sqrt(fan_in)
    return numpy_helper.from_array(rng.uniform(-s, s, size=shape).astype(np.float32), name)


def const(name, value, dtype=np.float32):
    return helper.make_node("Constant", [], [name], name=f"/{name}/Constant",
                            value=numpy_helper.from_array(np.array(value, dtype=dtype)))


def model(name, nodes, inits, x_shape, outputs=10):
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *x_shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", outputs])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="basin make_fixtures.py")
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    return m


def gelu_nodes(prefix, x, y):
    """The legacy exporter's exact GELU (torch/onnx/symbolic_opset9.py gelu, approximate='none')."""
    return [
        const(f"{prefix}_sqrt2", 1.4142135623730951),
        helper.make_node("Div", [x, f"{prefix}_sqrt2"], [f"{prefix}_div"], name=f"/{prefix}/Div"),
        helper.make_node("Erf", [f"{prefix}_div"], [f"{prefix}_erf"], name=f"/{prefix}/Erf"),
        const(f"{prefix}_one", 1.0),
        helper.make_node("Add", [f"{prefix}_erf", f"{prefix}_one"], [f"{prefix}_add"], name=f"/{prefix}/Add"),
        helper.make_node("Mul", [x, f"{prefix}_add"], [f"{prefix}_mul"], name=f"/{prefix}/Mul"),
        const(f"{prefix}_half", 0.5),
        helper.make_node("Mul", [f"{prefix}_mul", f"{prefix}_half"], [y], name=f"/{prefix}/Mul_1"),
    ]


def mlp_gelu():
    inits = [init("layers.0.weight", 32, 64), init("layers.0.bias", 32, scale=0.1),
             init("layers.1.weight", 10, 32), init("layers.1.bias", 10, scale=0.1)]
    nodes = [helper.make_node("Gemm", ["x", "layers.0.weight", "layers.0.bias"], ["h0"], name="/layers.0/Gemm",
                              alpha=1.0, beta=1.0, transB=1)]
    nodes += gelu_nodes("act", "h0", "a0")
    nodes.append(helper.make_node("Gemm", ["a0", "layers.1.weight", "layers.1.bias"], ["logits"], name="/layers.1/Gemm",
                                  alpha=1.0, beta=1.0, transB=1))
    return model("mlp_gelu", nodes, inits, [64])


def mlp_matmul_tanh():
    inits = [init("fc1.weight", 24, 64), init("fc1.bias", 24, scale=0.1),
             init("fc2.weight", 10, 24), init("fc2.bias", 10, scale=0.1)]
    nodes = [
        const("shape", [-1, 64], np.int64),
        helper.make_node("Reshape", ["x", "shape"], ["flat"], name="/Reshape"),
        helper.make_node("Transpose", ["fc1.weight"], ["fc1_t"], name="/fc1/Transpose", perm=[1, 0]),
        helper.make_node("MatMul", ["flat", "fc1_t"], ["mm"], name="/fc1/MatMul"),
        helper.make_node("Add", ["fc1.bias", "mm"], ["h"], name="/fc1/Add"),
        helper.make_node("Tanh", ["h"], ["t"], name="/act/Tanh"),
        helper.make_node("Identity", ["t"], ["t2"], name="/Identity"),
        # Gemm reading its weight through a Transpose, as before the exporter fuses it into transB = 1.
        helper.make_node("Transpose", ["fc2.weight"], ["fc2_t"], name="/fc2/Transpose", perm=[1, 0]),
        helper.make_node("Gemm", ["t2", "fc2_t", "fc2.bias"], ["logits"], name="/fc2/Gemm", alpha=1.0, beta=1.0),
    ]
    return model("mlp_matmul_tanh", nodes, inits, [1, 8, 8])


def cnn_pools():
    inits = [init("conv1.weight", 8, 1, 3, 3), init("conv1.bias", 8, scale=0.1),
             init("conv2.weight", 12, 8, 3, 3), init("conv2.bias", 12, scale=0.1),
             init("fc.weight", 10, 12), init("fc.bias", 10, scale=0.1)]
    nodes = [
        helper.make_node("Conv", ["x", "conv1.weight", "conv1.bias"], ["c1"], name="/conv1/Conv",
                         dilations=[1, 1], group=1, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="/relu/Relu"),
        helper.make_node("AveragePool", ["r1"], ["p1"], name="/pool1/AveragePool",
                         ceil_mode=0, count_include_pad=1, kernel_shape=[2, 2], pads=[0, 0, 0, 0], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2.weight", "conv2.bias"], ["c2"], name="/conv2/Conv",
                         dilations=[1, 1], group=1, kernel_shape=[3, 3], pads=[0, 0, 0, 0], strides=[1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="/relu_1/Relu"),
        helper.make_node("MaxPool", ["r2"], ["p2"], name="/pool2/MaxPool",
                         ceil_mode=0, dilations=[1, 1], kernel_shape=[2, 2], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("ReduceMean", ["p2"], ["m"], name="/ReduceMean", axes=[2, 3], keepdims=0),
        helper.make_node("Gemm", ["m", "fc.weight", "fc.bias"], ["logits"], name="/fc/Gemm", alpha=1.0, beta=1.0, transB=1),
    ]
    return model("cnn_pools", nodes, inits, [1, 8, 8])


def unsupported():
    inits = [init("fc.weight", 10, 64), init("fc.bias", 10)]
    nodes = [helper.make_node("Sin", ["x"], ["s"], name="/wave/Sin"),
             helper.make_node("Gemm", ["s", "fc.weight", "fc.bias"], ["logits"], name="/fc/Gemm", transB=1)]
    return model("unsupported", nodes, inits, [64])


def gemm_in_out():
    """x @ W + b with W stored [in, out]: Basin's linear layers hold PyTorch's [out, in], so this is refused."""
    inits = [init("w", 64, 10), init("b", 10)]
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["logits"], name="/Gemm")]
    return model("gemm_in_out", nodes, inits, [64])


def reduce_mean_5d(axes, name):
    """x [N, 4, 2, 2, 4] (a digits row is 64 values) -> ReduceMean over `axes` -> Gemm."""
    inits = [init("fc.weight", 10, 4), init("fc.bias", 10, scale=0.1)]
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], name="/ReduceMean", axes=axes, keepdims=0),
             helper.make_node("Gemm", ["m", "fc.weight", "fc.bias"], ["logits"], name="/fc/Gemm", alpha=1.0, beta=1.0, transB=1)]
    return model(name, nodes, inits, [4, 2, 2, 4])


def reduce_mean_5d_global():
    return reduce_mean_5d([2, 3, 4], "reduce_mean_5d")


def reduce_mean_5d_partial():
    # Over H and W only (negative axes): on a 5-D input that is not a global mean, so Basin refuses it.
    inits = [init("fc.weight", 10, 8), init("fc.bias", 10, scale=0.1)]
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], name="/ReduceMean", axes=[-2, -1], keepdims=0),
             helper.make_node("Flatten", ["m"], ["f"], name="/Flatten", axis=1),
             helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], name="/fc/Gemm", alpha=1.0, beta=1.0, transB=1)]
    return model("reduce_mean_5d_partial", nodes, inits, [4, 2, 2, 4])


def main():
    digits = read_safetensors(sys.argv[1])
    x = digits["x"][:ROWS].astype(np.float32)
    expected = {}
    # New graphs go last: the random initializers are drawn in this order, so earlier graphs stay the same.
    for make in (mlp_gelu, mlp_matmul_tanh, cnn_pools, unsupported, gemm_in_out, reduce_mean_5d_global, reduce_mean_5d_partial):
        m = make()
        name = m.graph.name.replace("_", "-")
        onnx.save(m, os.path.join(HERE, f"{name}.onnx"))
        if make in (unsupported, gemm_in_out, reduce_mean_5d_partial):
            continue
        dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim[1:]]
        (logits,) = ReferenceEvaluator(m).run(None, {"x": x.reshape(ROWS, *dims)})
        expected[name] = logits
    write_safetensors(os.path.join(HERE, "expected-logits.safetensors"), expected)
    print("wrote", ", ".join(sorted(expected)), "and the refused unsupported.onnx, gemm-in-out.onnx, reduce-mean-5d-partial.onnx")


if __name__ == "__main__":
    main()
