// Package nlwatch turns a netfilter netlink multicast group into a
// signal: hostconns watches conntrack's destroy events with it, nftgen
// the nftables change notifications. A signal says "look again", never
// what changed, so signals coalesce: at most one is pending.
package nlwatch
