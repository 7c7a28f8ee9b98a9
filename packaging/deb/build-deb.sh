#!/usr/bin/env bash
# Builds dist/nodeguard_<version>_<arch>.deb: release binaries linked with the
# static Swift standard library (a node needs no Swift toolchain), the systemd
# units, sysusers and tmpfiles entries, and an empty deny-list as a conffile.
# Depends: are read off the binaries' NEEDED libraries, plus iptables.
set -euo pipefail
cd "$(dirname "$0")/../.."

version=$(cat VERSION)
arch=$(dpkg --print-architecture)
out="dist/nodeguard_${version}_${arch}.deb"

echo "==> building release binaries (static Swift standard library)"
swift build -c release --static-swift-stdlib
bin=$(swift build -c release --static-swift-stdlib --show-bin-path)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/nodeguard"
install -D -m 0755 "$bin/nodeguardd" "$root/usr/sbin/nodeguardd"
install -D -m 0755 "$bin/nodeguardctl" "$root/usr/bin/nodeguardctl"
strip --strip-unneeded "$root/usr/sbin/nodeguardd" "$root/usr/bin/nodeguardctl"
install -D -m 0644 packaging/systemd/nodeguardd.service "$root/lib/systemd/system/nodeguardd.service"
install -D -m 0644 packaging/systemd/nodeguardd.socket "$root/lib/systemd/system/nodeguardd.socket"
install -D -m 0644 packaging/systemd/nodeguard.sysusers "$root/usr/lib/sysusers.d/nodeguard.conf"
install -D -m 0644 packaging/systemd/nodeguard.tmpfiles "$root/usr/lib/tmpfiles.d/nodeguard.conf"
install -d -m 0755 "$root/etc/nodeguard"
printf '{\n  "version": 1,\n  "blocked": []\n}\n' > "$root/etc/nodeguard/denylist.json"
chmod 0644 "$root/etc/nodeguard/denylist.json"
install -D -m 0644 config/denylist.json "$root/usr/share/doc/nodeguard/examples/denylist.json"
install -D -m 0644 README.md "$root/usr/share/doc/nodeguard/README.md"

# Runtime dependencies: the package owning each shared library the binaries need.
needed=$(for b in "$root/usr/sbin/nodeguardd" "$root/usr/bin/nodeguardctl"; do
  readelf -d "$b" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'
done | sort -u)
depends=$(for lib in $needed; do
  path=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64|aarch64|64bit/ {print $NF; exit}')
  [ -n "$path" ] || { echo "cannot find $lib" >&2; exit 1; }
  # merged /usr: dpkg may know the file under /lib or /usr/lib, by link or by target.
  owner=""
  for candidate in "$path" "$(realpath "$path")" "${path#/usr}" "$(realpath "$path" | sed 's#^/usr##')"; do
    owner=$(dpkg -S "$candidate" 2>/dev/null | head -1 | cut -d: -f1) && [ -n "$owner" ] && break
  done
  [ -n "$owner" ] || { echo "no package owns $lib ($path)" >&2; exit 1; }
  echo "$owner"
done | sort -u | paste -sd, | sed 's/,/, /g')
# iptables for the purge script when nodeguardd cannot run, init-system-helpers for deb-systemd-*, procps for ExecReload's /bin/kill.
depends="$depends, iptables, init-system-helpers, procps"

install -d "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<CONTROL
Package: nodeguard
Version: $version
Architecture: $arch
Maintainer: NodeGuard maintainers <nodeguard@localhost>
Section: net
Priority: optional
Depends: $depends
Installed-Size: $(du -sk "$root" | cut -f1)
Description: close Kubernetes NodePorts before kube-proxy's DNAT
 nodeguardd keeps its own chains first in the mangle table (PREROUTING and
 OUTPUT, IPv4 and IPv6, through libiptc) so blocked NodePorts are dropped
 before kube-proxy DNATs them, repairs drift at once, and keeps the rules in
 place while it is stopped. nodeguardctl blocks and unblocks ports at runtime.
CONTROL
echo /etc/nodeguard/denylist.json > "$root/DEBIAN/conffiles"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$root/DEBIAN/"

mkdir -p dist
dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >/dev/null
echo "==> built $out"
dpkg-deb -f "$out" Package Version Architecture Depends
