#!/usr/bin/env bash
# The main job on a fresh machine: get Fashion-MNIST if missing, train LeNet-5 with the exact
# adaptive quaternary quantizer, write the packed 2-bit file, then evaluate it from the file
# alone with the 2-bit runtime.
set -euo pipefail
cd "$(dirname "$0")/.."

EPOCHS=${EPOCHS:-3}
OUT=${OUT:-runs/lenet5-quat.twobit}

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    echo "Fashion-MNIST not found: installing the Debian package dataset-fashion-mnist" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist
fi

cargo build --release -p twobit-cli
mkdir -p "$(dirname "$OUT")"
./target/release/twobit train --model lenet5 --dataset fashion-mnist --scheme quat \
    --epochs "$EPOCHS" --seed 1 --out "$OUT"
./target/release/twobit inspect "$OUT"
./target/release/twobit eval "$OUT" --dataset fashion-mnist
