#!/usr/bin/env bash
# Installs what is missing, builds, writes a local 4-validator network into
# ./testnet (once) and runs it in the foreground. Ctrl-C stops every node.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"

NET=${NET_DIR:-$ROOT/testnet}
N=${VALIDATORS:-4}
if [ ! -f "$NET/genesis.json" ]; then
  build/consentctl testnet --validators "$N" --out "$NET"
fi

pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop EXIT INT TERM
for ((i = 0; i < N; i++)); do
  build/consentd --config "$NET/node$i/config.json" 2>>"$NET/node$i/consentd.log" &
  pids+=($!)
done

api=$(jq -r .api_listen "$NET/node0/config.json")
deadline=$((SECONDS + 30))
until build/consentctl status --node "http://$api" >/dev/null 2>&1; do
  [ $SECONDS -lt $deadline ] || { echo "node0 did not come up; see $NET/node0/consentd.log" >&2; exit 1; }
  kill -0 "${pids[0]}" 2>/dev/null || { echo "node0 exited; see $NET/node0/consentd.log" >&2; exit 1; }
  sleep 0.2
done

GW=$(jq -r '.institutions[0].key' "$NET/genesis.json")
cat <<TXT

consent-ledger: $N validators running (logs: $NET/node*/consentd.log)
  build/consentctl status --node http://$api
  export CONSENT_NODE=http://$api CONSENT_GENESIS=$NET/genesis.json
  # a patient (asks for a passphrase; the key file is encrypted, mode 0600):
  build/consent-wallet --wallet /tmp/patient.key keygen
  build/consent-wallet --wallet /tmp/patient.key grant --grantee $GW --scope Observation --purpose TREAT --days 30 --wait
  # the gateway gateway-0 asks, and verifies the answer against genesis:
  build/consentctl check --key $NET/institutions/gateway-0.key --passphrase-file $NET/institutions/gateway-0.passphrase \\
      --patient \$(build/consent-wallet --wallet /tmp/patient.key address) --grantee $GW --scope Observation --purpose TREAT --verify
  build/consentctl watch --key $NET/institutions/gateway-0.key --passphrase-file $NET/institutions/gateway-0.passphrase
  build/consent-wallet --wallet /tmp/patient.key revoke GRANT_ID --wait
Ctrl-C stops the network; data stays in $NET.
TXT
wait
