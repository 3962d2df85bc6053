#!/usr/bin/env bash
# The one installer behind every CellOps action (action.yml at the root and in each stage folder).
#
#   install-cellops.sh plan      writes to $GITHUB_OUTPUT what the cache steps need:
#                                mode (download|source), dir, key, target-dir, target-key, target-restore
#   install-cellops.sh install   puts the binary into <dir> and writes bin=<path> to $GITHUB_OUTPUT
#
# Environment: CELLOPS_PACKAGE (cellops, cellops-build, cellops-train-unet, cellops-evaluate,
# cellops-deploy-cell-params, cellops-pr-report, cellops-monitor), CELLOPS_VERSION (the action's `version` input:
# a release tag v1.2.3, a major/minor alias v1 / v1.2, `source` to force a build, or empty),
# CELLOPS_ACTION_REF (github.action_ref), and the runner's RUNNER_OS, RUNNER_ARCH, RUNNER_TEMP,
# RUNNER_TOOL_CACHE, GITHUB_OUTPUT.
#
# Which release: the `version` input when given; else the action's own ref (`@v1`, `@v1.2.3`), else
# the release this checkout was cut as (dist/release, written by release.yml on the commit the
# major tag points to). It is resolved against dist/checksums.txt, committed in this repository:
# a release binary is used only when that file lists its sha256, and is refused when the download
# does not match it. Without a listed asset (a fork, a commit or branch pin, a version without a
# release, another OS) the binary is built from this checkout's own source with
# `cargo build --locked --release -p <package>`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHECKSUMS="$ROOT/dist/checksums.txt"
PACKAGE="${CELLOPS_PACKAGE:-}"
REQUESTED="${CELLOPS_VERSION:-}"

die() { echo "::error title=cellops installer::$*" >&2; exit 1; }
# Seconds since the epoch, with microseconds where bash has them (bash 5), else whole seconds.
now() { if [ -n "${EPOCHREALTIME:-}" ]; then echo "${EPOCHREALTIME/,/.}"; else date +%s; fi; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
note() { echo "::notice title=cellops installer::$*"; }
warn() { echo "::warning title=cellops installer::$*"; }
out() { if [ -n "${GITHUB_OUTPUT:-}" ]; then printf '%s\n' "$@" >>"$GITHUB_OUTPUT"; else printf '%s\n' "$@"; fi; }

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | awk '{print $1}'
  else shasum -a 256 "$1" | awk '{print $1}'; fi
}

case "$PACKAGE" in
  cellops | cellops-build | cellops-train-unet | cellops-evaluate | cellops-deploy-cell-params | cellops-pr-report | cellops-monitor) ;;
  *) die "unknown package '${PACKAGE}' (stage must be build, train-unet, evaluate, deploy-cell-params, pr-report or monitor)" ;;
esac

# Rust target triple of the runner; empty where no release binary is published.
case "${RUNNER_OS:-$(uname -s)}/${RUNNER_ARCH:-$(uname -m)}" in
  Linux/X64 | Linux/x86_64) TRIPLE=x86_64-unknown-linux-gnu ;;
  Linux/ARM64 | Linux/aarch64) TRIPLE=aarch64-unknown-linux-gnu ;;
  macOS/ARM64 | Darwin/arm64) TRIPLE=aarch64-apple-darwin ;;
  macOS/X64 | Darwin/x86_64) TRIPLE=x86_64-apple-darwin ;;
  *) TRIPLE="" ;;
esac
OS_ARCH="${RUNNER_OS:-$(uname -s)}-${RUNNER_ARCH:-$(uname -m)}"
TOOL_CACHE="${RUNNER_TOOL_CACHE:-${RUNNER_TEMP:-/tmp}}"

