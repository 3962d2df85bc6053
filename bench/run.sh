#!/usr/bin/env bash
# Reproduces docs/benchmarks.md: cellops vs Python/OpenCV references on the DSB2018 set.
#
# Installs nothing. Needs, once:
#   pip install numpy opencv-python-headless scikit-image pillow threadpoolctl
#   apt-get install -y time            # GNU /usr/bin/time, for -v
#   cargo build --release -p cellops -p cellops-bench
#
# Usage: bench/run.sh            (from anywhere; ~2 minutes on 2 cores)
# Env:   DSB      dataset folder           [../shared/data/dsb2018 beside the repository]  (only read)
#        RESULTS  where results go         [/tmp/cellops-bench]
#        WORK     scratch for outputs      [/tmp]
#        RUNS     timed runs per build row [3]   ROUNDS  equalize rounds per row [3]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DSB=${DSB:-$ROOT/../shared/data/dsb2018}
RESULTS=${RESULTS:-/tmp/cellops-bench}
WORK=${WORK:-/tmp}
RUNS=${RUNS:-3}
ROUNDS=${ROUNDS:-3}
CELLOPS=$ROOT/target/release/cellops
BENCH=$ROOT/target/release/cellops-bench
PY=${PYTHON:-python3}
MEASURE="$PY $ROOT/bench/measure.py"

for b in "$CELLOPS" "$BENCH" /usr/bin/time; do
    [[ -x $b ]] || { echo "missing $b (see the header of $0)" >&2; exit 1; }
done
mkdir -p "$RESULTS"
: >"$RESULTS/build.jsonl"
: >"$RESULTS/equalize.jsonl"

# ---- machine and versions -------------------------------------------------------------------
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu: $(lscpu | grep 'Model name' | sed 's/.*: *//') ($(nproc) cores)"
    echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
    echo "kernel: $(uname -r)"
    echo "rustc: $(rustc --version 2>/dev/null || echo '?')"
    echo "cellops: $($CELLOPS --version)"
    $PY -c 'import sys, cv2, numpy, skimage, PIL; print(f"python: {sys.version.split()[0]}\nopencv: {cv2.__version__}\nnumpy: {numpy.__version__}\nscikit-image: {skimage.__version__}\npillow: {PIL.__version__}")'
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$RESULTS/machine.txt"

# ---- 1. equalizeHist / CLAHE on 8-bit grey planes ---------------------------------------------
EQ=$WORK/eqcmp
rm -rf "$EQ"
# Writes the grey planes (input of both sides) and cellops' results for the agreement check.
"$BENCH" --images "$DSB/original" --reps 1 --threads 1 --write "$EQ" >/dev/null
$PY "$ROOT/bench/equalize_reference.py" --grey-dir "$EQ" --reps 1 --threads 1 --compare \
    >"$RESULTS/compare.json" 2>"$RESULTS/compare_worst.txt"
cat "$RESULTS/compare.json" "$RESULTS/compare_worst.txt"
for round in $(seq "$ROUNDS"); do
    for t in 1 2; do
        # cellops-bench reads the originals and converts to grey itself; the Python side reads the
        # grey planes cellops wrote: the same pixels. Loading is not timed on either side.
        "$BENCH" --images "$DSB/original" --reps 5 --threads "$t" | tee -a "$RESULTS/equalize.jsonl"
        $PY "$ROOT/bench/equalize_reference.py" --grey-dir "$EQ" --reps 5 --threads "$t" | tee -a "$RESULTS/equalize.jsonl"
    done
    # Extra row: OpenCV with images spread over 2 Python threads (the way cellops-bench
    # parallelises), OpenCV's own threads set to 1.
    $PY "$ROOT/bench/equalize_reference.py" --grey-dir "$EQ" --reps 5 --image-threads 2 | tee -a "$RESULTS/equalize.jsonl"
done

# ---- 2. build: wall time and peak RSS, alternating ---------------------------------------------
OUT_RS=$WORK/bench_out
OUT_PY=$WORK/bench_py
CELLOPS_BUILD=("$CELLOPS" build --dataset "$DSB" --output "$OUT_RS" --resize 256x256 --equalize clahe
    --split-file "$DSB/manifest.csv")
PYTHON_BUILD=($PY "$ROOT/bench/build_reference.py" --dataset "$DSB" --output "$OUT_PY" --resize 256x256
    --split-file "$DSB/manifest.csv")
timed() { # label, sampling interval (0: none), command...
    local label=$1 interval=$2
    shift 2
    $MEASURE --label "$label" --interval "$interval" -- "$@" 2>>"$RESULTS/build.log" | tee -a "$RESULTS/build.jsonl"
}
# One untimed warm-up of each (page cache, Python imports).
rm -rf "$OUT_RS" "$OUT_PY"
"${CELLOPS_BUILD[@]}" >/dev/null 2>&1
"${PYTHON_BUILD[@]}" --jobs 2 >/dev/null 2>&1
for run in $(seq "$RUNS"); do
    rm -rf "$OUT_RS"; timed "cellops build, 2 threads" 0 "${CELLOPS_BUILD[@]}"
    timed "cellops build, incremental no-op rerun" 0 "${CELLOPS_BUILD[@]}"
    rm -rf "$OUT_PY"; timed "python build, Pool(2)" 0 "${PYTHON_BUILD[@]}" --jobs 2
    rm -rf "$OUT_RS"; timed "cellops build, 1 thread" 0 env RAYON_NUM_THREADS=1 "${CELLOPS_BUILD[@]}"
    rm -rf "$OUT_PY"; timed "python build, --jobs 1" 0 "${PYTHON_BUILD[@]}" --jobs 1
done
# Memory of the whole process tree (Pool workers included), sampled every 20 ms; not timed.
rm -rf "$OUT_RS"; timed "mem: cellops build, 2 threads" 0.02 "${CELLOPS_BUILD[@]}"
rm -rf "$OUT_PY"; timed "mem: python build, Pool(2)" 0.02 "${PYTHON_BUILD[@]}" --jobs 2
{
    echo "cellops output bytes: $(find "$OUT_RS" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')"
    echo "python output bytes:  $(find "$OUT_PY" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')"
    echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$RESULTS/machine.txt"

# ---- tables -----------------------------------------------------------------------------------
$PY "$ROOT/bench/summarize.py" "$RESULTS" | tee "$RESULTS/tables.md"
