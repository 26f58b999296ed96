#!/usr/bin/env bash
# Training on a GPU, end to end: builds twobit with the CUDA backend, trains ResNet-20 and
# VGG-7 for one epoch on generated CIFAR-format data, fp and tern (--quantize-all), checks that
# `twobit eval` of each written file (the 2-bit runtime on the CPU) gives the accuracy the
# training reported, and prints images/s and the quantizer's share of the training time.
#
#   scripts/gpu-check.sh                      on a machine with an NVIDIA GPU (driver installed)
#   DEVICE=cpu TRAIN_IMAGES=256 TEST_IMAGES=128 scripts/gpu-check.sh     the same on the CPU
#
# Settings (environment):
#   DEVICE        cuda (default), wgpu or cpu: `twobit train --device`; the build gets
#                 `--features $DEVICE` (none for cpu).
#   TRAIN_IMAGES  training images, one epoch (default 10240); TEST_IMAGES (default 2000).
#   BATCH         batch size (default 128).
#   MODELS        default "resnet20 vgg7".
#   ACC_TOL       images by which eval may differ from training's accuracy (default 0 on the
#                 CPU, where both compute the same float sums; 0.2 % of TEST_IMAGES on a GPU,
#                 whose kernels sum in another order, so an image at a tie can flip).
#   CARGO_TARGET_DIR  default target/gpu for cuda/wgpu (keeps the CPU build in target/ warm),
#                 target for cpu.
#
# Time: under 10 minutes on one GPU with a warm build cache (`cargo build --release -p
# twobit-cli --features cuda` done once into the same CARGO_TARGET_DIR). A cold build compiles
# burn with CubeCL's CUDA runtime (several minutes on 16 cores), and its first run downloads
# a prebuilt LLVM (cubecl-cuda's PTX compiler, from github.com/tracel-ai/tracel-llvm) into
# ~/.local/share/tracel: on a machine without network, copy that directory from one where
# the build ran. CUDA needs the NVIDIA driver (libcuda); no toolkit for the
# build (cudarc loads the driver at run time).
#
# TWOBIT_PROFILE=1 is set for the runs: the trainer syncs the device between the phases of a
# step (data, quantize, forward, backward, optimizer) and prints their seconds per epoch, so
# each phase's GPU work is counted in it; `quantize` is the device-to-host copy of the weights,
# the exact fit on the host and the copy back. The syncs cost a little throughput.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
TRAIN_IMAGES=${TRAIN_IMAGES:-10240}
TEST_IMAGES=${TEST_IMAGES:-2000}
BATCH=${BATCH:-128}
MODELS=${MODELS:-"resnet20 vgg7"}
start=$(date +%s)

case "$DEVICE" in
cpu) features=(); export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}; tol=${ACC_TOL:-0} ;;
cuda | wgpu)
    features=(--features "$DEVICE")
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/gpu}
    tol=${ACC_TOL:-$(( (TEST_IMAGES + 499) / 500 ))}
    ;;
*) echo "DEVICE=$DEVICE: expected cuda, wgpu or cpu" >&2; exit 2 ;;
esac
if [ "$DEVICE" = cuda ]; then
    command -v nvidia-smi >/dev/null || { echo "no nvidia-smi: no NVIDIA driver here" >&2; exit 1; }
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    if ! ls "${XDG_DATA_HOME:-$HOME/.local/share}"/tracel/tracel-llvm-*/.tracel-llvm-installed \
        >/dev/null 2>&1; then
        echo "note: no LLVM bundle in ~/.local/share/tracel: the build downloads it from GitHub" >&2
    fi
fi
command -v python3 >/dev/null || { echo "python3 is needed to generate the data" >&2; exit 1; }

echo "== build: cargo build --release -p twobit-cli ${features[*]} (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
cargo build --release -p twobit-cli "${features[@]}"
BIN=$CARGO_TARGET_DIR/release/twobit
built=$(date +%s)
echo "build: $((built - start)) s"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# CIFAR-10 binary (per record a label byte and 3072 pixel bytes); the label sets the
# brightness (pixel = 20 * label + noise in 0..60), so a network learns it in one epoch and
# the accuracy check compares a trained network, not chance.
python3 - "$TMP/data" "$TRAIN_IMAGES" "$TEST_IMAGES" <<'EOF'
import os, random, sys
d, n_train, n_test = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(d)
rng = random.Random(1)
tables = [bytes(min(255, 20 * l + v * 60 // 256) for v in range(256)) for l in range(10)]
def write(name, n):
    with open(os.path.join(d, name), "wb") as f:
        for _ in range(n):
            l = rng.randrange(10)
            f.write(bytes([l]) + rng.randbytes(3072).translate(tables[l]))
per = -(-n_train // 5)
for i in range(5):
    write(f"data_batch_{i + 1}.bin", max(0, min(per, n_train - i * per)))
write("test_batch.bin", n_test)
EOF

field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

echo "== train ($DEVICE, $TRAIN_IMAGES training images, batch $BATCH, 1 epoch) and eval ($TEST_IMAGES test images)"
echo "| model | scheme | images/s | train s | quantize s | quantize share | phases (s) | train accuracy | eval accuracy |"
echo "|---|---|---|---|---|---|---|---|---|"
fail=0
for model in $MODELS; do
    for scheme in fp tern; do
        extra=()
        [ "$scheme" = tern ] && extra=(--quantize-all)
        out="$TMP/$model-$scheme.twobit"
        if ! TWOBIT_PROFILE=1 "$BIN" train --model "$model" --dataset cifar10 --data-dir "$TMP/data" \
            --scheme "$scheme" "${extra[@]}" --epochs 1 --batch-size "$BATCH" --device "$DEVICE" \
            --out "$out" --json >"$TMP/train.json" 2>"$TMP/train.err"; then
            cat "$TMP/train.err" >&2
            exit 1
        fi
        tail -n 1 "$TMP/train.json" >"$TMP/t.json"
        "$BIN" eval "$out" --dataset cifar10 --data-dir "$TMP/data" --json >"$TMP/e.json"
        phases=$(sed -n 's/^profile epoch 1: //p' "$TMP/train.err" | tail -n 1)
        read -r ips secs qsecs acc <<<"$(python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))
print(t["images_per_second"], t["train_seconds"], t["quantize_seconds"], t["test_accuracy"])
' "$TMP/t.json")"
        eacc=$(field "$TMP/e.json" test_accuracy)
        row=$(python3 -c '
import sys
ips, secs, q, acc, eacc, n = map(float, sys.argv[1:7])
print("%.1f | %.1f | %.2f | %.1f %% | %s | %.2f %% | %.2f %%" % (ips, secs, q, 100 * q / max(secs, 1e-9),
      sys.argv[7], 100 * acc, 100 * eacc))
' "$ips" "$secs" "$qsecs" "$acc" "$eacc" "$TEST_IMAGES" "$phases")
        echo "| $model | $scheme | $row |"
        # Accuracies are fractions of TEST_IMAGES: compare the numbers of correct images.
        if ! python3 -c '
import sys
acc, eacc, n, tol = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sys.exit(0 if abs(round(acc * n) - round(eacc * n)) <= tol else 1)
' "$acc" "$eacc" "$TEST_IMAGES" "$tol"; then
            echo "MISMATCH: $model $scheme: training reported $acc, eval of the file $eacc (tolerance $tol images)" >&2
            fail=1
        fi
    done
done
echo "total: $(( $(date +%s) - start )) s (build $((built - start)) s)"
exit "$fail"
