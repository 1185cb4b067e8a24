#!/usr/bin/env bash
# Runs every seqknock test: formatting, vet, staticcheck, unit tests and, as
# root, the kernel tests in network namespaces, all under the race detector. Under
# CI=true nothing skips: a missing tool or privilege fails the run.
#
# Every stage runs, also after one failed; the run ends with one summary
# (each stage passed or FAILED, every skipped test with its reason) and
# exits 1 if any stage failed.
set -uo pipefail
cd "$(dirname "$0")/.."

# The tests run seqknock as root acting for itself; run through sudo, it
# would act for the user who ran sudo instead (see client/doc.go).
unset SUDO_UID SUDO_GID SUDO_USER SUDO_COMMAND
# The directories of the binaries the tests build (netnstest.Build) are
# named after this run, so the last stage finds this run's leftovers only.
export SEQKNOCK_TEST_RUN="run$$"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
skips="$tmp/skips"
: >"$skips"

results=()
failed=0
# stage NAME COMMAND...: runs one stage and records its result.
stage() {
	local name=$1
	shift
	echo "== $name"
	if "$@"; then
		results+=("passed  $name")
	else
		results+=("FAILED  $name")
		failed=1
	fi
}

gofmt_check() {
	local unformatted
	unformatted=$(gofmt -l .)
	if [ -n "$unformatted" ]; then
		echo "gofmt needed on:" $unformatted >&2
		return 1
	fi
}

# gotest ARGS...: go test -json ARGS, shown as plain go test shows it
# (failures in full), skipped tests appended to $skips.
gotest() {
	go build -o "$tmp/testsummary" ./internal/testsummary || return 1
	go test -json "$@" | "$tmp/testsummary" -skips "$skips"
}

# no_builds_left: every package's TestMain removed the binaries it built
# (about 50 MB a run); a test binary that crashed or timed out leaves them.
no_builds_left() {
	local left
	left=$(find "${TMPDIR:-/tmp}" -maxdepth 1 -name "seqknock-bin-$SEQKNOCK_TEST_RUN-*" 2>/dev/null)
	if [ -n "$left" ]; then
		echo "left behind by the tests (now removed):" $left >&2
		rm -rf $left
		return 1
	fi
}

# The race detector needs cgo (and a C compiler). The binaries the tests
# build for themselves (netnstest.Build) stay static, CGO_ENABLED=0, as
# released: the setcap test needs that. -p 2: two packages at a time on a
# 2-core machine; each kernel test builds its own namespaces with its own
# names and subnet. The whole run takes about 12 minutes there.
race_tests() {
	CGO_ENABLED=1 gotest -race -count=1 -p 2 -timeout 30m -skip '^TestStayInForce$' ./... "${args[@]}"
}
# TestStayInForce bounds how long the port stays open while seqknockd
# repairs its table (100 ms), a wall-clock measurement: it runs alone after
# the rest, without the race detector's slowdown of the probing test process
# and without another package's tests competing for the two cores.
stay_in_force() {
	CGO_ENABLED=0 gotest -count=1 -timeout 10m -run '^TestStayInForce$' ./server "${args[@]}"
}

args=("$@")
stage gofmt gofmt_check
# vet as released: seqknock and seqknockd are built with CGO_ENABLED=0.
stage vet env CGO_ENABLED=0 go vet ./...
# staticcheck, pinned, fetched through the Go module proxy; any finding
# fails the run.
stage staticcheck env CGO_ENABLED=0 go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
stage "tests, race detector" race_tests
stage TestStayInForce stay_in_force
stage "no test binaries left in ${TMPDIR:-/tmp}" no_builds_left

echo
echo "== summary"
printf '%s\n' "${results[@]}"
if [ -s "$skips" ]; then
	echo "skipped tests:"
	sed 's/^/  /' "$skips"
else
	echo "skipped tests: none"
fi
exit $failed
