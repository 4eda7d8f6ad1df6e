#!/usr/bin/env bash
# fetch_web.sh - the npm packages the binary builds in (web/: Chart.js for
# the replay's HTML report), exactly as web/package-lock.json pins them:
# `npm ci` only when web/node_modules is missing or holds another version.
# Needs node and npm (scripts/install-deps.sh) and the npm registry once.
set -euo pipefail
WEB="$(cd "$(dirname "$0")/.." && pwd)/web"
cd "$WEB"
if node -e '
    const want = require("./package-lock.json").packages["node_modules/chart.js"].version;
    process.exit(require("./node_modules/chart.js/package.json").version === want ? 0 : 1);
  ' 2>/dev/null; then
  touch node_modules/chart.js/dist/chart.umd.js   # newer than the lock file
  exit 0
fi
echo "  NPM   web (npm ci: Chart.js for the replay report)"
npm ci --no-audit --no-fund --loglevel=error >/dev/null
touch node_modules/chart.js/dist/chart.umd.js
