#!/usr/bin/env bash
# Prints the path of a cached Debian 12 root file system for booting systemd in
# systemd-nspawn: minbase plus systemd plus the Depends of the package given
# (so `dpkg -i` proves the declared dependencies suffice). Built once per
# dependency set with debootstrap, from the machine's own apt mirror, and kept
# in /var/cache/nodeguard-ci (outside the repository). Each test boots a copy.
# Usage: scripts/systemd-rootfs.sh dist/nodeguard_<version>_<arch>.deb
set -euo pipefail
deb=$1
cache=${NODEGUARD_CI_CACHE:-/var/cache/nodeguard-ci}

need=()
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v systemd-nspawn >/dev/null 2>&1 || need+=(systemd-container)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq >&2
  # No recommends: libnss-mymachines would edit the host's nsswitch.conf.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

# "libc6, libip4tc2 (>= 1.8), iptables" -> "libc6,libip4tc2,iptables"
depends=$(dpkg-deb -f "$deb" Depends | sed -E 's/\([^)]*\)//g; s/[[:space:]]//g')
include="systemd,$depends"
key=$(printf '%s' "$include" | sha256sum | cut -c1-12)
rootfs="$cache/bookworm-$key"

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ ! -x "$rootfs/usr/lib/systemd/systemd" ]; then
  mirror=$(awk '/^URIs:/{u=$2} /^Suites:/{for(i=2;i<=NF;i++) if($i=="bookworm"){print u; exit}}' \
    /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  if [ -z "$mirror" ]; then
    mirror=$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  fi
  [ -n "$mirror" ] || { echo "no Debian bookworm mirror in the apt configuration" >&2; exit 1; }
  echo "==> debootstrap bookworm (minbase + $include) into $rootfs" >&2
  rm -rf "$rootfs.tmp"
  debootstrap --variant=minbase --include="$include" bookworm "$rootfs.tmp" "$mirror" > "$cache/debootstrap.log" 2>&1 \
    || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
  # debootstrap copies the host's hostname; the container gets its own.
  echo nodeguard-test > "$rootfs.tmp/etc/hostname"
  : > "$rootfs.tmp/etc/apt/sources.list"
  rm -f "$rootfs.tmp"/var/cache/apt/archives/*.deb
  mv "$rootfs.tmp" "$rootfs"
fi
echo "$rootfs"
