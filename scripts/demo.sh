#!/usr/bin/env bash
# seqknock in one minute, on this machine, as root, with no configuration:
# builds the binaries, makes a server and a client network namespace, hides
# a service on port 2222 behind seqknockd, and shows that
#   1. a plain connect times out (the port looks filtered),
#   2. a knocked connect works,
#   3. the same knock replayed is dropped.
# Then it removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
	echo "demo.sh: run as root (it makes network namespaces and nftables rules)" >&2
	exit 1
fi
# The demo is root's own: started with sudo, seqknock would otherwise act
# for the user who ran sudo, who cannot read the root-owned key made below.
unset SUDO_UID SUDO_GID SUDO_USER SUDO_COMMAND
for tool in go ip nft; do
	command -v $tool >/dev/null || { echo "demo.sh: needs $tool (apt-get install golang iproute2 nftables)" >&2; exit 1; }
done

tag=$$
srv=skdemo-srv-$tag cli=skdemo-cli-$tag
veth_s=skds$tag veth_c=skdc$tag
addr_s=198.18.200.1 addr_c=198.18.200.2
tmp=$(mktemp -d)
# seqknockd run's lock and info files in this directory, not /run.
export SEQKNOCKD_RUNTIME_DIR="$tmp/run"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	ip netns del "$srv" 2>/dev/null || true
	ip netns del "$cli" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

say "building seqknock, seqknockd and a demo service"
export CGO_ENABLED=0
go build -tags urfave_cli_no_docs -o "$tmp/seqknock" ./client/cmd/seqknock
go build -tags urfave_cli_no_docs -o "$tmp/seqknockd" ./server/cmd/seqknockd
go build -o "$tmp/echod" ./scripts/demo/echod

say "making namespaces: server $addr_s, client $addr_c"
ip netns add "$srv"
ip netns add "$cli"
ip link add "$veth_s" netns "$srv" type veth peer name "$veth_c" netns "$cli"
ip -n "$srv" addr add $addr_s/24 dev "$veth_s"
ip -n "$cli" addr add $addr_c/24 dev "$veth_c"
for ns in "$srv" "$cli"; do ip -n "$ns" link set lo up; done
ip -n "$srv" link set "$veth_s" up
ip -n "$cli" link set "$veth_c" up

say "server: a key for alice, a config, seqknockd run, and the service on port 2222"
"$tmp/seqknockd" keygen -o "$tmp/alice.key"
cat >"$tmp/seqknockd.toml" <<CFG
[[service]]
port = 2222
[[user]]
name = "alice"
key_file = "alice.key"
CFG
ip netns exec "$srv" "$tmp/echod" -listen :2222 &
pids+=($!)
# Its state (the knocks spent) in the demo's directory, starting from "none
# spent yet": without a state seqknockd counts the window so far as spent,
# and the first knock would wait for the next one.
printf '{"version":1,"table":"seqknock","high_unix_ms":0,"spent":[]}\n' >"$tmp/state.json"
ip netns exec "$srv" "$tmp/seqknockd" --config "$tmp/seqknockd.toml" run --state "$tmp/state.json" 2>"$tmp/seqknockd.log" &
pids+=($!)
# Up once its table is installed and the service's listener locked.
for _ in $(seq 50); do
	ip netns exec "$srv" "$tmp/seqknockd" --config "$tmp/seqknockd.toml" status >/dev/null 2>&1 && break
	sleep 0.1
done
ip netns exec "$srv" "$tmp/seqknockd" --config "$tmp/seqknockd.toml" status | sed 's/^/    /'

# Steps 2 and 3 must fall in one 30 s period, or the second knock would be
# a fresh one of the next period rather than a replay.
while [ $(( 30 - $(date +%s) % 30 )) -lt 12 ]; do sleep 1; done

say "1. plain connect, no knock:"
if ip netns exec "$cli" timeout 3 bash -c "exec 3<>/dev/tcp/$addr_s/2222" 2>/dev/null; then
	echo "    connected: the port is NOT protected (unexpected)"; exit 1
else
	echo "    no answer in 3 s: the port looks filtered"
fi

knock() { # state-dir
	ip netns exec "$cli" env XDG_STATE_HOME="$1" "$tmp/seqknock" proxy --key-file "$tmp/alice.key" \
		--slots 1 --syn-timeout 2s $addr_s 2222 </dev/null
}
say "2. knocked connect (seqknock proxy, SYN sequence number $("$tmp/seqknock" isn --key-file "$tmp/alice.key" --port 2222)):"
knock "$tmp/state1" | sed 's/^/    /'

say "3. the same knock again (a fresh slot state hands out the same slot):"
if out=$(knock "$tmp/state2" 2>&1); then
	echo "    connected: the replay was admitted (unexpected)"; exit 1
else
	echo "    $out"
	echo "    dropped: a knock admits one connection only"
fi

say "server status:"
ip netns exec "$srv" "$tmp/seqknockd" --config "$tmp/seqknockd.toml" status | sed 's/^/    /'
say "done; removing the namespaces"
