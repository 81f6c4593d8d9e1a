# cryptpt: `make demo` tours the product, `make test` runs what CI runs.
SHELL := /bin/bash
GO ?= go
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN := bin/cryptpt
# Debian packages the tests and benchmarks use; installed when missing.
TEST_DEBS := fuse3 rsync zsh acl
BENCH_DEBS := fuse3 fio gocryptfs

.PHONY: all build demo test test-short stress bench fuzz deps-test deps-bench lint clean

all: build

build:
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/cryptpt

# Install missing Debian packages (as root, or through sudo).
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

deps-test:
	$(call apt_install,$(TEST_DEBS))
	$(GO) mod download

deps-bench:
	$(call apt_install,$(BENCH_DEBS))
	$(GO) mod download

demo: deps-test build
	@./scripts/demo.sh $(BIN)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Unit tests with fuzz seed corpora, the race detector over the filesystem,
# and the integration tests that mount for real.
test: deps-test lint build
	$(GO) test -count=1 -timeout 15m ./...
	$(GO) test -count=1 -race -timeout 10m ./fs/

stress: deps-test build
	CRYPTPT_STRESS=1 $(GO) test -count=1 -timeout 60m ./tests/ -run 'Model|Concurren|Stress|Crash|FullDisk' -v
	CRYPTPT_STRESS=1 $(GO) test -count=1 -timeout 30m ./fs/ -run 'Writeback|Concurren' -v

bench: deps-bench build
	./bench/run.sh $(BENCH_ARGS)

# Each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	@for pkg in ./crypt ./keys ./config; do \
		for t in $$($(GO) test -list 'Fuzz.*' $$pkg | grep ^Fuzz); do \
			echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

clean:
	rm -rf bin
