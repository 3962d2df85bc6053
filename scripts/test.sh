#!/usr/bin/env bash
# The project's test command (README "Run the tests"; .ci/run calls exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
# The workflows and actions (actionlint, GitHub's schemas) and the cell-parameter files (their schema).
bash scripts/lint-actions.sh
# The dependency graph: licenses, duplicate versions, sources (and advisories when reachable).
bash scripts/deny.sh
cargo clippy --workspace --all-targets --locked -- -D warnings
# The GPU backends are compiled into release binaries only; CI makes sure they still compile.
# cubecl-cuda's build dependency (tracel-llvm-bundler) downloads an LLVM bundle from GitHub, which
# CI cannot reach (package registries only); DOCS_RS=1 makes that build script skip the download,
# which is enough for `cargo check` (nothing is linked). A real CUDA build needs the bundle.
DOCS_RS=1 cargo check -p cellops-unet -p cellops-train-unet -p cellops --locked --features wgpu,cuda
cargo test --workspace --locked
