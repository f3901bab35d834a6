#!/usr/bin/env bash
# Runs the whole test suite: unit tests, end-to-end tests against the real binary with real
# ffmpeg/ffprobe/rtmpdump (and HAProxy in front, for the PROXY protocol), and one pass of each
# benchmark. Installs what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in ffmpeg ffprobe rtmpdump haproxy; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ffmpeg rtmpdump haproxy (missing: ${need[*]})"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q ffmpeg rtmpdump haproxy
fi

cargo test --all-targets "$@"
