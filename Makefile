# NodeGuard: build, test, package and install.
#   make deb        dist/nodeguard_<version>_<arch>.deb (static Swift standard library)
#   make install    a plain install without dpkg (PREFIX=/usr/local), enabled and started
#   make uninstall  stops and removes it, and removes NodeGuard's rules
#   make test       the whole test suite (scripts/test.sh)
#   make demo       the demo node (scripts/demo.sh)
PREFIX ?= /usr/local
DESTDIR ?=
SBINDIR = $(PREFIX)/sbin
BINDIR = $(PREFIX)/bin
UNITDIR = /etc/systemd/system
SWIFT_RELEASE = swift build -c release --static-swift-stdlib

# Where `make build` leaves the binaries; install-files installs from here
# without building (a build inside `swift test` would wait for its lock).
BUILT ?= .build/release

.PHONY: all build deb install install-files uninstall test demo clean

all: build

build:
	$(SWIFT_RELEASE)

deb:
	bash packaging/deb/build-deb.sh

test:
	bash scripts/test.sh

demo:
	bash scripts/demo.sh

install: build install-files

install-files:
	install -D -m 0755 "$(BUILT)/nodeguardd" "$(DESTDIR)$(SBINDIR)/nodeguardd"
	install -D -m 0755 "$(BUILT)/nodeguardctl" "$(DESTDIR)$(BINDIR)/nodeguardctl"
	install -d "$(DESTDIR)$(UNITDIR)" "$(DESTDIR)/etc/sysusers.d" "$(DESTDIR)/etc/tmpfiles.d" "$(DESTDIR)/etc/nodeguard"
	sed 's#/usr/sbin/nodeguardd#$(SBINDIR)/nodeguardd#' packaging/systemd/nodeguardd.service > "$(DESTDIR)$(UNITDIR)/nodeguardd.service"
	install -m 0644 packaging/systemd/nodeguardd.socket "$(DESTDIR)$(UNITDIR)/nodeguardd.socket"
	install -m 0644 packaging/systemd/nodeguard.sysusers "$(DESTDIR)/etc/sysusers.d/nodeguard.conf"
	install -m 0644 packaging/systemd/nodeguard.tmpfiles "$(DESTDIR)/etc/tmpfiles.d/nodeguard.conf"
	# An existing deny-list is never overwritten.
	[ -e "$(DESTDIR)/etc/nodeguard/denylist.json" ] || printf '{\n  "version": 1,\n  "blocked": []\n}\n' > "$(DESTDIR)/etc/nodeguard/denylist.json"
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemd-sysusers nodeguard.conf && systemd-tmpfiles --create nodeguard.conf && \
		systemctl daemon-reload && systemctl enable --now nodeguardd.socket nodeguardd.service; \
	fi

uninstall:
	# With DESTDIR the files belong to another root: touch no service and no tables here.
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl disable --now nodeguardd.service nodeguardd.socket || true; fi
	if [ -z "$(DESTDIR)" ] && [ -x "$(SBINDIR)/nodeguardd" ]; then "$(SBINDIR)/nodeguardd" --remove-rules; fi
	rm -f "$(DESTDIR)$(SBINDIR)/nodeguardd" "$(DESTDIR)$(BINDIR)/nodeguardctl"
	rm -f "$(DESTDIR)$(UNITDIR)/nodeguardd.service" "$(DESTDIR)$(UNITDIR)/nodeguardd.socket"
	rm -f "$(DESTDIR)/etc/sysusers.d/nodeguard.conf" "$(DESTDIR)/etc/tmpfiles.d/nodeguard.conf"
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "kept /etc/nodeguard and /var/lib/nodeguard; remove them by hand if you want them gone"

clean:
	rm -rf .build dist
