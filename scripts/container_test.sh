#!/usr/bin/env bash
# Proves the container image on this machine, with Podman from Debian's packages and no
# container registry:
#
#   1. builds the runtime image (conf/docker/Dockerfile.runtime) around the release binary, on
#      a Debian bookworm base made with debootstrap from Debian's mirror (cached as
#      localhost/debian:bookworm-slim);
#   2. standalone: the image with no configuration, published with -p 127.0.0.1:PORT:1935, is
#      an origin that ffmpeg publishes to and ffprobe plays from, and its HEALTHCHECK passes;
#   3. the conf/compose.yaml topology (three origins, two edges, edge-0 balancing) as
#      containers with --network host on 127.0.0.1 ports: the cluster forms, ffmpeg publishes
#      to edge-0, ffprobe plays from edge-1 and from the edge edge-0's route API names;
#   4. `podman stop` of the stream's origin drains it: not ready at once, the stream moves to
#      another origin while a player on edge-1 keeps playing, and the container exits 0 by
#      itself, well before the stop timeout would kill it.
#
# Separate from scripts/test.sh: the first run takes a few minutes (debootstrap, image build);
# later runs reuse the base image (about a minute). Installs what it needs (podman, runc,
# debootstrap, ffmpeg, curl). Removes every container it started; the images stay
# (podman rmi localhost/ringcast:container-test localhost/debian:bookworm-slim). Exits 0 with
# SKIP only when containers cannot run here at all.
#
#   scripts/container_test.sh            # builds target/release/ringcast first (cargo build --release)
#   RINGCAST_CT_BASE_IMAGE=debian:bookworm-slim scripts/container_test.sh   # a base from a registry
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

export PATH="$PATH:/usr/sbin:/sbin"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

log() { printf '[container-test] %s\n' "$*"; }
skip() {
  log "SKIP: $*"
  exit 0
}
passed=0
failed=0
pass() {
  passed=$((passed + 1))
  log "ok: $*"
}
fail() {
  failed=$((failed + 1))
  log "FAILED: $*"
}

# ---- tools -------------------------------------------------------------------------------
declare -A package=([podman]=podman [runc]=runc [debootstrap]=debootstrap [ffmpeg]=ffmpeg
  [ffprobe]=ffmpeg [curl]=curl [python3]=python3 [objcopy]=binutils [ss]=iproute2)
