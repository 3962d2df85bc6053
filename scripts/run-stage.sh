#!/usr/bin/env bash
# Runs an action's binary ($CELLOPS_BIN): with no `merge` input as it is (every input reaches it
# as INPUT_*), with one as `<binary> merge DIR…`, the input's lines being folders or globs
# expanded here (sorted; a pattern that matches nothing is an error). A `slides` input (evaluate)
# is expanded the same way into `--slide FILE` arguments. Used by the build and evaluate actions.
set -euo pipefail
# Expands the lines of $1 (folders, files or globs) into the array `matched_all`; $2 names them
# in the error for a pattern that matches nothing.
expand() {
  matched_all=()
  while read -r pattern; do
    [ -n "$pattern" ] || continue
    mapfile -t matched < <(compgen -G "$pattern" | LC_ALL=C sort)
    if [ "${#matched[@]}" -eq 0 ]; then
      echo "::error title=${CELLOPS_STAGE:-cellops} $2::no $3 matches $pattern"
      exit 2
    fi
    matched_all+=("${matched[@]}")
  done <<< "$1"
}
if [ -n "${INPUT_MERGE:-}" ] && [ -n "${INPUT_MERGE//[[:space:]]/}" ]; then
  expand "$INPUT_MERGE" merge "shard folder"
  exec "$CELLOPS_BIN" merge "${matched_all[@]}"
fi
if [ -n "${INPUT_SLIDES:-}" ] && [ -n "${INPUT_SLIDES//[[:space:]]/}" ]; then
  expand "$INPUT_SLIDES" slides "slide"
  args=()
  for f in "${matched_all[@]}"; do args+=(--slide "$f"); done
  exec "$CELLOPS_BIN" "${args[@]}"
fi
exec "$CELLOPS_BIN"
