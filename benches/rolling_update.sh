#!/usr/bin/env bash
# A rolling update with real processes: 3 origins and 2 edges on 127.0.0.1; the load tool
# publishes 20 streams through edge-0 and plays each with 5 players on edge-1 while the
# origins are restarted one after another. Twice: with SIGTERM (the node drains: the streams
# it holds move make-before-break, then it exits) and with SIGKILL (a crash: the edges fail
# over). Each restart waits for the old process to exit and for the new one to be back in the
# ring before the next.
#
#   benches/rolling_update.sh        # prints both reports: longest gap per player, frames
#                                    # missing / repeated, timestamps going back
#
# Nodes on CPU 0, the load tool on CPU 1. Needs the two binaries, curl and python3.
# Gaps are measured frame by frame, so nodes write each frame at once (BUDGET=0) unless
# BUDGET sets rtmp.merge_write_ms.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/bench
mkdir -p "$OUT"
cargo build --release --bin ringcast --bin ringcast-load
LOAD=target/release/ringcast-load
SECRET=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
STREAMS=${STREAMS:-20}
PLAYERS=${PLAYERS:-5}
declare -A PID
start() { # id role index
  local id=$1 role=$2 i=$3
  env RINGCAST_NODE__ID="$id" RINGCAST_NODE__ROLE="$role" \
    RINGCAST_RTMP__LISTEN=127.0.0.1:$((19571 + i)) RINGCAST_HTTP__LISTEN=127.0.0.1:$((19581 + i)) \
    RINGCAST_CLUSTER__GOSSIP_LISTEN=127.0.0.1:$((19591 + i)) RINGCAST_CLUSTER__SECRET="$SECRET" \
    RINGCAST_CLUSTER__SEEDS=127.0.0.1:19591,127.0.0.1:19592 RINGCAST_RTMP__MAX_CONNECTIONS_PER_IP=0 \
    RINGCAST_RTMP__MERGE_WRITE_MS="${BUDGET:-0}" \
    RINGCAST_LOG__LEVEL=info taskset -c 0 target/release/ringcast 2>>"$OUT/rolling-$id.log" &
  PID[$id]=$!
}
stop_all() { kill -9 "${PID[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop_all EXIT
# Live, ready, in-ring origins as edge-1 sees them (one per id: the newest generation).
in_ring() {
  curl -sf 127.0.0.1:19585/api/v1/cluster/nodes |
    python3 -c 'import json,sys; print(sum(1 for n in json.load(sys.stdin)["nodes"] if n["in_ring"] and n["live"]))' ||
    echo 0
}
# The generation edge-1 sees live for node $1 ("" if none).
generation() {
  curl -sf 127.0.0.1:19585/api/v1/cluster/nodes |
    python3 -c 'import json,sys; print(" ".join(str(n["generation"]) for n in json.load(sys.stdin)["nodes"] if n["id"]==sys.argv[1] and n["live"]))' "$1" ||
    true
}
# Waits until 3 origins are in the ring and node $1 (if given) is live only in a generation
# other than $2: after a SIGKILL, until gossip has noticed the old process is gone.
wait_ring() { # [id old-generation]
  for _ in $(seq 1 300); do
    if [ "$(in_ring)" -ge 3 ]; then
      [ $# -eq 0 ] && return 0
      local gens
      gens=$(generation "$1")
      [ -n "$gens" ] && [[ " $gens " != *" $2 "* ]] && return 0
    fi
    sleep 0.2
  done
  echo "the ring never got its 3 origins back" >&2
  return 1
}

run() { # signal
  local sig=$1
  stop_all
  rm -f "$OUT"/rolling-*.log
  start origin-0 origin 0
  start origin-1 origin 1
  start origin-2 origin 2
  start edge-0 edge 3
  start edge-1 edge 4
  wait_ring
  local seconds=75
  taskset -c 1 "$LOAD" --publish-url rtmp://127.0.0.1:19574/live/roll-$sig \
    --url rtmp://127.0.0.1:19575/live/roll-$sig --streams "$STREAMS" --players "$PLAYERS" \
    --duration "$seconds" --lead 3 --bitrate 500 --fps 25 --gop 50 --audio-kbps 64 \
    --label "rolling-update-$sig" --json "$OUT/rolling-$sig.json" &
  local load=$!
  sleep 8 # publishers' lead, players joined and steady
  for i in 0 1 2; do
    local id=origin-$i started old
    old=$(generation "$id")
    started=$(date +%s.%N)
    kill "-$sig" "${PID[$id]}"
    wait "${PID[$id]}" 2>/dev/null || true
    local exited
    exited=$(date +%s.%N)
    start "$id" origin "$i"
    wait_ring "$id" "$old"
    awk -v s="$sig" -v id="$id" -v a="$started" -v b="$exited" -v c="$(date +%s.%N)" \
      'BEGIN { printf "%s %s: exited %.1f s after the signal, back in the ring %.1f s later\n", s, id, b - a, c - b }'
  done
  wait $load || true
}

run TERM
run KILL
