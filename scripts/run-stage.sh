#!/usr/bin/env bash
# Runs an action's binary ($CELLOPS_BIN): with no `merge` input as it is (every input reaches it
# as INPUT_*), with one as `<binary> merge DIR…`, the input's lines being folders or globs
# expanded here (sorted; a pattern that matches nothing is an error). Used by the build and
# evaluate actions.
set -euo pipefail
if [ -z "${INPUT_MERGE:-}" ] || [ -z "${INPUT_MERGE//[[:space:]]/}" ]; then exec "$CELLOPS_BIN"; fi
dirs=()
while read -r pattern; do
  [ -n "$pattern" ] || continue
  mapfile -t matched < <(compgen -G "$pattern" | LC_ALL=C sort)
  if [ "${#matched[@]}" -eq 0 ]; then
    echo "::error title=${CELLOPS_STAGE:-cellops} merge::no shard folder matches $pattern"
    exit 2
  fi
  dirs+=("${matched[@]}")
done <<< "$INPUT_MERGE"
exec "$CELLOPS_BIN" merge "${dirs[@]}"
