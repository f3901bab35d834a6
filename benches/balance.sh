#!/usr/bin/env bash
# The balancer with real processes: one origin that balances its players (edge.play =
# "balance"; origins are never picked, so it only sends players on) and three edges of
# capacities 1:1:2 (edge.max_players 600, 600, 1200), all on 127.0.0.1. The load tool
# publishes to the origin and its players play from the origin, following its RTMP 302s.
#
#   benches/balance.sh        # prints each step's report and where the players landed
#
# Steps (each with its own stream names, so they do not share state):
#   ramp    10 streams x 200 players, 200 players/s
#   burst   10 streams x 50 players, all within one second (500/s)
#   single  1 stream x 50 players
#   ttff    100 players: time to first frame through the balancer, and straight on an edge
# Nodes on CPU 0, the load tool on CPU 1. Needs nothing but the two binaries and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/bench
mkdir -p "$OUT"
cargo build --release --bin ringcast --bin ringcast-load
LOAD=target/release/ringcast-load
SECRET=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
STEP_SECONDS=${STEP_SECONDS:-20}
PIDS=()
start() { # id role rtmp http gossip max_players [extra env...]
  local id=$1 role=$2 rtmp=$3 http=$4 gossip=$5 cap=$6
  shift 6
  env RINGCAST_NODE__ID="$id" RINGCAST_NODE__ROLE="$role" RINGCAST_RTMP__LISTEN=127.0.0.1:$rtmp \
    RINGCAST_HTTP__LISTEN=127.0.0.1:$http RINGCAST_CLUSTER__GOSSIP_LISTEN=127.0.0.1:$gossip \
    RINGCAST_CLUSTER__SECRET="$SECRET" RINGCAST_CLUSTER__SEEDS=127.0.0.1:19491 \
    RINGCAST_EDGE__MAX_PLAYERS="$cap" RINGCAST_RTMP__MAX_CONNECTIONS_PER_IP=0 \
    RINGCAST_LOG__LEVEL=warn "$@" taskset -c 0 target/release/ringcast 2>>"$OUT/balance.log" &
  PIDS+=($!)
}
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
: >"$OUT/balance.log"
start origin-0 origin 19471 19481 19491 0 RINGCAST_EDGE__PLAY=balance
start edge-0 edge 19472 19482 19492 600
start edge-1 edge 19473 19483 19493 600
start edge-2 edge 19474 19484 19494 1200
for _ in $(seq 1 100); do
  n=$(curl -sf 127.0.0.1:19481/api/v1/cluster/nodes | grep -o '"ready":true' | wc -l || true)
  [ "$n" -ge 4 ] && break
  sleep 0.2
done

# Players and streams each edge carries, from the edges' own APIs.
edges_report() { # prefix
  python3 - "$1" <<'PY'
import json, sys, urllib.request
prefix = sys.argv[1]
caps = {"edge-0": 600, "edge-1": 600, "edge-2": 1200}
ports = {"edge-0": 19482, "edge-1": 19483, "edge-2": 19484}
per_edge, per_stream = {}, {}
for edge, port in ports.items():
    body = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/streams"))
    for s in body["streams"]:
        if not s["key"].startswith(prefix):
            continue
        per_edge[edge] = per_edge.get(edge, 0) + s["players"]
        if s["players"]:
            per_stream.setdefault(s["key"], []).append(edge)
total = sum(per_edge.values())
for edge in ports:
    share = caps[edge] / sum(caps.values()) * total
    n = per_edge.get(edge, 0)
    dev = (n - share) / share * 100 if share else 0
    print(f"  {edge}: {n} players (capacity {caps[edge]}, share {share:.0f}, {dev:+.1f} %)")
spread = sorted(len(v) for v in per_stream.values())
print(f"  edges carrying each stream: {spread}")
PY
}

step() { # label streams players ramp seconds [extra load args]
  local label=$1 streams=$2 players=$3 ramp=$4 seconds=$5
  shift 5
  taskset -c 1 "$LOAD" --url "rtmp://127.0.0.1:19471/live/$label" \
    --publish-url "rtmp://127.0.0.1:19471/live/$label" --streams "$streams" \
    --players "$players" --ramp "$ramp" --duration "$seconds" --lead 3 --bitrate 300 --fps 25 \
    --gop 50 --follow-redirects --label "balance-$label" --json "$OUT/balance-$label.json" "$@" &
  local load=$!
  # Look at the edges while the players are still connected.
  sleep $((seconds - 2))
  echo "== $label: where the players are"
  edges_report "live/$label"
  wait $load
}

step ramp 10 200 200 "$STEP_SECONDS"
step burst 10 50 500 12
step single 1 50 50 10
echo "== ttff through the balancer (origin's RTMP 302 to an edge)"
taskset -c 1 "$LOAD" --url rtmp://127.0.0.1:19471/live/ttff --players 100 --ramp 50 \
  --duration 8 --lead 3 --bitrate 300 --fps 25 --gop 50 --follow-redirects --label ttff-balanced
echo "== ttff straight on an edge"
taskset -c 1 "$LOAD" --url rtmp://127.0.0.1:19474/live/ttff2 \
  --publish-url rtmp://127.0.0.1:19471/live/ttff2 --players 100 --ramp 50 --duration 8 \
  --lead 3 --bitrate 300 --fps 25 --gop 50 --label ttff-direct
