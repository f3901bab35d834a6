#!/usr/bin/env bash
# ringcast vs nginx-rtmp, same machine, same run, same load tool.
#
#   benches/compare.sh            # full run (about 10 minutes on 2 cores)
#   QUICK=1 benches/compare.sh    # short steps, for a smoke check
#
# Server pinned to CPU 0, load tool to CPU 1 (taskset). Both servers use chunk size 4096.
# Results: target/bench/*.json (one per run) and target/bench/summary.md (tables + ratios),
# which BENCHMARKS.md quotes. Installs nginx + libnginx-mod-rtmp when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=target/bench
mkdir -p "$OUT"
rm -f "$OUT"/*.json
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
QUICK=${QUICK:-0}
STEP_SECONDS=${STEP_SECONDS:-$([ "$QUICK" = 1 ] && echo 6 || echo 15)}
FANOUT_STEPS=${FANOUT_STEPS:-$([ "$QUICK" = 1 ] && echo "250 1000" || echo "1000 2000 2500 3000 3500 4000 5000 6000 8000 10000")}
NGINX_PORT=${NGINX_PORT:-19361}
RINGCAST_PORT=${RINGCAST_PORT:-19362}

if [ ! -e /usr/lib/nginx/modules/ngx_rtmp_module.so ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q nginx libnginx-mod-rtmp
fi
cargo build --release --bin ringcast --bin ringcast-load
LOAD=target/release/ringcast-load

NGINX_DIR=$(mktemp -d)
cleanup() {
  [ -f "$NGINX_DIR/nginx.pid" ] && kill "$(cat "$NGINX_DIR/nginx.pid")" 2>/dev/null || true
  pkill -f "ringcast.*--config $OUT/ringcast.toml" 2>/dev/null || true
  rm -rf "$NGINX_DIR"
}
trap cleanup EXIT

start_nginx() {
  cat > "$NGINX_DIR/nginx.conf" <<EOF
daemon on;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $NGINX_DIR/nginx.pid;
error_log $NGINX_DIR/error.log warn;
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
events { worker_connections 20000; }
rtmp {
  server {
    listen 127.0.0.1:$NGINX_PORT;
    chunk_size 4096;
    application live { live on; record off; wait_key on; }
  }
}
EOF
  taskset -c "$SERVER_CPU" nginx -c "$NGINX_DIR/nginx.conf" -p "$NGINX_DIR"
  sleep 0.5
  # The RTMP work happens in the single worker, a child of the master.
  SERVER_PID=$(pgrep -P "$(cat "$NGINX_DIR/nginx.pid")" | head -1)
  SERVER_URL=rtmp://127.0.0.1:$NGINX_PORT/live
}

stop_nginx() {
  kill "$(cat "$NGINX_DIR/nginx.pid")" 2>/dev/null || true
  sleep 1
}

start_ringcast() { # [merge_write_ms]
  cat > "$OUT/ringcast.toml" <<EOF
[rtmp]
listen = "127.0.0.1:$RINGCAST_PORT"
chunk_size = 4096
max_connections = 20000
max_connections_per_ip = 0
merge_write_ms = ${1:-100}
[log]
level = "warn"
EOF
  taskset -c "$SERVER_CPU" target/release/ringcast --config "$OUT/ringcast.toml" 2>"$OUT/ringcast.log" &
  SERVER_PID=$!
  sleep 0.5
  SERVER_URL=rtmp://127.0.0.1:$RINGCAST_PORT/live
}

# ringcast with write merging off: every frame written at once, as nginx-rtmp does.
start_nomerge() { start_ringcast 0; }
stop_nomerge() { stop_ringcast; }

stop_ringcast() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
}

load() { # name, then ringcast-load arguments
  local name=$1; shift
  taskset -c "$LOAD_CPU" "$LOAD" --server-pid "$SERVER_PID" --label "$name" --json "$OUT/$name.json" "$@" \
    | tee "$OUT/$name.txt"
}

for server in nginx ringcast nomerge; do
  echo "######## $server"
  # 1. Fan-out: one 2.5 Mb/s stream, N players; stop after the first step with players behind.
  for n in $FANOUT_STEPS; do
    start_$server
    load "$server-fanout-$n" --url "$SERVER_URL/fan" --players "$n" --ramp 1000 \
      --duration "$STEP_SECONDS" --bitrate 2500 --fps 30 --gop 60
    stop_$server
    behind=$(python3 -c "import json;print(json.load(open('$OUT/$server-fanout-$n.json'))['players_behind'])")
    [ "$behind" = 0 ] || break
  done
  # 3 + 4. Delay and time to first frame at 100 players (late joiners, ramped).
  start_$server
  load "$server-delay-100" --url "$SERVER_URL/delay" --players 100 --ramp 20 \
    --duration "$STEP_SECONDS" --bitrate 2500 --fps 30 --gop 60
  stop_$server
  [ "$server" = nomerge ] && continue
  # 2. Many streams: 500 publishers at 500 kb/s, one player each.
  start_$server
  load "$server-streams-500" --url "$SERVER_URL/many" --streams 500 --players 1 --ramp 500 \
    --duration "$STEP_SECONDS" --lead 5 --bitrate 436 --audio-kbps 64 --fps 25 --gop 50
  stop_$server
  # 5. Memory: 2000 idle players (no publisher), then 2000 active ones.
  start_$server
  load "$server-idle-2000" --url "$SERVER_URL/idle" --publish none --players 2000 --ramp 1000 \
    --duration 5
  stop_$server
done

python3 benches/summarize.py "$OUT" > "$OUT/summary.md"
cat "$OUT/summary.md"
