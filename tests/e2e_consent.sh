#!/usr/bin/env bash
# End to end on one validator: wallet -> node -> RocksDB -> gateway check,
# guardians, revocation, bad input, and kill -9 + restart with every answer
# unchanged. Real processes on 127.0.0.1.
source "$(dirname "$0")/lib/e2e.sh"

PORT_BASE=$(free_port_base)
"$CTL" testnet --validators 1 --out "$T/net" --port-base "$PORT_BASE" --block-interval-ms 50 >/dev/null
start_node 0
export CONSENT_NODE=$(api_url 0)
export CONSENT_PASSPHRASE="correct horse battery staple"

GW=$(jq -r '.institutions[0].key' "$T/net/genesis.json")
GW2=$(jq -r '.institutions[1].key' "$T/net/genesis.json")

# A patient's wallet: encrypted at rest, mode 0600.
"$WALLET" --wallet "$T/patient.key" keygen >/dev/null
expect_eq "wallet file mode" "$(stat -c %a "$T/patient.key")" 600
P=$("$WALLET" --wallet "$T/patient.key" address)
expect_match "patient address" "$P" '^[0-9a-f]{64}$'
if CONSENT_PASSPHRASE=wrong "$WALLET" --wallet "$T/patient.key" address >/dev/null 2>&1; then
  fail "wrong passphrase accepted"; else pass; fi

NOW=$(date +%s)
UNTIL=$((NOW + 3600))
GID=$("$WALLET" --wallet "$T/patient.key" grant --grantee "$GW" --scope Observation,Condition \
      --purpose TREAT,HRESCH --until "$UNTIL" --wait)
expect_match "grant id" "$GID" '^[0-9a-f]{64}$'

# The operator's (validator's) key may ask about any grantee; a gateway only about itself.
check() { "$CTL" check --node "$CONSENT_NODE" --key "$T/net/node0/validator.key" \
            --passphrase-file "$T/net/node0/passphrase" \
            --patient "$1" --grantee "$2" --scope "$3" --purpose "$4" ${5:+--at "$5"} 2>&1; }
expect_match "permit"          "$(check "$P" "$GW" Observation TREAT)" '^permit'
expect_match "second purpose"  "$(check "$P" "$GW" Condition HRESCH)" '^permit'
expect_match "wrong purpose"   "$(check "$P" "$GW" Observation HMARKT)" '^deny: purpose not covered'
expect_match "wrong scope"     "$(check "$P" "$GW" ImagingStudy TREAT)" '^deny: scope not covered'
expect_match "wrong grantee"   "$(check "$P" "$GW2" Observation TREAT)" '^deny: no grant'
expect_match "after until"     "$(check "$P" "$GW" Observation TREAT $((UNTIL + 1)))" '^deny: grant expired'
if check "$P" "$GW2" Observation TREAT >/dev/null; then fail "deny exits 0"; else pass; fi

# Listing and status of the committed grant transaction.
expect_eq "tx committed" "$(curl -fsS "$CONSENT_NODE/v1/txs/$GID" | jq -r .status)" committed
expect_match "list shows grant" "$("$WALLET" --wallet "$T/patient.key" list)" "$GID"
expect_eq "list needs credentials" "$(curl -s -o /dev/null -w '%{http_code}' "$CONSENT_NODE/v1/patients/$P/grants")" 401

# Revoke: the same question is now denied.
"$WALLET" --wallet "$T/patient.key" revoke "$GID" --wait >/dev/null
expect_match "revoked" "$(check "$P" "$GW" Observation TREAT)" '^deny: grant revoked'

# A stranger cannot revoke someone else's grant.
GID2=$("$WALLET" --wallet "$T/patient.key" grant --grantee "$GW" --scope Observation --purpose TREAT --days 1 --wait)
"$WALLET" --wallet "$T/stranger.key" keygen >/dev/null
if "$WALLET" --wallet "$T/stranger.key" revoke "$GID2" --wait >/dev/null 2>&1; then
  fail "stranger revoked a grant"; else pass; fi
expect_match "still permitted" "$(check "$P" "$GW" Observation TREAT)" '^permit'

