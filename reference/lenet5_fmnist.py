#!/usr/bin/env python3
"""PyTorch reference for twobit: LeNet-5 on Fashion-MNIST, float or TWN quantization-aware.

Reads the IDX gzip files directly (no torchvision), so the data pipeline matches twobit's:
pixels / 255, then (x - 0.2860) / 0.3530. Same recipe as `twobit train --model lenet5`:
SGD momentum 0.9 (dampening 0), weight decay 5e-4, lr 0.05 cosine-annealed to 0 every
iteration, batch 128, seed 1, ReLU before each max-pool.

--scheme twn: Ternary Weight Networks (Li & Liu 2016) QAT. Before every forward pass each
quantized layer's float weight w becomes a * sign(w) * [|w| > delta] with delta = 0.7 mean|w|
and a = mean of |w| over |w| > delta (one delta/a per tensor); the gradient passes straight
through to w (STE). The first (conv1) and last (fc2) layers stay float, as in twobit.

Prints one line per epoch (loss, test accuracy, training images/s) and ends with one JSON
line: {"scheme", "epochs", "test_accuracy", "images_per_second", "threads", ...}.
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
import time
import warnings

# torch warns at import when numpy is absent; numpy is not needed here.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

MEAN, STD = 0.2860, 0.3530
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801


def read_idx(path, magic, ndims):
    """Returns (dims, bytes) of an IDX file, gzip or plain, validating magic and length."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    header = 4 * (1 + ndims)
    if len(data) < header:
        sys.exit(f"error: {path} is truncated ({len(data)} bytes)")
    found, *dims = struct.unpack(">" + "I" * (1 + ndims), data[:header])
    if found != magic:
        sys.exit(f"error: {path} has magic {found:#010x}, expected {magic:#010x}")
    body = math.prod(dims)
    if len(data) != header + body:
        sys.exit(f"error: {path} has {len(data)} bytes, expected {header + body}")
    return dims, data[header:]


def find(data_dir, name):
    for candidate in (os.path.join(data_dir, name + ".gz"), os.path.join(data_dir, name)):
        if os.path.isfile(candidate):
            return candidate
    sys.exit(
        f"error: {os.path.join(data_dir, name)}.gz not found; install the Debian package "
        "(apt-get install dataset-fashion-mnist) or pass --data-dir DIR"
    )


def load_split(data_dir, prefix):
    """Normalised float images [n, 1, 28, 28] and int64 labels [n]."""
    dims, pixels = read_idx(find(data_dir, f"{prefix}-images-idx3-ubyte"), IMAGES_MAGIC, 3)
    (n_labels,), labels = read_idx(find(data_dir, f"{prefix}-labels-idx1-ubyte"), LABELS_MAGIC, 1)
    if dims[1:] != [28, 28] or dims[0] != n_labels:
        sys.exit(f"error: {data_dir}: images {dims} do not match {n_labels} labels of 28x28")
    x = torch.frombuffer(bytearray(pixels), dtype=torch.uint8).view(dims[0], 1, 28, 28)
    x = (x.float() / 255.0 - MEAN) / STD
    y = torch.frombuffer(bytearray(labels), dtype=torch.uint8).long()
    if int(y.max()) >= 10:
        sys.exit(f"error: {data_dir}: label {int(y.max())} out of range")
    return x, y


class TernarizeSTE(torch.autograd.Function):
    """TWN forward; identity gradient (straight-through) to the float weight."""

    @staticmethod
    def forward(ctx, w):
        a = w.abs()
        delta = 0.7 * a.mean()
        mask = a > delta
        # A tensor whose |w| are all equal leaves the mask empty: the layer becomes zero.
        alpha = a[mask].mean() if bool(mask.any()) else w.new_zeros(())
        return alpha * torch.sign(w) * mask

    @staticmethod
    def backward(ctx, grad):
        return grad


class QConv2d(nn.Conv2d):
    def __init__(self, *args, quantize=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.quantize = quantize

    def forward(self, x):
        w = TernarizeSTE.apply(self.weight) if self.quantize else self.weight
        return self._conv_forward(x, w, self.bias)


class QLinear(nn.Linear):
    def __init__(self, *args, quantize=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.quantize = quantize

    def forward(self, x):
        w = TernarizeSTE.apply(self.weight) if self.quantize else self.weight
        return F.linear(x, w, self.bias)


class LeNet5(nn.Module):
    """conv 20@5x5, pool 2, conv 50@5x5, pool 2, fc 500, fc 10; ReLU; no padding."""

    def __init__(self, twn):
        super().__init__()
        self.conv1 = QConv2d(1, 20, 5)  # first layer: kept float
        self.conv2 = QConv2d(20, 50, 5, quantize=twn)
        self.fc1 = QLinear(50 * 4 * 4, 500, quantize=twn)
        self.fc2 = QLinear(500, 10)  # last layer: kept float

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


@torch.no_grad()
def evaluate(model, x, y, batch=1000):
    model.eval()
    correct = 0
    for i in range(0, len(y), batch):
        correct += int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
    return correct / len(y)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scheme", choices=["fp", "twn"], default="fp")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--train-limit", type=int, default=None, help="use the first N training images")
    args = p.parse_args()
    if args.epochs < 1 or args.threads < 1 or args.batch_size < 1:
        p.error("--epochs, --threads and --batch-size must be at least 1")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x_train, y_train = load_split(args.data_dir, "train")
    x_test, y_test = load_split(args.data_dir, "t10k")
    if args.train_limit:
        x_train, y_train = x_train[: args.train_limit], y_train[: args.train_limit]
    n = len(y_train)

    model = LeNet5(args.scheme == "twn")
    opt = torch.optim.SGD(
        model.parameters(), lr=args.lr, momentum=0.9, dampening=0, weight_decay=args.weight_decay
    )
    steps_per_epoch = math.ceil(n / args.batch_size)
    # Cosine from lr to 0, stepped every iteration.
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * steps_per_epoch)
    order_gen = torch.Generator().manual_seed(args.seed)

    print(
        f"lenet5 fashion-mnist scheme={args.scheme} train={n} test={len(y_test)} "
        f"batch={args.batch_size} lr={args.lr} threads={torch.get_num_threads()} "
        f"torch={torch.__version__}",
        flush=True,
    )
    acc, total_images, total_time = 0.0, 0, 0.0
    for epoch in range(1, args.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=order_gen)
        loss_sum = 0.0
        start = time.perf_counter()
        for i in range(0, n, args.batch_size):
            idx = perm[i : i + args.batch_size]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach().item() * len(idx)
        elapsed = time.perf_counter() - start
        total_images += n
        total_time += elapsed
        acc = evaluate(model, x_test, y_test)
        print(
            f"epoch {epoch}/{args.epochs} loss {loss_sum / n:.4f} test_accuracy {acc:.4f} "
            f"train_images_per_second {n / elapsed:.1f} ({elapsed:.1f} s)",
            flush=True,
        )
    print(
        json.dumps(
            {
                "scheme": args.scheme,
                "epochs": args.epochs,
                "test_accuracy": round(acc, 4),
                "images_per_second": round(total_images / total_time, 1),
                "threads": torch.get_num_threads(),
                "batch_size": args.batch_size,
                "train_images": n,
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
