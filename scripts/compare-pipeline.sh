#!/usr/bin/env bash
# Runs `cellops pipeline` (fixed seed, small synthetic set) with two binaries and compares the files
# a refactoring must not change: the dataset manifest, objects.csv, images.csv and metrics.json.
#
#   scripts/compare-pipeline.sh OLD_CELLOPS NEW_CELLOPS
#
# Build OLD_CELLOPS from the earlier commit (e.g. in a `git worktree`); exit status 0 when every
# file is byte-identical.
set -euo pipefail
old=$(realpath "$1")
new=$(realpath "$2")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(pipeline --output run --synthetic 8 --size 96x96 --epochs 1 --steps-per-epoch 3 --device cpu)
for side in old new; do
  mkdir -p "$work/$side"
  bin=$old
  [ "$side" = new ] && bin=$new
  (cd "$work/$side" && env -u GITHUB_ACTIONS "$bin" "${flags[@]}" >"$work/$side.log" 2>&1) || {
    echo "compare-pipeline: the $side binary failed; its log:" >&2
    cat "$work/$side.log" >&2
    exit 1
  }
done
status=0
for f in prepared/manifest.json eval/objects.csv eval/images.csv eval/metrics.json; do
  if cmp -s "$work/old/run/$f" "$work/new/run/$f"; then
    echo "same       $f ($(wc -c <"$work/new/run/$f") bytes)"
  else
    echo "DIFFERENT  $f"
    diff <(head -c 2000 "$work/old/run/$f") <(head -c 2000 "$work/new/run/$f") | head -20 || true
    status=1
  fi
done
exit $status
