#!/usr/bin/env bash
# What an unknocked SYN costs in each piece of seqknock's raw-priority
# chains: the table is built up rule by rule with nft -f in a
# throwaway namespace, each shape takes a random-ISN SYN flood from
# benchtool pinned to the last CPU, and perf's cpu-clock samples of that CPU
# give the time per SYN in nft_do_chain_inet (the rules) and in
# net_rx_action (the SYN's whole receive path), by function, so other work
# on the CPU does not count. Shapes take turns for ROUNDS rounds; the
# medians and the ratio to a plain drop rule are printed. The table in
# docs/development.md came from this. As root:
#
#     scripts/bench/synrules.sh [ROUNDS [SYNS]]
#
# ONLY="0 7 10" measures those shapes alone (by number, 0: the plain drop,
# which the ratios need).
# Addresses in 198.19.161.0/24; namespaces and files are removed on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/pair.sh
ROUNDS=${1:-3} SYNS=${2:-400000}
[ "$(id -u)" = 0 ] || { echo "synrules.sh: run as root" >&2; exit 1; }
command -v perf >/dev/null || { echo "synrules.sh: needs perf (linux-perf)" >&2; exit 1; }
tmp=$(mktemp -d /tmp/seqknock-synrules.XXXXXX)
S=skr-srv-$$ C=skr-cli-$$
cleanup() { pair_down "$S" "$C"; rm -rf "$tmp"; }
trap cleanup EXIT
trap "exit 1" INT TERM
CGO_ENABLED=0 go build -o "$tmp/benchtool" ./scripts/bench/benchtool
pair_up "$S" "$C" "ks$$" "kc$$" 198.19.161.1 198.19.161.2
ins() { ip netns exec "$S" "$@"; }
cpu=$(($(nproc) - 1))

# The seqknock table's sets and its input/knock chains (conntrack in use, as
# with seqknockd), 768 valid knocks, and an empty pre/syn pair to fill.
{
	cat <<'NFT'
table inet seqknock {
	set ports { type inet_service; elements = { 2202 } }
	set valid { typeof tcp dport . tcp sequence; flags timeout; }
	set used { typeof tcp dport . tcp sequence; size 65535; flags dynamic,timeout; timeout 3m; }
	set rstports { type inet_service; }
	set unknocked { type inet_service; counter; elements = { 2202 } }
	set guess4 { type ipv4_addr; size 65535; flags dynamic,timeout; timeout 1m; }
	set limited4 { type ipv4_addr; size 65535; flags dynamic,timeout; timeout 1s; }
	set limited6 { type ipv6_addr; size 65535; flags dynamic,timeout; timeout 1s; }
	chain input {
		type filter hook input priority filter - 10; policy accept;
		tcp dport @ports jump knock
	}
	chain knock {
		ct state established,related accept
		tcp flags syn / fin,syn,rst,ack ct state new tcp dport . tcp sequence @valid tcp dport . tcp sequence != @used add @used { tcp dport . tcp sequence } accept
		counter drop
	}
	chain pre { type filter hook prerouting priority raw; policy accept; }
	chain syn { }
	chain lockout { add @limited4 { ip saddr } counter drop; }
	chain lockedout {
		limit rate 2000/second burst 2000 packets return
		tcp dport @rstports counter reject with tcp reset
		counter drop
	}
}
NFT
	printf 'add element inet seqknock valid { '
	for i in $(seq 1 768); do printf '2202 . %d timeout 1h, ' $((RANDOM * 32768 + RANDOM)); done
	printf '2202 . 1 timeout 1h }\n'
} >"$tmp/base.nft"

F='tcp flags syn / fin,syn,rst,ack'
KNOCKS=("tcp dport . tcp sequence @valid accept" "tcp dport . tcp sequence @used accept")
TAIL=("tcp dport @unknocked" "limit rate 10/second log group 24" "tcp dport @rstports counter reject with tcp reset" "counter drop")
# shape NAME: PRE-RULE SYN-RULES... (the rules of pre and syn)
names=() pres=() syns=()
shape() { names+=("$1"); pres+=("$2"); shift 2; local IFS=$'\n'; syns+=("$*"); }
shape "plain \"tcp dport 2202 drop\", no seqknock table" "tcp dport 2202 drop"
shape "pre: syn flags, tcp dport @ports, drop" "$F tcp dport @ports drop"
shape "+ fib daddr type local" "$F tcp dport @ports fib daddr type local drop"
shape "+ jump syn, counter drop there" "$F tcp dport @ports fib daddr type local jump syn" "counter drop"
shape "+ @valid, @used lookups" "$F tcp dport @ports fib daddr type local jump syn" "${KNOCKS[@]}" "counter drop"
shape "+ @unknocked lookup (counter)" "$F tcp dport @ports fib daddr type local jump syn" "${KNOCKS[@]}" "tcp dport @unknocked" "counter drop"
shape "+ log limit, @rstports: limits off" "$F tcp dport @ports fib daddr type local jump syn" "${KNOCKS[@]}" "${TAIL[@]}"
# The flood path under a lockout in three orders: every SYN looked up
# before any lockout (7: "knocks first"), the lockout before any lookup
# (8, 9: "the old order"), and what seqknock builds (10: "bounded
# lookups"): a locked-out source jumps to lockedout, whose one limit rule
# lets 2,000 SYNs a second of all locked-out sources back to the lookups
# and drops the rest unlooked.
shape "limits on, the flooder locked out (knocks first)" "$F tcp dport @ports fib daddr type local jump syn" "${KNOCKS[@]}" \
	"tcp dport @rstports ip saddr @limited4 counter reject with tcp reset" "ip saddr @limited4 counter drop" \
	"tcp dport @rstports update @guess4 { ip saddr limit rate over 10/second burst 20 packets } add @limited4 { ip saddr } counter reject with tcp reset" \
	"tcp dport != @rstports update @guess4 { ip saddr limit rate over 10/second burst 20 packets } add @limited4 { ip saddr } counter drop" \
	"limit rate over 1000/second jump lockout" "${TAIL[@]}"
