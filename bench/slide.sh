#!/usr/bin/env bash
# Whole-slide benchmark (issue 19): a synthetic 20,000 × 20,000 px H&E-like slide (8-bit RGB,
# pyramidal, tiled, 0.5 µm; `slide-bench`, cellops_dataset::slide::Section) measured by
# `cellops-evaluate --slide` — classical threshold, then the shipped U-Net — and by the Python
# reference (bench/slide_reference.py: OpenSlide-Python + the same U-Net in PyTorch + SciPy /
# scikit-image), each under /usr/bin/time -v for wall time and peak memory; then a 4096² region
# measured in 1024-pixel tiles and in one untiled pass, compared nucleus by nucleus
# (bench/slide_compare.py).
#
#   bench/slide.sh                     # everything (about an hour on 2 cores)
#   SIZE=3000 bench/slide.sh           # a small slide
#   PY=/path/to/python STEPS="rust python region" bench/slide.sh
#
# PY needs torch, scikit-image, scipy, safetensors, pyyaml, pillow, fastapi (serve_reference.py
# imports it), openslide-python and openslide-bin:
#   python3 -m venv /tmp/slidevenv && /tmp/slidevenv/bin/pip install -r bench/unet_torch_requirements.txt \
#     scikit-image openslide-python openslide-bin safetensors pyyaml pillow fastapi uvicorn tifffile
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE="${SIZE:-20000}"
PY="${PY:-/tmp/slidevenv/bin/python}"
STEPS="${STEPS:-classical rust python region}"
OUT=.bench/slide
SLIDE="$OUT/s$SIZE.tif"
mkdir -p "$OUT"
cargo build --release --locked -p cellops-bench --bin slide-bench -p cellops-evaluate >&2
[ -f "$SLIDE" ] || target/release/slide-bench --size "$SIZE" --slide "$SLIDE" | tee "$OUT/write-$SIZE.json"
cat > "$OUT/classical.yaml" <<'YAML'
description: synthetic H&E slide, classical threshold
segmentation: { method: threshold }
filters: { min_area_um2: 3 }
YAML
cat > "$OUT/model.yaml" <<'YAML'
description: synthetic H&E slide, shipped model
pixel_size_um: 0.5
nucleus_diameter_um: 5.5
outputs: { geojson: true }
YAML
timed() { # NAME COMMAND...: runs under /usr/bin/time -v, prints wall time and peak memory
  local name=$1; shift
  /usr/bin/time -v "$@" > "$OUT/$name.out" 2> "$OUT/$name.time"
  echo "$name: $(grep -E 'Elapsed' "$OUT/$name.time" | sed 's/.*: //') wall, $(grep -E 'Maximum resident' "$OUT/$name.time" | sed 's/.*: //') KiB peak"
}
for step in $STEPS; do
  case $step in
    classical)
      timed "classical-$SIZE" target/release/cellops-evaluate --slide "$SLIDE" --params "$OUT/classical.yaml" --output "$OUT/classical-$SIZE"
      grep -E '^slide|evaluated' "$OUT/classical-$SIZE.time" ;;
    rust)
      timed "rust-$SIZE" target/release/cellops-evaluate --slide "$SLIDE" --params "$OUT/model.yaml" --model nuclei --output "$OUT/rust-$SIZE"
      grep -E '^slide|evaluated' "$OUT/rust-$SIZE.time" ;;
    python)
      CELLOPS_REF_QUIET=1 timed "python-$SIZE" "$PY" bench/slide_reference.py --slide "$SLIDE" --bundle models/nuclei \
        --params "$OUT/model.yaml" --out "$OUT/python-$SIZE.csv"
      cat "$OUT/python-$SIZE.out" ;;
    region)
      c=$(( SIZE / 2 - 2048 )); region="$c,$c,4096,4096"
      timed "region-tiled-$SIZE" target/release/cellops-evaluate --slide "$SLIDE" --params "$OUT/model.yaml" --model nuclei \
        --region "$region" --output "$OUT/region-tiled-$SIZE"
      timed "region-untiled-$SIZE" target/release/cellops-evaluate --slide "$SLIDE" --params "$OUT/model.yaml" --model nuclei \
        --region "$region" --slide-tile 4096 --slide-overlap 16 --output "$OUT/region-untiled-$SIZE"
      python3 bench/slide_compare.py "$OUT/region-tiled-$SIZE" "$OUT/region-untiled-$SIZE" | tee "$OUT/region-$SIZE.json" ;;
  esac
done
