#!/usr/bin/env bash
# Four validators as real processes on 127.0.0.1 under a steady load of
# signed grants: kill -9 the primary (a view change follows and commits go
# on), compact its store and restart it (it catches up byte for byte), kill
# -9 random validators
# several times; at the end no acknowledged-and-committed grant is lost and
# every chain is identical.
source "$(dirname "$0")/lib/e2e.sh"

N=4
PORT_BASE=$(free_port_base)
"$CTL" testnet --validators $N --out "$T/net" --port-base "$PORT_BASE" --block-interval-ms 50 >/dev/null
for ((i = 0; i < N; i++)); do start_node $i; done
export CONSENT_PASSPHRASE="load passphrase"
GW=$(jq -r '[.institutions[] | select(.roles | index("grantee"))][0].key' "$T/net/genesis.json")

status() { curl -fsS --max-time 2 "$(api_url "$1")/v1/status"; }
live_nodes() { for i in "${!PIDS[@]}"; do echo "$i"; done; }

# Steady load: patients grant in a loop against a random live node and log
# every grant the node reported committed (--wait).
for p in 0 1 2; do "$WALLET" --wallet "$T/p$p.key" keygen >/dev/null; done
: > "$T/accepted"
load() {
  local p=$1 k=0
  while [ ! -f "$T/stop" ]; do
    local i=$((RANDOM % N))
    port_open $((PORT_BASE + i)) || continue
    if id=$("$WALLET" --wallet "$T/p$p.key" --node "$(api_url $i)" grant --grantee "$GW" \
            --scope Observation --purpose TREAT --days $((1 + k % 300)) --wait 2>/dev/null); then
      echo "$id" >> "$T/accepted"
    fi
    k=$((k + 1))
  done
}
LOADERS=()
for p in 0 1 2; do load $p & LOADERS+=($!); done

committed_count() { # committed_count NODE: how many of the committed grants it has
  local n=0
  while read -r id; do
    [ "$(curl -fsS --max-time 2 "$(api_url "$1")/v1/txs/$id" | jq -r .status)" == committed ] && n=$((n + 1))
  done < "$T/accepted"
  echo $n
}
height_above() { [ "$(height "$1")" -gt "$2" ]; }

# 1. The network commits under load.
wait_for 60 height_above 0 3 && pass || fail "no commits under load"

# 2. kill -9 the primary: a view change happens and commits continue.
P=$(status 0 | jq -r .primary)
V=$(status 0 | jq -r .view)
kill9_node "$P"
OTHER=$(( (P + 1) % N ))
T0=$SECONDS
view_moved() { [ "$(status "$OTHER" | jq -r .view)" -gt "$V" ]; }
wait_for 90 view_moved && pass || fail "no view change after the primary died"
echo "view change observed after $((SECONDS - T0)) s"
H=$(height $OTHER)
wait_for 90 height_above $OTHER $((H + 2)) && pass || fail "no commits after the view change"

# 3. Compact its store (as an operator would at a maintenance window; a
# running node's store is refused, its lock held), restart it: it catches up.
if "$CTL" compact --data "$T/net/node$OTHER/data" --genesis "$T/net/genesis.json" 2>"$T/compact.err"; then
  fail "compact opened a running node's store"
else
  grep -q "still running" "$T/compact.err" && pass || fail "compact of a running node: $(cat "$T/compact.err")"
fi
"$CTL" testnet --validators 1 --out "$T/other" --chain-id other-chain >/dev/null
if "$CTL" compact --data "$T/net/node$P/data" --genesis "$T/other/genesis.json" 2>"$T/compact.err"; then
  fail "compact opened a store under another genesis"
else
  grep -q "still running" "$T/compact.err" && fail "compact blamed a running node for a wrong genesis" || pass
fi
"$CTL" compact --data "$T/net/node$P/data" --genesis "$T/net/genesis.json" | grep -q "^compacted: " &&
  pass || fail "compact of the stopped primary's store failed"
start_node "$P"
caught_up() { [ "$(height "$P")" -ge "$(height $OTHER)" ]; }
wait_for 120 caught_up && pass || fail "restarted primary did not catch up"

# 4. kill -9 random validators several times during the load.
for round in 1 2 3; do
  VICTIM=$((RANDOM % N))
  kill9_node $VICTIM
  ALIVE=$(( (VICTIM + 1) % N ))
  H=$(height $ALIVE)
  wait_for 90 height_above $ALIVE $((H + 1)) && pass || fail "round $round: no progress with node$VICTIM down"
  start_node $VICTIM
done

# 5. Stop the load, let everyone converge, compare.
touch "$T/stop"
wait "${LOADERS[@]}" 2>/dev/null || true
TOP=0
for ((i = 0; i < N; i++)); do h=$(height $i); [ "$h" -gt "$TOP" ] && TOP=$h; done
for ((i = 0; i < N; i++)); do
  at_top() { [ "$(height "$1")" -ge "$TOP" ]; }
  wait_for 120 at_top $i && pass || fail "node$i did not reach height $TOP"
done
for ((h = 1; h <= TOP; h++)); do
  ref=$(curl -fsS "$(api_url 0)/v1/blocks/$h" | jq -r .hash)
  for ((i = 1; i < N; i++)); do
    got=$(curl -fsS "$(api_url $i)/v1/blocks/$h" | jq -r .hash)
    [ "$got" == "$ref" ] || { fail "node$i block $h differs"; break 2; }
  done
done
pass
ACC=$(wc -l < "$T/accepted")
echo "grants committed under load: $ACC, chain height: $TOP"
[ "$ACC" -gt 0 ] && pass || fail "load made no grants"
for ((i = 0; i < N; i++)); do
  all_committed() { [ "$(committed_count "$1")" -eq "$ACC" ]; }
  wait_for 60 all_committed $i && pass || fail "node$i: has $(committed_count $i) of $ACC committed grants"
done

finish
