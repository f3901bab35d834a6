#!/usr/bin/env bash
# Publish-to-play delay at 100 players: direct on an origin, through one edge, and through a
# tier-2 edge that pulls through that edge (two hops).
#
#   benches/edge_delay.sh        # writes target/bench/edge-delay-*.json and prints the reports
#   BUDGET=0 benches/edge_delay.sh   # every node with rtmp.merge_write_ms = 0 (default: the
#                                    # embedded default budget)
#
# One origin, one tier-1 edge and one tier-2 edge (release build) on 127.0.0.1, clustered with
# a throwaway secret; the load tool publishes to the origin and plays from each node.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/bench
mkdir -p "$OUT"
cargo build --release --bin ringcast --bin ringcast-load
SECRET=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
STEP_SECONDS=${STEP_SECONDS:-15}
start() { # id role rtmp http gossip [seed [tier]]
  RINGCAST_NODE__ID=$1 RINGCAST_NODE__ROLE=$2 RINGCAST_RTMP__LISTEN=127.0.0.1:$3 \
  RINGCAST_HTTP__LISTEN=127.0.0.1:$4 RINGCAST_CLUSTER__GOSSIP_LISTEN=127.0.0.1:$5 \
  RINGCAST_CLUSTER__SECRET=$SECRET RINGCAST_CLUSTER__SEEDS=${6:-} RINGCAST_EDGE__TIER=${7:-1} \
  RINGCAST_LOG__LEVEL=warn env ${BUDGET:+RINGCAST_RTMP__MERGE_WRITE_MS=$BUDGET} \
  taskset -c 0 target/release/ringcast 2>>"$OUT/edge-delay.log" &
}
start origin-0 origin 19371 19381 19391
ORIGIN=$!
start edge-0 edge 19372 19382 19392 127.0.0.1:19391
EDGE=$!
start edge-1 edge 19373 19383 19393 127.0.0.1:19391 2
TIER2=$!
# Each node drains on SIGTERM; wait for them, so that a next run finds the ports free.
trap 'kill $ORIGIN $EDGE $TIER2 2>/dev/null || true; wait $ORIGIN $EDGE $TIER2 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  nodes=$(curl -sf 127.0.0.1:19383/api/v1/cluster/nodes || true)
  echo "$nodes" | grep -q origin-0 && echo "$nodes" | grep -q edge-0 && break
  sleep 0.2
done
for path in direct edge tier2; do
  case $path in direct) port=19371 ;; edge) port=19372 ;; tier2) port=19373 ;; esac
  taskset -c 1 target/release/ringcast-load --url "rtmp://127.0.0.1:$port/live/d-$path" \
    --publish-url "rtmp://127.0.0.1:19371/live/d-$path" --players 100 --ramp 20 \
    --duration "$STEP_SECONDS" --bitrate 2500 --fps 30 --gop 60 --label "edge-delay-$path${BUDGET:+-$BUDGET}" \
    --json "$OUT/edge-delay-$path${BUDGET:+-$BUDGET}.json"
done
