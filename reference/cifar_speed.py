#!/usr/bin/env python3
"""PyTorch CPU training speed of twobit's CIFAR networks, for `scripts/train-speed.sh`.

The same architectures as twobit's built-in graphs (crates/twobit-train/src/models/builtin.rs):

- resnet20: He et al.'s CIFAR ResNet-20: conv 16, three stages of three basic blocks
  (16/32/64 channels; conv-bn-relu-conv-bn plus the option-A shortcut: subsample by 2 and
  zero channels half before, half after; then ReLU), global average pool, fc. Convolutions
  3x3, padding 1, no bias.
- vgg7: 2x128C3, MP2, 2x256C3, MP2, 2x512C3, MP2, fc 1024, fc; batch norm after every conv
  and after fc 1024, ReLU; convs and fc1 without bias.

One training step = forward, cross-entropy, backward, SGD step (momentum 0.9, dampening 0,
weight decay 5e-4), on random inputs [batch, 3, 32, 32] and random labels, in training mode
(batch statistics). Timed over `--steps` steps after `--warmup` steps. Prints one JSON line:
{"model", "batch", "threads", "steps", "images_per_second", "cpu_seconds_per_image",
"max_rss_kib"}; cpu seconds are this process's user + system time over the timed steps (so
other load on the machine shows less in it than in wall time).

Install: python3 -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install torch
(no torchvision or numpy needed).
"""
import argparse
import json
import resource
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class Block(nn.Module):
    def __init__(self, c_in, c, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.stride, self.extra = stride, c - c_in

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        s = x
        if self.stride != 1 or self.extra:
            s = x[:, :, :: self.stride, :: self.stride]
            s = F.pad(s, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return F.relu(y + s)


class ResNet20(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, c_in = [], 16
        for stage, c in enumerate([16, 32, 64]):
            for b in range(3):
                blocks.append(Block(c_in, c, 2 if stage > 0 and b == 0 else 1))
                c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = self.blocks(F.relu(self.bn1(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


class Vgg7(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        layers, c_in = [], 3
        for i, c in enumerate([128, 128, 256, 256, 512, 512]):
            layers += [nn.Conv2d(c_in, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
            c_in = c
        self.features = nn.Sequential(*layers)
        self.fc1 = nn.Linear(512 * 4 * 4, 1024, bias=False)
        self.bn_fc = nn.BatchNorm1d(1024)
        self.fc2 = nn.Linear(1024, classes)

    def forward(self, x):
        x = self.features(x).flatten(1)
        return self.fc2(F.relu(self.bn_fc(self.fc1(x))))


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=["resnet20", "vgg7"], default="resnet20")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    model = ResNet20() if args.model == "resnet20" else Vgg7()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    wall, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(args.steps):
        step()
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    images = args.steps * args.batch
    print(
        json.dumps(
            {
                "model": args.model,
                "batch": args.batch,
                "threads": args.threads,
                "steps": args.steps,
                "images_per_second": round(images / wall, 1),
                "cpu_seconds_per_image": round(cpu / images, 5),
                "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        )
    )


if __name__ == "__main__":
    main()
