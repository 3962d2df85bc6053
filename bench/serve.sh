#!/usr/bin/env bash
# Serving: `cellops serve` through HTTP vs the same work in-process vs a Python reference service
# (FastAPI + uvicorn + PyTorch U-Net + scikit-image watershed and regionprops), at the same
# concurrency on the same machine, for 256×256 and 640×512 DSB2018 fluorescence images (this copy
# of DSB2018 has no 520×696 images; 640×512 is its nearest fluorescence size). Reproduces the
# serving section of docs/benchmarks.md; prints JSON lines and keeps them in $WORK/serve.jsonl.
#
# Needs, once:
#   cargo build --release -p cellops-serve && cargo build --release -p cellops-bench --bin serve-bench
#   a Python with the reference's packages (bench/serve_reference_requirements.txt)
# Env:   DSB      dataset folder        [../shared/data/dsb2018 beside the repository] (only read)
#        WORK     scratch               [.bench/serve]
#        REF_PY   python for the reference, or "none" to skip it   [/tmp/servevenv/bin/python]
#        CONC     client concurrency    [2 4]
#        RUN_SECONDS  measured seconds per run  [20]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DSB=${DSB:-$ROOT/../shared/data/dsb2018}
WORK=${WORK:-$ROOT/.bench/serve}
REF_PY=${REF_PY:-/tmp/servevenv/bin/python}
CONC=${CONC:-2 4}
SECONDS_RUN=${RUN_SECONDS:-20}
SERVE=$ROOT/target/release/cellops-serve
LOAD=$ROOT/target/release/serve-bench
OUT=$WORK/serve.jsonl
mkdir -p "$WORK"
: >"$OUT"

# The release, as a deploy leaves it (the shipped nuclei bundle, the DAPI parameter file).
release=$WORK/release
rm -rf "$release"
mkdir -p "$release/models" "$release/cell-params"
cp -r "$ROOT/models/nuclei" "$release/models/"
cp "$ROOT/cell-params/fluorescence-dapi.yaml" "$release/cell-params/"

# Validation and training images by size (speed only: nothing is tuned on them).
python3 - "$DSB" "$WORK" <<'PY'
import csv, os, shutil, sys
dsb, work = sys.argv[1], sys.argv[2]
sizes = {("256", "256"): "256x256", ("640", "512"): "640x512"}
for d in sizes.values():
    shutil.rmtree(os.path.join(work, d), ignore_errors=True)
    os.makedirs(os.path.join(work, d))
taken = {d: 0 for d in sizes.values()}
for r in csv.DictReader(open(os.path.join(dsb, "manifest.csv"))):
    d = sizes.get((r["width"], r["height"]))
    if d and r["category"] == "fluorescence" and r["split"] in ("val", "train") and taken[d] < 24:
        shutil.copy(os.path.join(dsb, "original", r["id"] + ".png"), os.path.join(work, d))
        taken[d] += 1
print("images:", taken, file=sys.stderr)
PY

wait_ready() {
    for _ in $(seq 300); do
        curl -sf "$1/v2/health/ready" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "no answer from $1" >&2
    return 1
}

url_of() { grep -o 'listening on http://[0-9.:]*' "$1" | head -1 | cut -d' ' -f3; }

for size in 256x256 640x512; do
    for c in $CONC; do
        load=(--images "$WORK/$size" --concurrency "$c" --seconds "$SECONDS_RUN" --warmup 3)
        "$LOAD" "${load[@]}" --release "$release" --params fluorescence-dapi \
            --label "$size in-process" | tee -a "$OUT"
        "$SERVE" --release "$release" --listen 127.0.0.1:0 --device cpu --allow-unverified 2>"$WORK/serve.log" &
        pid=$!
        for _ in $(seq 300); do [ -n "$(url_of "$WORK/serve.log")" ] && break; sleep 0.2; done
        url=$(url_of "$WORK/serve.log")
        wait_ready "$url"
        "$LOAD" "${load[@]}" --url "$url/v2/models/nuclei/measure?params=fluorescence-dapi" \
            --label "$size cellops-serve" | tee -a "$OUT"
        kill -TERM "$pid"; wait "$pid" || true
        if [ "$REF_PY" != none ] && [ -x "$REF_PY" ]; then
            "$REF_PY" "$ROOT/bench/serve_reference.py" --bundle "$ROOT/models/nuclei" \
                --params "$ROOT/cell-params/fluorescence-dapi.yaml" --port 9077 --workers 1 \
                >"$WORK/reference.log" 2>&1 &
            rpid=$!
            wait_ready http://127.0.0.1:9077
            "$LOAD" "${load[@]}" --url "http://127.0.0.1:9077/v2/models/nuclei/measure?params=fluorescence-dapi" \
                --label "$size python-reference" | tee -a "$OUT"
            kill -TERM "$rpid"; wait "$rpid" || true
        fi
    done
done
