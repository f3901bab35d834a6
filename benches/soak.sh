#!/usr/bin/env bash
# Soak: 200 normal players of a 2.5 Mb/s stream while hostile clients (benches/hostile_clients.py:
# null-marker commands, huge names, unknown-command floods, random-play floods, partial
# messages, slowloris handshakes, garbage) hammer the same node, for a few minutes.
# Prints RSS and log size every 10 s, then the load tool's report of the normal players.
#
#   benches/soak.sh                 # 180 s
#   DURATION=60 benches/soak.sh     # shorter
#
# Everything on 127.0.0.1; every loop is bounded by DURATION. Server on CPU 0, clients on CPU 1.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/bench
mkdir -p "$OUT"
DURATION=${DURATION:-180}
PORT=${PORT:-19365}
HTTP=${HTTP:-19366}
cargo build --release --bin ringcast --bin ringcast-load

LOG="$OUT/soak-ringcast.log"
RINGCAST_RTMP__LISTEN=127.0.0.1:$PORT RINGCAST_HTTP__LISTEN=127.0.0.1:$HTTP \
  RINGCAST_LOG__LEVEL=info taskset -c 0 target/release/ringcast 2>"$LOG" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; kill $(jobs -p) 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  curl -sf "127.0.0.1:$HTTP/readyz" >/dev/null && break
  sleep 0.1
done

rss() { awk '/VmRSS/ {print $2}' "/proc/$SERVER/status"; }
echo "start: RSS $(rss) KiB"
taskset -c 1 target/release/ringcast-load --url "rtmp://127.0.0.1:$PORT/live/soak" \
  --players 200 --ramp 50 --duration "$DURATION" --bitrate 2500 --fps 30 --gop 60 \
  --server-pid "$SERVER" --label soak --json "$OUT/soak.json" >"$OUT/soak-load.txt" &
LOAD=$!
sleep 5
taskset -c 1 python3 benches/hostile_clients.py 127.0.0.1 "$PORT" "$((DURATION - 10))" 8 \
  >"$OUT/soak-hostile.txt" &
HOSTILE=$!

printf '%6s %10s %12s\n' "t (s)" "RSS (KiB)" "log (bytes)"
for t in $(seq 10 10 "$DURATION"); do
  sleep 10
  kill -0 "$SERVER" 2>/dev/null || { echo "ringcast died"; exit 1; }
  printf '%6s %10s %12s\n' "$t" "$(rss)" "$(stat -c %s "$LOG")"
done
wait "$HOSTILE" || true
wait "$LOAD" || true
cat "$OUT/soak-hostile.txt"
echo "metrics:"
curl -s "127.0.0.1:$HTTP/metrics" | grep -E '^ringcast_(log_lines_suppressed_total|streams_waiting|players) '
cat "$OUT/soak-load.txt"
