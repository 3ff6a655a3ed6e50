#!/usr/bin/env bash
# End to end, the gateway's side on one validator: a grant from an HL7 FHIR
# Consent and back; a verified permit (proof + commit certificate checked
# against the local genesis, trusting no node); a revocation that arrives on
# `consentctl watch` and is followed by a verified deny; a tampered answer
# that fails verification; requests without credentials or with another
# institution's credentials refused; the patient's audit listing. Real
# processes on 127.0.0.1.
source "$(dirname "$0")/lib/e2e.sh"

PORT_BASE=$(free_port_base)
"$CTL" testnet --validators 1 --out "$T/net" --port-base "$PORT_BASE" --block-interval-ms 50 >/dev/null
start_node 0
export CONSENT_NODE=$(api_url 0)
export CONSENT_PASSPHRASE="correct horse battery staple"
export CONSENT_GENESIS="$T/net/genesis.json"

GW_NAME=$(jq -r '.institutions[0].name' "$CONSENT_GENESIS")
GW2_NAME=$(jq -r '.institutions[1].name' "$CONSENT_GENESIS")
GW=$(jq -r '.institutions[0].key' "$CONSENT_GENESIS")
GW_KEY=(--key "$T/net/institutions/$GW_NAME.key" --passphrase-file "$T/net/institutions/$GW_NAME.passphrase")
GW2_KEY=(--key "$T/net/institutions/$GW2_NAME.key" --passphrase-file "$T/net/institutions/$GW2_NAME.passphrase")

"$WALLET" --wallet "$T/patient.key" keygen >/dev/null
P=$("$WALLET" --wallet "$T/patient.key" address)

# --- FHIR: a Consent becomes a grant, and the grant exports back to it.
cat > "$T/consent.json" <<EOF
{"resourceType": "Consent", "status": "active",
 "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]},
 "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
 "patient": {"identifier": {"system": "urn:consent-ledger:key", "value": "$P"}},
 "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
 "provision": {"type": "permit",
  "period": {"start": "$(date -u -d '-1 day' +%Y-%m-%d)", "end": "$(date -u -d '+30 days' +%Y-%m-%dT%H:%M:%S+00:00)"},
  "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
             "reference": {"identifier": {"system": "urn:consent-ledger:key", "value": "$GW"}}}],
  "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"},
              {"system": "http://purl.obolibrary.org/obo/duo.owl", "code": "DUO:0000042"}],
  "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"},
            {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}],
  "securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HIV"}]}}
EOF
GID=$("$WALLET" --wallet "$T/patient.key" grant --fhir "$T/consent.json" --wait)
expect_match "fhir grant id" "$GID" '^[0-9a-f]{64}$'
"$WALLET" --wallet "$T/patient.key" export "$GID" --fhir > "$T/export.json"
expect_eq "export id" "$(jq -r .id "$T/export.json")" "$GID"
expect_eq "export scopes" "$(jq -c '[.provision.class[].code, .provision.securityLabel[].code]' "$T/export.json")" \
  '["Observation","laboratory","HIV"]'
LIST=$("$WALLET" --wallet "$T/patient.key" list --fhir)
expect_eq "list --fhir" "$(jq -r '.entry[0].resource.id' <<<"$LIST")" "$GID"
# A deny provision is refused by name and nothing is sent.
jq '.provision.type = "deny"' "$T/consent.json" > "$T/deny.json"
expect_match "deny refused" "$("$WALLET" --wallet "$T/patient.key" grant --fhir "$T/deny.json" 2>&1 || true)" \
  'Consent.provision.type must be "permit"'
jq '.provision.provision = [{"type": "deny"}]' "$T/consent.json" > "$T/nested.json"
expect_match "nested refused" "$("$WALLET" --wallet "$T/patient.key" grant --fhir "$T/nested.json" 2>&1 || true)" \
  'nested provisions'
# The exported Consent re-imports to the same grant: same grant content, new id.
GID_B=$("$WALLET" --wallet "$T/patient.key" grant --fhir "$T/export.json" --wait)
same() { curl -fsS "$CONSENT_NODE/v1/grants/$1" | jq -c '{grantee, scopes, purposes, not_before, not_after}'; }
expect_eq "re-import is the same grant" "$(same "$GID_B")" "$(same "$GID")"
"$WALLET" --wallet "$T/patient.key" revoke "$GID_B" --wait >/dev/null

# --- Verified checks.
check() { "$CTL" check --patient "$P" --grantee "$GW" --scope "$1" --purpose "$2" "${GW_KEY[@]}" "${@:3}" 2>&1; }
expect_match "verified permit" "$(check Observation TREAT --verify)" '^permit \(verified at height [0-9]+'
expect_match "verified deny" "$(check ImagingStudy TREAT --verify)" '^deny: scope not covered \(verified at height'

