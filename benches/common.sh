# Shared by the benchmark scripts that run ringcast beside SRS (compare.sh, paired.sh):
# installing what they need, making the media, writing each server's configuration and waiting
# for it to listen. Sourced, not run.

# Installs the Debian packages named, when there are any.
install_missing() {
  [ $# -gt 0 ] || return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "$@"
}

# A real H.264 + AAC FLV file in $MEDIA, made once: file, size, fps, gop, video kb/s.
make_media() {
  [ -s "$MEDIA/$1" ] && return 0
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=$2:rate=$3" \
    -f lavfi -i "sine=frequency=440:sample_rate=44100" -t 30 -c:v libx264 -preset veryfast \
    -b:v "${5}k" -maxrate "${5}k" -bufsize "$((${5} * 2))k" -g "$4" -keyint_min "$4" \
    -pix_fmt yuv420p -c:a aac -b:a 64k -f flv "$MEDIA/$1"
}

# Waits for something to listen on 127.0.0.1:port; else prints the log's tail and fails.
wait_port() { # port [log]
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  [ -n "${2:-}" ] && [ -s "$2" ] && tail -3 "$2" >&2
  return 1
}

# ringcast's configuration for a benchmark: file, RTMP port, HTTP port, [merge_write_ms].
ringcast_conf() {
  local merge=""
  [ -n "${4:-}" ] && merge="merge_write_ms = $4"
  cat >"$1" <<CONF
[rtmp]
listen = "127.0.0.1:$2"
chunk_size = 4096
max_connections = 20000
max_connections_per_ip = 0
max_waiting_streams = 20000
$merge
[http]
listen = "127.0.0.1:$3"
[log]
level = "warn"
CONF
}

# SRS's configuration: file, RTMP port, pid file, the default vhost's body.
srs_conf() {
  cat >"$1" <<CONF
listen 127.0.0.1:$2; max_connections 12000; daemon off; srs_log_tank console;
srs_log_level warn; pid $3;
vhost __defaultVhost__ { $4 }
CONF
}

# SRS's vhost for srs-low: its lowest-latency settings.
SRS_LOW_VHOST="min_latency on; tcp_nodelay on; play { mw_latency 0; mw_msgs 0; }"
