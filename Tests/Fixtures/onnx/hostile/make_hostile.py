#!/usr/bin/env python3
"""Makes the hostile ONNX graphs of docs/reliability.md (architecture sizes each in range of int64 but whose
products overflow or ask for more memory than any machine has). Run by hand, never by the tests; the files are
committed, and copied into Tests/FuzzCorpus/onnx as fuzzing seeds. Needs: pip install onnx numpy (1.23.2 used).

Usage: python3 make_hostile.py   (writes into this script's folder)
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))


def graph(name, input_shape, nodes, initializers, output="y"):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
                          [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)], initializers)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, os.path.join(HERE, name + ".onnx"))


w = numpy_helper.from_array(np.zeros((2, 1, 3, 3), np.float32), "conv.weight")
fc = numpy_helper.from_array(np.zeros((10, 8), np.float32), "fc.weight")
big = 1 << 62
# Pads of 2^62: each a valid int64, twice one overflows.
graph("conv-huge-pads", ["N", 1, 8, 8],
      [helper.make_node("Conv", ["x", "conv.weight"], ["y"], name="conv", kernel_shape=[3, 3], pads=[big] * 4)], [w])
# An input of 2^40 x 2^40 x 2^40 values per sample, flattened: the product overflows.
graph("input-overflow", ["N", 1 << 40, 1 << 40, 1 << 40],
      [helper.make_node("Flatten", ["x"], ["f"], name="flatten", axis=1),
       helper.make_node("Gemm", ["f", "fc.weight"], ["y"], name="fc", transB=1)], [fc])
# A constant Reshape target of 10^8 x 10^8 x 10^8 (each in range of the architecture file's limit, the product not).
shape = numpy_helper.from_array(np.array([0, 10**8, 10**8, 10**8], np.int64), "shape")
graph("reshape-huge", ["N", 64],
      [helper.make_node("Reshape", ["x", "shape"], ["r"], name="reshape"),
       helper.make_node("Flatten", ["r"], ["f"], name="flatten", axis=1),
       helper.make_node("Gemm", ["f", "fc.weight"], ["y"], name="fc", transB=1)], [shape, fc])
# A negative input dimension.
graph("negative-dim", ["N", -5, 8, 8],
      [helper.make_node("Conv", ["x", "conv.weight"], ["y"], name="conv", kernel_shape=[3, 3])], [w])