shape "  the old order: lockout before the knocks" "$F tcp dport @ports fib daddr type local jump syn" "ip saddr @limited4 counter drop" "${KNOCKS[@]}" \
	"update @guess4 { ip saddr limit rate over 10/second burst 20 packets } add @limited4 { ip saddr } counter drop" "limit rate over 1000/second jump lockout" "${TAIL[@]}"
shape "  the same, @limited4 before the fib check" "$F tcp dport @ports jump syn" "ip saddr @limited4 counter drop" "fib daddr type != local return" "${KNOCKS[@]}" \
	"update @guess4 { ip saddr limit rate over 10/second burst 20 packets } add @limited4 { ip saddr } counter drop" "limit rate over 1000/second jump lockout" "${TAIL[@]}"

shape "limits on, the flooder locked out (bounded lookups)" "$F tcp dport @ports fib daddr type local jump syn" \
	"ip saddr @limited4 jump lockedout" "ip6 saddr & ffff:ffff:ffff:ffff:: == @limited6 jump lockedout" "${KNOCKS[@]}" \
	"tcp dport @rstports update @guess4 { ip saddr limit rate over 10/second burst 20 packets } add @limited4 { ip saddr } counter reject with tcp reset" \
	"tcp dport != @rstports update @guess4 { ip saddr limit rate over 10/second burst 20 packets } add @limited4 { ip saddr } counter drop" \
	"limit rate over 1000/second jump lockout" "${TAIL[@]}"

load() {
	ins nft delete table inet seqknock 2>/dev/null || true
	ins nft delete table inet plain 2>/dev/null || true
	if [ "$1" = 0 ]; then
		printf 'table inet plain {\n chain pre {\n  type filter hook prerouting priority raw; policy accept;\n  %s\n }\n}\n' "${pres[0]}" | ins nft -f -
		return
	fi
	ins nft -f "$tmp/base.nft"
	{
		echo "add rule inet seqknock pre ${pres[$1]}"
		while IFS= read -r r; do [ -z "$r" ] || echo "add rule inet seqknock syn $r"; done <<<"${syns[$1]}"
	} | ins nft -f -
}
flood() { ip netns exec "$C" taskset -c "$cpu" "$tmp/benchtool" flood 198.19.161.2 198.19.161.1 2202 "$1" 30 >/dev/null; }
ONLY=${ONLY:-${!names[*]}}
for r in $(seq 1 "$ROUNDS"); do
	for i in $ONLY; do
		load "$i"
		flood 200 # where the limits are on, the flooder is locked out first, as in a flood
		perf record -q -F 4000 -C "$cpu" -g -o "$tmp/perf.data" -- ip netns exec "$C" taskset -c "$cpu" "$tmp/benchtool" flood 198.19.161.2 198.19.161.1 2202 "$SYNS" 30 >/dev/null 2>&1
		perf report -i "$tmp/perf.data" --children --sort sym -g none --stdio 2>/dev/null |
			python3 -c '
import re, sys
i, n_syn = sys.argv[1], int(sys.argv[2])
txt = sys.stdin.read()
m = re.search(r"# Samples: (\d+)(K?)", txt)
n = int(m.group(1)) * (1000 if m.group(2) else 1)
got = {}
for line in txt.splitlines():
    f = re.match(r"\s+([\d.]+)%\s+[\d.]+%\s+\[.\]\s+(\S+)", line)
    if f and f.group(2) not in got:
        got[f.group(2)] = float(f.group(1)) / 100 * n * 250000 / n_syn  # 4 kHz: 250,000 ns a sample
print(i, round(got.get("nft_do_chain_inet", 0)), round(got.get("net_rx_action", 0)))
' "$i" "$SYNS" >>"$tmp/out"
	done
	echo "synrules.sh: round $r of $ROUNDS done" >&2
done
python3 - "$tmp/out" "${names[@]}" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    i, nft, rx = map(int, line.split())
    rows.setdefault(i, ([], []))
    rows[i][0].append(nft)
    rows[i][1].append(rx)
names = sys.argv[2:]
base = statistics.median(rows[0][1])
print("ns per SYN, medians of %d rounds (perf samples: inflated alike)" % len(rows[0][0]))
print("%-48s %12s %20s" % ("shape at priority raw", "nft_do_chain", "net_rx_action"))
for i, name in enumerate(names):
    if i not in rows:
        continue
    nft, rx = statistics.median(rows[i][0]), statistics.median(rows[i][1])
    print("%-48s %12.0f %12.0f (%.2f)" % (name, nft, rx, rx / base))
# The locked-out flood's path in the three orders against each other,
# round by round (the same run, interleaved).
def shape_of(suffix):
    i = [i for i, n in enumerate(names) if n.endswith(suffix)]
    return i[0] if i and i[0] in rows else None
first, old, bounded = shape_of("(knocks first)"), shape_of("lockout before the knocks"), shape_of("(bounded lookups)")
for a, b, what in [(first, old, "knocks first / old order"), (bounded, first, "bounded lookups / knocks first"),
                   (bounded, old, "bounded lookups / old order")]:
    if a is not None and b is not None:
        r = [x / y for x, y in zip(rows[a][1], rows[b][1])]
        print("locked-out flood, %s: net_rx_action %.2f (median of %d rounds' ratios: %s)" %
              (what, statistics.median(r), len(r), " ".join("%.2f" % x for x in r)))
PY
