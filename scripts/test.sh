#!/usr/bin/env bash
# Runs the whole test suite: unit tests, end-to-end tests against the real binary with real
# ffmpeg/ffprobe/rtmpdump (and HAProxy in front, for the PROXY protocol; ss to count sockets;
# ip netns and iptables for a real network partition; headless Chromium for the dashboard), and
# one pass of each benchmark.
# Installs what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

# tool -> the Debian package that has it
declare -A package=(
  [ffmpeg]=ffmpeg [ffprobe]=ffmpeg [rtmpdump]=rtmpdump [haproxy]=haproxy
  [ss]=iproute2 [ip]=iproute2 [iptables]=iptables [chromium]=chromium
)
# ip, ss and iptables live in sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"
need=()
for tool in "${!package[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || need+=("${package[$tool]}")
done
if [ ${#need[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${need[@]}" | sort -u | tr '\n' ' ')
  echo "installing $pkgs"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $pkgs
fi

cargo test --all-targets "$@"
