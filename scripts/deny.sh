#!/usr/bin/env bash
# cargo-deny on the dependency graph (deny.toml; scripts/test.sh runs this): licenses, bans
# (duplicate versions, wildcards) and sources, always and offline; RustSec advisories too when the
# advisory database can be fetched from GitHub. CI reaches package registries only, so there the
# advisories are skipped with a line saying so; CELLOPS_REQUIRE_ADVISORIES=1 makes that a failure.
# cargo-deny is installed into .ci/tools/cargo-deny (git-ignored) from crates.io: about 3.5 minutes
# on 2 cores, once.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.20.2
ROOT=.ci/tools/cargo-deny
BIN="$ROOT/bin/cargo-deny"

fail() { echo "deny: $*" >&2; exit 1; }

if ! "$BIN" --version 2>/dev/null | grep -qx "cargo-deny $VERSION"; then
  echo "deny: installing cargo-deny $VERSION into $ROOT"
  cargo install --locked --quiet cargo-deny --version "$VERSION" --root "$ROOT" ||
    fail "could not install cargo-deny $VERSION from crates.io"
fi
# The offline check reads every platform's crates; a fresh cargo home has only the host's.
cargo fetch --locked --quiet || fail "could not fetch the locked crates from crates.io"
"$BIN" --offline check licenses bans sources
if timeout 60 "$BIN" fetch db >/dev/null 2>&1; then
  "$BIN" --offline check advisories
else
  echo "deny: the RustSec advisory database cannot be fetched here; advisories not checked"
  [ "${CELLOPS_REQUIRE_ADVISORIES:-0}" != 1 ] || fail "CELLOPS_REQUIRE_ADVISORIES=1 and no advisory database"
fi
