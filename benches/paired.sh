#!/usr/bin/env bash
# Two servers at once under the same load: the ratio of their CPU. A step that uses about 1 % of
# a core (120 players of a 1 Mb/s stream) moves by ±10 % between runs of one server at a time on
# a shared machine; two servers measured over the same seconds see the same machine, and their
# ratio moves by about 3 % (ringcast against itself: 1.03).
#
#   benches/paired.sh                            # ringcast-350 against srs, both orders, twice
#   A=ringcast-350 B=ringcast-700 benches/paired.sh
#   A=ringcast-350 B=ringcast-350 RC_BIN_B=/path/to/other/build benches/paired.sh
#   PLAYERS=120 DURATION=30 ROUNDS=2 benches/paired.sh
#
# Servers: ringcast-N (rtmp.merge_write_ms = N), srs (SRS 6 as it comes: mw_latency 350),
# srs-low (min_latency on, mw_latency 0). Each server is pinned to CPU 0 with its own publisher
# (ringcast-load replaying a real H.264/AAC file) and PLAYERS rtmpdump players on CPU 1. CPU is
# the time on CPU of all the server's threads, in ns, from /proc/PID/task/*/schedstat.
# Each round runs A on the first port and then B on it, so that neither always has the first.
# Results: target/bench/paired/results.txt. SRS is ../shared/peers/srs or $SRS.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh

A=${A:-ringcast-350}
B=${B:-srs}
PLAYERS=${PLAYERS:-120}
DURATION=${DURATION:-30}
ROUNDS=${ROUNDS:-2}
SRS=${SRS:-../shared/peers/srs}
RC_BIN_A=${RC_BIN_A:-target/release/ringcast}
RC_BIN_B=${RC_BIN_B:-target/release/ringcast}
OUT=target/bench/paired
MEDIA=target/bench/media
PORTS=(19571 19581)
mkdir -p "$OUT" "$MEDIA"

need=()
command -v rtmpdump >/dev/null || need+=(rtmpdump)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
install_missing ${need[@]+"${need[@]}"}
for s in "$A" "$B"; do
  case $s in
    srs | srs-low) [ -x "$SRS" ] || { echo "$s: $SRS not found" >&2; exit 2; } ;;
    ringcast-*) ;;
    *) echo "unknown server $s (ringcast-N, srs, srs-low)" >&2; exit 2 ;;
  esac
done
cargo build --release --bin ringcast --bin ringcast-load
LOAD=target/release/ringcast-load
make_media 1m.flv 640x360 30 60 936

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# Starts server $1 (ringcast build $2) on port $3; sets STARTED to its pid.
start() {
  local name=$1 bin=$2 port=$3
  case $name in
    ringcast-*)
      ringcast_conf "$WORK/$port.toml" "$port" "$((port + 1))" "${name#ringcast-}"
      taskset -c 0 "$bin" --config "$WORK/$port.toml" >/dev/null 2>"$WORK/$port.log" &
      ;;
    srs | srs-low)
      local vhost=""
      [ "$name" = srs-low ] && vhost=$SRS_LOW_VHOST
      srs_conf "$WORK/$port.conf" "$port" "$WORK/$port.pid" "$vhost"
      taskset -c 0 "$SRS" -c "$WORK/$port.conf" >"$WORK/$port.log" 2>&1 &
      ;;
  esac
  STARTED=$!
  PIDS+=("$STARTED")
  wait_port "$port" "$WORK/$port.log"
}

# Nanoseconds on CPU of every thread of process $1.
cpu_ns() {
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%d\n", s }'
}

: >"$OUT/results.txt"
round() { # first-port server, its build, second-port server, its build, which of A/B is first
  local pa pb players=() loaders=()
  start "$1" "$2" "${PORTS[0]}"
  pa=$STARTED
  start "$3" "$4" "${PORTS[1]}"
  pb=$STARTED
  for port in "${PORTS[@]}"; do
    taskset -c 1 "$LOAD" --url "rtmp://127.0.0.1:$port/live/paired" --publish file \
      --flv "$MEDIA/1m.flv" --players 0 --duration "$((DURATION + 12))" --lead 0 >/dev/null &
    loaders+=($!)
  done
  sleep 3
  for _ in $(seq 1 "$PLAYERS"); do
    for port in "${PORTS[@]}"; do
      taskset -c 1 rtmpdump -q -r "rtmp://127.0.0.1:$port/live/paired" --live -o /dev/null \
        2>/dev/null &
      players+=($!)
    done
  done
  sleep 4
  local a0 b0 a1 b1
  a0=$(cpu_ns "$pa")
  b0=$(cpu_ns "$pb")
  sleep "$DURATION"
  a1=$(cpu_ns "$pa")
  b1=$(cpu_ns "$pb")
  kill "${players[@]}" 2>/dev/null || true
  wait "${players[@]}" "${loaders[@]}" 2>/dev/null || true
  kill "$pa" "$pb" 2>/dev/null || true
  wait "$pa" "$pb" 2>/dev/null || true
  PIDS=()
  python3 - "$5" "$a0" "$a1" "$b0" "$b1" "$DURATION" "$A" "$B" <<'PY' | tee -a "$OUT/results.txt"
import sys
first, a0, a1, b0, b1, secs, name_a, name_b = sys.argv[1:]
c1, c2 = (int(a1) - int(a0)) / 1e6, (int(b1) - int(b0)) / 1e6
ca, cb = (c1, c2) if first == "A" else (c2, c1)
print(f"A {name_a}: {ca:.1f} ms, B {name_b}: {cb:.1f} ms of CPU in {secs} s "
      f"(A on the {'first' if first == 'A' else 'second'} port); B/A = {cb / ca:.3f}")
PY
}

for _ in $(seq 1 "$ROUNDS"); do
  round "$A" "$RC_BIN_A" "$B" "$RC_BIN_B" A
  round "$B" "$RC_BIN_B" "$A" "$RC_BIN_A" B
done
python3 - "$A" "$B" "$OUT/results.txt" <<'PY'
import re, sys
a, b, path = sys.argv[1:]
ratios = [float(m.group(1)) for line in open(path) if (m := re.search(r"B/A = ([\d.]+)", line))]
if ratios:
    print(f"B {b} / A {a} CPU: " + ", ".join(f"{r:.3f}" for r in ratios)
          + f"; mean {sum(ratios) / len(ratios):.3f}")
PY
