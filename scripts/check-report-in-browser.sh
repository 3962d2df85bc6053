#!/usr/bin/env bash
# Opens an evaluation report in a real headless browser (Debian: apt-get install chromium) and
# checks that it renders: the DOM has the overlays (<img>) and the figures (<svg>), and a
# screenshot is written next to it. Not part of scripts/test.sh (chromium is a large install);
# run it after changing the report's HTML.
#
# Usage: scripts/check-report-in-browser.sh demo/pipeline/eval/report.html
set -euo pipefail
report=$(realpath "${1:?usage: $0 REPORT.html}")
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[[ -n $browser ]] || { echo "no chromium: apt-get install chromium" >&2; exit 2; }
flags=(--headless --no-sandbox --disable-gpu --hide-scrollbars)
dom=$("$browser" "${flags[@]}" --dump-dom "file://$report" 2>/dev/null)
imgs=$(grep -o '<img' <<<"$dom" | wc -l)
svgs=$(grep -o '<svg' <<<"$dom" | wc -l)
tables=$(grep -o '<table' <<<"$dom" | wc -l)
"$browser" "${flags[@]}" --window-size=1200,2400 --screenshot="${report%.html}.png" "file://$report" >/dev/null 2>&1
echo "rendered $report: $imgs overlays, $svgs figures, $tables tables; screenshot ${report%.html}.png"
[[ $imgs -gt 0 && $svgs -gt 0 && $tables -gt 0 ]] || { echo "the report is missing overlays, figures or tables" >&2; exit 1; }
