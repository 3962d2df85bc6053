#!/usr/bin/env bash
# Fuzz every parser that takes files from a pull request or the network (cellops-fuzz):
# CASES mutated inputs per target (default 10^6) or SECONDS per target, whichever ends first.
# One JSON line per target on stdout; findings' inputs under fuzz-findings/; exit 1 on any
# panic or hang. CI runs a short seeded slice of the same targets (crates/tools/fuzz/tests).
#
#   bench/fuzz.sh                      # 10^6 cases per target, seed 1
#   CASES=100000 SEED=7 bench/fuzz.sh  # another slice
#   SECONDS_PER_TARGET=300 bench/fuzz.sh cell-params
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p cellops-fuzz >&2
args=(--cases "${CASES:-1000000}" --seed "${SEED:-1}" --out fuzz-findings)
if [[ -n "${SECONDS_PER_TARGET:-}" ]]; then
  args+=(--seconds "$SECONDS_PER_TARGET")
fi
target/release/cellops-fuzz --target "${1:-all}" "${args[@]}"
