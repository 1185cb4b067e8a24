#!/usr/bin/env bash
# The side-by-side bench: seqknock, fwknop (SPA) and knockd on
# the same namespace topology, in one run. As root, from the repository:
#
#     sudo scripts/bench/run.sh
#
# Writes BENCHMARKS.md and BENCHMARKS.json at the top of the repository and
# prints each goal beside its figure with pass or fail, and each of
# seqknock's figures beside the previous BENCHMARKS.json's. Peers come from
# Debian's packages (fwknop-server, fwknop-client, knockd, iptables): the
# script installs them when they are missing (apt-get), or stops with a
# message naming them. Traffic stays in two namespaces it creates (addresses
# in 198.18.0.0/15) and removes on exit; keys are throwaway, made here.
# N (default 200) is the connections per method of figure 1; FLOOD2
# (default 3000000) the SYNs of each flood turn of figure 2, R2 (default 5)
# its rounds of turns; R4 (default 5) the rounds of figure 4 and
# N4 (default 100, at most 128) their connections each way; USERS (default
# "1 1000 10000 50000") the sizes of figure 3 ("" skips figure 3); P3
# (default 10) the period in seconds of figure 3's seqknockd runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
. scripts/bench/pair.sh
N=${N:-200}
R4=${R4:-5}
N4=${N4:-100}
[ $((2 * N4)) -le 256 ] || { echo "run.sh: N4 must be at most 128 (a round's two runs share a user's 256 slots)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run.sh: run as root (namespaces, nftables, raw sockets)" >&2; exit 1; }

need=()
for p in fwknop-server:fwknopd fwknop-client:fwknop knockd:knockd iptables:iptables python3:python3 nftables:nft libcap2-bin:setcap passwd:useradd; do
	command -v "${p#*:}" >/dev/null || need+=("${p%%:*}")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "run.sh: installing ${need[*]}" >&2
	if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } >&2; then
		echo "run.sh: needs the Debian packages ${need[*]}; install them and run again" >&2
		exit 1
	fi
fi

