#!/usr/bin/env bash
# Training speed of twobit against PyTorch CPU, side by side, on ResNet-20 and VGG-7
# (3x32x32, batch 128, 2 threads), interleaved: per round and model, PyTorch fp, then twobit
# fp and twobit tern (--quantize-all), fp first in odd rounds and tern first in even ones.
#
#   scripts/train-speed.sh [--python PY] [--rounds R] [--models "resnet20 vgg7 lenet5"]
#                          [--images N]        (training images per twobit run, per model)
#                          [--bin PATH]        (the twobit binary; default target/release/twobit)
#
# lenet5 (only when asked for) runs on Fashion-MNIST from /usr/share/datasets/fashion-mnist
# (apt-get install dataset-fashion-mnist), PyTorch by reference/lenet5_fmnist.py (one epoch on
# the same number of images; its CPU column includes its evaluation of the 10,000 test images).
#
# Needs target/release/twobit (cargo build --release -p twobit-cli) and a Python with torch
# (python3 -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install torch; the default is
# /tmp/torch-venv/bin/python). twobit trains one epoch on generated CIFAR-format files
# (random pixels and labels, written to a temporary directory) and reports its training
# images/s (`--json`, evaluation excluded); PyTorch (reference/cifar_speed.py) times full
# steps after warm-up on random input. For each run /usr/bin/time gives the whole process's
# CPU seconds (user + system) and peak resident memory: the CPU column is CPU seconds per
# training image, which other load on the machine inflates less than wall time (twobit's
# includes loading the files, one 256-image evaluation and writing the model).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/tmp/torch-venv/bin/python
ROUNDS=2
MODELS="resnet20 vgg7"
IMAGES=""
BIN=target/release/twobit
while [ $# -gt 0 ]; do
    case "$1" in
    --python) PY="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --models) MODELS="$2"; shift 2 ;;
    --images) IMAGES="$2"; shift 2 ;;
    --bin) BIN="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -x "$BIN" ] || { echo "build first: cargo build --release -p twobit-cli" >&2; exit 1; }
"$PY" -c 'import torch' 2>/dev/null || { echo "no torch in $PY (see the header)" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export RAYON_NUM_THREADS=2

# CIFAR-10 binary: per record 1 label byte + 3072 pixel bytes.
python3 - "$TMP/data" <<'EOF'
import os, random, sys
d = sys.argv[1]
os.makedirs(d)
rng = random.Random(1)
def write(name, n):
    with open(os.path.join(d, name), "wb") as f:
        for _ in range(n):
            f.write(bytes([rng.randrange(10)]) + rng.randbytes(3072))
for i in range(1, 6):
    write(f"data_batch_{i}.bin", 1024)
write("test_batch.bin", 256)
EOF

# Runs a command under /usr/bin/time; prints "CPU_SECONDS MAX_RSS_KIB" and keeps stdout in $TMP/out.
timed() {
    /usr/bin/time -f "%U %S %M" -o "$TMP/time" "$@" >"$TMP/out" 2>"$TMP/err" || {
        cat "$TMP/err" >&2
        return 1
    }
    awk '{ printf "%.2f %d\n", $1 + $2, $3 }' "$TMP/time"
}
json() { "$PY" -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])" <"$TMP/out"; }

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
echo "| model | round | side | images/s | CPU ms/image | max RSS MiB | vs PyTorch (images/s) | vs PyTorch (CPU/image) |"
echo "|---|---|---|---|---|---|---|---|"
for round in $(seq 1 "$ROUNDS"); do
    for model in $MODELS; do
        data=(--dataset cifar10 --data-dir "$TMP/data" --test-limit 256)
        case "$model" in
        vgg7) n=${IMAGES:-512}; steps=4 ;;
        lenet5) n=${IMAGES:-12800}
            data=(--dataset fashion-mnist --data-dir /usr/share/datasets/fashion-mnist --test-limit 1000) ;;
        *) n=${IMAGES:-2560}; steps=10 ;;
        esac
        if [ "$model" = lenet5 ]; then
            read -r cpu rss < <(timed "$PY" reference/lenet5_fmnist.py --scheme fp --epochs 1 \
                --threads 2 --train-limit "$n")
            pt_ips=$(json images_per_second)
            pt_cpu=$("$PY" -c "print($cpu * 1000 / $n)")
        else
            read -r cpu rss < <(timed "$PY" reference/cifar_speed.py --model "$model" --threads 2 \
                --steps "$steps" --warmup 2)
            pt_ips=$(json images_per_second)
            pt_cpu=$("$PY" -c "print($(json cpu_seconds_per_image) * 1000)")
        fi
        printf "| %s | %s | PyTorch fp | %.1f | %.2f | %d | | |\n" "$model" "$round" "$pt_ips" \
            "$pt_cpu" $((rss / 1024))
        # The order of fp and tern alternates by round: on this VM the first process to
        # allocate after a pause or after PyTorch's exit pays for fresh memory (the guest
        # reports freed pages to the host; faulting them back in cost ResNet-20 0.8 s of
        # system time per run), which made `tern` look faster than `fp` when fp always ran
        # first.
        schemes="fp tern"
        [ $((round % 2)) = 0 ] && schemes="tern fp"
        # An untimed one-step run first, so that both timed runs start right after a twobit
        # process (as PyTorch's timed steps follow its warm-up steps): measured with a run
        # before, the first timed run took 0.3-0.4 CPU ms per ResNet-20 image more than the
        # second, whichever scheme it was.
        timed "$BIN" train --model "$model" "${data[@]}" --scheme fp --epochs 1 \
            --train-limit 128 --batch-size 128 --out "$TMP/m.twobit" --json >/dev/null
        for scheme in $schemes; do
            extra=()
            [ "$scheme" = tern ] && extra=(--quantize-all)
            read -r cpu rss < <(timed "$BIN" train --model "$model" "${data[@]}" \
                --scheme "$scheme" "${extra[@]}" --epochs 1 \
                --train-limit "$n" --batch-size 128 --out "$TMP/m.twobit" --json)
            ips=$(json images_per_second)
            tb_cpu=$("$PY" -c "print($cpu * 1000 / $n)")
            "$PY" -c "print('| $model | $round | twobit $scheme | %.1f | %.2f | %d | %.2fx | %.2fx |' % ($ips, $tb_cpu, $rss // 1024, $ips / $pt_ips, $pt_cpu / $tb_cpu))"
        done
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
