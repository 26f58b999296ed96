#!/usr/bin/env python3
"""Writes Fashion-MNIST in CIFAR-10's binary format, so CIFAR-shaped networks (vgg7,
resnet20) can be trained and measured on real images where CIFAR-10 itself is not at hand.

    python3 scripts/fashion-as-cifar.py [SRC_DIR] OUT_DIR

Each 28x28 image is centred in 32x32 (2 zero pixels each side) and repeated over the three
colour planes; the first 50,000 training images fill data_batch_1..5.bin (10,000 each), the
10,000 test images test_batch.bin. Standard library only; the output is deterministic.
"""
import gzip
import os
import struct
import sys


def idx(path, magic):
    with gzip.open(path, "rb") as f:
        data = f.read()
    got, n = struct.unpack(">II", data[:8])
    if got != magic:
        sys.exit(f"error: {path}: not an IDX file with magic {magic:#x}")
    return n, data


def records(images, labels, start, count):
    n, img = idx(images, 0x803)
    _, lab = idx(labels, 0x801)
    if start + count > n:
        sys.exit(f"error: {images}: {n} images, need {start + count}")
    rows, cols = struct.unpack(">II", img[8:16])
    if (rows, cols) != (28, 28):
        sys.exit(f"error: {images}: images are {rows}x{cols}, not 28x28")
    out = bytearray()
    for i in range(start, start + count):
        px = img[16 + i * 784 : 16 + (i + 1) * 784]
        plane = bytearray(1024)
        for y in range(28):
            plane[(y + 2) * 32 + 2 : (y + 2) * 32 + 30] = px[y * 28 : (y + 1) * 28]
        out += bytes([lab[8 + i]]) + plane * 3
    return out


def write(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main():
    args = sys.argv[1:]
    if len(args) == 1:
        src, out = "/usr/share/datasets/fashion-mnist", args[0]
    elif len(args) == 2:
        src, out = args
    else:
        sys.exit("usage: " + __doc__.strip().splitlines()[3].strip())
    tr = (os.path.join(src, "train-images-idx3-ubyte.gz"), os.path.join(src, "train-labels-idx1-ubyte.gz"))
    te = (os.path.join(src, "t10k-images-idx3-ubyte.gz"), os.path.join(src, "t10k-labels-idx1-ubyte.gz"))
    for p in tr + te:
        if not os.path.exists(p):
            sys.exit(f"error: {p}: not found (Debian package dataset-fashion-mnist)")
    os.makedirs(out, exist_ok=True)
    for b in range(5):
        write(os.path.join(out, f"data_batch_{b + 1}.bin"), records(*tr, b * 10000, 10000))
    write(os.path.join(out, "test_batch.bin"), records(*te, 0, 10000))
    print(f"wrote {out}/data_batch_1..5.bin and test_batch.bin")


if __name__ == "__main__":
    main()