tmp=$(mktemp -d /tmp/seqknock-bench.XXXXXX)
# seqknockd run's lock and info files in the bench's directory, not /run.
export SEQKNOCKD_RUNTIME_DIR="$tmp/run"
chmod 755 "$tmp"
sfx=$$
S=skb-srv-$sfx C=skb-cli-$sfx
SRV=198.18.160.1 CLI=198.18.160.2
pids=()
cleanup() {
	[ -z "${DEBUG:-}" ] || tail -n 20 "$tmp"/*.log >&2 || true
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	pair_down "$S" "$C"
	[ -z "${made_user:-}" ] || user_down "$BU"
	rm -rf "$tmp"
}
trap cleanup EXIT
trap "exit 1" INT TERM
# Each step's log line carries the UTC time and the seconds since the start,
# and goes to steps.out (seconds since the epoch, then the step) for the
# report's run-time table.
t_start=$(date +%s.%N)
log() {
	local now
	now=$(date +%s.%N)
	printf 'run.sh: %s +%ss %s\n' "$(date -u -d "@$now" +%H:%M:%S)" "$(awk -v a="$now" -v b="$t_start" 'BEGIN { printf "%.0f", a - b }')" "$*" >&2
	echo "$now $*" >>"$tmp/steps.out"
}

log "building"
export CGO_ENABLED=0
build_bench "$tmp"

log "topology: $S ($SRV) <-> $C ($CLI)"
pair_up "$S" "$C" "vs$sfx" "vc$sfx" $SRV $CLI
# The flooder's address, and a fresh source address per fwknop and knockd
# turn: 60 addresses for each of the four methods that knock, taken in
# turn, so a peer's opening for one turn's address does not help a later
# turn (an address comes back after 60 turns, over a minute, long after
# its opening closed: 2 s for fwknop, 5 s for knockd).
FLOOD=198.18.160.3
ip -n "$C" addr add $FLOOD/24 dev "vc$sfx"
srcsA="" srcsB="" srcsK="" srcsR=""
for i in $(seq 10 249); do echo "addr add 198.18.160.$i/24 dev vc$sfx"; done | ip -n "$C" -batch -
for i in $(seq 10 249); do
	a="\"198.18.160.$i\""
	case $(((i - 10) / 60)) in
	0) srcsA="$srcsA${srcsA:+, }$a" ;;
	1) srcsB="$srcsB${srcsB:+, }$a" ;;
	2) srcsK="$srcsK${srcsK:+, }$a" ;;
	*) srcsR="$srcsR${srcsR:+, }$a" ;;
	esac
done
ins() { ip netns exec "$S" "$@"; }
inc() { ip netns exec "$C" "$@"; }

# Ports: 2201 plain, 2202 seqknock, 2203 fwknop, 2204 knockd.
ip netns exec "$S" "$tmp/benchtool" serve 0.0.0.0:2201 0.0.0.0:2202 0.0.0.0:2203 0.0.0.0:2204 & pids+=($!) # not through ins: $! is then the command itself

# seqknock: one user, 256 slots a period (figure 1 spends one knock per
# connection), period 10 s.
# One user per method (a user's slots are shared by everything that knocks
# with its key), and one per round of figure 4.
cat >"$tmp/seqknockd.toml" <<CONF
period = "10s"
slots = 256
[[service]]
port = 2202
CONF
for u in alice bob $(for i in $(seq "$R4"); do echo carol$i; done) dave erin; do
	"$tmp/seqknock" keygen -o "$tmp/$u.key" >/dev/null
	printf '[[user]]\nname = "%s"\nkey_file = "%s"\n' $u "$tmp/$u.key" >>"$tmp/seqknockd.toml"
done
# The proxy as a user runs it: a throwaway user (removed on exit) with its
# home in $tmp, dave's key for a copy of seqknock given cap_net_admin
# (setcap), erin's for the broker (seqknock broker, run here as root in the
# client namespace, for the user's own group). Both keys are copied into
# the user's home, theirs, mode 0600: seqknock refuses a key file of
# another user.
BU=skb$sfx
user_up "$BU" "$tmp/home"
made_user=1
for u in dave erin; do install -m 600 -o "$BU" -g "$BU" "$tmp/$u.key" "$tmp/home/$u.key"; done
setcap_copy "$tmp/seqknock" "$tmp/seqknock-cap" "$BU"
ip netns exec "$C" "$tmp/seqknock" broker --listen "$tmp/broker.sock" --group "$BU" 2>"$tmp/broker.log" & pids+=($!) # not through inc: $! is then the command itself
# A state that says nothing was spent yet: without one seqknockd counts
# the window so far as spent, and the first knocks would wait for the next.
printf '{"version":1,"table":"seqknock","high_unix_ms":0,"spent":[]}\n' >"$tmp/state"
ip netns exec "$S" "$tmp/seqknockd" --config "$tmp/seqknockd.toml" run --state "$tmp/state" --audit=false 2>"$tmp/seqknockd.log" & pids+=($!) # not through ins: $! is then the command itself

# fwknop: fwknopd with its defaults (pcap on the interface, 100 ms loop
# sleep), keys from fwknop --key-gen, iptables DROP for the port.
keys=$(fwknop --key-gen)
KEY=$(echo "$keys" | awk '/^KEY_BASE64/ {print $2}')
HMAC=$(echo "$keys" | awk '/^HMAC_KEY_BASE64/ {print $2}')
mkdir -p "$tmp/fwknop"
cat >"$tmp/fwknop/fwknopd.conf" <<CONF
PCAP_INTF vs$sfx;
FWKNOP_RUN_DIR $tmp/fwknop;
CONF
cat >"$tmp/fwknop/access.conf" <<CONF
SOURCE ANY
KEY_BASE64 $KEY
HMAC_KEY_BASE64 $HMAC
OPEN_PORTS tcp/2203
FW_ACCESS_TIMEOUT 2
CONF
chmod 600 "$tmp/fwknop/"*.conf
ins iptables -A INPUT -p tcp --dport 2203 -j DROP
ins iptables -A INPUT -p tcp --dport 2204 -j DROP
ip netns exec "$S" fwknopd -f -c "$tmp/fwknop/fwknopd.conf" -a "$tmp/fwknop/access.conf" -d "$tmp/fwknop/digest.cache" -p "$tmp/fwknop/fwknopd.pid" >"$tmp/fwknopd.log" 2>&1 & pids+=($!) # not through ins: $! is then the command itself

# knockd: the man page's open/close example with a command timeout (5 s,
# as there). Each turn knocks and connects from its own address (srcsK,
# srcsR), so the opening of an earlier turn, still there, never lets a turn
# in. The command timeout outlasts the SYN retransmission a one-connect
# turn waits for (about 1 s): with a timeout of 1 s the rule could go
# before that retransmission came, and the turn failed.
cat >"$tmp/knockd.conf" <<CONF
[options]
	logfile = $tmp/knockd.events
[open]
	sequence      = 7001,7002,7003
	seq_timeout   = 5
	tcpflags      = syn
	start_command = /usr/sbin/iptables -I INPUT 1 -s %IP% -p tcp --dport 2204 -j ACCEPT
	cmd_timeout   = 5
	stop_command  = /usr/sbin/iptables -D INPUT -s %IP% -p tcp --dport 2204 -j ACCEPT
CONF
ip netns exec "$S" knockd -c "$tmp/knockd.conf" -i "vs$sfx" >"$tmp/knockd.log" 2>&1 & pids+=($!) # not through ins: $! is then the command itself
sleep 2

# Figure 1: time to first byte, interleaved.
cat >"$tmp/fig1.json" <<SPEC
[
 {"name": "plain TCP, Go relay process", "cmd": ["$tmp/relay", "$SRV", "2201"]},
 {"name": "plain TCP, Go relay process on urfave/cli", "cmd": ["$tmp/clirelay", "$SRV", "2201"]},
 {"name": "seqknock proxy process", "cmd": ["$tmp/seqknock", "proxy", "--key-file", "$tmp/alice.key", "--slots", "256", "--period", "10s", "$SRV", "2202"]},
 {"name": "seqknock proxy process, as a user, setcap", "user": "$BU", "cmd": ["$tmp/seqknock-cap", "proxy", "--key-file", "$tmp/home/dave.key", "--slots", "256", "--period", "10s", "$SRV", "2202"]},
 {"name": "seqknock proxy process, as a user, through the broker", "user": "$BU", "cmd": ["$tmp/seqknock", "proxy", "--broker", "$tmp/broker.sock", "--key-file", "$tmp/home/erin.key", "--slots", "256", "--period", "10s", "$SRV", "2202"]},
 {"name": "plain TCP, in-process", "connect": "$SRV:2201"},
 {"name": "seqknock, in-process dialer", "connect": "$SRV:2202", "key_file": "$tmp/bob.key", "slots": 256, "period": "10s"},
 {"name": "fwknop SPA, then 10 ms retries", "pre": ["fwknop", "-A", "tcp/2203", "-a", "{src}", "-D", "$SRV", "--use-hmac", "--key-base64-rijndael", "$KEY", "--key-base64-hmac", "$HMAC", "--no-save-args"], "connect": "$SRV:2203", "retry_ms": 10, "srcs": [$srcsB]},
 {"name": "knockd sequence, then 10 ms retries", "knock": [7001, 7002, 7003], "connect": "$SRV:2204", "retry_ms": 10, "srcs": [$srcsR]},
 {"name": "knockd sequence, then one connect", "knock": [7001, 7002, 7003], "connect": "$SRV:2204", "srcs": [$srcsK], "beside": "1 s wait"},
 {"name": "fwknop SPA, then one connect", "pre": ["fwknop", "-A", "tcp/2203", "-a", "{src}", "-D", "$SRV", "--use-hmac", "--key-base64-rijndael", "$KEY", "--key-base64-hmac", "$HMAC", "--no-save-args"], "connect": "$SRV:2203", "srcs": [$srcsA], "beside": "1 s wait"}
]
SPEC
# Each peer is measured at its best: after its knock, a connect every
# 10 ms until one gets through ("10 ms retries"), as a client that knows
# the peer's firewall rule comes a little after the knock would do; and,
# for comparison, one connect, which leaves the wait to the client
# kernel's SYN retransmission (about 1 s). The goals compare seqknock with
# each peer's fastest method. The two "one connect" methods spend their
# turn waiting: they take it side by side ("beside" in the spec), each
# still timed on its own, which takes about 1 s a round off the run. The
# other methods run alone, one after another.
log "figure 1: $N connections per method, interleaved"
HOME=$tmp inc "$tmp/benchtool" ttfb "$N" "$tmp/fig1.json" >"$tmp/fig1.out"

# Figure 4: the legitimate client's time to first byte while the server
# takes a random-ISN SYN flood from another address (bounded: 3,000,000
# SYNs or 20 s; stopped with SIGTERM once the client's turns are done, so
# the run does not wait out the bound), against none: R4 rounds (default 5)
# of N4 connections (default 100) without a flood, then N4 during one; the
# report takes the median of the rounds' ratios. As in figure 2, the
# flooder is pinned to the last CPU, which also does the server's work for
# its SYNs (the veth delivers in the sender's context); the legitimate
# client runs on the others, as a client on another machine would, rather
# than wherever the scheduler puts it.
#
# Each round dials as its own user (carol1, carol2, ...), its quiet run from
# slot 0 and its flood run from slot N4 (slot_from): each benchtool run
# counts its slots in its own memory, so two runs with one key in one period
# must start apart: a run that sent the knocks an earlier run had spent
# would see them dropped as replays and its dials wait for the next period.
fcpu=$(($(nproc) - 1))
ccpus=0-$((fcpu > 0 ? fcpu - 1 : 0))
fig4spec() {
	printf '[{"name": "seqknock, in-process dialer", "connect": "%s:2202", "key_file": "%s", "slots": 256, "period": "10s", "slot_from": %d}]\n' $SRV "$tmp/$1.key" "$2" >"$tmp/fig4.json"
}
log "figure 4: under a SYN flood"
for round in $(seq "$R4"); do
	fig4spec "carol$round" 0
	HOME=$tmp inc taskset -c "$ccpus" "$tmp/benchtool" ttfb "$N4" "$tmp/fig4.json" >"$tmp/fig4-quiet-$round.out"
	ip netns exec "$C" taskset -c "$fcpu" "$tmp/benchtool" flood "$FLOOD" "$SRV" 2202 3000000 20 >"$tmp/flood-$round.out" & # not through inc: $! is then the command itself
	fl=$!
	sleep 0.5
	fig4spec "carol$round" "$N4"
	HOME=$tmp inc taskset -c "$ccpus" "$tmp/benchtool" ttfb "$N4" "$tmp/fig4.json" >"$tmp/fig4-flood-$round.out"
	kill -TERM $fl 2>/dev/null || true
	wait $fl || true
done

# Figures 1 and 4 are done: their daemons go before figure 3. seqknockd run
# listens to nftables notifications (its watch), and while any socket on the
# host does, the kernel announces every element of every transaction in every
# namespace, which slows figure 3's cold sync and nft -f several times over.
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()

# Figure 2: kernel cost. The server namespace takes a random-ISN SYN flood to
# the protected port (at most FLOOD2 SYNs or 8 s per turn) with (a) no table,
# (b) the table with no valid knocks, (c) the table with about 240,000: SYNs
# per second handled (sent less those the veth dropped, over the wall time)
# and the machine's softirq time per million. Before (b)'s and (c)'s floods,
# figure 1's in-process dialer measures its time to first byte with one
# user's knocks (768: period 60 s, 256 slots) and with 313 users' (240,384).
# (p) is the baseline of the per-SYN goal: no seqknock table, a plain
# "tcp dport 2202 drop" at priority raw. (b) and (c) run the daemon's
# defaults, so the flooder is soon locked out by the guess limiter and its
# SYNs take the lockout drop (see nftgen's ruleList for that path's cost).
# (p), (b) and (c) take R2 (default 5) rounds of turns, p b c p b c ..., and
# the goals take the median of the rounds' ratios: one turn of each is too
# noisy for a ratio near 1 (the flood's path is the same in (b) and (c)).
# A turn floods FLOOD2 SYNs or for 8 s. The kernel here samples softirq
# time at each timer tick (tick accounting, HZ 250, no
# CONFIG_IRQ_TIME_ACCOUNTING): (p)'s 600,000 SYNs were about 48 ticks, and
# (c)/(p) swung from 1.6 to 2.5 between the rounds of one run; 3,000,000
# make (p)'s turn about 240 ticks.
FLOOD2=${FLOOD2:-3000000}
R2=${R2:-5}
log "figure 2: kernel cost under a SYN flood"
ins "$tmp/seqknockd" --config "$tmp/seqknockd.toml" teardown --state none >/dev/null 2>&1 || true
ip netns exec "$S" "$tmp/benchtool" serve 0.0.0.0:2202 & pids+=($!) # not through ins: $! is then the command itself
mkdir -p "$tmp/f2"
python3 - "$tmp/f2" <<'PY'
import base64, os, sys
d = sys.argv[1]
def key(name):
    fn = os.path.join(d, name + ".key")
    fd = os.open(fn, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, base64.b64encode(os.urandom(32)) + b"\n")
    os.close(fd)
    return ['[[user]]', f'name = "{name}"', f'key_file = "{fn}"']
head = ['period = "60s"', 'slots = 256', '[[service]]', 'port = 2202']
open(os.path.join(d, "small.toml"), "w").write("\n".join(head + key("small")) + "\n")
big = head + key("big")
for i in range(312):
    big += key(f"u{i}")
open(os.path.join(d, "big.toml"), "w").write("\n".join(big) + "\n")
PY
for w in small big; do
	printf '[{"name": "seqknock, in-process dialer, %s", "connect": "%s:2202", "key_file": "%s", "slots": 256, "period": "60s"}]\n' $w $SRV "$tmp/f2/$w.key" >"$tmp/f2/$w.json"
done
# flood2 NAME: one flood turn, its line in fig2.out: name, SYNs sent, veth
# drops, start and end (seconds), softirq ticks, ticks a second. The flooder
# is pinned to the last CPU and the softirq time is that CPU's: the veth
# hands each SYN to the receiving namespace in the sender's context, so the
# server's handling of the flood is there, and the other CPU's work is not.
flood2() {
	local d0 d1 s0 s1 t0 t1 sent
	d0=$(ins cat "/sys/class/net/vs$sfx/statistics/rx_dropped")
	s0=$(awk -v c="cpu$fcpu" '$1 == c {print $8}' /proc/stat)
	t0=$(date +%s.%N)
	sent=$(inc taskset -c "$fcpu" "$tmp/benchtool" flood "$FLOOD" "$SRV" 2202 "$FLOOD2" 8)
	t1=$(date +%s.%N)
	s1=$(awk -v c="cpu$fcpu" '$1 == c {print $8}' /proc/stat)
	d1=$(ins cat "/sys/class/net/vs$sfx/statistics/rx_dropped")
	echo "$1 $sent $((d1 - d0)) $t0 $t1 $((s1 - s0)) $(getconf CLK_TCK)" >>"$tmp/fig2.out"
}
flood2 a
for round in $(seq "$R2"); do
	printf 'table inet plain {\n chain pre {\n  type filter hook prerouting priority raw; policy accept;\n  tcp dport 2202 drop\n }\n}\n' | ins nft -f -
	flood2 p
	ins nft delete table inet plain
	ins "$tmp/seqknockd" --config "$tmp/f2/small.toml" sync --state none 2>&1 | grep -o 'elements=[0-9]*' | sed 's/^/small /' >>"$tmp/fig2.out"
	[ "$round" = 1 ] && HOME=$tmp inc "$tmp/benchtool" ttfb 50 "$tmp/f2/small.json" >"$tmp/fig2-small.out"
	ins nft flush set inet seqknock valid
	flood2 b
	ins "$tmp/seqknockd" --config "$tmp/f2/big.toml" sync --state none 2>&1 | grep -o 'elements=[0-9]*' | sed 's/^/big /' >>"$tmp/fig2.out"
	[ "$round" = 1 ] && HOME=$tmp inc "$tmp/benchtool" ttfb 50 "$tmp/f2/big.json" >"$tmp/fig2-big.out"
	flood2 c
	ins "$tmp/seqknockd" --config "$tmp/f2/big.toml" teardown --state none >/dev/null 2>&1 || true
done
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()

# Figure 3: sync, rotation and memory, from the Go benchmarks (their own
# namespaces), and seqknockd run's peak RSS and CPU at 10,000 and 50,000 users.
USERS=${USERS-1 1000 10000 50000}
log "figure 3: cold sync, rotation and nft -f at ${USERS:-no} users (go test -bench)"
[ -n "$USERS" ] && SEQKNOCK_BENCH_USERS=$USERS go test -run '^$' -bench 'ColdSync10kUsers|SyncSizes' -benchtime 1x -v ./integration/ >"$tmp/fig3-bench.out" 2>&1 || true
# The rotation's time is the median of 5 (the report reads the last line).
[ -n "$USERS" ] && go test -run '^$' -bench 'Rotation10kUsers' -benchtime 5x -v ./integration/ >>"$tmp/fig3-bench.out" 2>&1 || true
# The near-miss index at 10,000 users: the daemon's peak RSS and CPU with
# it off, at the default and at 20 periods, and the index alone.
[ -n "$USERS" ] && go test -run '^$' -bench 'NearMissRSS10kUsers|NearMiss10kUsers' -benchtime 1x -v ./server/ >"$tmp/fig3-nearmiss.out" 2>&1 || true
# seqknockd run at each size: peak RSS, CPU at its first sync (start, config
# load, first sync) and over the two rotations after it; at 50,000 users also
# with GOMEMLIMIT=off (no soft memory limit). The period is P3 seconds
# (default 10): the two rotations come after about 1.5 periods, so a shorter
# period shortens every run, but changes what is measured: at 50,000 users
# the first sync takes several seconds of CPU, and a period shorter than
# that overlaps it with the next rotation. The report scales the CPU of a
# period to an hour at P3 and at the default 30 s, and prints the 50,000
# users' CPU with the memory limit against GOMEMLIMIT=off as a figure
# (no goal: the collector's share is a few percent, below the run's noise).
P3=${P3:-10}
runs=""
for users in $USERS; do
	runs="$runs $users:default"
	[ "$users" = 50000 ] && runs="$runs $users:off"
done
for run in $runs; do
	users=${run%%:*} memlimit=${run#*:}
	log "figure 3: seqknockd run with $users users (memory limit: $memlimit)"
	d=$tmp/u$users
	mkdir -p -m 0700 "$d" # a state directory must be closed to others
	[ -f "$d/c.toml" ] || python3 - "$d" "$users" "$P3" <<'PY'
import base64, os, sys
d, n, period = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cfg = ['period = "%ss"' % period, '[[service]]', 'port = 22', '[[service]]', 'port = 2222']
for i in range(n):
    fn = os.path.join(d, f"u{i}.key")
    fd = os.open(fn, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, base64.b64encode(os.urandom(32)) + b"\n")
    os.close(fd)
    cfg += ['[[user]]', f'name = "u{i}"', f'key_file = "{fn}"']
open(os.path.join(d, "c.toml"), "w").write("\n".join(cfg) + "\n")
PY
	ns=skb-mem-$sfx
	ip netns add "$ns"
	rm -f "$d/log" "$d/state"
	# gctrace's lines (one per collection, in the same log) give the CPU
	# the garbage collector took, which is what the memory limit changes.
	if [ "$memlimit" = off ]; then
		GOMEMLIMIT=off GODEBUG=gctrace=1 ip netns exec "$ns" "$tmp/seqknockd" --config "$d/c.toml" run --state "$d/state" --metrics-textfile "$d/m.prom" 2>"$d/log" &
	else
		GODEBUG=gctrace=1 ip netns exec "$ns" "$tmp/seqknockd" --config "$d/c.toml" run --state "$d/state" --metrics-textfile "$d/m.prom" 2>"$d/log" &
	fi
	pid=$!
	# Wait for the start sync, then for two rotations after it (at most 45 s each).
	syncs() {
		for _ in $(seq 1 900); do
			[ "$(grep -c 'msg=sync' "$d/log" || true)" -ge "$1" ] && break
			sleep 0.05
		done
	}
	syncs 1
	read -r -a st1 </proc/$pid/stat
	t1=$(date +%s.%N)
	syncs 3
	read -r -a st </proc/$pid/stat
	t3=$(date +%s.%N)
	hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
	first=$(grep -m1 -o 'elements=[0-9]*' "$d/log" | cut -d= -f2)
	rot=$(grep 'why=rotate' "$d/log" | tail -1 | grep -o 'elements=[0-9]*' | cut -d= -f2)
	kill $pid; wait $pid 2>/dev/null || true
	ip netns del "$ns"
	# "gc N @T P%: ... ms clock, A+B/C/D+E ms cpu, ...": the collector's CPU
	# is the sum of its stop-the-world, assist, background and idle parts.
	gc_ms=$(sed -n 's/^gc .* ms clock, \([0-9.+/]*\) ms cpu.*/\1/p' "$d/log" | tr '+/' '  ' | awk '{ for (i = 1; i <= NF; i++) s += $i } END { printf "%.1f", s }')
	echo "$users ${hwm:-0} ${st[13]} ${st[14]} $(getconf CLK_TCK) ${first:-0} ${rot:-0} $(grep -c 'why=rotate' "$d/log" || true) $(grep -c 'added_only' "$d/log" || true) ${st1[13]} ${st1[14]} $t1 $t3 $memlimit $P3 ${gc_ms:-0}" >>"$tmp/fig3-run.out"
done
# Throwaway keys, 50,000 of them at the largest size: too many for one rm argument list.
find "$tmp" -path "$tmp/u*/u*.key" -delete

log "figure 5: reach, seqknock socks and seqknock gateway (go test -bench)"
go test -run '^$' -bench 'SocksThroughput|SocksFirstByte|GatewayThroughput' -benchtime 1x -v ./integration/ >"$tmp/fig5.out" 2>&1 || true

log "report"
python3 "$repo/scripts/bench/report.py" "$tmp" "$repo/BENCHMARKS.md" "$repo/BENCHMARKS.json"
log "done"
