#!/usr/bin/env bash
# The project's test command (README "Run the tests"; .ci/run calls exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The GPU backends are compiled into release binaries only; CI makes sure they still compile.
cargo check -p cellops-unet -p cellops-train-unet -p cellops --locked --features wgpu,cuda
cargo test --workspace --locked
