#!/usr/bin/env bash
# ringcast, SRS and nginx-rtmp on the same machine, in the same run, with the same load tool
# and the same media, at matched latency settings.
#
#   benches/compare.sh            # full run, about 30 minutes on 2 cores
#   QUICK=1 benches/compare.sh    # one short step of each kind, for a smoke check
#   STEPS="120 fanout" FANOUT_STEPS=1000 SERVERS="ringcast-0 ringcast-100" benches/compare.sh
#   SERVERS="ringcast srs" benches/compare.sh   # a subset
#
# Servers (each pinned to CPU 0, the load tool and rtmpdump on CPU 1):
#   nginx         nginx-rtmp (Debian's libnginx-mod-rtmp): writes every message at once
#   srs           SRS 6 as it comes: merges a player's writes for up to 350 ms (mw_latency)
#   srs-low       SRS with min_latency on, mw_latency 0, mw_msgs 0, tcp_nodelay on
#   ringcast      ringcast's default (rtmp.merge_write_ms from conf/default.toml)
#   ringcast-350  rtmp.merge_write_ms = 350: the same budget as SRS's default
#   ringcast-0    rtmp.merge_write_ms = 0: every frame written at once, as srs-low and nginx
#   ringcast-N    any other budget N (ms); the default run sweeps 0, 100, 200 and 350, and
#                 summarize.py reports the one conf/default.toml names as the default
# SRS is ../shared/peers/srs (see its README) or $SRS; without it, its runs are skipped.
#
# Media: real H.264/AAC FLV files made here with ffmpeg (SRS refuses synthetic NAL units),
# replayed by ringcast-load with an SEI send stamp in every picture (--stamp-flv).
# Steps:
#   120       120 load-tool players of one 1 Mb/s stream
#   rtmpdump  120 rtmpdump players of one 1 Mb/s stream (CPU from /proc, bytes from files),
#             measured for twice the step time: the CPU is small and counted in 10 ms ticks
#   fanout-N  N players of one 2.5 Mb/s stream, N in $FANOUT_STEPS (1000 2000 5000)
#   streams-N N streams of 600 kb/s, one player each, N in $STREAM_STEPS (300 1000 1500)
#   idle      2000 players of a stream nobody publishes: RSS per player
# Results: target/bench/compare/*.json and summary.md (benches/summarize.py), which
# BENCHMARKS.md quotes. Installs nginx, libnginx-mod-rtmp, rtmpdump and ffmpeg when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh

