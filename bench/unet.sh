#!/usr/bin/env bash
# U-Net on CPU: burn (flex) vs PyTorch throughput side by side, and the DSB2018 accuracy run.
# Reproduces the U-Net sections of docs/benchmarks.md.
#
# Needs, once:
#   cargo build --release -p cellops -p cellops-bench
#   python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install -r bench/unet_torch_requirements.txt
#
# Usage: bench/unet.sh speed      throughput table (train and infer, 1 and 2 threads; ~5 minutes)
#        bench/unet.sh accuracy   build DSB2018 at 256x256 and train on CPU for at most 27 minutes,
#                                 then report validation and test Dice (~30 minutes)
# Env:   DSB     dataset folder      [/work/shared/data/dsb2018]  (only read)
#        WORK    scratch             [.bench/unet]
#        TORCH   python with torch   [/tmp/torchvenv/bin/python]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DSB=${DSB:-/work/shared/data/dsb2018}
WORK=${WORK:-$ROOT/.bench/unet}
TORCH=${TORCH:-/tmp/torchvenv/bin/python}
CELLOPS=$ROOT/target/release/cellops
BENCH=$ROOT/target/release/unet-bench
mkdir -p "$WORK"

speed() {
    local out=$WORK/speed.jsonl
    : >"$out"
    for mode in train infer; do
        for threads in 1 2; do
            for depth in 2 3; do
                local common=(--batch 8 --size 128 --depth "$depth" --base 16 --norm batch
                              --threads "$threads" --mode "$mode" --steps 10 --warmup 2)
                "$BENCH" "${common[@]}" | tee -a "$out"
                "$TORCH" "$ROOT/bench/unet_torch.py" "${common[@]}" --json 2>/dev/null | tee -a "$out"
            done
        done
    done
    echo "results: $out"
}

accuracy() {
    "$CELLOPS" build --dataset "$DSB" --output "$WORK/dsb256" --colour grey --resize 256x256 \
        --split-file "$DSB/manifest.csv"
    /usr/bin/time -v "$CELLOPS" train-unet --dataset "$WORK/dsb256" --output "$WORK/run" --device cpu \
        --epochs 24 --steps-per-epoch 45 --batch-size 8 --patch-size 128 --patience 0 \
        --max-minutes 27 2>&1 | tee "$WORK/accuracy.log"
}

case ${1:-} in
    speed) speed ;;
    accuracy) accuracy ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
esac
