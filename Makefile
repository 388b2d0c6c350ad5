# bulkpipe: FHIR Bulk Data export → NDJSON folder → DuckDB, as small Unix tools.
GO      ?= go
PREFIX  ?= /usr/local
BIN     := bin
TOOLS   := bulk-kickoff bulk-poll bulk-fetch ndjson-inline ndjson-merge etl-load bulk-testserver

.PHONY: all build test s3-server test-short lint cyclo man install demo e2e bench bench-scale chaos fuzz clean
.DELETE_ON_ERROR:

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -buildvcs=auto -o $(BIN)/ ./cmd/...

# The one test command (README, CI): unit, CLI (testscript) and end-to-end tests, race detector on.
# First the prerequisites (what is missing is named with the apt-get command that installs it),
# so no test is skipped for a missing tool unnoticed; then go test's usual output, with the
# skipped tests and their reasons listed last. The exit status is go test's. -tags failpoint
# compiles in the BULKPIPE_CRASH failpoints (kill -9 at a named step), which release builds lack.
# The lake's S3 tests run against a real S3-compatible server, Versity's gateway, built here from
# its Go module (pinned; once, about two minutes).
test: s3-server
	@GO=$(GO) sh scripts/check-prereqs.sh
	@mkdir -p $(BIN)
	@$(GO) build -o $(BIN)/testsummary ./scripts/testsummary
	BULKPIPE_S3_SERVER=$(abspath $(BIN))/versitygw $(BIN)/testsummary $(GO) test -json -race -tags failpoint -timeout 15m ./...

VERSITYGW := github.com/versity/versitygw/cmd/versitygw@v1.8.0
s3-server: $(BIN)/versitygw
$(BIN)/versitygw:
	@mkdir -p $(BIN)
	GOBIN=$(abspath $(BIN)) $(GO) install $(VERSITYGW)

test-short:
	$(GO) test -short -tags failpoint ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags failpoint ./pkg/failpoint
	shellcheck $$(git ls-files 'scripts/*.sh') .ci/run
	@if command -v staticcheck >/dev/null; then staticcheck -tags failpoint ./...; else echo "staticcheck not installed (.ci/run installs the pinned version); skipped"; fi
	$(MAKE) man

# No function outside tests above cyclomatic complexity 25, with gocyclo pinned; CI runs it.
GOCYCLO := github.com/fzipp/gocyclo/cmd/gocyclo@v0.6.0
cyclo:
	@mkdir -p $(BIN)
	@GOBIN=$(CURDIR)/$(BIN) $(GO) install $(GOCYCLO)
	@$(BIN)/gocyclo -over 25 $$(git ls-files '*.go' | grep -v '_test\.go$$') && echo "cyclomatic complexity: ok"

# Man pages are hand-written man(7); groff lints them (warnings are errors).
man:
	@for p in man/*.1; do out=$$(groff -man -ww -z "$$p" 2>&1); if [ -n "$$out" ]; then echo "$$p: $$out"; exit 1; fi; done; echo "man pages: ok"

install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	for t in $(TOOLS); do [ -f $(BIN)/$$t ] && install -m 755 $(BIN)/$$t $(DESTDIR)$(PREFIX)/bin/; done; true
	install -m 644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/

# The main job end to end against the built-in test server.
demo: build
	sh scripts/demo.sh

# Each tool side by side with its physical limit, in one run (BENCH_SIZE_MB=200 for a quick one).
bench:
	sh scripts/bench/run.sh

# The tools at production scale beside their baselines at the same memory (not in CI; about an
# hour and a half at full size): 50,000 files under ulimit -n 256, loads of 1, 3 and 10 GB and
# 1 GB onto 10 GB, merges of 1 and 10 GB, 1 GB appended to an empty lake and onto a 10 GB one.
# Knobs: SCALE_PARTS, SCALE_FILES, SCALE_SIZES, SCALE_MEM, SCALE_MERGE_SIZES, SCALE_MERGE_MEM,
# SCALE_LAKE_BASE_GB, SCALE_LAKE_GB, SCALE_LAKE_ROUNDS (docs/benchmarks.md, "Scale").
bench-scale:
	sh scripts/bench/scale.sh

# The whole chaos matrix (docs/reliability.md): every fault kind, a seeded random mix (SEED=N
# replays one), kill -9 at every failpoint then a rerun.
chaos:
	GO=$(GO) sh scripts/chaos.sh $(SEED)

# Every fuzz target for FUZZTIME each (default 3s; CI runs this).
fuzz:
	sh scripts/fuzz.sh

e2e:
	$(GO) test -race -run 'E2E|Pipeline' ./pkg/e2e/...

clean:
	rm -rf $(BIN)
