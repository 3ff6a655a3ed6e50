#!/usr/bin/env bash
# A full node (a config without key_file) beside four validators, as real
# processes on 127.0.0.1: it finds the validators from the genesis p2p
# addresses alone, follows the chain by block sync (verifying every commit
# certificate), reaches the validators' height and tip hash, and answers
# /v1/grants/check exactly as a validator does, with proofs that verify
# against genesis. A transaction submitted to it is relayed and commits; a
# kill -9 and restart catches up again; a config with a key that is not a
# genesis validator is refused.
source "$(dirname "$0")/lib/e2e.sh"

N=4
F=$N   # the full node's index: its API listens on PORT_BASE+4
PORT_BASE=$(free_port_base)
"$CTL" testnet --validators $N --out "$T/net" --port-base "$PORT_BASE" --block-interval-ms 50 >/dev/null
mkdir -p "$T/net/node$F"
cat > "$T/net/node$F/config.json" <<EOF
{"genesis": "../genesis.json", "data_dir": "data", "api_listen": "127.0.0.1:$((PORT_BASE + F))",
 "block_interval_ms": 50, "log_level": "info"}
EOF
for ((i = 0; i < N; i++)); do start_node $i; done
start_node $F
export CONSENT_PASSPHRASE="full node passphrase"
GENESIS="$T/net/genesis.json"
GW=$(jq -r '[.institutions[] | select(.roles | index("grantee"))][0].key' "$GENESIS")
GW2=$(jq -r '[.institutions[] | select(.roles | index("grantee"))][1].key' "$GENESIS")

status() { curl -fsS --max-time 2 "$(api_url "$1")/v1/status"; }
tip() { status "$1" | jq -r '"\(.height) \(.tip_hash)"'; }
same_tip() { [ "$(tip "$1")" == "$(tip 0)" ] && [ "$(height "$1")" -ge "${2:-0}" ]; }

# 1. It is a full node: no validator index, linked to every validator.
S=$(status $F)
expect_eq "full node validator field" "$(jq -r .validator <<<"$S")" "null"
peers_up() { [ "$(status $F | jq '.peers | length')" -eq $N ]; }
wait_for 30 peers_up && pass || fail "full node did not link to $N validators: $(status $F | jq -c .peers)"

# 2. Grants commit on the validators; the full node follows.
"$WALLET" --wallet "$T/p.key" keygen >/dev/null
P=$("$WALLET" --wallet "$T/p.key" address)
W=("$WALLET" --wallet "$T/p.key" --node "$(api_url 0)")
G1=$("${W[@]}" grant --grantee "$GW" --scope Observation --purpose TREAT --days 30 --wait)
G2=$("${W[@]}" grant --grantee "$GW" --scope Condition --purpose HRESCH --days 30 --wait)
G3=$("${W[@]}" grant --grantee "$GW2" --scope Observation --purpose TREAT --days 30 --wait)
"${W[@]}" revoke "$G3" --wait >/dev/null
H=$(height 0)
[ "$H" -ge 4 ] && pass || fail "validators at height $H after 4 transactions"
wait_for 20 same_tip $F "$H" && pass || fail "full node at $(tip $F), validators at $(tip 0)"
# Same blocks; each with a certificate of at least 2f+1 = 3 signatures for
# that block (which 3 depends on the validator it was synced from).
for ((h = 1; h <= H; h++)); do
  B=$(curl -fsS "$(api_url $F)/v1/blocks/$h")
  expect_eq "block $h" "$(jq -r .hash <<<"$B")" "$(curl -fsS "$(api_url 0)/v1/blocks/$h" | jq -r .hash)"
  expect_eq "block $h cert" "$(jq -r '.cert.block_hash == .hash and (.cert.sigs | length) >= 3' <<<"$B")" true
done

# 3. Checks on the full node answer as on a validator (signed by an operator key).
check() { # check NODE GRANTEE SCOPE PURPOSE [more]
  "$CTL" check --node "$(api_url "$1")" --key "$T/net/node0/validator.key" \
    --passphrase-file "$T/net/node0/passphrase" --patient "$P" --grantee "$2" --scope "$3" \
    --purpose "$4" "${@:5}" 2>&1 || true
}
for q in "$GW Observation TREAT" "$GW Condition HRESCH" "$GW Condition TREAT" "$GW2 Observation TREAT" \
         "$GW ImagingStudy TREAT"; do
  # shellcheck disable=SC2086
  expect_eq "check $q" "$(check $F $q)" "$(check 0 $q)"