# --- The revocation arrives on watch, then the check is a verified deny.
H=$(height 0)
"$CTL" watch --from "$H" "${GW_KEY[@]}" > "$T/watch.out" 2>"$T/watch.err" &
WATCH=$!
PIDS[watch]=$WATCH
"$WALLET" --wallet "$T/patient.key" revoke "$GID" --wait >/dev/null
if wait_for 20 grep -q "revoke.* grant $GID" "$T/watch.out"; then pass; else
  fail "revocation not seen on watch: $(cat "$T/watch.out" "$T/watch.err")"; fi
kill "$WATCH" 2>/dev/null || true; wait "$WATCH" 2>/dev/null || true; unset 'PIDS[watch]'
expect_match "watch line" "$(grep -m1 "revoke.* grant $GID" "$T/watch.out")" "^height [0-9]+ revoke +patient $P grantee $GW grant $GID tx [0-9a-f]{64}$"
expect_match "verified deny after revoke" "$(check Observation TREAT --verify)" '^deny: grant revoked \(verified at height'

# --- A tampered answer fails verification (exit 3), an untouched one passes.
# run CMD...: OUT gets its output, RC its exit code (set -e stays happy).
run() { if "$@" > "$T/run.out" 2>&1; then RC=0; else RC=$?; fi; OUT=$(cat "$T/run.out"); }
GID2=$("$WALLET" --wallet "$T/patient.key" grant --grantee "$GW" --scope Condition --purpose TREAT --days 1 --wait)
"$CTL" check --patient "$P" --grantee "$GW" --scope Condition --purpose TREAT "${GW_KEY[@]}" --verify --json \
  > "$T/answer.json"
expect_match "saved answer has a proof" "$(jq -r '.proof.cert' "$T/answer.json")" '^[0-9a-f]+$'
verify_file() { # verify_file FILE SCOPE [more options]
  run "$CTL" check --patient "$P" --grantee "$GW" --scope "$2" --purpose TREAT --verify --response-file "$1" "${@:3}"
}
verify_file "$T/answer.json" Condition
expect_eq "file verifies exit" "$RC" 0
expect_match "file verifies" "$OUT" '^permit \(verified at height'
flip() { # flip FIELD: change the last hex digit of .proof.FIELD
  jq --arg f "$1" '.proof[$f] |= (.[:-1] + (if .[-1:] == "0" then "1" else "0" end))' "$T/answer.json" > "$T/bad.json"
}
for f in pair_list smt_proof header cert; do
  flip "$f"
  verify_file "$T/bad.json" Condition
  expect_eq "tampered $f exit" "$RC" 3
  expect_match "tampered $f says" "$OUT" 'verification failed'
done
# A node that lies about the decision is caught: the decision is recomputed.
jq '.decision = "deny" | .reason = "no grant"' "$T/answer.json" > "$T/bad.json"
verify_file "$T/bad.json" Condition
expect_eq "lying decision exit" "$RC" 3
# A proof for another question does not answer this one.
verify_file "$T/answer.json" Observation
expect_eq "other query exit" "$RC" 3
# Stale: demand a height above the proof's.
PH=$(jq -r .proof.height "$T/answer.json")
verify_file "$T/answer.json" Condition --min-height $((PH + 1))
expect_eq "stale exit" "$RC" 3
expect_match "stale says" "$OUT" 'verification failed'

# --- Who may ask.
CHECK_URL="$CONSENT_NODE/v1/grants/check?patient=$P&grantee=$GW&scope=Condition&purpose=TREAT"
expect_eq "no credentials" "$(curl -s -o /dev/null -w '%{http_code}' "$CHECK_URL")" 401
run "$CTL" check --patient "$P" --grantee "$GW" --scope Condition --purpose TREAT "${GW2_KEY[@]}"
expect_eq "other institution exit" "$RC" 2
expect_match "other institution" "$OUT" 'HTTP 403'
"$WALLET" --wallet "$T/stranger.key" keygen >/dev/null
run "$WALLET" --wallet "$T/stranger.key" list --patient "$P"
expect_eq "stranger list exit" "$RC" 1
expect_match "stranger list" "$OUT" 'HTTP 403'
expect_match "patient list" "$("$WALLET" --wallet "$T/patient.key" list)" "$GID2"

# --- Audit: a release recorded by the gateway shows in the patient's audit.
"$CTL" access-record "${GW_KEY[@]}" --grant "$GID2" --scope Condition --purpose TREAT --wait >/dev/null
expect_match "audit" "$("$WALLET" --wallet "$T/patient.key" audit)" "$GW +$GID2 +Condition +TREAT"

finish