need=()
for tool in "${!package[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || need+=("${package[$tool]}")
done
if [ ${#need[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${need[@]}" | sort -u | tr '\n' ' ')
  log "installing $pkgs"
  $SUDO apt-get update -q
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $pkgs ||
    skip "cannot install $pkgs"
fi
[ "$(id -u)" -eq 0 ] || skip "run as root: the containers use --network host, and debootstrap needs root"

work="$root/target/container-test"
mkdir -p "$work"
run_dir=$(mktemp -d "$work/run.XXXXXX")

# Podman's default runtime (crun) cannot set RLIMIT_NOFILE in some sandboxes; runc with
# explicit limits can. A private containers.conf keeps the machine's own untouched.
cat >"$run_dir/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF="$run_dir/containers.conf"
# Podman 4 asks systemd for health-check timers, which a machine without systemd lacks; the
# checks are run by hand below, so its complaints go to a log.
podman() { command podman "$@" 2>>"$run_dir/podman.log"; }
plogs() { # CONTAINER [ARGS]: its output (ringcast logs to stderr), without podman's complaints
  timeout 20 podman logs "$@" 2>&1 | grep -v "systemd connection" || true
}
pm() { # SECONDS ARGS...: podman, bounded in time
  local secs=$1
  shift
  timeout "$secs" podman "$@" 2>>"$run_dir/podman.log"
}

containers=()
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for c in "${containers[@]}"; do pm 30 rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
  if [ "$rc" -eq 0 ]; then
    rm -rf "$run_dir"
  else
    log "logs kept in $run_dir"
  fi
}
trap cleanup EXIT

# ---- base image and the ringcast image ---------------------------------------------------
base=${RINGCAST_CT_BASE_IMAGE:-localhost/debian:bookworm-slim}
image=localhost/ringcast:container-test
if ! podman image exists "$base"; then
  if [ "$base" != localhost/debian:bookworm-slim ]; then
    pm 300 pull "$base" >/dev/null || skip "cannot pull $base"
  else
    log "debootstrap --variant=minbase bookworm (once; about a minute)"
    rootfs="$work/rootfs"
    rm -rf "$rootfs"
    timeout 900 debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian \
      >"$work/debootstrap.log" 2>&1 || skip "debootstrap failed (see $work/debootstrap.log)"
    tar -C "$rootfs" -c . | podman import - "$base" >/dev/null
    rm -rf "$rootfs"
  fi
fi
if ! pm 60 run --rm --network host "$base" true; then
  skip "podman cannot run a container here: $(tail -3 "$run_dir/podman.log" | tr '\n' ' ')"
fi

log "cargo build --release --bin ringcast"
cargo build --release --bin ringcast -q
# A context of its own with the binary at the path the Dockerfile copies, without its debug
# information (95 MB with it, 14 MB without; symbols stay, so backtraces still name functions).
ctx="$run_dir/context"
mkdir -p "$ctx/target/release"
objcopy --strip-debug target/release/ringcast "$ctx/target/release/ringcast"
log "podman build -f conf/docker/Dockerfile.runtime (base $base)"
# --format docker: the OCI image format has no HEALTHCHECK.
if ! pm 600 build --format docker --network host --build-arg "RUNTIME_IMAGE=$base" \
  -f conf/docker/Dockerfile.runtime -t "$image" "$ctx" >"$run_dir/build.log"; then
  tail -20 "$run_dir/build.log"
  fail "the runtime image builds"
  exit 1
fi
pass "image $image built from conf/docker/Dockerfile.runtime"
meta=$(podman image inspect "$image" --format '{{.Config.User}} {{.Config.StopSignal}} {{json .Config.Healthcheck.Test}} {{json .Config.Entrypoint}}')
if [ "$meta" = '10001:10001 SIGTERM ["CMD","ringcast","healthcheck"] ["ringcast"]' ]; then
  pass "image runs as 10001, stops with SIGTERM, health-checks with ringcast healthcheck"
else
  fail "image metadata: $meta"
fi

# ---- helpers -----------------------------------------------------------------------------
port_free() { ! ss -Htuln | awk '{print $5}' | grep -qE "[:.]$1\$"; }
# JSON field of an HTTP GET, by a Python expression over `j`; empty on any failure.
json() {
  curl -sS --max-time 3 "$1" 2>/dev/null |
    python3 -c "import json,sys
try:
    j=json.load(sys.stdin); print($2)
except Exception:
    pass" 2>/dev/null || true
}
# Polls `cmd` until it prints `want`, at most `secs` seconds.
wait_for() {
  local what=$1 secs=$2 want=$3
  shift 3
  local deadline=$((SECONDS + secs)) got=""
  while [ $SECONDS -lt $deadline ]; do
    got=$("$@" 2>/dev/null || true)
    [ "$got" = "$want" ] && return 0
    sleep 0.5
  done
  log "waited ${secs}s for $what: last answer '$got', wanted '$want'"
  return 1
}
publish() { # URL SECONDS LOGFILE: ffmpeg test picture and tone, in the background
  ffmpeg -nostdin -hide_banner -loglevel error -re -f lavfi -i "testsrc=size=640x360:rate=25" \
    -f lavfi -i "sine=frequency=440:sample_rate=44100" -t "$2" -c:v libx264 -preset ultrafast \
    -tune zerolatency -g 25 -c:a aac -f flv "$1" >"$3" 2>&1 &
  pids+=("$!")
}
codecs() { # URL: "aac h264" when ffprobe finds both streams
  timeout 20 ffprobe -v error -rw_timeout 15000000 -show_entries stream=codec_name -of csv=p=0 "$1" |
    sort | tr '\n' ' ' | sed 's/ $//'
}

# ---- 2. standalone, the embedded default, -p ---------------------------------------------
solo_port=24200
if ! port_free $solo_port; then
  fail "port $solo_port is taken"
else
  solo=ringcast-ct-standalone
  containers+=("$solo")
  if pm 60 run -d --name "$solo" --read-only --read-only-tmpfs=false --cap-drop ALL \
    --security-opt no-new-privileges --health-interval disable \
    -p "127.0.0.1:$solo_port:1935" "$image" >/dev/null; then
    publish "rtmp://127.0.0.1:$solo_port/live/solo" 20 "$run_dir/solo-publish.log"
    if wait_for "standalone playable" 20 "aac h264" codecs "rtmp://127.0.0.1:$solo_port/live/solo"; then
      pass "standalone (run -p 127.0.0.1:$solo_port:1935, no config): ffmpeg publishes, ffprobe plays h264 + aac"
    else
      fail "standalone playable; log: $(plogs "$solo" | tail -5)"
    fi
    if pm 10 healthcheck run "$solo" >/dev/null; then
      pass "standalone HEALTHCHECK (ringcast healthcheck on the embedded 127.0.0.1:8080) is healthy"
    else
      fail "standalone HEALTHCHECK"
    fi
    pm 20 rm -f -t 5 "$solo" >/dev/null || true
  else
    # Only this part needs a bridge network: the cluster below runs on the host network.
    log "SKIP standalone -p: no bridge network here ($(tail -2 "$run_dir/podman.log" | tr '\n' ' '))"
  fi
fi

# ---- 3. the compose topology on the host network -----------------------------------------
# conf/compose.yaml's nodes, with 127.0.0.1 ports instead of the compose network's names:
# node      RTMP   HTTP   gossip  (compose: SERVICE:1935 / :8080 / :7946, edges 1935-1936)
# origin-i  2400i  2401i  2402i
# edge-i    2410i  2411i  2412i
for p in 24000 24001 24002 24010 24011 24012 24020 24021 24022 24100 24101 24110 24111 24120 24121; do
  port_free $p || {
    fail "port $p is taken"
    exit 1
  }
done
secret_file="$run_dir/cluster.env" # as conf/cluster.env in compose
umask 077
printf 'RINGCAST_CLUSTER__SECRET=%s\nRINGCAST_HTTP__ADMIN_TOKEN=%s\n' \
  "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" \
  >"$secret_file"
umask 022
seeds=127.0.0.1:24020,127.0.0.1:24021,127.0.0.1:24022
node() { # ID ROLE INDEX BASE [ENV...]
  local id=$1 role=$2 i=$3 b=$4
  shift 4
  containers+=("ringcast-ct-$id")
  pm 60 run -d --name "ringcast-ct-$id" --network host --read-only --read-only-tmpfs=false --cap-drop ALL \
    --security-opt no-new-privileges --health-interval disable --env-file "$secret_file" \
    -e RINGCAST_NODE__ID="$id" -e RINGCAST_NODE__ROLE="$role" \
    -e RINGCAST_NODE__DRAIN_TIMEOUT_S=600 \
    -e RINGCAST_RTMP__LISTEN="127.0.0.1:$((b + i))" \
    -e RINGCAST_RTMP__ADVERTISE="127.0.0.1:$((b + i))" \
    -e RINGCAST_HTTP__LISTEN="127.0.0.1:$((b + 10 + i))" \
    -e RINGCAST_CLUSTER__GOSSIP_LISTEN="127.0.0.1:$((b + 20 + i))" \
    -e RINGCAST_CLUSTER__GOSSIP_ADVERTISE="127.0.0.1:$((b + 20 + i))" \
    -e RINGCAST_CLUSTER__SEEDS="$seeds" "$@" "$image" >/dev/null
}
for i in 0 1 2; do node "origin-$i" origin $i 24000; done
node edge-0 edge 0 24100 -e RINGCAST_EDGE__PLAY=balance
node edge-1 edge 1 24100 -e RINGCAST_EDGE__PLAY=proxy
http() { # NODE: its HTTP address
  case $1 in
    origin-*) echo "127.0.0.1:$((24010 + ${1#origin-}))" ;;
    edge-*) echo "127.0.0.1:$((24110 + ${1#edge-}))" ;;
  esac
}
rtmp() {
  case $1 in
    origin-*) echo "127.0.0.1:$((24000 + ${1#origin-}))" ;;
    edge-*) echo "127.0.0.1:$((24100 + ${1#edge-}))" ;;
  esac
}
nodes_ready() { # NODE: "LIVE_READY_NODES RING_MEMBERS" as that node sees the cluster
  json "http://$(http "$1")/api/v1/cluster/nodes" \
    "'%d %d' % (sum(1 for n in j['nodes'] if n['live'] and n['ready']), sum(1 for n in j['nodes'] if n['in_ring']))"
}
formed=1
for n in origin-0 origin-1 origin-2 edge-0 edge-1; do
  wait_for "$n to see 5 ready nodes and 3 origins in the ring" 40 "5 3" nodes_ready "$n" || formed=0