done
expect_match "full node permit" "$(check $F "$GW" Observation TREAT)" '^permit'
expect_match "full node revoked" "$(check $F "$GW2" Observation TREAT)" '^deny: grant revoked'
expect_match "full node verified permit" "$(check $F "$GW" Observation TREAT --verify --genesis "$GENESIS")" \
  '^permit \(verified at height [0-9]+'
expect_match "full node verified deny" "$(check $F "$GW" Condition TREAT --verify --genesis "$GENESIS")" \
  '^deny: purpose not covered \(verified at height'
R=$(curl -s -o /dev/null -w '%{http_code}' "$(api_url $F)/v1/grants/check?patient=$P&grantee=$GW&scope=Observation&purpose=TREAT")
expect_eq "unsigned check on the full node" "$R" 401
expect_eq "grant on the full node" "$(curl -fsS "$(api_url $F)/v1/grants/$G1" | jq -r .status)" active

# 4. A transaction sent to the full node is relayed to the validators and commits.
G4=$("$WALLET" --wallet "$T/p.key" --node "$(api_url $F)" grant --grantee "$GW" --scope Procedure \
     --purpose TREAT --days 30 --wait) && pass || fail "grant through the full node did not commit"
expect_eq "relayed grant on a validator" "$(curl -fsS "$(api_url 2)/v1/txs/$G4" | jq -r .status)" committed
expect_match "relayed grant checked" "$(check $F "$GW" Procedure TREAT)" '^permit'

# 5. Its metrics: every block came by sync, none by consensus.
M=$(curl -fsS "$(api_url $F)/metrics")
SYNCED=$(awk '$1 == "consent_blocks_synced_total" {print $2}' <<<"$M")
expect_eq "full node synced blocks" "$SYNCED" "$(height $F)"
expect_eq "full node consensus commits" "$(awk '$1 == "consent_commits_total" {print $2}' <<<"$M")" 0
expect_eq "full node validator links" "$(awk '$1 == "consent_p2p_validators_connected" {print $2}' <<<"$M")" $N
VM=$(curl -fsS "$(api_url 1)/metrics")
expect_eq "validator serves the full node" "$(awk '$1 == "consent_p2p_full_nodes_connected" {print $2}' <<<"$VM")" 1

# 6. kill -9 the full node, commit more, restart it: it catches up.
kill9_node $F
"${W[@]}" grant --grantee "$GW" --scope Encounter --purpose TREAT --days 30 --wait >/dev/null
"${W[@]}" grant --grantee "$GW" --scope Immunization --purpose TREAT --days 30 --wait >/dev/null
H=$(height 0)
start_node $F
wait_for 20 same_tip $F "$H" && pass || fail "restarted full node at $(tip $F), validators at $(tip 0)"
expect_match "restarted full node check" "$(check $F "$GW" Immunization TREAT)" '^permit'

# 7. Idle: one more block with no traffic after it still reaches the full node.
"${W[@]}" grant --grantee "$GW" --scope Specimen --purpose TREAT --days 30 --wait >/dev/null
H=$(height 0)
wait_for 10 same_tip $F "$H" && pass || fail "idle full node at $(tip $F), validators at $(tip 0)"

# 8. A key that is not a genesis validator does not make a validator.
"$WALLET" --wallet "$T/net/node$F/stranger.key" keygen >/dev/null
jq --arg k stranger.key '. + {key_file: $k}' "$T/net/node$F/config.json" > "$T/stranger.json"
cp "$T/stranger.json" "$T/net/node$F/stranger.json"
OUT=$("$NODE" --config "$T/net/node$F/stranger.json" --api-listen 127.0.0.1:0 --data-dir "$T/stranger-data" 2>&1 || true)
expect_match "stranger key refused" "$OUT" 'not a validator of this genesis'

finish
