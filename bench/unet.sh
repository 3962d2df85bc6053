#!/usr/bin/env bash
# U-Net on CPU: burn (flex) vs PyTorch throughput side by side, and the DSB2018 accuracy run.
# Reproduces the U-Net sections of docs/benchmarks.md.
#
# Needs, once:
#   cargo build --release -p cellops -p cellops-bench
#   python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install -r bench/unet_torch_requirements.txt
#
# Usage: bench/unet.sh speed        throughput table (train and infer, 1 and 2 threads, depth 2 and 3;
#                                   our kernels, burn's generic path, PyTorch; ~8 minutes)
#        bench/unet.sh accuracy     build DSB2018 at a 20 px nucleus scale, train on CPU (26 epochs
#                                   of 90 steps, which fill ~25 minutes on 2 cores; at most 27),
#                                   then evaluate the test split at its original size beside the
#                                   classical line (~30 minutes)
#        bench/unet.sh score BUNDLE only the evaluation (e.g. BUNDLE=nuclei, the shipped model)
# Env:   DSB     dataset folder      [../shared/data/dsb2018 beside the repository]  (only read)
#        TTA     test-time augmentation for score: flips or dihedral  [none]
#        WORK    scratch             [.bench/unet]
#        TORCH   python with torch   [/tmp/torchvenv/bin/python]
#        EPOCHS, STEPS  accuracy's epochs and steps per epoch  [26, 90]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DSB=${DSB:-$ROOT/../shared/data/dsb2018}
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
                "$BENCH" "${common[@]}" --kernels native | tee -a "$out"
                "$BENCH" "${common[@]}" --kernels burn | tee -a "$out"
                "$TORCH" "$ROOT/bench/unet_torch.py" "${common[@]}" --json 2>/dev/null | tee -a "$out"
            done
        done
    done
    echo "results: $out"
}

accuracy() {
    # Native images rescaled so that the median nucleus is 20 px wide, percentile-normalised,
    # nuclei bright on dark (histology inverted): the shipped nuclei model's recipe.
    "$CELLOPS" build --dataset "$DSB" --output "$WORK/dsb-d20" --colour grey --nucleus-diameter 20 \
        --polarity auto --split-file "$DSB/manifest.csv"
    /usr/bin/time -v "$CELLOPS" train-unet --dataset "$WORK/dsb-d20" --output "$WORK/run-d20" --device cpu \
        --epochs "${EPOCHS:-26}" --steps-per-epoch "${STEPS:-90}" --batch-size 8 --patch-size 128 --patience 0 \
        --max-val-images 36 --max-minutes 27 2>&1 | tee "$WORK/accuracy.log"
    score "$WORK/run-d20/bundle"
}

# Scores a bundle as a user would: evaluate on the DSB test split at the images' original size,
# with the shipped parameter file and no overrides; the classical line runs on the same images.
score() {
    local bundle=$1
    "$CELLOPS" evaluate --images "$DSB" --split test --params "$ROOT/cell-params/fluorescence-dapi.yaml" \
        --model "$bundle" --device cpu --output "$WORK/eval-test" ${TTA:+--tta "$TTA"} | tail -3
    python3 "$ROOT/bench/accuracy_report.py" "$WORK/eval-test" "$DSB"
}

case ${1:-} in
    speed) speed ;;
    accuracy) accuracy ;;
    score) score "${2:?bundle}" ;;
    *) sed -n '2,17p' "$0"; exit 2 ;;
esac
