# The Makefile is responder's interface: CI runs the same targets.
GO        ?= go
PKG       := github.com/responder/responder
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BRANCH    ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X github.com/prometheus/common/version.Version=$(VERSION) \
             -X github.com/prometheus/common/version.Revision=$(REVISION) \
             -X github.com/prometheus/common/version.Branch=$(BRANCH) \
             -X github.com/prometheus/common/version.BuildDate=$(shell date -u +%Y%m%d-%H:%M:%S)
GOLANGCI  := github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.12.2
FUZZTIME  ?= 10s
ARGS      ?=

.PHONY: all build run test test-short test-deps lint fmt vet fuzz bench tidy-check check-config

all: build

## build: compile bin/responder
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/responder ./cmd/responder

## run: run the service on the embedded default (SQLite in ./data, console only, dry-run)
run:
	$(GO) run -ldflags '$(LDFLAGS)' ./cmd/responder serve $(ARGS)

## test: install the real binaries the tests drive (when missing), then run every test with -race
test: test-deps
	$(GO) test -race -count=1 -timeout 20m ./...

## test-short: unit tests only (no real Alertmanager, Prometheus or PostgreSQL)
test-short:
	$(GO) test -short -count=1 ./...

test-deps:
	@scripts/install-test-deps.sh

## lint: golangci-lint, pinned
lint:
	$(GO) run $(GOLANGCI) run ./...

fmt:
	$(GO) run mvdan.cc/gofumpt@latest -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

## fuzz: run every fuzz target briefly (FUZZTIME each)
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeWebhook$$' -fuzztime=$(FUZZTIME) ./internal/incident/
	$(GO) test -run='^$$' -fuzz='^FuzzLoad$$' -fuzztime=$(FUZZTIME) ./internal/config/
	$(GO) test -run='^$$' -fuzz='^FuzzRoute$$' -fuzztime=$(FUZZTIME) ./internal/routing/

## bench: Go benchmarks, the notification benchmarks, and the loopback load test against a baseline (see docs/benchmarks.md)
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -count=5 ./internal/incident/ ./internal/store/...
	$(GO) test -run='^$$' -bench='Notify|Storm' -benchtime=1x ./internal/app/
	scripts/bench.sh

## tidy-check: go.mod and go.sum are tidy
tidy-check:
	$(GO) mod tidy
	git diff --exit-code go.mod go.sum

## check-config: the example configuration is valid
check-config:
	$(GO) run ./cmd/responder check-config --config.file=examples/responder.yml
