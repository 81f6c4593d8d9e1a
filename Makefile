# cryptpt: `make demo` tours the product, `make test` runs what CI runs.
SHELL := /bin/bash
GO ?= go
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN := bin/cryptpt
# Debian packages the tests and benchmarks use; installed when missing.
TEST_DEBS := fuse3 rsync zsh acl pamtester libcap2-bin syncthing
BENCH_DEBS := fuse3 fio gocryptfs

.PHONY: all build man install uninstall demo test test-short stress bench fuzz deps-test deps-bench lint clean

# Where "make install" puts things (DESTDIR for staging, as packagers do).
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
# mount(8) looks for mount.fuse.TYPE helpers only in /sbin, /sbin/fs.d and /sbin/fs.
SBINDIR ?= /sbin
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/cryptpt
SYSTEMDDIR ?= $(PREFIX)/lib/systemd
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
# pam-auth-update(8) reads profiles only from here, whatever PREFIX is.
PAMCONFIGDIR ?= /usr/share/pam-configs
# The passthrough helper; cryptpt looks for it in ../lib/cryptpt from its own directory.
HELPERDIR ?= $(PREFIX)/lib/cryptpt
# Every file install writes, for uninstall.
INSTALLED = $(BINDIR)/cryptpt $(HELPERDIR)/cryptpt-ptreg $(SBINDIR)/mount.fuse.cryptpt \
	$(SYSTEMDDIR)/system/cryptpt@.service $(SYSTEMDDIR)/user/cryptpt.service \
	$(BASHCOMPDIR)/cryptpt $(ZSHCOMPDIR)/_cryptpt $(MANDIR)/man1/cryptpt.1 \
	$(PAMCONFIGDIR)/cryptpt $(DOCDIR)/README.md $(DOCDIR)/contrib.md $(addprefix $(DOCDIR)/,$(notdir $(wildcard docs/*.md)))

all: build

build:
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/cryptpt
	$(GO) build -trimpath -o bin/cryptpt-ptreg ./cmd/cryptpt-ptreg

# The man page, from the commands' --help (scripts/manpage.sh).
man: build
	./scripts/manpage.sh $(BIN) $(VERSION) > bin/cryptpt.1

# The units and docs name /usr/local/bin/cryptpt: rewritten to BINDIR and DOCDIR.
FIXPATHS = sed -e 's|/usr/local/bin/cryptpt|$(BINDIR)/cryptpt|g' -e 's|/usr/local/share/doc/cryptpt|$(DOCDIR)|g'
install: build man
	install -Dm755 $(BIN) $(DESTDIR)$(BINDIR)/cryptpt
	install -Dm755 bin/cryptpt-ptreg $(DESTDIR)$(HELPERDIR)/cryptpt-ptreg
	@# Its one capability (a package's postinst would do this instead).
	@setcap cap_sys_admin+ep $(DESTDIR)$(HELPERDIR)/cryptpt-ptreg 2>/dev/null || \
		echo "note: no capability set; for passthrough run: setcap cap_sys_admin+ep $(HELPERDIR)/cryptpt-ptreg"
	install -Dm755 contrib/mount.cryptpt $(DESTDIR)$(SBINDIR)/mount.fuse.cryptpt
	install -d $(DESTDIR)$(SYSTEMDDIR)/system $(DESTDIR)$(SYSTEMDDIR)/user
	$(FIXPATHS) contrib/systemd/cryptpt@.service > $(DESTDIR)$(SYSTEMDDIR)/system/cryptpt@.service
	$(FIXPATHS) contrib/systemd/cryptpt.service > $(DESTDIR)$(SYSTEMDDIR)/user/cryptpt.service
	chmod 644 $(DESTDIR)$(SYSTEMDDIR)/system/cryptpt@.service $(DESTDIR)$(SYSTEMDDIR)/user/cryptpt.service
	install -Dm644 contrib/completions/cryptpt.bash $(DESTDIR)$(BASHCOMPDIR)/cryptpt
	install -Dm644 contrib/completions/_cryptpt $(DESTDIR)$(ZSHCOMPDIR)/_cryptpt
	install -Dm644 bin/cryptpt.1 $(DESTDIR)$(MANDIR)/man1/cryptpt.1
	install -d $(DESTDIR)$(PAMCONFIGDIR)
	$(FIXPATHS) contrib/pam/cryptpt > $(DESTDIR)$(PAMCONFIGDIR)/cryptpt
	chmod 644 $(DESTDIR)$(PAMCONFIGDIR)/cryptpt
	install -Dm644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -Dm644 contrib/README.md $(DESTDIR)$(DOCDIR)/contrib.md
	install -m644 docs/*.md $(DESTDIR)$(DOCDIR)/

uninstall:
	@# An enabled PAM profile must leave the stack before its file goes.
	@if [ -z "$(DESTDIR)" ] && [ -f $(PAMCONFIGDIR)/cryptpt ] && command -v pam-auth-update >/dev/null; then \
		echo "pam-auth-update --remove cryptpt"; DEBIAN_FRONTEND=noninteractive pam-auth-update --remove cryptpt; fi
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	-rmdir $(DESTDIR)$(DOCDIR) $(DESTDIR)$(HELPERDIR) 2>/dev/null

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
	CRYPTPT_STRESS=1 $(GO) test -count=1 -timeout 60m ./tests/ -run 'Model|Concurren|Stress|Crash|FullDisk|Syncthing' -v
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