done
if [ $formed = 1 ]; then
  pass "cluster formed: every node sees 5 live, ready nodes and 3 origins in the ring"
else
  for n in origin-0 edge-0; do log "$n: $(plogs "ringcast-ct-$n" --tail 5)"; done
  fail "cluster formed"
  exit 1
fi
healthy=1
for n in origin-0 origin-1 origin-2 edge-0 edge-1; do
  pm 10 healthcheck run "ringcast-ct-$n" >/dev/null || healthy=0
done
if [ $healthy = 1 ]; then
  pass "every node's HEALTHCHECK is healthy"
else
  fail "HEALTHCHECK of a cluster node"
fi

stream=live/container-test
publish "rtmp://$(rtmp edge-0)/$stream" 90 "$run_dir/publish.log"
locate() { json "http://$(http edge-1)/api/v1/cluster/locate?stream=$stream" "j['node_id'] + ' ' + j['source']"; }
holder=""
deadline=$((SECONDS + 20))
while [ $SECONDS -lt $deadline ]; do
  got=$(locate)
  if [ "${got#* }" = gossip ]; then
    holder=${got% *}
    break
  fi
  sleep 0.5
done
if [ -n "$holder" ]; then
  pass "ffmpeg publishes to edge-0; the stream is held by $holder (gossip)"
