#!/usr/bin/env bash
# Installs the Debian packages cardwatch needs, only those missing, and the
# npm packages of tests/browser (npm ci). Idempotent; a no-op (one dpkg
# query, one node check) when everything is present.
set -euo pipefail

# clang with libclang-rt (ASan, UBSan, libFuzzer); llvm for llvm-cov and
# llvm-profdata (the line coverage make fuzz reports); gcovr for make
# coverage (gcc's gcov data, per file and in total).
# python3-confluent-kafka and python3-redis: the Python peer of make bench
# (tools/peer.py, run with Debian's /usr/bin/python3). prometheus: promtool
# checks and unit-tests deploy/prometheus in make test, and a real
# prometheus scrapes the service in tests/e2e/test_prometheus.py.
# dpkg-dev (dpkg-shlibdeps), lintian and man-db: make deb and
# tests/e2e/test_deb.py (the package is checked and its man page rendered).
PKGS=(build-essential pkg-config clang libclang-rt-14-dev llvm
      librdkafka-dev kcat libhiredis-dev libevent-dev
      libprotobuf-c-dev protobuf-c-compiler libssl-dev libcmocka-dev
      libinih-dev libjansson-dev zlib1g-dev redis-server redis-tools redis-sentinel
      python3 chromium systemd gcovr
      python3-confluent-kafka python3-redis prometheus dpkg-dev lintian man-db)
# The triage page's browser test (tests/e2e/test_triage_page.py) drives
# Debian's chromium with Node.js; Debian's nodejs/npm only where there is
# no node or npm at all (a Node.js from elsewhere is kept).
# Apache Kafka (the local stack's and the tests' broker) runs on Java 17+
# from jars that Maven fetches: a JDK and Maven only where there are none.
command -v java >/dev/null 2>&1 || PKGS+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || PKGS+=(maven)
command -v openssl >/dev/null 2>&1 || PKGS+=(openssl)
command -v node >/dev/null 2>&1 || PKGS+=(nodejs)
command -v npm >/dev/null 2>&1 || PKGS+=(npm)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "install-deps: done"
fi

# playwright-core for tests/browser, exactly as its package-lock.json says:
# `npm ci` only when it is missing or another version.
BROWSER_DIR="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
if ! (cd "$BROWSER_DIR" && node -e '
    const want = require("./package-lock.json").packages["node_modules/playwright-core"].version;
    process.exit(require("./node_modules/playwright-core/package.json").version === want ? 0 : 1);
  ' 2>/dev/null); then
  echo "install-deps: npm ci in tests/browser"
  (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
