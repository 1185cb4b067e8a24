#!/usr/bin/env bash
# Runs every seqknock benchmark; each prints its result and a ratio against
# a baseline measured in the same run (-v shows those lines). Needs root for
# the kernel ones, like the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=0
go test -run '^$' -bench 'Window10kUsers' -benchtime 3x -v ./totp/ | grep -E 'Benchmark|ratio'
# Each knock is usable once and the table holds 256 per period: a fixed count.
go test -run '^$' -bench 'Dial' -benchtime 200x -v ./client/ | grep -E 'Benchmark|ratio'
go test -run '^$' -bench 'ColdSync|Rotation10k|PeriodicSync|RunMemory|KnockAuditOverhead|KnockLimitResetOverhead|KnockUnderGuessFlood|SYNDropCost' -benchtime 1x -v ./integration/ | grep -E 'Benchmark|ratio|budget|RSS|SYN'
go test -run '^$' -bench 'SignedSCP' -benchtime 1x -v ./integration/ | grep -E 'Benchmark|ratio'
go test -run '^$' -bench 'GatewayThroughput' -benchtime 7x -v ./integration/ | grep -E 'Benchmark|ratio'
