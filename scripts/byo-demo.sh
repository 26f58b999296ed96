#!/usr/bin/env bash
# "Bring your own network": the walk-through of docs/byo.md end to end, producing the README's
# figures. Starts from a float CNN trained and exported by PyTorch (reference/onnx/cnn.onnx,
# made by scripts/onnx/pytorch_models.py), then:
#   1. its float accuracy on the 2-bit runtime (twobit eval of the .onnx),
#   2. post-training quantization with every scheme, per tensor and per channel, plain and
#      calibrated on 1024 training images (GPTQ-style codes, exact levels: docs/calibrate.md),
#   3. one epoch of QAT fine-tuning with tern from the pretrained weights (seeds 1-3),
#   4. export back to ONNX and a prediction-by-prediction check against onnxruntime.
# Needs Fashion-MNIST (Debian package dataset-fashion-mnist) and, for step 4, python3 with
# numpy and onnxruntime. About 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${MODEL:-reference/onnx/cnn.onnx}
OUT=${OUT:-runs/byo}
NORM=(--mean 0.2860 --std 0.3530)
DATA=(--dataset fashion-mnist)
mkdir -p "$OUT"
cargo build --release -p twobit-cli
T=./target/release/twobit
acc() { python3 -c 'import json,sys; print(f"{100*json.load(sys.stdin)[sys.argv[1]]:.2f}")' "$1"; }

echo "== 1. float baseline (the .onnx on twobit's runtime)"
FLOAT=$($T eval "$MODEL" "${DATA[@]}" "${NORM[@]}" --json | acc test_accuracy)
echo "float: $FLOAT %"

echo "== 2. post-training quantization (test accuracy %)"
printf '| scheme | first/last float, per tensor | per channel | every layer, per tensor | per channel |\n|---|---|---|---|---|\n'
printf '| fp (the ONNX model) | %s | %s | %s | %s |\n' "$FLOAT" "$FLOAT" "$FLOAT" "$FLOAT"
for s in twn atn tern quat quat-free; do
    row="| $s"
    for all in "" --quantize-all; do
        for g in tensor channel; do
            f="$OUT/ptq-$s-$g${all:+-all}.twobit"
            $T compress "$MODEL" "$f" "$s" --granularity "$g" $all "${NORM[@]}" --json >/dev/null
            row="$row | $($T eval "$f" "${DATA[@]}" --json | acc test_accuracy)"
        done
    done
    echo "$row |"
done

echo "== 2b. calibrated post-training quantization (--calibrate fashion-mnist, 1024 images):"
echo "   plain / calibrated sequentially / calibrated independently, test accuracy %"
printf '| scheme | first/last float, per tensor | per channel | every layer, per tensor | per channel |\n|---|---|---|---|---|\n'
for s in twn atn tern quat quat-free; do
    row="| $s"
    for all in "" --quantize-all; do
        for g in tensor channel; do
            cell=""
            for cal in "" "--calibrate fashion-mnist" "--calibrate fashion-mnist --independent"; do
                f="$OUT/cal-$s-$g${all:+-all}.twobit"
                $T compress "$MODEL" "$f" "$s" --granularity "$g" $all $cal "${NORM[@]}" --json >/dev/null
                cell="$cell${cell:+ / }$($T eval "$f" "${DATA[@]}" --json | acc test_accuracy)"
            done
            row="$row | $cell"
        done
    done
    echo "$row |"
done

echo "== 3. QAT fine-tuning from the pretrained weights: tern, 1 epoch"
for seed in 1 2 3; do
    f="$OUT/cnn-tern-s$seed.twobit"
    a=$($T train --model "$MODEL" "${DATA[@]}" "${NORM[@]}" --scheme tern --epochs 1 \
        --seed "$seed" --out "$f" --json 2>/dev/null | acc test_accuracy)
    e=$($T eval "$f" "${DATA[@]}" --json | acc test_accuracy)
    echo "seed $seed: training's test accuracy $a %, twobit eval of the file $e % (float $FLOAT %)"
done

echo "== 4. export to ONNX, compare with onnxruntime on every test image"
f="$OUT/cnn-tern-s1.twobit"
$T eval "$f" "${DATA[@]}" --predictions "$OUT/pred-twobit.txt" >/dev/null
$T export "$f" "$OUT/cnn-tern.onnx"
$T eval "$OUT/cnn-tern.onnx" "${DATA[@]}" --predictions "$OUT/pred-reimported.txt"
python3 scripts/onnx/ort_eval.py "$OUT/cnn-tern.onnx" --compare "$OUT/pred-twobit.txt"
cmp -s "$OUT/pred-twobit.txt" "$OUT/pred-reimported.txt" &&
    echo "twobit eval of the re-imported .onnx: identical predictions"
