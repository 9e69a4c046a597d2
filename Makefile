# The two commands of the README are `make run` and `make test`; CI runs
# `make test` through .ci/run. Everything runs as root on Debian 12.
export PATH := $(PATH):/usr/local/go/bin
GO ?= go

.PHONY: run test bench deps build vet

## deps: install the Debian packages the lab and the tests need
deps:
	sh lab/install.sh

## build: build the rackcloud binary into bin/
build:
	$(GO) build -o bin/rackcloud ./cmd/rackcloud

## run: bring the whole system up on this machine; Ctrl-C stops it
run: deps build
	./bin/rackcloud lab

## vet: static checks
vet:
	$(GO) vet ./...

## test: install what the tests need, then run every test with -race
test: deps vet
	$(GO) test -race -count=1 -timeout 45m ./...

## bench: run every benchmark under bench/ (each compares with a real peer)
bench: deps
	@set -e; for d in bench/*/; do echo "== $$d"; $(GO) run ./$$d; done
