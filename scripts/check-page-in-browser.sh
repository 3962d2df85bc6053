#!/usr/bin/env bash
# Opens the service's page in a real headless browser (Debian: apt-get install chromium) and
# checks that its script ran under its Content Security Policy: it reached the service, listed the
# image types in the picker and shows the release; a screenshot is written beside the release.
# A quick look after changing the page (crates/stages/serve/src/page/): the screenshot. The page
# is tested for real by crates/stages/serve/tests/page.rs (part of scripts/test.sh), which drives
# it in headless Chromium over WebDriver and compares what it shows with evaluate.
#
# Usage: scripts/check-page-in-browser.sh [RELEASE_DIR]   (default: a release made from
#        models/nuclei and cell-params/ in a temporary folder)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[[ -n $browser ]] || { echo "no chromium: apt-get install chromium" >&2; exit 2; }
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
release=${1:-}
if [[ -z $release ]]; then
  release=$work/release
  mkdir -p "$release/models" "$release/cell-params"
  cp -r "$root/models/nuclei" "$release/models/"
  cp "$root"/cell-params/*.yaml "$release/cell-params/"
fi
cargo build -q -p cellops-serve --manifest-path "$root/Cargo.toml"
"$root/target/debug/cellops-serve" --release "$release" --listen 127.0.0.1:0 --device cpu --allow-unverified 2>"$work/serve.log" &
pid=$!
for _ in $(seq 100); do
  url=$(grep -o 'listening on http://[0-9.:]*' "$work/serve.log" | head -1 | cut -d' ' -f3 || true)
  [[ -n $url ]] && break
  sleep 0.2
done
[[ -n ${url:-} ]] || { cat "$work/serve.log" >&2; echo "the service did not start" >&2; exit 1; }
flags=(--headless --no-sandbox --disable-gpu --hide-scrollbars --virtual-time-budget=5000)
# A browser's first start can outlast the virtual time budget: try a few times.
for _ in 1 2 3; do
  dom=$("$browser" "${flags[@]}" --dump-dom "$url/" 2>/dev/null || true)
  options=$( (grep -o '<option' <<<"$dom" || true) | wc -l)
  release_line=$( (grep -o '<p id="release"[^<]*' <<<"$dom" || true) | sed 's/.*>//')
  [[ $options -gt 0 ]] && break
done
"$browser" "${flags[@]}" --window-size=1200,900 --screenshot="$work/page.png" "$url/" >/dev/null 2>&1 || true
cp "$work/page.png" "$root/target/page.png" 2>/dev/null || true
echo "rendered $url/: $options image types in the picker; header: ${release_line:-?}; screenshot target/page.png"
[[ $options -gt 0 && $release_line == release* ]] || { echo "the page's script did not reach the service" >&2; exit 1; }