# Releases listed in the committed checksums, oldest first.
releases() {
  [ -f "$CHECKSUMS" ] || return 0
  awk '!/^#/ && NF == 2 { split($2, p, "/"); print p[1] }' "$CHECKSUMS" | sort -u -V
}
# A candidate (tag, or vN / vN.M alias) → a listed release, or nothing.
resolve() {
  local want="$1" all
  all="$(releases)"
  [ -n "$want" ] && [ -n "$all" ] || return 0
  if grep -qxF -- "$want" <<<"$all"; then echo "$want"; return 0; fi
  if [[ "$want" =~ ^v[0-9]+(\.[0-9]+)?$ ]]; then
    grep -F -- "$want." <<<"$all" | grep -E "^${want//./\\.}\.[0-9.]+$" | tail -n 1 || true
  fi
}

RELEASE=""
if [ "$REQUESTED" = "source" ]; then
  :
elif [ -n "$REQUESTED" ]; then
  RELEASE="$(resolve "$REQUESTED")"
  [ -n "$RELEASE" ] || warn "version '${REQUESTED}' has no release listed in dist/checksums.txt: building this action's own source instead"
else
  for candidate in "${CELLOPS_ACTION_REF:-}" "${GITHUB_ACTION_REF:-}" "$(cat "$ROOT/dist/release" 2>/dev/null || true)"; do
    RELEASE="$(resolve "$candidate")"
    [ -z "$RELEASE" ] || break
  done
fi

ASSET="" SHA256=""
if [ -n "$RELEASE" ] && [ -n "$TRIPLE" ]; then
  ASSET="${PACKAGE}-${TRIPLE}"
  SHA256="$(awk -v f="$RELEASE/$ASSET" '!/^#/ && NF == 2 && $2 == f { print tolower($1) }' "$CHECKSUMS" | head -n 1)"
  [[ "$SHA256" =~ ^[0-9a-f]{64}$ ]] || SHA256=""
fi
# Where release assets are downloaded from: the repository the checksums were made for.
REPO="$(awk '/^# repository: / { print $3; exit }' "$CHECKSUMS" 2>/dev/null || true)"
REPO="${REPO:-${GITHUB_ACTION_REPOSITORY:-cellops/cellops}}"
[[ "$REPO" =~ ^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$ ]] || die "bad repository '${REPO}' in dist/checksums.txt"

TARGET_DIR="${RUNNER_TEMP:-/tmp}/cellops-target"
if [ -n "$SHA256" ]; then
  MODE=download
  DIR="$TOOL_CACHE/cellops/$RELEASE/$TRIPLE"
  KEY="cellops-bin-$RELEASE-$OS_ARCH-$PACKAGE-${SHA256:0:16}"
else
  MODE=source
  # The source's identity: lock file, manifests and every crate's files.
  SRC_HASH="$(cd "$ROOT" && { echo Cargo.lock; echo Cargo.toml; find crates -type f ! -path '*/target/*' | LC_ALL=C sort; } |
    while read -r f; do printf '%s  %s\n' "$(sha256_of "$f")" "$f"; done | sha256_of /dev/stdin)"
  LOCK_HASH="$(sha256_of "$ROOT/Cargo.lock")"
  DIR="$TOOL_CACHE/cellops/src-${SRC_HASH:0:16}/$OS_ARCH"
  KEY="cellops-bin-src-${SRC_HASH:0:16}-$OS_ARCH-$PACKAGE"
fi

plan() {
  out "mode=$MODE" "release=$RELEASE" "dir=$DIR" "key=$KEY" "target-dir=$TARGET_DIR"
  if [ "$MODE" = source ]; then
    out "target-key=cellops-target-$OS_ARCH-${LOCK_HASH:0:16}-$PACKAGE-${SRC_HASH:0:16}"
    out "target-restore<<CELLOPS_EOF" "cellops-target-$OS_ARCH-${LOCK_HASH:0:16}-$PACKAGE-" "cellops-target-$OS_ARCH-${LOCK_HASH:0:16}-" "CELLOPS_EOF"
  else
    out "target-key=" "target-restore="
  fi
}

