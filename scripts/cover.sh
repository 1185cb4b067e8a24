#!/usr/bin/env bash
# Coverage of every package by the whole test suite, as root (the kernel
# tests count only as root; under CI=true they fail instead of skipping):
#
#   scripts/cover.sh [PROFILE]
#
# Counts what any test runs in each package (-coverpkg: a package's code run
# by another package's tests counts too), and what the seqknock and
# seqknockd binaries the tests build and run as real users execute: with
# SEQKNOCK_COVERDIR set, netnstest.Build makes coverage builds of them (see
# internal/covhook) whose counters go there. Prints one line per package and
# the total, and leaves the merged profile in PROFILE (default cover.out),
# for go tool cover -func=PROFILE or -html=PROFILE. No race detector here:
# scripts/test.sh is the test run.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-cover.out}
unset SUDO_UID SUDO_GID SUDO_USER SUDO_COMMAND
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/bin"
# Written by every user the tests run the binaries as; not sticky: each
# binary renames its meta-data file over the one another user wrote.
chmod 755 "$dir"
chmod 777 "$dir/bin"
SEQKNOCK_COVERDIR=$dir/bin go test -count=1 -p 2 -timeout 30m -covermode=set \
	-coverpkg=github.com/seqknock/seqknock/... -coverprofile="$dir/unit.out" ./... >&2
if compgen -G "$dir/bin/covmeta.*" >/dev/null; then
	go tool covdata textfmt -i="$dir/bin" -o "$dir/bin.out"
else
	echo "mode: set" >"$dir/bin.out"
fi
# A block counts as run when any profile ran it.
awk '
	FNR == 1 && /^mode:/ { next }
	{ if (!($1 in n)) { n[$1] = $2; order[++k] = $1 } if ($3 > 0) hit[$1] = 1 }
	END {
		print "mode: set"
		for (i = 1; i <= k; i++) print order[i], n[order[i]], (order[i] in hit) ? 1 : 0
	}' "$dir/unit.out" "$dir/bin.out" >"$profile"
awk '
	NR == 1 { next }
	{
		pkg = $1; sub(/\/[^\/]*:.*/, "", pkg)
		all[pkg] += $2; if ($3 > 0) run[pkg] += $2
		total += $2; if ($3 > 0) totalrun += $2
	}
	END {
		for (p in all) printf "%-50s %5.1f%%\n", p, 100 * run[p] / all[p] | "sort"
		close("sort")
		printf "%-50s %5.1f%%\n", "total", 100 * totalrun / total
	}' "$profile"
