#!/usr/bin/env python3
"""Runs an ONNX model in onnxruntime on a raw little-endian f32 NCHW batch.

usage: run_ort.py MODEL.onnx INPUT.f32 OUTPUT.f32 N C H W
Writes the (first) output as raw little-endian f32. Used by twobit-onnx's export tests.
"""
import sys

import numpy as np
import onnxruntime as ort


def main(argv):
    model, inp, out = argv[1:4]
    shape = [int(v) for v in argv[4:8]]
    x = np.fromfile(inp, dtype="<f4").reshape(shape)
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    (y, *_) = sess.run(None, {name: x})
    y.astype("<f4").tofile(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