# A guardian revokes for the patient.
"$WALLET" --wallet "$T/guardian.key" keygen >/dev/null
G=$("$WALLET" --wallet "$T/guardian.key" address)
"$WALLET" --wallet "$T/patient.key" guardian set "$G" --wait >/dev/null
"$WALLET" --wallet "$T/guardian.key" revoke "$GID2" --wait >/dev/null
expect_match "guardian revoked" "$(check "$P" "$GW" Observation TREAT)" '^deny: grant revoked'
# ... and grants on the patient's behalf.
GID3=$("$WALLET" --wallet "$T/guardian.key" grant --patient "$P" --grantee "$GW2" --scope Observation \
       --purpose CLINTRL --days 30 --wait)
expect_match "guardian grant" "$(check "$P" "$GW2" Observation CLINTRL)" '^permit'

# Bad input: each gets a 4xx with a reason and changes nothing.
H0=$(height 0)
post() { curl -s -o "$T/body" -w '%{http_code}' -X POST "$@"; }
expect_match "garbage protobuf" "$(post -H 'Content-Type: application/x-protobuf' --data-binary 'not a tx' "$CONSENT_NODE/v1/txs")" '^4'
expect_match "garbage reason" "$(jq -r .error "$T/body")" '.+'
expect_match "bad json" "$(post -H 'Content-Type: application/json' --data '{"tx": ' "$CONSENT_NODE/v1/txs")" '^4'
expect_match "bad hex" "$(post -H 'Content-Type: application/json' --data '{"tx": "zz"}' "$CONSENT_NODE/v1/txs")" '^4'
head -c 10000000 /dev/zero > "$T/big"
expect_match "oversized" "$(post -H 'Content-Type: application/x-protobuf' --data-binary @"$T/big" "$CONSENT_NODE/v1/txs")" '^4'
expect_match "bad key" "$(curl -s -o /dev/null -w '%{http_code}' "$CONSENT_NODE/v1/grants/check?patient=xyz&grantee=$GW&scope=Observation&purpose=TREAT")" '^400$'
expect_match "unknown route" "$(curl -s -o /dev/null -w '%{http_code}' "$CONSENT_NODE/v1/nope")" '^404$'
printf 'BLAH / HTTP/9.9\r\n\r\n' > "$T/junk"
exec 3<>"/dev/tcp/127.0.0.1/$PORT_BASE"; cat "$T/junk" >&3; RESP=$(timeout 5 head -c 12 <&3 || true); exec 3>&-
expect_match "nonsense http" "$RESP" '^HTTP/1.1 4'
expect_eq "still serving" "$(curl -fsS "$CONSENT_NODE/v1/status" | jq -r .chain_id)" "$(jq -r .chain_id "$T/net/genesis.json")"
expect_eq "junk changed nothing" "$(height 0)" "$H0"

# kill -9 and restart: chain, state and answers are the same.
H=$(height 0)
TIP=$(curl -fsS "$CONSENT_NODE/v1/status" | jq -r .tip_hash)
B1=$(curl -fsS "$CONSENT_NODE/v1/blocks/1" | jq -c .)
BEFORE=$(for q in "Observation TREAT" "Condition HRESCH"; do check "$P" "$GW" $q; done; check "$P" "$GW2" Observation CLINTRL)
kill9_node 0
start_node 0
expect_eq "height after restart" "$(height 0)" "$H"
expect_eq "tip after restart" "$(curl -fsS "$CONSENT_NODE/v1/status" | jq -r .tip_hash)" "$TIP"
expect_eq "block 1 after restart" "$(curl -fsS "$CONSENT_NODE/v1/blocks/1" | jq -c .)" "$B1"
AFTER=$(for q in "Observation TREAT" "Condition HRESCH"; do check "$P" "$GW" $q; done; check "$P" "$GW2" Observation CLINTRL)
expect_eq "answers after restart" "$AFTER" "$BEFORE"
# The restarted node still takes new grants (nonces were not forgotten).
GID4=$("$WALLET" --wallet "$T/patient.key" grant --grantee "$GW" --scope Observation --purpose TREAT --days 1 --wait)
expect_match "grant after restart" "$(check "$P" "$GW" Observation TREAT)" '^permit'
test -n "$GID3$GID4"

finish
