#!/usr/bin/env bash
# A synthetic 20,000 × 20,000 px slide (8-bit grey, pyramidal, tiled, pixel 0.5 µm), written tile
# by tile, then measured tile by tile with the classical threshold (cellops_analysis::slide):
# prints the bench's JSON line and the peak memory (/usr/bin/time -v).
#
#   bench/slide.sh                 # 20000² slide, 1024-pixel tiles, 64-pixel overlap
#   SIZE=4096 bench/slide.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE="${SIZE:-20000}"
cargo build --release --locked -p cellops-bench --bin slide-bench >&2
mkdir -p .bench/slide
/usr/bin/time -v target/release/slide-bench --size "$SIZE" --slide ".bench/slide/s$SIZE.tif" 2> .bench/slide/time.txt
grep -E "Maximum resident|Elapsed" .bench/slide/time.txt
