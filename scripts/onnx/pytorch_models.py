#!/usr/bin/env python3
"""Train two small float CNNs on Fashion-MNIST in PyTorch and export them with
torch.onnx.export, as a user would: the "bring your own network" walk-through
(docs/byo.md) starts from these files.

  cnn.onnx     the issue's MNIST-style CNN: conv3x3 32 - ReLU - maxpool - conv3x3 64 -
               ReLU - maxpool - fc 128 - ReLU - fc 10 (about 225k parameters)
  mobile.onnx  MobileNetV2-style: conv-BN-ReLU6, an inverted residual block (1x1 expand,
               depthwise 3x3, 1x1 project, residual add), a strided depthwise block,
               global average pool, fc 10. The exporter folds BN into the convolutions
               (eval mode) and writes ReLU6 as Clip with constant inputs.

Needs torch, onnx (and onnxscript for torch >= 2.5's exporter); a one-off script, not
run in CI (torch is a 5 GB install). Outputs are small and committed under
reference/onnx/.

  python scripts/onnx/pytorch_models.py [--epochs 3] [--out reference/onnx]
"""
import argparse
import gzip
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FMNIST = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, offset=16).reshape(n, 1, rows, cols)
    return np.frombuffer(data, np.uint8, offset=8)


def load(split):
    p = "train" if split == "train" else "t10k"
    x = idx(os.path.join(FMNIST, f"{p}-images-idx3-ubyte.gz")).astype(np.float32) / 255.0
    y = idx(os.path.join(FMNIST, f"{p}-labels-idx1-ubyte.gz")).astype(np.int64)
    return torch.from_numpy((x - MEAN) / STD), torch.from_numpy(y)


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc1 = nn.Linear(64 * 5 * 5, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


def conv_bn(cin, cout, k, stride=1, groups=1, act=True):
    layers = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.block = nn.Sequential(
            conv_bn(cin, hidden, 1),
            conv_bn(hidden, hidden, 3, stride, groups=hidden),
            conv_bn(hidden, cout, 1, act=False),
        )

    def forward(self, x):
        y = self.block(x)
        return x + y if self.use_res else y


class Mobile(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = conv_bn(1, 16, 3, 2)
        self.b1 = InvertedResidual(16, 16, 1, 4)
        self.b2 = InvertedResidual(16, 32, 2, 4)
        self.b3 = InvertedResidual(32, 32, 1, 4)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.b3(self.b2(self.b1(self.stem(x))))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def train(model, epochs, seed):
    torch.manual_seed(seed)
    xtr, ytr = load("train")
    xte, yte = load("test")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    steps = epochs * ((len(xtr) + 127) // 128)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 128):
            b = perm[i : i + 128]
            loss = F.cross_entropy(model(xtr[b]), ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        print(f"  epoch {epoch + 1}: loss {loss.item():.4f} test {acc * 100:.2f}%")
    return acc


def export(model, path):
    model.eval()
    x = torch.zeros(1, 1, 28, 28)
    kwargs = dict(
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        opset_version=13,
    )
    try:
        torch.onnx.export(model, x, path, dynamo=False, **kwargs)
    except TypeError:  # older torch: no `dynamo` argument
        torch.onnx.export(model, x, path, **kwargs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default="reference/onnx")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    for name, model in [("cnn", Cnn()), ("mobile", Mobile())]:
        print(f"{name}: training {a.epochs} epochs on Fashion-MNIST")
        acc = train(model, a.epochs, seed=1)
        path = os.path.join(a.out, f"{name}.onnx")
        export(model, path)
        print(f"{name}: PyTorch test accuracy {acc * 100:.2f}%, wrote {path}")


if __name__ == "__main__":
    main()
