#!/usr/bin/env bash
# Sharded evaluation on real data: one `evaluate` of a DSB2018 split with the shipped model, then
# the same split as N shards (run one after another here; on an Actions matrix they run at once)
# and `evaluate merge`; prints each run's wall time and checks the merge equals the whole run
# byte for byte (diff -r). Exit 1 when they differ.
#
#   bench/shard.sh                       # val split, 4 shards
#   SPLIT=test SHARDS=3 bench/shard.sh
#   STAGE=build bench/shard.sh           # `build` of all 574 images under examples/build.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${DATA:-../shared/data/dsb2018}"
SPLIT="${SPLIT:-val}"
SHARDS="${SHARDS:-4}"
WORK="${WORK:-.bench/shard}"
cargo build --release --locked -p cellops >&2
bin=target/release/cellops
rm -rf "$WORK" && mkdir -p "$WORK"
STAGE="${STAGE:-evaluate}"
case "$STAGE" in
  evaluate) common=(--images "$DATA" --split "$SPLIT" --params cell-params/fluorescence-dapi.yaml --model nuclei --device cpu)
            count() { jq '.totals.images' "$1/summary.json"; } ;;
  build)    common=(--dataset "$DATA" --config examples/build.yaml)
            count() { jq '.counts.images' "$1/manifest.json"; } ;;
  *) echo "STAGE is evaluate or build" >&2; exit 2 ;;
esac
secs() { local t0; t0=$(date +%s.%N); "$@" > /dev/null; echo "$(date +%s.%N) - $t0" | bc; }
whole=$(secs "$bin" "$STAGE" "${common[@]}" --output "$WORK/whole")
echo "whole: ${whole} s"
dirs=()
for i in $(seq 1 "$SHARDS"); do
  t=$(secs "$bin" "$STAGE" "${common[@]}" --shard "$i/$SHARDS" --output "$WORK/shard-$i")
  echo "shard $i/$SHARDS: ${t} s, $(count "$WORK/shard-$i") images"
  dirs+=("$WORK/shard-$i")
done
t=$(secs "$bin" "$STAGE" merge "${dirs[@]}" --output "$WORK/merged")
echo "merge: ${t} s, shard.cbor total $(du -cb "$WORK"/shard-*/shard.cbor | tail -1 | cut -f1) bytes"
diff -r "$WORK/whole" "$WORK/merged" && echo "merged == whole: byte for byte ($(find "$WORK/whole" -type f | wc -l) files)"
