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

api=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api_listen"])' "$NET/node0/config.json" 2>/dev/null \
      || sed -n 's/.*"api_listen": *"\([^"]*\)".*/\1/p' "$NET/node0/config.json")
deadline=$((SECONDS + 30))
until curl -fsS "http://$api/v1/status" >/dev/null 2>&1; do
  [ $SECONDS -lt $deadline ] || { echo "node0 did not come up; see $NET/node0/consentd.log" >&2; exit 1; }
  kill -0 "${pids[0]}" 2>/dev/null || { echo "node0 exited; see $NET/node0/consentd.log" >&2; exit 1; }
  sleep 0.2
done

GW=$(python3 -c 'import json,sys; g=json.load(open(sys.argv[1])); print(g["institutions"][0]["key"])' "$NET/genesis.json")
cat <<TXT

consent-ledger: $N validators running (logs: $NET/node*/consentd.log)
  status:   curl http://$api/v1/status
  export CONSENT_NODE=http://$api CONSENT_WALLET=\$HOME/.consent/wallet.key
  build/consent-wallet keygen                 # asks for a passphrase
  build/consent-wallet grant --grantee $GW --scope Observation --purpose TREAT --days 30 --wait
  build/consentctl check --patient \$(build/consent-wallet address) --grantee $GW --scope Observation --purpose TREAT
  build/consent-wallet revoke GRANT_ID --wait
Ctrl-C stops the network; data stays in $NET.
TXT
wait
