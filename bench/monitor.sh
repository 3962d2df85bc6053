#!/usr/bin/env bash
# Drift statistics (cellops-drift) against SciPy and Evidently on the same samples: the values
# and the time of each on 10^6 samples (500,000 + 500,000 nucleus areas). Single-threaded on
# both sides. Needs a venv with Evidently 0.4.40 and SciPy (PY, default /tmp/evvenv/bin/python):
#   python3 -m venv /tmp/evvenv && /tmp/evvenv/bin/pip install evidently==0.4.40 scipy
# Usage: bench/monitor.sh [N_REFERENCE N_CURRENT]
#
# bench/monitor.sh overhead [SPLIT]: what the service's per-image evidence costs (input and
# prediction features, the row appended to a day file) against the measure work, in-process with
# the shipped nuclei model on the DSB2018 split's original images (default val), and the time of
# the drift report over the window those rows make (monitor-overhead).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" = overhead ]; then
    split=${2:-val}
    dsb=${DSB:-$root/../shared/data/dsb2018}
    work=${WORK:-$root/.bench/monitor-overhead}
    rm -rf "$work" && mkdir -p "$work/images" "$work/release/models" "$work/release/cell-params"
    python3 - "$dsb" "$split" "$work/images" <<'PY'
import csv, os, sys
dsb, split, out = sys.argv[1:]
for r in csv.DictReader(open(os.path.join(dsb, "manifest.csv"))):
    if r["split"] == split:
        os.symlink(os.path.abspath(os.path.join(dsb, "original", r["id"] + ".png")), os.path.join(out, r["id"] + ".png"))
PY
    cp -r "$root/models/nuclei" "$work/release/models/"
    cp "$root/cell-params/fluorescence-dapi.yaml" "$work/release/cell-params/"
    cargo build --release -q --manifest-path "$root/Cargo.toml" -p cellops-bench --bin monitor-overhead
    "$root/target/release/monitor-overhead" --images "$work/images" --release "$work/release" --params fluorescence-dapi
    exit 0
fi
PY=${PY:-/tmp/evvenv/bin/python}
WORK=${WORK:-$root/.bench/monitor}
n_ref=${1:-500000}
n_cur=${2:-500000}
cargo build --release -q --manifest-path "$root/Cargo.toml" -p cellops-bench --no-default-features --bin drift-bench
"$PY" "$root/bench/monitor_reference.py" "$WORK" "$n_ref" "$n_cur" > "$WORK.reference.jsonl"
"$root/target/release/drift-bench" --reference "$WORK/reference.f64" --current "$WORK/current.f64" > "$WORK.ours.jsonl"
python3 - "$WORK.reference.jsonl" "$WORK.ours.jsonl" <<'PY'
import json, sys
ref = {j["statistic"]: j for j in map(json.loads, open(sys.argv[1]))}
ours = {j["statistic"]: j for j in map(json.loads, open(sys.argv[2]))}
print("| statistic | reference | value (reference) | value (ours) | relative difference | reference s | ours s | speed-up |")
print("|---|---|---|---|---|---|---|---|")
for name, r in ref.items():
    o = ours[name]
    diff = abs(o["value"] - r["value"]) / max(abs(r["value"]), 1e-300)
    print(f"| {name} | {r['tool']} | {r['value']:.12g} | {o['value']:.12g} | {diff:.1e} | {r['seconds']:.3f} | {o['seconds']:.3f} | {r['seconds'] / o['seconds']:.1f}× |")
PY