OUT=${OUT:-target/bench/compare}
MEDIA=target/bench/media
mkdir -p "$OUT" "$MEDIA"
rm -f "$OUT"/*.json "$OUT"/*.txt
QUICK=${QUICK:-0}
STEP_SECONDS=${STEP_SECONDS:-$([ "$QUICK" = 1 ] && echo 6 || echo 15)}
FANOUT_STEPS=${FANOUT_STEPS:-$([ "$QUICK" = 1 ] && echo "1000" || echo "1000 2000 5000")}
STREAM_STEPS=${STREAM_STEPS:-$([ "$QUICK" = 1 ] && echo "300" || echo "300 1000 1500")}
SERVERS=${SERVERS:-"nginx srs srs-low ringcast-0 ringcast-100 ringcast-200 ringcast-350"}
# Which kinds of step to run (all by default).
STEPS=${STEPS:-"120 rtmpdump fanout streams idle"}
has_step() { [[ " $STEPS " == *" $1 "* ]]; }
SRS=${SRS:-../shared/peers/srs}
# Another ringcast build to compare with (e.g. the last release), as the ringcast servers.
# (Not RINGCAST_*: ringcast reads every RINGCAST_ variable as configuration.)
RC_BIN=${RC_BIN:-target/release/ringcast}
PORT=${PORT:-19371}
HTTP_PORT=${HTTP_PORT:-19372}

need=()
[ -e /usr/lib/nginx/modules/ngx_rtmp_module.so ] || need+=(nginx libnginx-mod-rtmp)
command -v rtmpdump >/dev/null || need+=(rtmpdump)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
install_missing ${need[@]+"${need[@]}"}
cargo build --release --bin ringcast --bin ringcast-load
LOAD=target/release/ringcast-load

# The media, made once: real H.264 + AAC at the steps' bitrates.
make_media 1m.flv 640x360 30 60 936
make_media 2m5.flv 1280x720 30 60 2436
make_media 600k.flv 640x360 25 50 536

WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  pkill -f "rtmpdump -q -r rtmp://127.0.0.1:$PORT" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

start_nginx() {
  cat >"$WORK/nginx.conf" <<EOF
daemon on;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
events { worker_connections 20000; }
rtmp {
  server {
    listen 127.0.0.1:$PORT;
    chunk_size 4096;
    application live { live on; record off; wait_key on; }
  }
}
EOF
  taskset -c 0 nginx -c "$WORK/nginx.conf" -p "$WORK"
  wait_port "$PORT"
  # The RTMP work happens in the single worker, a child of the master.
  SERVER_PID=$(pgrep -P "$(cat "$WORK/nginx.pid")" | head -1)
}
stop_nginx() {
  kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  rm -f "$WORK/nginx.pid"
  sleep 1
  SERVER_PID=""
}

start_srs_with() { # vhost body
  srs_conf "$WORK/srs.conf" "$PORT" "$WORK/srs.pid" "$1"
  ulimit -n 65536 2>/dev/null || true
  taskset -c 0 "$SRS" -c "$WORK/srs.conf" >"$WORK/srs.log" 2>&1 &
  SERVER_PID=$!
  wait_port "$PORT" "$WORK/srs.log"
}
start_srs() { start_srs_with ""; }
start_srs-low() { start_srs_with "$SRS_LOW_VHOST"; }
stop_srs() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
stop_srs-low() { stop_srs; }

start_ringcast_with() { # [merge_write_ms]
  ringcast_conf "$WORK/ringcast.toml" "$PORT" "$HTTP_PORT" "${1:-}"
  ulimit -n 65536 2>/dev/null || true
  taskset -c 0 "$RC_BIN" --config "$WORK/ringcast.toml" 2>"$WORK/ringcast.log" &
  SERVER_PID=$!
  wait_port "$PORT" "$WORK/ringcast.log"
}
stop_ringcast() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# A server by its name: ringcast-N is ringcast with rtmp.merge_write_ms = N.
start_server() {
  case $1 in
    ringcast) start_ringcast_with ;;
    ringcast-*) start_ringcast_with "${1#ringcast-}" ;;
    *) "start_$1" ;;
  esac
}
stop_server() {
  case $1 in
    ringcast | ringcast-*) stop_ringcast ;;
    *) "stop_$1" ;;
  esac
}

URL=rtmp://127.0.0.1:$PORT/live
# Publishers replay a file, with a send stamp in every picture (the file name follows).
FILE=(--publish file --stamp-flv --flv)
load() { # name, then ringcast-load arguments
  local name=$1
  shift
  ulimit -n 65536 2>/dev/null || true
  taskset -c 1 "$LOAD" --server-pid "$SERVER_PID" --label "$name" --json "$OUT/$name.json" \
    "$@" | tee "$OUT/$name.txt"
}

# CPU seconds (user + system) of a process, from /proc.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }

# 120 rtmpdump players: the publisher from the load tool, CPU and RSS from /proc, bytes from
# what rtmpdump wrote.
rtmpdump_step() { # name
  local name=$1 dir="$WORK/dump" seconds=$((STEP_SECONDS * 2))
  rm -rf "$dir"
  mkdir -p "$dir"
  taskset -c 1 "$LOAD" --url "$URL/dump" --publish file --flv "$MEDIA/1m.flv" --players 0 \
    --duration "$((seconds + 6))" --lead 0 --label "$name-publisher" >/dev/null &
  local publisher=$!
  sleep 3
  local pids=()
  for i in $(seq 1 120); do
    taskset -c 1 rtmpdump -q -r "$URL/dump" --live -o "$dir/$i.flv" 2>/dev/null &
    pids+=($!)
  done
  sleep 2
  local cpu0 cpu1 bytes0 bytes1
  cpu0=$(cpu_s "$SERVER_PID")
  bytes0=$(du -sb "$dir" | cut -f1)
  sleep "$seconds"
  cpu1=$(cpu_s "$SERVER_PID")
  bytes1=$(du -sb "$dir" | cut -f1)
  local rss
  rss=$(rss_kib "$SERVER_PID")
  kill "${pids[@]}" 2>/dev/null || true
  wait "$publisher" 2>/dev/null || true
  local alive=0
  for f in "$dir"/*.flv; do [ -s "$f" ] && alive=$((alive + 1)); done
  python3 - "$OUT/$name.json" "$name" "$cpu0" "$cpu1" "$bytes0" "$bytes1" "$seconds" "$alive" "$rss" <<'PY'
import json, sys
path, name, c0, c1, b0, b1, secs, alive, rss = sys.argv[1:]
cpu, gb = float(c1) - float(c0), (int(b1) - int(b0)) / 1e9
json.dump({"label": name, "kind": "rtmpdump", "players": 120, "players_connected": int(alive),
           "duration_s": float(secs), "egress_gbps": gb * 8 / float(secs),
           "server": {"cpu_seconds": cpu, "cpu_cores": cpu / float(secs),
                      "cpu_seconds_per_gb": cpu / gb if gb > 0 else None,
                      "rss_end_kib": int(rss)}}, open(path, "w"))
print(f"== {name}: 120 rtmpdump players, {gb:.3f} GB in {secs} s, server {cpu:.2f} cpu-s, "
      f"{cpu / gb if gb else float('nan'):.3f} cpu-s/GB, {alive} recordings")
PY
  rm -rf "$dir"
}

for server in $SERVERS; do
  case $server in
    srs | srs-low)
      if [ ! -x "$SRS" ]; then
        echo "######## $server: skipped ($SRS not found)"
        continue
      fi
      ;;
  esac
  echo "######## $server"
  if has_step 120; then
    start_server "$server"
    load "$server-120" --url "$URL/small" "${FILE[@]}" "$MEDIA/1m.flv" --players 120 \
      --ramp 120 --duration "$STEP_SECONDS"
    stop_server "$server"
  fi
  if has_step rtmpdump; then
    start_server "$server"
    rtmpdump_step "$server-rtmpdump"
    stop_server "$server"
  fi
  has_step fanout && for n in $FANOUT_STEPS; do
    start_server "$server"
    load "$server-fanout-$n" --url "$URL/fan" "${FILE[@]}" "$MEDIA/2m5.flv" --players "$n" \
      --ramp 1000 --duration "$STEP_SECONDS"
    stop_server "$server"
  done
  has_step streams && for n in $STREAM_STEPS; do
    start_server "$server"
    load "$server-streams-$n" --url "$URL/many" "${FILE[@]}" "$MEDIA/600k.flv" --streams "$n" \
      --players 1 --ramp 500 --duration "$STEP_SECONDS" --lead 5
    stop_server "$server"
  done
  if has_step idle; then
    start_server "$server"
    load "$server-idle" --url "$URL/idle" --publish none --players 2000 --ramp 1000 --duration 5
    stop_server "$server"
  fi
done

python3 benches/summarize.py "$OUT" >"$OUT/summary.md"
cat "$OUT/summary.md"
