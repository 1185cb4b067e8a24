#!/usr/bin/env bash
# Runs every seqknock test: formatting, vet, staticcheck, unit tests and, as
# root, the kernel tests in network namespaces, all under the race detector. Under
# CI=true nothing skips: a missing tool or privilege fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "gofmt needed on:" $unformatted >&2
	exit 1
fi
# The tests run seqknock as root acting for itself; run through sudo, it
# would act for the user who ran sudo instead (see client/doc.go).
unset SUDO_UID SUDO_GID SUDO_USER SUDO_COMMAND
# vet as released: seqknock and seqknockd are built with CGO_ENABLED=0.
CGO_ENABLED=0 go vet ./...
# staticcheck, pinned, fetched through the Go module proxy; any finding
# fails the run.
CGO_ENABLED=0 go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
# The race detector needs cgo (and a C compiler). The binaries the tests
# build for themselves (netnstest.Build) stay static, CGO_ENABLED=0, as
# released: the setcap test needs that. -p 2: two packages at a time on a
# 2-core machine; each kernel test builds its own namespaces with its own
# names and subnet. The whole run takes about 12 minutes there.
#
# TestStayInForce bounds how long the port stays open while seqknockd
# repairs its table (100 ms), a wall-clock measurement: it runs alone after
# the rest, without the race detector's slowdown of the probing test process
# and without another package's tests competing for the two cores.
CGO_ENABLED=1 go test -race -count=1 -p 2 -timeout 30m -skip '^TestStayInForce$' ./... "$@"
CGO_ENABLED=0 go test -count=1 -timeout 10m -run '^TestStayInForce$' ./server "$@"
