#!/usr/bin/env bash
# Runs the whole test suite: vet, then every package's tests with the race
# detector. The end-to-end tests build the real binary themselves.
set -euo pipefail
cd "$(dirname "$0")"
go vet ./...
go test -race -count=1 -timeout 20m ./...
