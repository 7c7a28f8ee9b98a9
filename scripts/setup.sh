#!/usr/bin/env bash
# Installs what NodeGuard needs to build, test and demo on Debian 12 (run as root).
# Sourced by demo.sh and test.sh; safe to run again (installs only what is missing).
set -euo pipefail

packages=(libiptc-dev libnftnl-dev libmnl-dev libsystemd-dev iptables iproute2 nftables python3 procps)

if [ "$(id -u)" -ne 0 ]; then
  echo "NodeGuard's set-up installs packages and its tests and demo create network namespaces: run as root (sudo)." >&2
  exit 1
fi
if ! command -v swift >/dev/null 2>&1; then
  echo "swift is not on PATH: install a Swift 6 toolchain first (swift.org/install/linux)." >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
