#!/usr/bin/env bash
# Installs the Debian packages cardwatch needs, only those missing.
# Idempotent; a no-op (one dpkg query) when everything is present.
set -euo pipefail

PKGS=(build-essential pkg-config clang libclang-rt-14-dev
      librdkafka-dev kcat libhiredis-dev libevent-dev
      libprotobuf-c-dev protobuf-c-compiler libssl-dev libcmocka-dev
      libinih-dev libjansson-dev zlib1g-dev redis-server redis-tools
      python3)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
