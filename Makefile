# drfs build / test / benchmark entry points. CI runs `make test` (.ci/run).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

GO          ?= go
BIN         ?= bin
# -p 1: FUSE tests mount, unmount and use loop devices; running packages in
# parallel makes them fight over /dev/fuse, loop devices and the 2 cores.
TESTFLAGS   ?=
TESTTIMEOUT ?= 20m
FUZZTIME    ?= 20s
# Newest staticcheck that resolves through the module proxy and supports
# Go 1.26 (v0.8.2 == 2026.2.2). The "2025.1.1" alias is not served by the
# proxy; its semver (v0.6.1) predates Go 1.26.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build drfs drfsloop install uninstall test torture demo bench bench-tiers check fmt vet staticcheck fuzz clean

all: check build test

build: drfs drfsloop

drfs:
	$(GO) build -o $(BIN)/drfs ./cmd/drfs

drfsloop:
	$(GO) build -o $(BIN)/drfsloop ./cmd/drfsloop

# make install [PREFIX=/usr/local] [DESTDIR=/staging/root]: the binary, the systemd units
# of deploy/systemd (their /usr/local/bin/drfs made $(PREFIX)/bin/drfs) and, only where
# none exists yet, the example configuration of deploy/drfs: an operator's file is never
# replaced. systemd is told about the units when it runs this host (no DESTDIR).
PREFIX  ?= /usr/local
DESTDIR ?=
UNITDIR ?= /etc/systemd/system
CONFDIR ?= /etc/drfs
systemd_running = [[ -z "$(DESTDIR)" && -d /run/systemd/system ]]

install: drfs
	install -D -m 0755 $(BIN)/drfs $(DESTDIR)$(PREFIX)/bin/drfs
	install -d -m 0755 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(CONFDIR)
	@for unit in deploy/systemd/*.service; do \
		dst=$(DESTDIR)$(UNITDIR)/$${unit##*/}; \
		sed 's|/usr/local/bin/drfs|$(PREFIX)/bin/drfs|g' "$$unit" >$(BIN)/unit.tmp; \
		install -m 0644 $(BIN)/unit.tmp "$$dst"; \
		echo "installed $$dst"; \
	done; \
	rm -f $(BIN)/unit.tmp
	@for conf in deploy/drfs/*.yaml; do \
		dst=$(DESTDIR)$(CONFDIR)/$${conf##*/}; \
		if [[ -e $$dst ]]; then \
			echo "kept $$dst: it exists (the example is $$conf)"; \
		else \
			install -m 0644 "$$conf" "$$dst"; \
			echo "installed $$dst"; \
		fi; \
	done
	@if $(systemd_running); then echo systemctl daemon-reload; systemctl daemon-reload; fi
	@echo
	@echo "drfs is installed. Next:"
	@echo "  edit $(CONFDIR)/drfs.yaml"
	@echo "  $(PREFIX)/bin/drfs daemon --check"
	@echo "  systemctl enable --now drfs"

# Removes the binary and the units; the configuration in $(CONFDIR) stays. An enabled unit
# is disabled first; a running one keeps running (stopping it unmounts its volumes).
uninstall:
	@for unit in deploy/systemd/*.service; do \
		name=$${unit##*/}; \
		if $(systemd_running) && [[ -e $(UNITDIR)/$$name ]]; then \
			systemctl disable "$$name"; \
			if systemctl is-active --quiet "$$name"; then \
				echo "$$name still runs: systemctl stop $${name%.service} unmounts its volumes"; \
			fi; \
		fi; \
		rm -fv $(DESTDIR)$(UNITDIR)/$$name; \
	done
	@rm -fv $(DESTDIR)$(PREFIX)/bin/drfs
	@if $(systemd_running); then echo systemctl daemon-reload; systemctl daemon-reload; fi
	@echo "kept the configuration in $(DESTDIR)$(CONFDIR)"

test:
	bash scripts/deps.sh
	$(GO) test -count=1 -p 1 -timeout $(TESTTIMEOUT) $(TESTFLAGS) ./...

# The fault campaign (e2e/torture_test.go) for TORTURE_DURATION, or TORTURE_ROUNDS rounds
# when set; TORTURE_SEED replays one. make test runs a 3-round version.
TORTURE_DURATION ?= 5m
TORTURE_ROUNDS   ?=
TORTURE_SEED     ?=
torture:
	bash scripts/deps.sh
	DRFS_TORTURE_DURATION=$(TORTURE_DURATION) DRFS_TORTURE_ROUNDS=$(TORTURE_ROUNDS) DRFS_TORTURE_SEED=$(TORTURE_SEED) \
		$(GO) test -count=1 -timeout 2h -run '^(TestTorture|TestFault_FullDisk)$$' -v ./e2e/

# Installs what it needs first (scripts/deps.sh demo: quiet when all is there).
demo: drfs
	bash scripts/deps.sh demo
	DRFS=$(BIN)/drfs bash scripts/demo.sh

bench:
	bash bench/run.sh
	bash bench/namespace.sh
	TIERS_DURATION=$(TIERS_DURATION) TIERS_MODES="$(TIERS_MODES)" bash bench/tiers.sh

# The tier table (bench/tiers.sh): three volumes over a shaped 20 Mbit/s link, drfs daemon
# against one drfs mount per volume, TIERS_DURATION seconds of writes per mode.
TIERS_DURATION ?= 240
TIERS_MODES    ?=
bench-tiers:
	TIERS_DURATION=$(TIERS_DURATION) TIERS_MODES="$(TIERS_MODES)" bash bench/tiers.sh

check: fmt vet staticcheck

fmt:
	@out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
	if [[ -n "$$out" ]]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	$(GO) run $(STATICCHECK) ./...

# Runs every Fuzz target for $(FUZZTIME) each (go allows one -fuzz target
# per invocation).
fuzz:
	@found=0; \
	for pkg in $$($(GO) list ./...); do \
		for fz in $$($(GO) test -list '^Fuzz' "$$pkg" | grep '^Fuzz' || true); do \
			found=1; \
			echo "== $$pkg $$fz ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$fz\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
		done; \
	done; \
	if [[ $$found == 0 ]]; then echo "no Fuzz targets found"; fi

clean:
	rm -rf $(BIN)
	$(GO) clean -testcache
