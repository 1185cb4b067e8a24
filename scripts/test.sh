#!/usr/bin/env bash
# Runs every seqknock test: formatting, vet, unit tests and, as root, the
# kernel tests in network namespaces. Under CI=true nothing skips: a missing
# tool or privilege fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "gofmt needed on:" $unformatted >&2
	exit 1
fi
export CGO_ENABLED=0
go vet ./...
# -p 2: two packages at a time on this 2-core machine; each kernel test
# builds its own namespaces with its own names and subnet.
go test -count=1 -p 2 -timeout 20m ./... "$@"