verify() { # file → 0 when its sha256 is the committed one
  local actual
  actual="$(sha256_of "$1")"
  [ "$actual" = "$SHA256" ] && return 0
  echo "expected sha256 $SHA256 (dist/checksums.txt, $RELEASE/$ASSET), got $actual" >&2
  return 1
}

build_from_source() {
  local cargo=(cargo)
  command -v cargo >/dev/null 2>&1 || die "no release binary for ${PACKAGE} on ${OS_ARCH} at version '${REQUESTED:-${CELLOPS_ACTION_REF:-this ref}}', and no Rust toolchain to build it (install one first, e.g. rustup)"
  # The workspace's rust-version must be met; a runner's preinstalled stable may be older.
  local need have
  need="$(awk -F'"' '/^rust-version/ { print $2; exit }' "$ROOT/Cargo.toml")"
  have="$(cargo --version | awk '{ print $2 }')"
  if [ -n "$need" ] && [ "$(printf '%s\n%s\n' "$need" "${have%%-*}" | sort -V | head -n 1)" != "$need" ]; then
    command -v rustup >/dev/null 2>&1 || die "cargo $have is older than rust-version $need, and there is no rustup to update it"
    rustup toolchain install stable --profile minimal --no-self-update
    cargo=(cargo +stable)
  fi
  # libssh2 (deploy-cell-params, and the umbrella binary) needs OpenSSL's headers on Linux.
  if [ "$(uname -s)" = Linux ] && ! pkg-config --exists openssl 2>/dev/null && command -v apt-get >/dev/null 2>&1; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends libssl-dev pkg-config ||
      warn "could not install libssl-dev and pkg-config; the build may fail"
  fi
  note "building ${PACKAGE} from source ($(basename "$ROOT") at ${CELLOPS_ACTION_REF:-its checked-out ref})"
  CARGO_TARGET_DIR="$TARGET_DIR" "${cargo[@]}" build --locked --release \
    --manifest-path "$ROOT/Cargo.toml" -p "$PACKAGE" --bin "$PACKAGE"
  mkdir -p "$DIR"
  cp "$TARGET_DIR/release/$PACKAGE" "$DIR/$PACKAGE.tmp"
  mv -f "$DIR/$PACKAGE.tmp" "$DIR/$PACKAGE"
}

install() {
  local bin="$DIR/$PACKAGE"
  if [ "$MODE" = download ]; then
    if [ -x "$bin" ] && verify "$bin" 2>/dev/null; then
      note "${PACKAGE} ${RELEASE} (${TRIPLE}) from the cache, sha256 verified"
    else
      mkdir -p "$DIR"
      local tmp="$DIR/$PACKAGE.download"
      local url="https://github.com/$REPO/releases/download/$RELEASE/$ASSET"
      local t0 t1 fetched
      t0="$(now)"
      if curl -fsSL --proto '=https' --tlsv1.2 --retry 3 --retry-delay 2 -o "$tmp" "$url"; then
        fetched="$(since "$t0")"
        t1="$(now)"
        if ! verify "$tmp"; then
          rm -f "$tmp"
          die "refusing ${url}: its sha256 is not the one committed in dist/checksums.txt"
        fi
        chmod +x "$tmp"
        mv -f "$tmp" "$bin"
        note "${PACKAGE} ${RELEASE} (${TRIPLE}) downloaded ($(( $(wc -c <"$bin") / 1048576 )) MiB in ${fetched} s), sha256 verified in $(since "$t1") s"
      else
        rm -f "$tmp"
        warn "could not download ${url}; building from source instead"
        MODE=source
        build_from_source
      fi
    fi
  elif [ -x "$bin" ]; then
    note "${PACKAGE} built from this source earlier (cache)"
  else
    build_from_source
  fi
  out "bin=$bin" "mode=$MODE" "release=$RELEASE"
  "$bin" --version
}

case "${1:-}" in
  plan) plan ;;
  install) install ;;
  *) die "usage: install-cellops.sh plan|install" ;;
esac
