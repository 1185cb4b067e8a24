# Sourced by the bench scripts (run.sh, startup.sh, synrules.sh): the
# two-namespace topology they measure on, and its removal.

# pair_up S C SRV_IF CLI_IF SRV CLI: network namespaces S and C joined by
# a veth pair (SRV_IF in S, CLI_IF in C) with SRV/24 and CLI/24 on it,
# loopback and the veth up in both.
pair_up() {
	local s=$1 c=$2 si=$3 ci=$4 srv=$5 cli=$6 n
	ip netns add "$s"
	ip netns add "$c"
	ip link add "$si" netns "$s" type veth peer name "$ci" netns "$c"
	ip -n "$s" addr add "$srv/24" dev "$si"
	ip -n "$c" addr add "$cli/24" dev "$ci"
	for n in "$s" "$c"; do ip -n "$n" link set lo up; done
	ip -n "$s" link set "$si" up
	ip -n "$c" link set "$ci" up
}

# pair_down S C: removes both namespaces, and with them the veth; a
# namespace that is not there is no error.
pair_down() {
	ip netns del "$1" 2>/dev/null || true
	ip netns del "$2" 2>/dev/null || true
}

# build_bench DIR: builds what figure 1 runs into DIR: seqknock,
# seqknockd, benchtool and the two baseline relays. CGO_ENABLED=0, as the
# callers export it.
build_bench() {
	go build -tags urfave_cli_no_docs -o "$1/seqknock" ./client/cmd/seqknock
	go build -tags urfave_cli_no_docs -o "$1/seqknockd" ./server/cmd/seqknockd
	go build -o "$1/benchtool" ./scripts/bench/benchtool
	go build -o "$1/relay" ./scripts/bench/relay
	go build -tags urfave_cli_no_docs -o "$1/clirelay" ./scripts/bench/clirelay
}

# user_up NAME HOME: a throwaway user NAME (with its own group NAME) whose
# home is HOME, made here (mode 0700, its own): the bench runs seqknock
# proxy as a user runs it. It fails, leaving no user, when NAME exists.
# user_down NAME removes the user; callers call it from their cleanup once
# user_up has succeeded (never for a user they did not make).
user_up() {
	useradd --no-create-home --home-dir "$2" --shell /usr/sbin/nologin --user-group "$1" || return 1
	install -d -m 700 -o "$1" -g "$1" "$2" || { userdel "$1"; return 1; }
}
user_down() {
	userdel "$1" 2>/dev/null || true
}

# setcap_copy SRC DST GROUP: DST, a copy of SRC holding cap_net_admin
# (setcap) that only root and GROUP may run: root:GROUP, mode 0750, so no
# other local user gets a binary with the capability while a bench runs.
# The chgrp comes before setcap: a change of owner clears file
# capabilities.
setcap_copy() {
	cp "$1" "$2"
	chgrp "$3" "$2"
	chmod 750 "$2"
	setcap cap_net_admin+ep "$2"
}
