# The Makefile is responder's interface: CI runs the same targets.
GO        ?= go
PKG       := github.com/responder/responder
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BRANCH    ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
# Who built it, user@host as promu sets it for Prometheus. USER is unset in
# a container (docker build), where id -un answers.
BUILD_USER ?= $(or $(USER),$(shell id -un 2>/dev/null),unknown)@$(or $(shell uname -n 2>/dev/null),unknown)
LDFLAGS   := -X github.com/prometheus/common/version.Version=$(VERSION) \
             -X github.com/prometheus/common/version.Revision=$(REVISION) \
             -X github.com/prometheus/common/version.Branch=$(BRANCH) \
             -X github.com/prometheus/common/version.BuildUser=$(BUILD_USER) \
             -X github.com/prometheus/common/version.BuildDate=$(shell date -u +%Y%m%d-%H:%M:%S)
GOLANGCI  := github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.12.2
FUZZTIME  ?= 10s
# How long the fuzzer may shrink each new input it keeps. Go's default (60s)
# took most of a 10s run on a 2-core machine: FuzzParseRunbook from an empty
# cache tried 2,000-2,400 runbooks and kept 3-4 new inputs, against
# 9,100-9,300 and 22-23 with 1s (two runs each). Raise it to get smaller
# reproducers when hunting a failure.
FUZZMIN   ?= 1s
ARGS      ?=
HELM_VERSION ?= v3.22.0
# Helm is built from the Go module proxy into bin/, outside go.mod.
HELM      := bin/helm-$(HELM_VERSION)/helm
CHART     := deploy/helm/responder

.PHONY: all build run test test-short test-deps lint fmt vet fuzz bench tidy-check check-config helm-lint docker-static check-runbooks

all: build

## build: compile bin/responder (-trimpath: no path of the build machine in the binary)
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/responder ./cmd/responder

## run: run the service on the embedded default (SQLite in ./data, console only, dry-run)
run:
	$(GO) run -ldflags '$(LDFLAGS)' ./cmd/responder serve $(ARGS)

## demo: the whole flow on loopback in about a minute: a demo shop, real Prometheus and Alertmanager, responder (DEMO_KEEP=1 keeps it running)
.PHONY: demo
demo:
	@GO='$(GO)' scripts/demo.sh

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

## fuzz: run every fuzz target briefly (FUZZTIME each; FUZZMIN to shrink each new input; see scripts/fuzz.sh)
fuzz:
	@GO='$(GO)' FUZZTIME='$(FUZZTIME)' FUZZMIN='$(FUZZMIN)' scripts/fuzz.sh

## bench: Go benchmarks, the notification benchmarks, and the loopback load test against a baseline (see docs/benchmarks.md)
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -count=5 ./internal/incident/ ./internal/store/...
	$(GO) test -run='^$$' -bench='Notify|Storm' -benchtime=1x ./internal/app/
	$(GO) test -run='^$$' -bench=Gather -benchtime=200x -count=3 ./internal/context/gather/
	$(GO) test -run='^$$' -bench=Chart -benchmem -count=3 ./internal/context/promql/
	scripts/bench.sh
	scripts/bench-drain.sh

## tidy-check: go.mod and go.sum are tidy
tidy-check:
	$(GO) mod tidy
	git diff --exit-code go.mod go.sum

## check-config: the example configuration is valid
check-config:
	$(GO) run ./cmd/responder check-config --config.file=examples/responder.yml

## helm-lint: helm lint and helm template over every values file in deploy/helm/responder/ci/
helm-lint: $(HELM)
	@set -e; for f in $(CHART)/ci/*.yaml; do \
		echo "helm lint/template -f $$f"; \
		$(HELM) lint --strict $(CHART) -f $$f; \
		$(HELM) template responder $(CHART) -f $$f >/dev/null; \
	done

$(HELM):
	GOBIN=$(CURDIR)/bin/helm-$(HELM_VERSION) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

## docker-static: the binary the Dockerfile builds is static (CGO_ENABLED=0)
docker-static:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS) -s -w' -o bin/responder-static ./cmd/responder
	@file bin/responder-static 2>/dev/null || true
	@if ldd bin/responder-static >/dev/null 2>&1; then echo "bin/responder-static is dynamically linked" >&2; exit 1; fi
	@echo "bin/responder-static is static"

## check-runbooks: every runbook in runbooks/ is valid
check-runbooks:
	$(GO) run ./cmd/responder runbooks check runbooks
