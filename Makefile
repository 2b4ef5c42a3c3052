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

.PHONY: all build drfs drfsloop test torture demo bench bench-tiers check fmt vet staticcheck fuzz clean

all: check build test

build: drfs drfsloop

drfs:
	$(GO) build -o $(BIN)/drfs ./cmd/drfs

drfsloop:
	$(GO) build -o $(BIN)/drfsloop ./cmd/drfsloop

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
