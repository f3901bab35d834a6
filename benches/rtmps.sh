#!/usr/bin/env bash
# RTMPS against plain RTMP: one 2.5 Mb/s stream to 500 players, on one ringcast that has both
# listeners, a fresh server per run. Reports the server's CPU seconds per delivered GB (the load
# tool's --server-pid), RSS per player, delay and time to first frame (which includes the TLS
# handshake for RTMPS players).
#
#   benches/rtmps.sh                       # plain, then RTMPS (about 2 minutes)
#   BASE_BIN=/path/to/ringcast benches/rtmps.sh
#                                          # also plain RTMP on another build (e.g. main), to
#                                          # see that plain RTMP did not get slower
#
# Everything on 127.0.0.1. Server pinned to CPU 0, load tool to CPU 1 (taskset), as in the
# other benches. The certificate is self-signed (openssl, installed when missing); the load
# tool runs with --insecure. Results: target/bench/rtmps-*.json and a table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=target/bench
mkdir -p "$OUT"
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PLAYERS=${PLAYERS:-500}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-20}
PORT=${PORT:-19371}
TLS_PORT=${TLS_PORT:-19372}
HTTP=${HTTP:-19373}

if ! command -v openssl >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q openssl
fi
cargo build --release --bin ringcast --bin ringcast-load

CERTS=$(mktemp -d)
SERVER=""
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
  rm -rf "$CERTS"
}
trap cleanup EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$CERTS/key.pem" -out "$CERTS/cert.pem" 2>/dev/null

start() { # binary, with_tls
  local env=(RINGCAST_RTMP__LISTEN=127.0.0.1:$PORT RINGCAST_HTTP__LISTEN=127.0.0.1:$HTTP
    RINGCAST_RTMP__MAX_CONNECTIONS_PER_IP=0 RINGCAST_LOG__LEVEL=warn)
  if [ "$2" = 1 ]; then
    env+=(RINGCAST_RTMP__TLS_LISTEN=127.0.0.1:$TLS_PORT
      RINGCAST_RTMP__TLS_CERT="$CERTS/cert.pem" RINGCAST_RTMP__TLS_KEY="$CERTS/key.pem")
  fi
  env "${env[@]}" taskset -c "$SERVER_CPU" "$1" 2>"$OUT/rtmps-server.log" &
  SERVER=$!
  for _ in $(seq 1 50); do
    curl -sf "127.0.0.1:$HTTP/readyz" >/dev/null && return
    sleep 0.1
  done
  echo "server did not start"; cat "$OUT/rtmps-server.log"; exit 1
}

stop() {
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  SERVER=""
}

run() { # label, binary, with_tls, url
  start "$2" "$3"
  taskset -c "$LOAD_CPU" target/release/ringcast-load --url "$4" --insecure \
    --players "$PLAYERS" --ramp 250 --duration "$SECONDS_PER_RUN" --bitrate 2500 --fps 30 \
    --gop 60 --server-pid "$SERVER" --label "$1" --json "$OUT/rtmps-$1.json" \
    | tee "$OUT/rtmps-$1.txt"
  stop
}

labels=()
if [ -n "${BASE_BIN:-}" ]; then
  run base-plain "$BASE_BIN" 0 "rtmp://127.0.0.1:$PORT/live/fan"
  labels+=(base-plain)
fi
run plain target/release/ringcast 1 "rtmp://127.0.0.1:$PORT/live/fan"
run tls target/release/ringcast 1 "rtmps://127.0.0.1:$TLS_PORT/live/fan"
labels+=(plain tls)

python3 - "$OUT" "$PLAYERS" "${labels[@]}" <<'EOF'
import json, sys
out, players, labels = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rows = {l: json.load(open(f"{out}/rtmps-{l}.json")) for l in labels}
print(f"| run | egress Gb/s | server CPU s/GB | server cores | RSS KiB/player | delay p50/p99 ms | first frame p50/p99 ms | behind | load tool cores |")
print("|---|---|---|---|---|---|---|---|---|")
for l, r in rows.items():
    s = r["server"]
    rss = (s["rss_end_kib"] - s["rss_start_kib"]) / max(1, r["players_connected"])
    d, t = r["delay_ms"] or {}, r["ttff_ms"] or {}
    print(f"| {l} | {r['egress_gbps']:.3f} | {s['cpu_seconds_per_gb']:.3f} | {s['cpu_cores']:.2f} "
          f"| {rss:.1f} | {d.get('p50', 0):.1f} / {d.get('p99', 0):.1f} "
          f"| {t.get('p50', 0):.1f} / {t.get('p99', 0):.1f} | {r['players_behind']} | {r['load_tool_cores']:.2f} |")
if "plain" in rows and "tls" in rows:
    p, t = rows["plain"]["server"]["cpu_seconds_per_gb"], rows["tls"]["server"]["cpu_seconds_per_gb"]
    print(f"\nRTMPS costs {t / p:.2f}x the server CPU of plain RTMP per delivered GB")
if "base-plain" in rows and "plain" in rows:
    b, p = rows["base-plain"]["server"]["cpu_seconds_per_gb"], rows["plain"]["server"]["cpu_seconds_per_gb"]
    print(f"plain RTMP on this build: {p / b:.2f}x the CPU per GB of the base build")
EOF
