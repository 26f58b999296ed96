#!/usr/bin/env python3
"""Test accuracy of an ONNX model under onnxruntime (an independent runtime), on an
IDX dataset (MNIST / Fashion-MNIST test split), with the input normalisation given or
read from the model's metadata (twobit export writes `twobit.normalize.mean`/`.std`).

Optionally compares the per-image predictions with `twobit eval --predictions FILE`:

  python scripts/onnx/ort_eval.py MODEL.onnx [--data-dir DIR] [--mean M --std S]
      [--compare PRED.txt] [--json]

Exit status 1 when --compare finds any disagreement. Needs numpy and onnxruntime.
"""
import argparse
import gzip
import json
import os
import struct
import sys

import numpy as np
import onnxruntime as ort


def idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, offset=16).reshape(n, 1, rows, cols)
    return np.frombuffer(data, np.uint8, offset=8)


def find(dir_, stem):
    for name in (stem + ".gz", stem):
        p = os.path.join(dir_, name)
        if os.path.exists(p):
            return p
    sys.exit(f"error: {stem}(.gz) not found in {dir_}")


def floats(text):
    return [float(v) for v in text.split(",")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--mean", type=floats)
    ap.add_argument("--std", type=floats)
    ap.add_argument("--compare", help="twobit eval --predictions file")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    sess = ort.InferenceSession(a.model, providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    mean = a.mean or floats(meta.get("twobit.normalize.mean", "0"))
    std = a.std or floats(meta.get("twobit.normalize.std", "1"))
    x = idx(find(a.data_dir, "t10k-images-idx3-ubyte")).astype(np.float32) / 255.0
    y = idx(find(a.data_dir, "t10k-labels-idx1-ubyte")).astype(np.int64)
    c = x.shape[1]
    mean = np.array(mean * c if len(mean) == 1 else mean, np.float32).reshape(1, c, 1, 1)
    std = np.array(std * c if len(std) == 1 else std, np.float32).reshape(1, c, 1, 1)
    x = (x - mean) / std
    name = sess.get_inputs()[0].name
    preds = []
    for i in range(0, len(x), a.batch_size):
        out = sess.run(None, {name: x[i : i + a.batch_size]})[0]
        preds.append(out.reshape(out.shape[0], -1).argmax(1))
    preds = np.concatenate(preds)
    acc = float((preds == y).mean())
    result = {"model": a.model, "runtime": f"onnxruntime {ort.__version__}",
              "images": int(len(y)), "accuracy": acc}
    status = 0
    if a.compare:
        theirs = np.loadtxt(a.compare, dtype=np.int64).reshape(-1)
        if len(theirs) != len(preds):
            sys.exit(f"error: {a.compare} has {len(theirs)} predictions, expected {len(preds)}")
        differ = int((theirs != preds).sum())
        result["compared"] = int(len(preds))
        result["disagreements"] = differ
        status = 1 if differ else 0
    if a.json:
        print(json.dumps(result))
    else:
        line = f"{a.model}: onnxruntime accuracy {acc * 100:.2f}% ({len(y)} images)"
        if a.compare:
            line += f"; {result['disagreements']} of {len(preds)} predictions differ from {a.compare}"
        print(line)
    sys.exit(status)


if __name__ == "__main__":
    main()