else
  fail "the published stream is located; ffmpeg: $(tail -3 "$run_dir/publish.log")"
  exit 1
fi
if wait_for "edge-1 playable" 20 "aac h264" codecs "rtmp://$(rtmp edge-1)/$stream"; then
  pass "ffprobe plays h264 + aac from edge-1"
else
  fail "ffprobe from edge-1"
fi
route=$(json "http://$(http edge-0)/api/v1/cluster/route?stream=$stream" "j['node_id'] + ' ' + j['url']")
if [ -n "$route" ] && wait_for "route url playable" 20 "aac h264" codecs "${route#* }"; then
  pass "edge-0's route API sends players to ${route% *} (${route#* }), which plays"
else
  fail "route API answer '$route' plays"
fi

# ---- 4. podman stop drains the stream's origin -------------------------------------------
# A player on edge-1 records the stream across the drain.
ffmpeg -nostdin -hide_banner -loglevel error -rw_timeout 10000000 -i "rtmp://$(rtmp edge-1)/$stream" \
  -t 30 -c copy -f flv "$run_dir/player.flv" >"$run_dir/player.log" 2>&1 &
player=$!
pids+=("$player")
sleep 5
stop_timeout=60
stopped_at=$SECONDS
pm $((stop_timeout + 30)) stop -t $stop_timeout "ringcast-ct-$holder" >/dev/null &
stopper=$!
pids+=("$stopper")
if wait_for "$holder draining" 5 draining json "http://$(http "$holder")/readyz" "j['status']"; then
  pass "podman stop: $holder answers /readyz 503 draining at once"
else
  fail "$holder draining after podman stop"
fi
wait $stopper || true
took=$((SECONDS - stopped_at))
code=$(podman inspect "ringcast-ct-$holder" --format '{{.State.ExitCode}}' || echo "?")
logs=$(plogs "ringcast-ct-$holder")
if [ "$code" = 0 ] && [ $took -lt $stop_timeout ] && grep -q "drained: nothing left to serve" <<<"$logs"; then
  pass "$holder drained and exited 0 by itself after ${took}s (stop timeout ${stop_timeout}s)"
else
  fail "$holder drain: exit code $code after ${took}s; log: $(tail -5 <<<"$logs")"
fi
new_holder=$(locate)
if [ -n "$new_holder" ] && [ "${new_holder% *}" != "$holder" ] && [ "${new_holder#* }" = gossip ]; then
  pass "the stream moved to ${new_holder% *}"
else
  fail "the stream moved off $holder: locate says '$new_holder'"
fi
wait $player || true
# The player's recording: video packets all along, no gap of a second or more.
gap=$(ffprobe -v error -select_streams v -show_entries packet=dts_time -of csv=p=0 "$run_dir/player.flv" 2>/dev/null |
  python3 -c "import sys
t=[float(l) for l in sys.stdin if l.strip() and l.strip()!='N/A']
print('%d %.3f %.1f' % (len(t), max((b-a for a,b in zip(t,t[1:])), default=99), (t[-1]-t[0]) if t else 0))")
read -r frames max_gap span <<<"${gap:-0 99 0}"
if [ "$frames" -ge 500 ] && python3 -c "import sys; sys.exit(0 if $max_gap < 1.0 else 1)"; then
  pass "a player on edge-1 kept playing across the drain: $frames video frames over ${span}s, largest gap ${max_gap}s"
else
  fail "player across the drain: $frames frames, largest gap ${max_gap}s, ${span}s; $(tail -3 "$run_dir/player.log")"
fi
if wait_for "edge-1 playable after the drain" 20 "aac h264" codecs "rtmp://$(rtmp edge-1)/$stream"; then
  pass "ffprobe still plays from edge-1 after the drain"
else
  fail "ffprobe from edge-1 after the drain"
fi

log "$passed passed, $failed failed"
[ $failed -eq 0 ]
