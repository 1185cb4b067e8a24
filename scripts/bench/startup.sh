#!/usr/bin/env bash
# Figure 1's process start-up comparison alone, old against new: time to
# first byte through `seqknock proxy` built at REV (default main) and built
# from the working tree, against run.sh's two baselines (the plain Go relay
# process and the same relay as a urfave/cli app), all four interleaved
# (relay, cli relay, new, old, relay, ...) on run.sh's topology (two
# namespaces over a veth, seqknockd run with its table on the server). For
# a change to the client's start-up: each ratio is to the relay
# of the same run. As root, from the repository:
#
#     sudo scripts/bench/startup.sh [REV]
#
# N (default 300) is the connections per method. USER_MODES="setcap
# broker" (default none) adds the working tree's proxy run as a throwaway
# user (removed on exit): a copy given cap_net_admin with setcap, and
# through `seqknock broker` (run here as root for the user's group), each
# with a key of its own. It takes about a minute
# and changes nothing outside the namespaces and a temporary directory it
# removes; hold /work/ci.lock (or leave the machine otherwise idle) while it
# runs, as for run.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/pair.sh
REV=${1:-main}
N=${N:-300}
[ "$(id -u)" = 0 ] || { echo "startup.sh: run as root (namespaces, TCP_REPAIR)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/seqknock-startup.XXXXXX)
# seqknockd run's lock and info files in this directory, not /run.
export SEQKNOCKD_RUNTIME_DIR="$tmp/run"
chmod 755 "$tmp"
sfx=$$
S=sks-srv-$sfx C=sks-cli-$sfx
SRV=198.18.161.1 CLI=198.18.161.2
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	pair_down "$S" "$C"
	[ -z "${made_user:-}" ] || user_down "$BU"
	rm -rf "$tmp"
}
trap cleanup EXIT
trap "exit 1" INT TERM

export CGO_ENABLED=0
echo "startup.sh: building the working tree and $REV" >&2
build_bench "$tmp"
mv "$tmp/seqknock" "$tmp/seqknock.new"
mkdir "$tmp/old"
git archive "$REV" | tar -x -C "$tmp/old"
(cd "$tmp/old" && go build -tags urfave_cli_no_docs -o "$tmp/seqknock.old" ./client/cmd/seqknock)

pair_up "$S" "$C" "vs$sfx" "vc$sfx" $SRV $CLI

# 2201 plain, 2202 behind seqknockd; a key per proxy build, so neither
# runs out of its 256 slots a period.
ip netns exec "$S" "$tmp/benchtool" serve 0.0.0.0:2201 0.0.0.0:2202 & pids+=($!)
printf 'period = "10s"\nslots = 256\n[[service]]\nport = 2202\n' >"$tmp/seqknockd.toml"
USER_MODES=${USER_MODES:-}
for u in new old $USER_MODES; do
	"$tmp/seqknock.new" keygen -o "$tmp/$u.key" >/dev/null
	printf '[[user]]\nname = "%s"\nkey_file = "%s"\n' $u "$tmp/$u.key" >>"$tmp/seqknockd.toml"
done
if [ -n "$USER_MODES" ]; then
	BU=sks$sfx
	user_up "$BU" "$tmp/home"
	made_user=1
	for u in $USER_MODES; do install -m 600 -o "$BU" -g "$BU" "$tmp/$u.key" "$tmp/home/$u.key"; done
	setcap_copy "$tmp/seqknock.new" "$tmp/seqknock.cap" "$BU"
	ip netns exec "$C" "$tmp/seqknock.new" broker --listen "$tmp/broker.sock" --group "$BU" 2>"$tmp/broker.log" & pids+=($!)
fi
# A state that says nothing was spent yet (without one the window so far
# counts as spent).
printf '{"version":1,"table":"seqknock","high_unix_ms":0,"spent":[]}\n' >"$tmp/state"
ip netns exec "$S" "$tmp/seqknockd" --config "$tmp/seqknockd.toml" run --state "$tmp/state" --audit=false 2>"$tmp/seqknockd.log" & pids+=($!)
sleep 2

# proxy NAME BIN KEY [USER [BROKER]]: a figure 1 method, as run.sh writes
# seqknock proxy's; run as USER when given, through the broker socket
# BROKER when given.
proxy() {
	local user="" broker=""
	[ -z "${4:-}" ] || user=$(printf ', "user": "%s"' "$4")
	[ -z "${5:-}" ] || broker=$(printf ', "--broker", "%s"' "$5")
	printf ' {"name": "%s"%s, "cmd": ["%s", "proxy"%s, "--key-file", "%s", "--slots", "256", "--period", "10s", "%s", "2202"]}' \
		"$1" "$user" "$2" "$broker" "$3" $SRV
}
{
	echo "["
	echo " {\"name\": \"plain TCP, Go relay process\", \"cmd\": [\"$tmp/relay\", \"$SRV\", \"2201\"]},"
	echo " {\"name\": \"plain TCP, Go relay process on urfave/cli\", \"cmd\": [\"$tmp/clirelay\", \"$SRV\", \"2201\"]},"
	proxy "seqknock proxy process, working tree" "$tmp/seqknock.new" "$tmp/new.key"
	echo ","
	proxy "seqknock proxy process, $REV" "$tmp/seqknock.old" "$tmp/old.key"
	for m in $USER_MODES; do
		echo ","
		case $m in
		setcap) proxy "seqknock proxy process, working tree, as a user, setcap" "$tmp/seqknock.cap" "$tmp/home/setcap.key" "$BU" ;;
		broker) proxy "seqknock proxy process, working tree, as a user, broker" "$tmp/seqknock.new" "$tmp/home/broker.key" "$BU" "$tmp/broker.sock" ;;
		*) echo "startup.sh: USER_MODES: unknown mode $m (setcap, broker)" >&2; exit 1 ;;
		esac
	done
	echo
	echo "]"
} >"$tmp/spec.json"
echo "startup.sh: $N connections per method, interleaved" >&2
HOME=$tmp ip netns exec "$C" "$tmp/benchtool" ttfb "$N" "$tmp/spec.json" >"$tmp/out.json"
python3 - "$tmp/out.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
base = r[0]["median_ms"]
for x in r:
    print("%-45s n=%d errors=%d median %.2f ms p95 %.2f ms, / relay %.3f" % (x["name"], x["n"], x["errors"], x["median_ms"], x["p95_ms"], x["median_ms"] / base))
PY
