// Package gateway knocks on behalf of the devices behind a Linux router.
//
// The router's kernel sends the LAN's connections to the destinations of
// the gateway config to a local listener; the gateway finds the
// destination's [[host]] entry in the client config, checks the LAN source
// against the destination's allow list, knocks from the router with the
// key it holds (client.Dialer) and splices the two connections
// (client.Relay). The devices run nothing.
//
// # Redirect, not TPROXY
//
// The rule is nftables' redirect (nat prerouting, the destination rewritten
// to the router's own address and the listener's port), and the original
// destination is read back from conntrack with SO_ORIGINAL_DST (IPv4) and
// IP6T_SO_ORIGINAL_DST (IPv6). TPROXY would keep the destination without
// NAT, but it needs IP_TRANSPARENT sockets and policy routing (an ip rule
// sending marked packets to a local table) that the gateway would have to
// add and remove beside its table; redirect needs neither, works for IPv4
// and IPv6 alike, and every connection it touches is in conntrack anyway,
// since a router that masquerades tracks them all.
//
// # The table
//
// The rules live in a table of their own (default inet seqknock-gw),
// written in one netlink transaction, rewritten within milliseconds when
// anything else removes or changes it (the gateway watches
// NFNLGRP_NFTABLES) and removed when the gateway stops:
//
//	table inet seqknock-gw {
//	  chain pre { type filter hook prerouting priority raw; policy accept;
//	    ip daddr D tcp dport P ip saddr & MASK == NET accept   # each allowed prefix
//	    ip daddr D tcp dport P counter drop                    # every other source
//	  }
//	  chain nat { type nat hook prerouting priority dstnat; policy accept;
//	    ip daddr D tcp dport P redirect to :LISTEN
//	  }
//	  chain input { type filter hook input priority filter; policy accept;
//	    tcp dport LISTEN ct status & dnat == 0 counter drop    # only redirected flows
//	    tcp dport LISTEN ct state new socket mark MARK accept  # the gateway listens
//	    tcp dport LISTEN ct state new counter drop             # it does not: silence
//	  }
//	}
//
// A source not on a destination's allow list is dropped in pre, before
// conntrack: it gets what an unknocked SYN gets, nothing. Left to the
// router's forward path, its SYN would go on to the server unknocked (where
// a port in reset mode answers with a reset) or meet the router's own
// reject rules; either would tell a scanner on the LAN which destinations
// the gateway serves. The listener takes only redirected connections, so
// nothing on the LAN can use it as a proxy to anywhere else. Its listeners
// carry a socket mark (SO_MARK, which takes CAP_NET_ADMIN to set): when the
// gateway is killed without removing its table, the redirected SYNs find
// no such listener and are dropped, not reset, and an unprivileged user
// who listens on the port then catches nothing.
//
// Slots are counted in this process (one gateway per router holds the
// keys): a restart within a period may spend one SYN timeout on a slot the
// previous run used.
package gateway
