# Shared helpers for the end-to-end tests: real processes on 127.0.0.1.
# Sourced by tests/e2e_*.sh with the build directory as $1. Waits poll a
# condition against a deadline; nothing sleeps in place of a condition.
set -euo pipefail
BUILD=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
CTL=$BUILD/consentctl
WALLET=$BUILD/consent-wallet
NODE=$BUILD/consentd
T=$(mktemp -d /tmp/consent-e2e.XXXXXX)
declare -A PIDS=()
FAILS=0
PASSES=0

cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ $rc -ne 0 ] || [ $FAILS -ne 0 ]; then
    for f in "$T"/net/node*/consentd.log; do
      [ -f "$f" ] && { echo "--- tail of $f"; tail -n 30 "$f"; }
    done
  fi
  rm -rf "$T"
  [ -n "${PORT_BASE:-}" ] && rm -rf "${PORT_LOCKS:?}/$PORT_BASE"
}
trap cleanup EXIT

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A free port base: the API of node i listens on BASE+i, its p2p on
# BASE+100+i. Bases are 200 apart, below the ephemeral range (32768+) so no
# outgoing connection holds them, and reserved with an atomic mkdir so two
# tests running at once never pick the same one.
PORT_LOCKS=/tmp/consent-e2e-ports
free_port_base() {
  local base
  mkdir -p "$PORT_LOCKS"
  for _ in $(seq 1 200); do
    base=$(( 20000 + (RANDOM % 60) * 200 ))
    if mkdir "$PORT_LOCKS/$base" 2>/dev/null; then
      if ! port_open "$base" && ! port_open $((base + 100)); then
        echo $$ > "$PORT_LOCKS/$base/owner"
        echo "$base"; return
      fi
      rm -rf "${PORT_LOCKS:?}/$base"
    fi
  done
  echo "no free port base" >&2; return 1
}

fail() { echo "FAIL: $*" >&2; FAILS=$((FAILS + 1)); }
pass() { PASSES=$((PASSES + 1)); }
expect_eq() { # expect_eq WHAT GOT WANT
  if [ "$2" == "$3" ]; then pass; else fail "$1: got '$2', want '$3'"; fi
}
expect_match() { # expect_match WHAT GOT REGEX
  if [[ "$2" =~ $3 ]]; then pass; else fail "$1: got '$2', want /$3/"; fi
}

# wait_for SECONDS CMD...: polls CMD until it succeeds or the deadline passes.
wait_for() {
  local secs=$1; shift
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.05
  done
}

start_node() { # start_node I
  local i=$1
  "$NODE" --config "$T/net/node$i/config.json" 2>>"$T/net/node$i/consentd.log" &
  PIDS[$i]=$!
  wait_for 30 curl -fsS "$(api_url "$i")/v1/status" || { fail "node$i did not start"; return 1; }
}

kill9_node() { # kill9_node I
  local i=$1
  kill -9 "${PIDS[$i]}" 2>/dev/null || true
  wait "${PIDS[$i]}" 2>/dev/null || true
  unset "PIDS[$i]"
}

api_url() { echo "http://127.0.0.1:$((PORT_BASE + $1))"; }
height() { curl -fsS "$(api_url "${1:-0}")/v1/status" | jq -r .height; }

finish() {
  echo "$PASSES passed, $FAILS failed"
  [ $FAILS -eq 0 ]
}
