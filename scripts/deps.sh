#!/usr/bin/env bash
# Installs the Debian packages consent-ledger builds and tests with, if any
# is missing. Needs root (or sudo) only when something must be installed.
set -euo pipefail

PKGS=(build-essential cmake pkg-config git ca-certificates curl
      libuv1-dev libsecp256k1-dev librocksdb-dev libprotobuf-c-dev protobuf-c-compiler
      check libsubunit-dev libssl-dev libhttp-parser-dev libjansson-dev jq)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
