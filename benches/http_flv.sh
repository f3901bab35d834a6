#!/usr/bin/env bash
# HTTP-FLV against RTMP on the same ringcast, same run, same load tool.
#
#   benches/http_flv.sh        # about 2 minutes on 2 cores
#
# Steps, each against a fresh server (pinned to CPU 0; the load tool on CPU 1):
#   fanout  one 2.5 Mb/s stream (30 fps, GOP 2 s) to $PLAYERS players (default 2000), over
#           RTMP, then over HTTP-FLV: server CPU seconds per delivered GB, delay, first frame
#   idle    $PLAYERS players of a stream nobody publishes, over RTMP, then HTTP-FLV: the
#           server's RSS per connected player
# Reports: target/bench/flv-*.json and a summary table with the HTTP-FLV / RTMP ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/bench
mkdir -p "$OUT"
PLAYERS=${PLAYERS:-2000}
STEP_SECONDS=${STEP_SECONDS:-15}
RTMP_PORT=${RTMP_PORT:-19462}
FLV_PORT=${FLV_PORT:-19463}
HTTP_PORT=${HTTP_PORT:-19464}
cargo build --release --bin ringcast --bin ringcast-load
LOAD=target/release/ringcast-load
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true; }
trap cleanup EXIT

start() {
  cat >"$OUT/flv-ringcast.toml" <<EOF
[rtmp]
listen = "127.0.0.1:$RTMP_PORT"
chunk_size = 4096
max_connections = 20000
max_connections_per_ip = 0
[http]
listen = "127.0.0.1:$HTTP_PORT"
[flv]
listen = "127.0.0.1:$FLV_PORT"
[log]
level = "warn"
EOF
  taskset -c 0 target/release/ringcast --config "$OUT/flv-ringcast.toml" 2>"$OUT/flv-ringcast.log" &
  SERVER_PID=$!
  for _ in $(seq 1 50); do
    curl -sf "127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
}
stop() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
load() { # name, then ringcast-load arguments
  local name=$1
  shift
  taskset -c 1 "$LOAD" --server-pid "$SERVER_PID" --label "$name" --json "$OUT/$name.json" "$@" |
    tee "$OUT/$name.txt"
}

RTMP=rtmp://127.0.0.1:$RTMP_PORT/live
FLV=http://127.0.0.1:$FLV_PORT/live
for proto in rtmp flv; do
  extra=()
  [ "$proto" = flv ] && extra=(--flv-url "$FLV/fan")
  start
  load "flv-fanout-$proto" --url "$RTMP/fan" "${extra[@]}" --players "$PLAYERS" --ramp 1000 \
    --duration "$STEP_SECONDS" --bitrate 2500 --fps 30 --gop 60
  stop
done
for proto in rtmp flv; do
  extra=()
  [ "$proto" = flv ] && extra=(--flv-url "$FLV/idle")
  start
  load "flv-idle-$proto" --url "$RTMP/idle" "${extra[@]}" --publish none --players "$PLAYERS" \
    --ramp 1000 --duration 5
  stop
done

python3 - "$OUT" "$PLAYERS" <<'PY'
import json, sys
out, players = sys.argv[1], int(sys.argv[2])
r = {name: json.load(open(f"{out}/flv-{name}.json")) for name in
     ["fanout-rtmp", "fanout-flv", "idle-rtmp", "idle-flv"]}
def row(name, label):
    x = r[name]
    s = x["server"]
    return (f"| {label} | {x['players_connected']} | {x['players_behind']} | "
            f"{s['cpu_seconds_per_gb']:.3f} | {x['egress_gbps']:.2f} | "
            f"{x['delay_ms']['p50']:.1f} / {x['delay_ms']['p99']:.1f} | "
            f"{x['ttff_ms']['p50']:.1f} |")
print(f"\n| {players} players, one 2.5 Mb/s stream | connected | behind | server cpu-s/GB | egress Gb/s | delay p50 / p99 ms | first frame p50 ms |")
print("|---|---|---|---|---|---|---|")
print(row("fanout-rtmp", "RTMP"))
print(row("fanout-flv", "HTTP-FLV"))
a = r["fanout-rtmp"]["server"]["cpu_seconds_per_gb"]
b = r["fanout-flv"]["server"]["cpu_seconds_per_gb"]
print(f"\nHTTP-FLV / RTMP CPU per GB: {b / a:.2f}")
for proto in ["rtmp", "flv"]:
    x = r[f"idle-{proto}"]
    s = x["server"]
    per = (s["rss_end_kib"] - s["rss_start_kib"]) / max(1, x["players_connected"])
    print(f"idle {proto}: {x['players_connected']} players, RSS {s['rss_start_kib']} -> {s['rss_end_kib']} KiB, {per:.1f} KiB a player")
PY
