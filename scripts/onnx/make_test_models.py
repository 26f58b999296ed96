#!/usr/bin/env python3
"""Writes the ONNX test models of crates/twobit-onnx/tests/data/ (deterministic).

For every good model NAME: NAME.onnx, NAME.input.f32 (a batch of 3 random images, raw
little-endian f32, NCHW) and NAME.output.f32 (onnxruntime's output on it); shapes are in
models.json. Bad models (bad_*.onnx) must be refused by the importer.

Uses only onnx, numpy and onnxruntime:  python3 scripts/onnx/make_test_models.py
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates", "twobit-onnx", "tests", "data")
BATCH = 3


class G:
    """A graph under construction: helpers add nodes and random initializers."""

    def __init__(self, name, chw, seed):
        self.name, self.chw = name, chw
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.k = [], [], 0

    def fresh(self, p):
        self.k += 1
        return f"{p}{self.k}"

    def init(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def rand(self, p, shape, scale=None):
        fan = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        s = scale if scale is not None else 1.0 / np.sqrt(fan)
        return self.init(self.fresh(p), (self.rng.standard_normal(shape) * s).astype(np.float32))

    def node(self, op, inputs, **attrs):
        out = self.fresh(op.lower() + "_")
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.fresh(op + "_n"), **attrs))
        return out

    def conv(self, x, cin, cout, k, bias=True, group=1, **attrs):
        w = self.rand("w", [cout, cin // group, k, k])
        ins = [x, w] + ([self.rand("b", [cout], 0.1)] if bias else [])
        return self.node("Conv", ins, group=group, **attrs)

    def bn(self, x, c):
        r = self.rng
        s = self.init(self.fresh("gamma"), (1 + 0.1 * r.standard_normal(c)).astype(np.float32))
        b = self.init(self.fresh("beta"), (0.1 * r.standard_normal(c)).astype(np.float32))
        m = self.init(self.fresh("mean"), (0.1 * r.standard_normal(c)).astype(np.float32))
        v = self.init(self.fresh("var"), (0.5 + r.random(c)).astype(np.float32))
        return self.node("BatchNormalization", [x, s, b, m, v], epsilon=1e-5)

    def const(self, arr):
        out = self.fresh("const")
        t = numpy_helper.from_array(np.asarray(arr), out + "_value")
        self.nodes.append(helper.make_node("Constant", [], [out], name=self.fresh("Constant_n"), value=t))
        return out

    def relu6(self, x):
        return self.node("Clip", [x, self.const(np.float32(0)), self.const(np.float32(6))])

    def gemm(self, x, fin, fout, **attrs):
        trans = attrs.get("transB", 0)
        w = self.rand("fc", [fout, fin] if trans else [fin, fout], 1 / np.sqrt(fin))
        return self.node("Gemm", [x, w, self.rand("fcb", [fout], 0.1)], **attrs)

    def model(self, out, opset=13, in_dims=None):
        dims = in_dims or ["N", *self.chw]
        inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
        outp = helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", None])
        g = helper.make_graph(self.nodes, self.name, [inp], [outp], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="make_test_models.py")
        m.ir_version = 7 if opset < 13 else 8
        return m


def lenet():
    g = G("lenet", [1, 28, 28], 1)
    x = g.node("Relu", [g.conv("x", 1, 4, 5, pads=[2, 2, 2, 2])])
    x = g.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    x = g.node("Relu", [g.conv(x, 4, 8, 5)])
    x = g.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    x = g.node("Reshape", [x, g.const(np.array([-1, 200], np.int64))])
    x = g.node("Relu", [g.gemm(x, 200, 32, transB=1)])
    x = g.node("Relu", [g.gemm(x, 32, 24)])
    x = g.node("MatMul", [x, g.rand("mm", [24, 10], 1 / np.sqrt(24))])
    return g.model(g.node("Add", [x, g.rand("mmb", [10], 0.1)]))


def conv_bn():
    g = G("conv_bn", [3, 12, 12], 2)
    x = g.node("Relu", [g.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])  # BN folded into the bias
    x = g.node("Relu", [g.bn(g.conv(x, 8, 8, 3, bias=False, pads=[1, 1, 1, 1]), 8)])
    x = g.node("Identity", [x])
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x])])
    x = g.node("Dropout", [x])
    return g.model(g.node("Softmax", [g.gemm(x, 8, 5, transB=1)], axis=-1))


def mobilenet_block():
    g = G("mobilenet_block", [8, 10, 10], 3)
    h = g.relu6(g.bn(g.conv("x", 8, 24, 1, bias=False), 24))
    h = g.relu6(g.bn(g.conv(h, 24, 24, 3, bias=False, group=24, pads=[1, 1, 1, 1]), 24))
    h = g.bn(g.conv(h, 24, 8, 1, bias=False), 8)
    x = g.node("Add", ["x", h])
    x = g.relu6(g.conv(x, 8, 16, 3, group=8, strides=[2, 2], pads=[1, 1, 1, 1]))
    x = g.node("GlobalAveragePool", [x])
    x = g.node("Reshape", [x, g.const(np.array([0, -1], np.int64))])
    return g.model(g.gemm(x, 16, 7, transB=1))


def densenet():
    g = G("densenet", [4, 8, 8], 4)
    x = g.conv("x", 4, 8, 3, pads=[1, 1, 1, 1])
    c = 8
    for _ in range(2):
        h = g.conv(g.node("Relu", [g.bn(x, c)]), c, 4, 3, bias=False, pads=[1, 1, 1, 1])
        x = g.node("Concat", [x, h], axis=1)
        c += 4
    x = g.conv(g.node("Relu", [g.bn(x, c)]), c, 8, 1, bias=False)
    x = g.node("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x])])
    return g.model(g.gemm(x, 8, 6, transB=1))


def resnet_blocks():
    g = G("resnet_blocks", [8, 8, 8], 5)
    h = g.node("Relu", [g.bn(g.conv("x", 8, 8, 3, bias=False, pads=[1, 1, 1, 1]), 8)])
    h = g.bn(g.conv(h, 8, 8, 3, bias=False, pads=[1, 1, 1, 1]), 8)
    x = g.node("Relu", [g.node("Add", [h, "x"])])
    # Bottleneck 8 -> 16 with a stride-2 1x1 projection shortcut.
    h = g.node("Relu", [g.bn(g.conv(x, 8, 4, 1, bias=False), 4)])
    h = g.node("Relu", [g.bn(g.conv(h, 4, 4, 3, bias=False, strides=[2, 2], pads=[1, 1, 1, 1]), 4)])
    h = g.bn(g.conv(h, 4, 16, 1, bias=False), 16)
    s = g.bn(g.conv(x, 8, 16, 1, bias=False, strides=[2, 2]), 16)
    x = g.node("Relu", [g.node("Add", [h, s])])
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x])])
    return g.model(g.gemm(x, 16, 10, transB=1))


def option_a():
    g = G("option_a", [4, 8, 8], 6)
    h = g.node("Relu", [g.conv("x", 4, 8, 3, strides=[2, 2], pads=[1, 1, 1, 1])])
    s = g.node("MaxPool", ["x"], kernel_shape=[1, 1], strides=[2, 2])
    s = g.node("Pad", [s, g.init("pads", np.array([0, 2, 0, 0, 0, 2, 0, 0], np.int64))], mode="constant")
    x = g.node("Add", [h, s])
    return g.model(g.node("Flatten", [g.node("GlobalAveragePool", [x])]))


def conv_variants():
    g = G("conv_variants", [4, 11, 11], 7)
    x = g.conv("x", 4, 6, 3, dilations=[2, 2], pads=[2, 2, 2, 2])  # dilated
    x = g.conv(x, 6, 6, 3, group=2, pads=[1, 1, 1, 1])  # two groups
    x = g.conv(x, 6, 4, 3, pads=[0, 1, 2, 1])  # asymmetric pads
    x = g.conv(x, 4, 4, 3, strides=[2, 2], auto_pad="SAME_UPPER")
    x = g.conv(x, 4, 3, 2, auto_pad="SAME_LOWER")
    x = g.conv(x, 3, 3, 3, auto_pad="VALID")
    return g.model(g.node("Flatten", [x]))


def activations():
    g = G("activations", [3, 6, 6], 8)
    x = g.node("LeakyRelu", [g.conv("x", 3, 6, 3, pads=[1, 1, 1, 1])], alpha=0.1)
    x = g.node("HardSwish", [g.conv(x, 6, 6, 1)])
    x = g.node("HardSigmoid", [g.conv(x, 6, 6, 1)], alpha=0.25, beta=0.4)
    x = g.node("Sigmoid", [g.conv(x, 6, 6, 3)])
    x = g.node("Clip", [g.conv(x, 6, 4, 1), g.const(np.float32(-0.2))])  # min only
    return g.model(g.node("Flatten", [x]), opset=14)


def se_block():
    g = G("se_block", [8, 6, 6], 9)
    x = g.node("HardSwish", [g.conv("x", 8, 16, 3, pads=[1, 1, 1, 1])])
    s = g.node("GlobalAveragePool", [x])
    s = g.node("Relu", [g.conv(s, 16, 4, 1)])
    s = g.node("HardSigmoid", [g.conv(s, 4, 16, 1)], alpha=1 / 6, beta=0.5)
    x = g.node("Mul", [x, s])  # [N,16,6,6] * [N,16,1,1]
    x = g.node("Mul", [g.rand("scale", [1, 16, 1, 1], 1.0), x])  # constant first
    x = g.node("Add", [x, g.rand("shift", [16, 1, 1], 0.1)])
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x])])
    return g.model(g.node("Softmax", [g.gemm(x, 16, 4, transB=1)], axis=1), opset=14)


def pools():
    g = G("pools", [3, 13, 13], 10)
    x = g.node("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)
    x = g.node("MaxPool", [x], kernel_shape=[2, 2], dilations=[2, 2], pads=[0, 0, 1, 1])
    x = g.node("AveragePool", [x], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)
    x = g.node("AveragePool", [x], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0)
    return g.model(g.node("Flatten", [x]))


def avgpool_ceil():
    g = G("avgpool_ceil", [2, 9, 9], 11)
    a = g.node("AveragePool", ["x"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)  # 9 -> 5
    b = g.node("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1)
    c = g.node("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=0)
    return g.model(g.node("Flatten", [g.node("Concat", [a, b, c], axis=1)]))


def opset10():
    """Old-style attributes: Clip min/max, Pad pads, Softmax default axis."""
    g = G("opset10", [2, 5, 5], 12)
    x = g.node("Clip", [g.conv("x", 2, 4, 3)], min=0.0, max=6.0)
    x = g.node("Pad", [x], pads=[0, 1, 0, 0, 0, 1, 0, 0], mode="constant")
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x])])
    return g.model(g.node("Softmax", [g.gemm(x, 6, 3, transB=1)]), opset=10)


def pytorch_view():
    """x.view(x.size(0), -1) as PyTorch writes it with a dynamic batch axis."""
    g = G("pytorch_view", [3, 6, 6], 13)
    x = g.node("Relu", [g.conv("x", 3, 4, 3, strides=[2, 2])])
    b = g.node("Gather", [g.node("Shape", [x]), g.init("zero", np.array(0, np.int64))], axis=0)
    b = g.node("Unsqueeze", [b, g.init("axes0", np.array([0], np.int64))])
    shape = g.node("Concat", [b, g.init("minus1", np.array([-1], np.int64))], axis=0)
    x = g.node("Reshape", [x, shape])
    return g.model(g.gemm(x, 16, 5, transB=1))


def squeeze_head():
    g = G("squeeze_head", [3, 5, 5], 14)
    x = g.node("GlobalAveragePool", [g.node("Relu", [g.conv("x", 3, 6, 3)])])
    x = g.node("Squeeze", [x, g.init("axes23", np.array([2, 3], np.int64))])
    return g.model(g.gemm(x, 6, 4))


def in_graph_normalize():
    """(x - mean) / std inside the graph, as Keras/TF exports write it."""
    g = G("in_graph_normalize", [3, 5, 5], 15)
    x = g.node("Sub", ["x", g.init("mean", np.array([0.4, 0.5, 0.6], np.float32).reshape(1, 3, 1, 1))])
    x = g.node("Div", [x, g.init("std", np.array([0.2, 0.25, 0.3], np.float32).reshape(1, 3, 1, 1))])
    return g.model(g.node("Flatten", [g.conv(x, 3, 2, 3)]))


GOOD = [lenet, conv_bn, mobilenet_block, densenet, resnet_blocks, option_a, conv_variants,
        activations, se_block, pools, avgpool_ceil, opset10, pytorch_view, squeeze_head,
        in_graph_normalize]


def bad_models():
    g = G("tanh", [1, 4, 4], 20)
    yield "bad_unsupported_op", g.model(g.node("Tanh", [g.conv("x", 1, 2, 3)]))
    g = G("missing", [1, 4, 4], 21)
    g.nodes.append(helper.make_node("Conv", ["x", "w_missing"], ["y"], name="conv_missing"))
    yield "bad_missing_initializer", g.model("y")
    g = G("dynamic", [1, 4, 4], 22)
    yield "bad_dynamic_shape", g.model(g.node("Relu", ["x"]), in_dims=["N", 1, "H", 4])
    g = G("nan", [1, 4, 4], 23)
    w = np.ones([2, 1, 3, 3], np.float32)
    w[0, 0, 1, 1] = np.nan
    g.init("w_nan", w)
    g.nodes.append(helper.make_node("Conv", ["x", "w_nan"], ["y"], name="conv_nan"))
    yield "bad_nan_weight", g.model("y")
    g = G("external", [1, 4, 4], 24)
    w = g.conv("x", 1, 2, 3)
    m = g.model(w)
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", "weights.bin"
    yield "bad_external_data", m
    g = G("two_outputs", [1, 4, 4], 25)
    a = g.node("Relu", ["x"])
    b = g.node("Sigmoid", ["x"])
    m = g.model(a)
    m.graph.output.append(helper.make_tensor_value_info(b, TensorProto.FLOAT, None))
    yield "bad_two_outputs", m


def main():
    os.makedirs(OUT, exist_ok=True)
    shapes = {}
    for make in GOOD:
        m = make()
        onnx.checker.check_model(m)
        name = m.graph.name
        data = m.SerializeToString()
        with open(os.path.join(OUT, name + ".onnx"), "wb") as f:
            f.write(data)
        rng = np.random.default_rng(1000 + len(shapes))
        x = rng.standard_normal([BATCH, *[d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim[1:]]]).astype(np.float32)
        sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        (y,) = sess.run(None, {"x": x})
        x.astype("<f4").tofile(os.path.join(OUT, name + ".input.f32"))
        y.astype("<f4").tofile(os.path.join(OUT, name + ".output.f32"))
        shapes[name] = {"input": list(x.shape), "output": list(y.shape)}
        print(f"{name}: {len(data)} bytes, input {x.shape}, output {y.shape}")
    for name, m in bad_models():
        with open(os.path.join(OUT, name + ".onnx"), "wb") as f:
            f.write(m.SerializeToString())
    lenet_bytes = open(os.path.join(OUT, "lenet.onnx"), "rb").read()
    with open(os.path.join(OUT, "bad_truncated.onnx"), "wb") as f:
        f.write(lenet_bytes[: len(lenet_bytes) // 2])
    with open(os.path.join(OUT, "models.json"), "w") as f:
        json.dump(shapes, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
