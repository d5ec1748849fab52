# gw — build, test, install. `make run` and `make test` are the two commands
# a newcomer needs; see README.md.

PREFIX  ?= /usr/local
DESTDIR ?=
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO      ?= go
LDFLAGS  = -X gw/lib/program.Version=$(VERSION)
# urfave_cli_no_docs drops urfave/cli's man-page generator and its
# markdown library: half a millisecond of start-up in every process, which
# gw-queue pays once a message.
TAGS     = urfave_cli_no_docs
PROGRAMS = $(notdir $(wildcard cmd/*))
MANPAGES = $(wildcard man/*.[1-8])
FUZZTIME ?= 10s

.PHONY: all test unit e2e check fuzz install bench run clean peers

all:
	@mkdir -p bin
	$(GO) build -trimpath -tags $(TAGS) -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

# The test peers (ucspi-tcp, strace, …) are Debian packages the tests drive
# for real; scripts/test-peers.sh installs the missing ones.
peers:
	sh scripts/test-peers.sh
	sh scripts/ucspi-tcp-ipv6.sh

test: peers all check
	$(GO) test -race -count=1 ./lib/... ./cmd/...
	$(GO) test -count=1 -timeout 40m ./tests/...

check:
	@out=$$(gofmt -l cmd lib tests); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi
	$(GO) vet ./...
	@if command -v mandoc >/dev/null; then \
		for m in $(MANPAGES); do mandoc -Tlint -Wwarning $$m || exit 1; done; \
	else echo "check: mandoc missing, run make peers" >&2; exit 1; fi
	$(MAKE) fuzz FUZZTIME=2000x

# A short run of every fuzz target; the corpus lives in testdata/fuzz/.
# make check gives each target a count of inputs (2000x), not a duration:
# with a duration, Go 1.26's fuzz coordinator can fail a target with
# "context deadline exceeded" as the time runs out, finding nothing
# (golang/go#75804, fixed in Go 1.27). One worker a target; the output
# of a failing run is shown.
fuzz:
	@for pkg in $$($(GO) list ./lib/... ./cmd/...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f"; \
			out=$$($(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -parallel 1 $$pkg 2>&1) || \
				{ echo "$$out"; exit 1; }; \
		done; \
	done

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man5 \
		$(DESTDIR)$(PREFIX)/share/man/man7 $(DESTDIR)$(PREFIX)/share/man/man8
	for p in $(PROGRAMS); do install -m 0755 bin/$$p $(DESTDIR)$(PREFIX)/bin/; done
	for m in $(MANPAGES); do \
		s=$${m##*.}; install -m 0644 $$m $(DESTDIR)$(PREFIX)/share/man/man$$s/; \
	done

# make bench ONLY=smtpd,tcprules runs only those sections (go run ./tests/bench -h).
# make bench OLD=<commit> also builds that commit (from git, in a temporary
# directory) and the smtpd section prints gw-smtpd's CPU a message, old
# against new, measured turn about in the same run.
bench: all
	@set -e; old=; \
	if [ -n "$(OLD)" ]; then \
		old=$$(mktemp -d /tmp/gw-bench-old-XXXXXX); trap 'rm -rf "$$old"' EXIT; \
		git archive "$(OLD)" | tar -x -C "$$old"; \
		(cd "$$old" && $(GO) build -trimpath -tags $(TAGS) -o bin/ ./cmd/...); \
	fi; \
	$(GO) run ./tests/bench -bin $(CURDIR)/bin $(if $(ONLY),-only $(ONLY)) $${old:+-old-bin $$old/bin}

run: all
	sh scripts/run.sh

clean:
	rm -rf bin
